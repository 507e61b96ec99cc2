"""What a replica supervisor does next, as a pure function of its state and what it saw.

``decide(state, observation, config)`` returns the next state, the actions to apply
(start the process, stop it, report a phase change) and when to look again. No I/O,
no clock: the supervisor loop (``supervisor.py``) observes, calls ``decide`` and
applies. The stages, and the replica phase each is reported as::

    New ──start──▶ Starting ──healthy──▶ Ready ◀──healthy── Unhealthy
                     │  │                  │ └──N failed probes──▶ ┘
     start timeout ◀─┘  └──exit──▶ BackOff ◀──exit── (Ready, Unhealthy)
          │                         └──back-off elapsed──▶ Starting (restarts + 1)
          ▼
        Failed (process stopped; the controller replaces the replica)

    any stage ──stop requested──▶ Stopped (reported Terminating; process stopped)

Starting, BackOff and Unhealthy are all reported as phase ``Starting`` (not routed),
with reasons ``Started``/``Restarted``, ``CrashLoopBackOff`` and ``Unhealthy``.
Back-off after a crash is Kubernetes' CrashLoopBackOff: ``backoff_initial_s`` doubling
per consecutive crash up to ``backoff_max_s``, reset once a process has been Ready for
``backoff_reset_s``. Health failures after Ready only take the replica out of routing;
only an exit restarts it (a readiness probe, not a liveness probe).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from tierserve.errors import FieldError, ValidationError
from tierserve.model.probe import DEFAULT_READINESS_PATHS
from tierserve.model.replica import Phase, Replica
from tierserve.model.service import InferenceService


class Stage(StrEnum):
    NEW = "New"
    STARTING = "Starting"
    READY = "Ready"
    UNHEALTHY = "Unhealthy"
    BACKOFF = "BackOff"
    FAILED = "Failed"
    STOPPED = "Stopped"

    @property
    def terminal(self) -> bool:
        return self in (Stage.FAILED, Stage.STOPPED)

    @property
    def probed(self) -> bool:
        """Whether a live process is health-checked in this stage."""
        return self in (Stage.STARTING, Stage.READY, Stage.UNHEALTHY)


@dataclass(frozen=True)
class SupervisorConfig:
    """Timings of one replica's supervision; defaults suit a real vLLM (minutes to load)."""

    start_timeout_s: float = 600.0
    """A process not healthy this long after its start is failed (vLLM loads for minutes)."""
    initial_delay_s: float = 0.0
    """No health check this long after a start (``readinessProbe.initialDelaySeconds``)."""
    probe_interval_s: float = 1.0
    """Health-check period while starting."""
    probe_timeout_s: float = 1.0
    """One health check's time limit (``readinessProbe.timeoutSeconds``)."""
    probe_paths: tuple[str, ...] = DEFAULT_READINESS_PATHS
    """Paths a health check asks, in order (the next only when a path does not exist)."""
    check_interval_s: float = 2.0
    """Exit and health check period once Ready."""
    failure_threshold: int = 3
    """Consecutive failed health checks that take a Ready replica out of routing."""
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    """Cap of the crash back-off: 5 minutes, like Kubernetes' CrashLoopBackOff."""
    backoff_reset_s: float = 600.0
    """Ready this long and the next crash starts the back-off over (Kubernetes: 10 min)."""
    grace_s: float = 30.0
    """SIGTERM → SIGKILL grace when stopping (Kubernetes' terminationGracePeriodSeconds)."""
    cleanup_grace_s: float = 2.0
    """Grace for what is left of a crashed process's group before it is restarted."""

    def __post_init__(self) -> None:
        errors = [
            FieldError(name, f"{value!r} is not a positive number of seconds")
            for name, value in vars(self).items()
            if name.endswith("_s")
            and name != "initial_delay_s"
            and not (isinstance(value, int | float) and value > 0)
        ]
        if not self.initial_delay_s >= 0:
            errors.append(FieldError("initial_delay_s", "expected 0 or more seconds"))
        if not self.probe_paths:
            errors.append(FieldError("probe_paths", "expected at least one path"))
        if self.failure_threshold < 1:
            errors.append(FieldError("failure_threshold", "expected at least 1"))
        if errors:
            raise ValidationError("SupervisorConfig", errors)


@dataclass(frozen=True)
class SupervisorState:
    """Everything ``decide`` remembers between ticks (serialisable, passed in and returned)."""

    stage: Stage = Stage.NEW
    restarts: int = 0
    """Times the process was started again after an exit (the RESTARTS column)."""
    crash_streak: int = 0
    """Consecutive crashes without ``backoff_reset_s`` of readiness in between."""
    started_s: float | None = None
    ready_s: float | None = None
    restart_at_s: float | None = None
    failed_probes: int = 0
    probe_from_s: float | None = None
    """No health check before this time (a start's initial delay); None: any time."""

    @classmethod
    def adopted(cls, now_s: float, restarts: int = 0) -> SupervisorState:
        """A running process taken over after a control-plane restart: Starting until it
        answers a health check (the first check happens at once, with no initial delay)."""
        return cls(stage=Stage.STARTING, restarts=restarts, started_s=now_s)

    def probe_due(self, now_s: float) -> bool:
        """Whether a live process is health-checked at ``now_s``."""
        return self.stage.probed and (self.probe_from_s is None or now_s >= self.probe_from_s)


