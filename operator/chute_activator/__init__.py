"""The activator: holds requests for a Chute at zero replicas, wakes it, forwards when it is ready."""
