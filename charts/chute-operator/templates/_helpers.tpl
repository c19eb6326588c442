{{/* Chart name, full name, labels and the image reference. */}}

{{- define "chute-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chute-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A name made of the full name and a suffix, within 63 characters with the suffix whole: the full
name is cut, never the suffix (so a long release name gives no two objects one name).
Use: include "chute-operator.child" (list . "activator") */}}
{{- define "chute-operator.child" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $base := include "chute-operator.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{- define "chute-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chute-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chute-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chute-operator.labels" -}}
helm.sh/chart: {{ include "chute-operator.chart" . }}
{{ include "chute-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chutes
{{- end -}}

{{- define "chute-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "chute-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chute-operator.leaseName" -}}
{{- default (include "chute-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{/* The Secret in the release namespace whose key keys every Chute's drain token (the operator makes it). */}}
{{- define "chute-operator.drainKeySecret" -}}
{{- include "chute-operator.child" (list . "drain-key") -}}
{{- end -}}

{{/* repository:tag@digest, tag defaulting to appVersion; digest alone when no tag is wanted. */}}
{{- define "chute-operator.image" -}}
{{- if eq .Values.image.tag "latest" -}}
{{- fail "image.tag: 'latest' is not allowed; pin a version (or leave it empty for the chart's appVersion) and optionally image.digest" -}}
{{- end -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The sidecar's image: named by the sidecar's own version (Chart.yaml's chutes.ai/sidecar-tag), not
the chart's, so an upgrade whose sidecar did not change leaves every Chute's pod template as it was.
With image.digest, the operator's image by digest (the chart cannot know the sidecar tag's digest). */}}
{{- define "chute-operator.sidecarImage" -}}
{{- $tag := index .Chart.Annotations "chutes.ai/sidecar-tag" | required "Chart.yaml has no chutes.ai/sidecar-tag annotation" -}}
{{- $default := printf "%s:%s" .Values.image.repository $tag -}}
{{- if .Values.image.digest -}}
{{- $default = include "chute-operator.image" . -}}
{{- end -}}
{{- default $default .Values.operator.sidecarImage -}}
{{- end -}}

{{/* The operator's RBAC rules in the namespaces it reconciles (ClusterRole or per-namespace Role). */}}
{{- define "chute-operator.rules" -}}
# Chutes: watched; only their status is written.
- apiGroups: ["chutes.ai"]
  resources: ["chutes"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["chutes.ai"]
  resources: ["chutes/status"]
  verbs: ["patch"]
# Children: watched, server-side applied (patch; create when an apply creates the object), pruned.
# At start, one dry-run create of an HPA (nothing stored) learns whether the server keeps its tolerance.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Scale to zero: the EndpointSlice that adds the activator to a Chute's Service while it has no
# ready replica (and, read-only, the activator's own slices).
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Optional API (prometheus-operator); listing it is also how the operator detects it.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# spec.expose: an Ingress, and the optional APIs of the Gateway API (HTTPRoute) and its inference
# extension (InferencePool), each created only where discovery finds its API.
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["inference.networking.k8s.io"]
  resources: ["inferencepools"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pods: read-only, for readiness and restart reporting; the weights download pod's last log line
# is its progress (docs/weights.md).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Weights caches shared by the Chutes of a model revision: a PVC and its download Job, each owned by
# every Chute using it, joined and left by patches of their owner references, deleted with the last.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events on Chutes (kubectl describe chute).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* A label map as the operator's settings read it: key=value,key=value (sorted by key). */}}
{{- define "chute-operator.labelList" -}}
{{- $items := list -}}
{{- range $key, $value := . -}}
{{- $items = append $items (printf "%s=%s" $key $value) -}}
{{- end -}}
{{- join "," $items -}}
{{- end -}}

{{/* The metrics API's Service name, and the DNS name the kube-apiserver verifies its certificate for. */}}
{{- define "chute-operator.metricsApiService" -}}
{{- include "chute-operator.child" (list . "metrics-api") -}}
{{- end -}}

{{- define "chute-operator.metricsApiSecret" -}}
{{- default (printf "%s-tls" (include "chute-operator.metricsApiService" .)) .Values.metricsApi.tls.existingSecret -}}
{{- end -}}

{{/* "true" when the operator makes and renews the metrics API's certificate itself (neither
cert-manager nor a Secret of your own): it then writes the APIService's caBundle too. */}}
{{- define "chute-operator.metricsApiCertByOperator" -}}
{{- if not (or .Values.metricsApi.tls.existingSecret .Values.metricsApi.certManager.enabled) }}true{{ end -}}
{{- end -}}
