"""What ships with tierserve from the seed scenario: its YAML and its engine command, verbatim."""

from __future__ import annotations

from importlib import resources

SEED_COMMAND = (
    "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --trust-remote-code "
    "--served-model-name deepseek-r1 --max-model-len 32768 --gpu-memory-utilization 0.95 "
    "--enforce-eager --dtype=half"
)
"""The seed's engine command line (its InferenceService's ``command``), verbatim."""


def seed_text(name: str) -> str:
    """The text of ``examples/seed/<name>`` (``model-storage.yaml``, ``resourcepolicy.yaml``)."""
    return resources.files(__name__).joinpath("seed").joinpath(name).read_text("utf-8")
