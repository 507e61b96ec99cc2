"""Bodies that run replicas: the embedded local runtime and the Kubernetes adapters."""
