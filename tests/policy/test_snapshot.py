"""Snapshot.with_pod keeps the pod-label index in step without rebuilding it."""

from __future__ import annotations

from builders import idc, pod, snapshot, virtual

from tierserve.policy.snapshot import Snapshot


def names(snap: Snapshot, **selector: str) -> list[str]:
    return sorted(p.name for p in snap.pods_labelled("default", selector))


def test_with_pod_carries_the_label_index_over() -> None:
    base = snapshot(
        [idc(), virtual()],
        [pod("a").label(app="x").on("idc001"), pod("b").label(app="y").on("idc001")],
    )
    assert names(base, app="x") == ["a"]  # builds the index on first use
    # Add one pod, relabel another: the carried index answers like a fresh build.
    added = base.with_pod(pod("c").label(app="x").build())
    relabelled = added.with_pod(pod("b").label(app="x").on("idc001").build())
    fresh = Snapshot.build([n.build() for n in (idc(), virtual())], relabelled.pods)
    for selector in ({"app": "x"}, {"app": "y"}):
        assert names(relabelled, **selector) == names(fresh, **selector)
    assert names(relabelled, app="x") == ["a", "b", "c"]
    assert names(relabelled, app="y") == []
    # The snapshot it came from is unchanged (snapshots are values).
    assert names(base, app="x") == ["a"] and names(base, app="y") == ["b"]
