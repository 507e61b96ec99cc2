"""What a replica process's reports change on the Replica (the one writer's rules)."""

from __future__ import annotations

from builders import pod

from tierserve.model import Phase
from tierserve.policy.lifecycle import ReplicaEvent, event_record, not_adopted, status_changes


def event(phase: Phase, reason: str, **kw: object) -> ReplicaEvent:
    return ReplicaEvent("default/a", phase, reason, "", 0, 50.0, pid=7, start_time=9, **kw)  # type: ignore[arg-type]


def test_ready_and_started_set_their_times() -> None:
    r = pod("a").on("idc001", 0, "Starting").build()
    assert status_changes(r, event(Phase.READY, "Ready"))["ready_s"] == 50.0
    started = status_changes(r, event(Phase.STARTING, "Started", port=8000))
    assert started["started_s"] == 50.0 and started["port"] == 8000
    assert started["phase"] == Phase.STARTING and started["pid"] == 7


def test_a_terminating_replica_keeps_its_phase() -> None:
    going = pod("a").on("idc001", 0, "Terminating").build()
    changes = status_changes(going, event(Phase.READY, "Ready"))
    assert "phase" not in changes and "ready_s" not in changes
    assert changes["pid"] == 7


def test_event_records_warnings() -> None:
    assert event_record(event(Phase.FAILED, "StartTimeout"))[0] == "Warning"
    assert event_record(event(Phase.STARTING, "CrashLoopBackOff"))[0] == "Warning"
    assert event_record(event(Phase.READY, "")) == ("Normal", "Ready", "Replica is Ready")


def test_not_adopted_counts_a_restart_only_when_a_process_had_started() -> None:
    died = pod("a").on("idc001").build().with_status(pid=123, restarts=2)
    changes, warning = not_adopted(died)
    assert changes["restarts"] == 3 and changes["phase"] == Phase.STARTING
    assert warning is not None and "123" in warning
    never = pod("b").on("idc001", 0, "Starting").build()
    changes, warning = not_adopted(never)
    assert changes["restarts"] == 0 and warning is None
