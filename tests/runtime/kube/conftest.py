"""One Kubernetes control plane for every test here (session-scoped), plus tierserve's
extender, controller and a second kube-scheduler (profile ``tierserve-scheduler``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kubestack import Stack

from tierserve.testing.kube import (
    ControlPlane,
    control_plane,
    free_port,
    missing_binaries,
    scheduler_config,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "kube: needs a real Kubernetes control plane (testbed)")


@pytest.fixture(scope="session")
def plane() -> Iterator[ControlPlane]:
    missing = missing_binaries()
    if missing:
        pytest.skip(
            "Kubernetes tests need a control plane; missing: "
            + ", ".join(missing)
            + ". Build it with scripts/k8s-build (Go + the module proxy, ~10 min once) "
            "and install etcd-server."
        )
    with control_plane() as started:
        yield started


@pytest.fixture(scope="session")
def stack(plane: ControlPlane) -> Iterator[Stack]:
    from tierserve.runtime.kube.apply import install_crd
    from tierserve.runtime.kube.client import KubeClient, load_config
    from tierserve.runtime.kube.crd import ACK_GROUP, TIERSERVE_GROUP

    async def install() -> None:
        async with KubeClient(load_config(str(plane.kubeconfig))) as kube:
            await install_crd(kube, TIERSERVE_GROUP)
            await install_crd(kube, ACK_GROUP)

    asyncio.run(install())
    result = Stack(plane, free_port())
    result.issue_certificates()
    try:
        result.start_extender()
        result._spawn("controller", ["controller"])
        config = plane.root / "tierserve-scheduler.yaml"
        config.write_text(
            scheduler_config(
                plane.root / "kube-scheduler.kubeconfig",
                profile="tierserve-scheduler",
                extender=result.extender_url,
                tls_config=result.scheduler_tls(),
            )
        )
        plane.start_scheduler("tierserve-scheduler", config)
        yield result
    finally:
        for name in list(result.procs):
            result.stop(name)
        plane.stop_process("tierserve-scheduler")