@dataclass(frozen=True)
class Observation:
    """What the loop saw at ``now_s``."""

    now_s: float
    running: bool
    """The process (same pid and start time) is alive."""
    healthy: bool | None = None
    """Health-check result; None when not checked."""
    exit_code: int | None = None
    start_error: str = ""
    """Why the last start attempt failed (no process was created)."""
    stop_grace_s: float | None = None
    """Set when a stop was requested: the grace to give the process."""


@dataclass(frozen=True)
class StartProcess:
    pass


@dataclass(frozen=True)
class StopProcess:
    grace_s: float


@dataclass(frozen=True)
class Report:
    """A phase change to record on the Replica (``reason`` is CamelCase, like Kubernetes)."""

    phase: Phase
    reason: str
    message: str = ""


Action = StartProcess | StopProcess | Report


@dataclass(frozen=True)
class Decision:
    state: SupervisorState
    actions: tuple[Action, ...] = ()
    wake_in_s: float = math.inf
    """Look again after this long (inf: terminal, nothing more to do)."""


def config_for_service(base: SupervisorConfig, service: InferenceService) -> SupervisorConfig:
    """``base`` with what a service's ``readinessProbe`` sets (unset fields keep ``base``)
    and the paths to probe (the service's, else its engine's default).

    ``periodSeconds`` is the check period both while starting and once Ready."""
    probe = service.spec.readiness_probe
    if probe is None:
        return replace(base, probe_paths=service.readiness_paths())

    def seconds(value: int | None, default: float) -> float:
        return default if value is None else float(value)

    return replace(
        base,
        probe_paths=service.readiness_paths(),
        initial_delay_s=seconds(probe.initial_delay_seconds, base.initial_delay_s),
        probe_interval_s=seconds(probe.period_seconds, base.probe_interval_s),
        check_interval_s=seconds(probe.period_seconds, base.check_interval_s),
        probe_timeout_s=seconds(probe.timeout_seconds, base.probe_timeout_s),
        failure_threshold=(
            base.failure_threshold if probe.failure_threshold is None else probe.failure_threshold
        ),
    )


def backoff_s(crash_streak: int, config: SupervisorConfig) -> float:
    """Delay before restart number ``crash_streak`` (1-based): initial · 2^(n-1), capped."""
    exponent = min(max(crash_streak - 1, 0), 64)
    return min(config.backoff_initial_s * 2.0**exponent, config.backoff_max_s)


def decide(state: SupervisorState, seen: Observation, config: SupervisorConfig) -> Decision:
    now = seen.now_s
    if state.stage.terminal:
        return Decision(state)
    if seen.stop_grace_s is not None:
        return Decision(
            replace(state, stage=Stage.STOPPED),
            (Report(Phase.TERMINATING, "Stopping"), StopProcess(seen.stop_grace_s)),
        )
    if state.stage == Stage.NEW:
        return _start(state, now, config, restarted=False)
    if state.stage == Stage.BACKOFF:
        restart_at = state.restart_at_s if state.restart_at_s is not None else now
        if now >= restart_at:
            return _start(replace(state, restarts=state.restarts + 1), now, config, restarted=True)
        return Decision(state, wake_in_s=restart_at - now)
    if not seen.running:
        return _crashed(state, seen, config)
    if state.stage == Stage.STARTING:
        return _starting(state, seen, config)
    return _serving(state, seen, config)


def _start(
    state: SupervisorState, now: float, config: SupervisorConfig, restarted: bool
) -> Decision:
    started = replace(
        state,
        stage=Stage.STARTING,
        started_s=now,
        ready_s=None,
        restart_at_s=None,
        failed_probes=0,
        probe_from_s=now + config.initial_delay_s,
    )
    reason = "Restarted" if restarted else "Started"
    first_check = config.initial_delay_s if config.initial_delay_s > 0 else config.probe_interval_s
    return Decision(started, (StartProcess(), Report(Phase.STARTING, reason)), first_check)


def _starting(state: SupervisorState, seen: Observation, config: SupervisorConfig) -> Decision:
    now = seen.now_s
    if seen.healthy:
        ready = replace(state, stage=Stage.READY, ready_s=now, failed_probes=0)
        return Decision(ready, (Report(Phase.READY, "Healthy"),), config.check_interval_s)
    started = state.started_s if state.started_s is not None else now
    deadline = started + config.start_timeout_s
    if now >= deadline:
        message = f"not healthy within the start timeout of {config.start_timeout_s:g}s"
        return Decision(
            replace(state, stage=Stage.FAILED),
            (StopProcess(config.grace_s), Report(Phase.FAILED, "StartTimeout", message)),
        )
    wait = config.probe_interval_s
    if state.probe_from_s is not None and now < state.probe_from_s:
        wait = state.probe_from_s - now
    return Decision(state, wake_in_s=min(wait, deadline - now))


