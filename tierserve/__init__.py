"""tierserve: serve LLMs on your own GPUs first, overflow to the cloud, give it back first."""

__version__ = "0.1.0"
