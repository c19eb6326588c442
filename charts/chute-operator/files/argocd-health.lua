-- Argo CD health check for chutes.ai/Chute: the value of the argocd-cm key
-- resource.customizations.health.chutes.ai_Chute (see docs/gitops.md for the state table).
--   Healthy      Ready=True for the Chute's current generation (with Degraded's reason, if any)
--   Suspended    scaled to zero on purpose (reason ScaledToZero)
--   Degraded     a person must act: Stalled=True, or Degraded=True while not Ready (the reason and
--                message say why)
--   Progressing  anything else: no status yet, a generation not yet observed, a rollout or model load
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local generation = obj.metadata.generation
local status = obj.status
if status == nil or status.observedGeneration == nil or condition("Ready") == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for chute-operator to report the Chute's status"
  return hs
end

local ready = condition("Ready")
local observed = status.observedGeneration
if ready.observedGeneration ~= nil and ready.observedGeneration < observed then
  observed = ready.observedGeneration
end
if generation ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = string.format(
    "Waiting for chute-operator to observe generation %d (the status describes generation %d)",
    generation, observed)
  return hs
end

local stalled = condition("Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

local available = condition("Available")
local degraded = condition("Degraded")
if ready.reason == "ScaledToZero" or (available ~= nil and available.reason == "ScaledToZero") then
  hs.status = "Suspended"
  hs.message = describe(available ~= nil and available.reason == "ScaledToZero" and available or ready)
  return hs
end

if is_true(ready) then
  -- Ready despite a Degraded reason (a scale-up pod without a node, one pod failing its probe):
  -- the Chute serves its spec; the message says what needs a look.
  hs.status = "Healthy"
  hs.message = describe(ready)
  if is_true(degraded) then
    hs.message = hs.message .. "; Degraded: " .. describe(degraded)
  end
  return hs
end

if is_true(degraded) then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready)
return hs
