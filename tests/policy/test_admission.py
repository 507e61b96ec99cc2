"""The defaults a pod needs so its ResourcePolicy applies (the admission webhook's
decision)."""

from __future__ import annotations

from builders import IDC_POOL, SEED_APP, policy

from tierserve.model.resources import Toleration
from tierserve.policy.admission import pod_defaults

OURS = "tierserve-scheduler"
LABELS = {"app": SEED_APP}


def test_a_seed_pod_gets_the_scheduler_and_the_virtual_toleration() -> None:
    got = pod_defaults("default", LABELS, None, [], [policy().seed_units().build()], OURS)
    assert got is not None and got.changes
    assert got.scheduler_name == OURS
    assert got.toleration is not None and got.toleration.key == "virtual-kubelet.io/provider"
    assert got.reason == (
        "ResourcePolicy deepseek selects this pod: set schedulerName tierserve-scheduler "
        "and a toleration of virtual-kubelet.io/provider"
    )


def test_only_what_is_missing_is_set() -> None:
    idc_only = policy().unit("ecs", IDC_POOL).build()
    got = pod_defaults("default", LABELS, "default-scheduler", [], [idc_only], OURS)
    assert got is not None and got.toleration is None and got.scheduler_name == OURS
    tolerant = [Toleration(key="virtual-kubelet.io/provider", operator="Exists")]
    seed = policy().seed_units().build()
    done = pod_defaults("default", LABELS, OURS, tolerant, [seed], OURS)
    assert done is not None and not done.changes


def test_a_pod_naming_its_own_scheduler_keeps_it() -> None:
    got = pod_defaults("default", LABELS, "volcano", [], [policy().seed_units().build()], OURS)
    assert got is not None and got.scheduler_name is None and got.toleration is not None


def test_pods_no_policy_selects_or_two_select_are_left_alone() -> None:
    seed = policy().seed_units().build()
    assert pod_defaults("other", LABELS, None, [], [seed], OURS) is None
    assert pod_defaults("default", {"app": "x"}, None, [], [seed], OURS) is None
    twice = [seed, policy("second").seed_units().build()]
    assert pod_defaults("default", LABELS, None, [], twice, OURS) is None
