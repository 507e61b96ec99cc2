"""Fixtures of the chart tests: the helm binary (scripts/helm-build) and a Kubernetes test
control plane for server-side dry runs (scripts/k8s-build)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierserve.testing.kube import ControlPlane, control_plane, missing_binaries

ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kube: needs a real Kubernetes control plane (testbed)")


def helm_path() -> Path:
    """``$HELM_BIN/helm`` (scripts/test exports it), else where scripts/helm-build caches
    its default release."""
    if os.environ.get("HELM_BIN"):
        return Path(os.environ["HELM_BIN"]) / "helm"
    script = (ROOT / "scripts" / "helm-build").read_text()
    match = re.search(r"HELM_VERSION:-(v[0-9.]+)", script)
    assert match, "scripts/helm-build names no default HELM_VERSION"
    version = os.environ.get("HELM_VERSION", match.group(1))
    cache = os.environ.get("HELM_CACHE") or str(Path.home() / ".cache/tierserve/helm")
    return Path(cache) / version / "bin" / "helm"


@pytest.fixture(scope="session")
def helm() -> Path:
    path = helm_path()
    if not os.access(path, os.X_OK):
        what = f"the chart tests need helm at {path}; build it with scripts/helm-build"
        if os.environ.get("CI"):  # scripts/test builds it: under CI a missing helm is a failure
            pytest.fail(what)
        pytest.skip(what + " (Go + the module proxy, ~2 min once)")
    return path


@pytest.fixture(scope="session")
def testbed() -> Iterator[ControlPlane]:
    missing = missing_binaries()
    if missing:
        pytest.skip(
            "the chart's dry runs need a control plane; missing: "
            + ", ".join(missing)
            + ". Build it with scripts/k8s-build and install etcd-server."
        )
    with control_plane() as plane:
        yield plane
