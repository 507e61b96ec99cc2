"""Bodies that run replicas: the embedded local runtime (and, later, Kubernetes adapters)."""
