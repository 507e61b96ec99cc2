"""Replica: one engine process (or Pod) of a service, on one node, in one unit."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from tierserve.model.base import Strict, TypedObject
from tierserve.model.resources import ResourceList, Toleration

REPLICA_GROUP_VERSION = "tierserve.io/v1alpha1"
TIER_LABEL = "tierserve.io/tier"
"""Set on a replica when it is placed: ``idc`` or ``cloud`` (a virtual node)."""


class Phase(StrEnum):
    """Pending → (virtual node: Provisioning) → Starting → Ready → Terminating → gone."""

    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    STARTING = "Starting"
    READY = "Ready"
    TERMINATING = "Terminating"
    FAILED = "Failed"


ACTIVE_PHASES = frozenset({Phase.PROVISIONING, Phase.STARTING, Phase.READY})


class ReplicaSpec(Strict):
    service: str
    requests: ResourceList = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)


class ReplicaStatus(Strict):
    phase: Phase = Phase.PENDING
    node_name: str | None = None
    unit: int | None = None
    """Index of the ResourcePolicy unit the replica was placed in (None: no policy)."""
    reason: str = ""
    message: str = ""
    created_s: float = 0.0
    """Creation time (Unix seconds); ``whenTryNextUnits`` timeouts count from here."""
    scheduled_s: float | None = None
    started_s: float | None = None
    ready_s: float | None = None
    terminating_s: float | None = None
    restarts: int = 0
    pid: int | None = None
    pid_start_time: int | None = None
    """The process's start time (``/proc/<pid>/stat`` field 22): a recycled pid is not ours."""
    port: int | None = None
    gpus: list[int] = Field(default_factory=list)
    """Real GPU indices handed to the process (``CUDA_VISIBLE_DEVICES``); empty when the
    node's GPUs are emulated. Kept so that a restarted control plane hands them to no
    other replica while the adopted process still holds them."""
    billed_until_s: float | None = None
    """GPU-seconds are accounted up to this time (virtual nodes bill from provisioning)."""


class Replica(TypedObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (REPLICA_GROUP_VERSION,)
    KIND: ClassVar[str] = "Replica"

    api_version: str = REPLICA_GROUP_VERSION
    kind: str = "Replica"
    spec: ReplicaSpec
    status: ReplicaStatus = Field(default_factory=ReplicaStatus)

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    @property
    def phase(self) -> Phase:
        return self.status.phase

    @property
    def node_name(self) -> str | None:
        return self.status.node_name

    @property
    def terminating(self) -> bool:
        return self.status.phase == Phase.TERMINATING

    @property
    def ready(self) -> bool:
        return self.status.phase == Phase.READY

    def with_status(self, **changes: object) -> Replica:
        """A copy with some status fields changed (objects are immutable)."""
        return self.model_copy(update={"status": self.status.model_copy(update=changes)})
