"""Which waiting pods to touch (requeue) and when: a unit timeout that ends, a policy
that changes."""

from __future__ import annotations

from builders import PolicyBuilder, idc, pod, policy

from tierserve.policy.requeue import (
    REQUEUE_ANNOTATION,
    changed_policies,
    requeues,
    timeout_token,
)


def timed(timeout: str = "1m") -> PolicyBuilder:
    return policy().seed_units(max=3).when_try_next("TimeoutOrExceedMax", timeout)


def test_a_waiting_pod_is_touched_once_its_timeout_ends_and_not_before() -> None:
    rp = timed().build()
    waiting = pod("w").created(100.0).build()
    before = requeues([waiting], [rp], now_s=159.0)
    assert before.touch == () and before.next_s == 160.0
    due = requeues([waiting], [rp], now_s=160.0)
    assert [(t.name, t.token) for t in due.touch] == [("w", "timeout@160")]
    assert "1m wait in a unit ended" in due.touch[0].reason
    # once touched, not again: the token is on the pod
    touched = pod("w").created(100.0).annotate({REQUEUE_ANNOTATION: timeout_token(160.0)})
    assert requeues([touched.build()], [rp], now_s=500.0).touch == ()


def test_placed_pods_and_other_policies_are_left_alone() -> None:
    rp = timed().build()
    bound = pod("b").created(0.0).on(idc().build().name, unit=0).build()
    free = pod("f").label(app="other").created(0.0).build()
    plain = policy().seed_units(max=3).build()  # LackResourceOrExceedMax: never waits
    assert requeues([bound, free], [rp], now_s=1e6) == requeues([], [rp], now_s=1e6)
    assert requeues([pod("w").created(0.0).build()], [plain], now_s=1e6).touch == ()


def test_the_earliest_pending_deadline_is_when_to_look_again() -> None:
    rp = timed("15m").build()
    pods = [pod("a").created(50.0).build(), pod("b").created(10.0).build()]
    assert requeues(pods, [rp], now_s=100.0).next_s == 910.0


def test_a_changed_policy_requeues_its_waiting_pods_once_per_version() -> None:
    old = policy().seed_units(max=1).build()
    new = policy().seed_units(max=2).build()
    meta = new.metadata.model_copy(update={"resource_version": "7"})
    new = new.model_copy(update={"metadata": meta})
    assert changed_policies({}, [old]) == {("default", "deepseek")}
    assert changed_policies({("default", "deepseek"): old}, [old]) == frozenset()
    changed = changed_policies({("default", "deepseek"): old}, [new])
    assert changed == {("default", "deepseek")}
    waiting = pod("w").build()
    plan = requeues([waiting], [new], now_s=0.0, changed=changed)
    assert [(t.name, t.token) for t in plan.touch] == [("w", "policy@7")]
    assert "ResourcePolicy deepseek changed" in plan.touch[0].reason
    again = pod("w").annotate({REQUEUE_ANNOTATION: "policy@7"}).build()
    assert requeues([again], [new], now_s=0.0, changed=changed).touch == ()
