"""chute-operator: reconciles chutes.ai/v1alpha1 Chutes into model-serving workloads."""
