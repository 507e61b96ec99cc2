"""The Kubernetes body: scheduler extender, deletion-cost controller, manifests, serving."""