def _serving(state: SupervisorState, seen: Observation, config: SupervisorConfig) -> Decision:
    if seen.healthy is None or seen.healthy:
        if state.stage == Stage.UNHEALTHY and seen.healthy:
            back = replace(state, stage=Stage.READY, failed_probes=0)
            return Decision(back, (Report(Phase.READY, "Healthy"),), config.check_interval_s)
        return Decision(replace(state, failed_probes=0), wake_in_s=config.check_interval_s)
    failed = state.failed_probes + 1
    if state.stage == Stage.READY and failed >= config.failure_threshold:
        message = f"health check failed {failed} times in a row"
        return Decision(
            replace(state, stage=Stage.UNHEALTHY, failed_probes=failed),
            (Report(Phase.STARTING, "Unhealthy", message),),
            config.check_interval_s,
        )
    return Decision(replace(state, failed_probes=failed), wake_in_s=config.check_interval_s)


def _crashed(state: SupervisorState, seen: Observation, config: SupervisorConfig) -> Decision:
    now = seen.now_s
    ran_ready_s = now - state.ready_s if state.ready_s is not None else 0.0
    streak = 1 if ran_ready_s >= config.backoff_reset_s else state.crash_streak + 1
    delay = backoff_s(streak, config)
    if seen.start_error:
        what = f"could not start: {seen.start_error}"
    elif seen.exit_code is not None:
        what = f"exited with code {seen.exit_code}"
    else:
        what = "exited"
    message = f"{what}; restarting in {delay:g}s"
    actions: tuple[Action, ...] = (Report(Phase.STARTING, "CrashLoopBackOff", message),)
    if not seen.start_error:  # what is left of the group (an engine's workers) goes too
        actions += (StopProcess(config.cleanup_grace_s),)
    backoff = replace(
        state,
        stage=Stage.BACKOFF,
        crash_streak=streak,
        restart_at_s=now + delay,
        ready_s=None,
        failed_probes=0,
    )
    return Decision(backoff, actions, delay)


# -- what a report does to the Replica -------------------------------------------------------

WARNING_REASONS = frozenset({"Unhealthy", "CrashLoopBackOff", "StartTimeout"})
"""Reports recorded as Warning events (with every ``Failed``)."""


@dataclass(frozen=True)
class ReplicaEvent:
    """One phase change of a replica's process, as its supervisor reports it."""

    replica: str
    """``namespace/name``."""
    phase: Phase
    reason: str
    message: str
    restarts: int
    at_s: float
    pid: int | None = None
    start_time: int | None = None
    port: int | None = None


def status_changes(replica: Replica, event: ReplicaEvent) -> dict[str, object]:
    """The Replica status fields ``event`` sets. A Terminating replica keeps its phase
    (the process may report Ready or an exit while it drains): only the process fields
    (pid, restarts, port) follow."""
    changes: dict[str, object] = {
        "restarts": event.restarts,
        "pid": event.pid,
        "pid_start_time": event.start_time,
    }
    if event.port is not None:
        changes["port"] = event.port
    if not replica.terminating:
        changes.update(phase=event.phase, reason=event.reason, message=event.message)
        if event.phase == Phase.READY:
            changes["ready_s"] = event.at_s
        elif event.phase == Phase.STARTING and event.reason in ("Started", "Restarted"):
            changes["started_s"] = event.at_s
    return changes


def event_record(event: ReplicaEvent) -> tuple[str, str, str]:
    """(type, reason, message) of the event recorded on the Replica for ``event``."""
    warning = event.phase == Phase.FAILED or event.reason in WARNING_REASONS
    return (
        "Warning" if warning else "Normal",
        event.reason or event.phase.value,
        event.message or f"Replica is {event.phase.value}",
    )


def not_adopted(replica: Replica) -> tuple[dict[str, object], str | None]:
    """A replica whose process a restarted control plane could not take over: the
    status that starts it again, and the Warning message when its process had started
    (it died while nobody watched: a restart, counted as one under supervision is)."""
    died = replica.status.pid is not None
    message = (
        f"process {replica.status.pid} was gone when the control plane started again; "
        "starting it again"
        if died
        else ""
    )
    changes: dict[str, object] = {
        "phase": Phase.STARTING,
        "pid": None,
        "pid_start_time": None,
        "port": None,
        "gpus": [],
        "reason": "NotAdopted",
        "message": message,
        "restarts": replica.status.restarts + (1 if died else 0),
    }
    return changes, message if died else None
