"""A simulated OpenAI-compatible model server for testing Chutes without a GPU.

It imports nothing of ``chute_operator`` or ``chute_sidecar``: it runs as the model container of a pod,
behind the sidecar, like vLLM would. See ``docs/modelsim.md``.
"""
