"""Manifests that ship with tierserve: the seed scenario's YAML, verbatim."""

from __future__ import annotations

from importlib import resources


def seed_text(name: str) -> str:
    """The text of ``examples/seed/<name>`` (``model-storage.yaml``, ``resourcepolicy.yaml``)."""
    return resources.files(__name__).joinpath("seed").joinpath(name).read_text("utf-8")
