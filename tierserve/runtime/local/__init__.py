"""The embedded local runtime: replicas as OS processes on one machine."""
