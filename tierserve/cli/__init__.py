"""The ``tierserve`` command."""
