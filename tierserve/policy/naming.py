"""Replica names shaped like a Deployment's pods: ``<name>-predictor-<hash>-<suffix>``."""

from __future__ import annotations

import hashlib
import json
import random

from tierserve.model import InferenceService

# Kubernetes' SafeEncodeString alphabet: no vowels, no look-alike characters.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


_NOT_TEMPLATE = {
    "replicas",
    "min_replicas",
    "max_replicas",
    "scale_metric",
    "scale_target",
    "autoscaling",
}
"""Fields that size the service rather than shape a replica: changing them rolls nothing."""


def template_hash(service: InferenceService) -> str:
    """A stable 10-character hash of what a replica runs (the pod-template-hash)."""
    spec = service.spec.model_dump(mode="json", exclude={*_NOT_TEMPLATE, "metrics"})
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:10])


def replica_name(service: InferenceService, rng: random.Random, taken: set[str]) -> str:
    """A new replica name not in ``taken``."""
    prefix = f"{service.predictor}-{template_hash(service)}"
    while True:
        name = f"{prefix}-{''.join(rng.choices(_ALPHABET, k=5))}"
        if name not in taken:
            return name
