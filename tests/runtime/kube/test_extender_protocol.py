"""The extender's replies to the requests kube-scheduler really sends (no cluster needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tierserve.runtime.kube.cache import ClusterCache
from tierserve.runtime.kube.controller import desired_costs, patches
from tierserve.runtime.kube.extender import Extender, app

REFERENCE = Path("/work/shared/k8s-reference/extender")
Obj = dict[str, Any]


def node(name: str, gpus: str, labels: dict[str, str], taints: list[Obj] | None = None) -> Obj:
    cap = {"cpu": "1k", "memory": "4Ti", "nvidia.com/gpu": gpus, "pods": "10k"}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints or []},
        "status": {"capacity": cap, "allocatable": cap},
    }


IDC = node("idc001", "1", {"pool": "idc"})
VIRTUAL = node(
    "virtual-kubelet-cn-hangzhou-b",
    "100",
    {},
    [{"key": "virtual-kubelet.io/provider", "value": "alibabacloud", "effect": "NoSchedule"}],
)
POLICY = {
    "apiVersion": "scheduling.tierserve.io/v1alpha1",
    "kind": "ResourcePolicy",
    "metadata": {"name": "gpu-demo", "namespace": "default"},
    "spec": {
        "selector": {"app": "gpu-demo"},
        "units": [{"resource": "ecs", "nodeSelector": {"pool": "idc"}}, {"resource": "eci"}],
    },
}


def reference(name: str) -> Obj:
    path = REFERENCE / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    doc: Obj = json.loads(path.read_text())
    return doc


def cache_with(policy: bool = True) -> ClusterCache:
    cache = ClusterCache()
    cache.set_node(IDC)
    cache.set_node(VIRTUAL)
    if policy:
        cache.set_policy("scheduling.tierserve.io", POLICY)
    return cache


def test_filter_full_nodes_keeps_idc_first() -> None:
    args = reference("002_prioritize.json")  # the first pod, both nodes still candidates
    reply = Extender(cache_with(), None).filter(args)
    assert [n["metadata"]["name"] for n in reply["Nodes"]["items"]] == ["idc001"]
    assert reply["NodeNames"] is None and reply["Error"] == ""
    # placed: the refused nodes' reasons are not sent (they only explain a failure)
    assert reply["FailedNodes"] == {} and reply["FailedAndUnresolvableNodes"] == {}


def test_filter_node_names_when_node_cache_capable() -> None:
    args = reference("002_prioritize.json")
    names = [n["metadata"]["name"] for n in args.pop("Nodes")["items"]]
    args["NodeNames"] = names
    reply = Extender(cache_with(), None).filter(args)
    assert reply["NodeNames"] == ["idc001"] and reply["Nodes"] is None


def test_pod_without_policy_passes_through_untouched() -> None:
    args = reference("002_prioritize.json")
    reply = Extender(cache_with(policy=False), None).filter(args)
    assert reply["Nodes"]["items"] == args["Nodes"]["items"]
    assert reply["FailedNodes"] == {}


def test_idc_full_goes_to_the_virtual_unit() -> None:
    cache = cache_with()
    bound = reference("001_filter.json")["Pod"]
    bound = {**bound, "spec": {**bound["spec"], "nodeName": "idc001"}}
    bound["metadata"] = {**bound["metadata"], "name": "first", "uid": "u1"}
    cache.set_pod(bound)
    reply = Extender(cache, None).filter(reference("002_prioritize.json"))
    assert [n["metadata"]["name"] for n in reply["Nodes"]["items"]] == [
        "virtual-kubelet-cn-hangzhou-b"
    ]


def test_prioritize_scores_0_to_10() -> None:
    reply = Extender(cache_with(), None).prioritize(reference("002_prioritize.json"))
    assert {r["Host"] for r in reply} == {"idc001", "virtual-kubelet-cn-hangzhou-b"}
    assert all(0 <= r["Score"] <= 10 for r in reply)


async def test_http_routes() -> None:
    extender = Extender(cache_with(), None)
    async with TestClient(TestServer(app(extender))) as client:
        resp = await client.post("/filter", json=reference("001_filter.json"))
        body = await resp.json()
        assert set(body) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes",
                             "Error"}  # fmt: skip
        resp = await client.post("/prioritize", json=reference("002_prioritize.json"))
        assert isinstance(await resp.json(), list)
        resp = await client.post("/bind", json={"PodName": "x", "PodNamespace": "default",
                                                "PodUID": "u", "Node": "idc001"})  # fmt: skip
        assert "no API client" in (await resp.json())["Error"]


def test_deletion_cost_puts_cloud_pods_first() -> None:
    cache = cache_with()
    pod = reference("001_filter.json")["Pod"]
    for name, node_name, unit in (("a", "idc001", "0"), ("b", VIRTUAL["metadata"]["name"], "1")):
        meta = {
            **pod["metadata"],
            "name": name,
            "annotations": {"scheduling.tierserve.io/unit": unit},
        }
        cache.set_pod({**pod, "metadata": meta, "spec": {**pod["spec"], "nodeName": node_name}})
    costs = desired_costs(cache.pods, cache.policies(), cache.virtual_nodes())
    assert costs[("default", "b")] < costs[("default", "a")]
    assert set(patches(cache.pods, costs)) == {("default", "a"), ("default", "b")}


def test_relist_forgets_a_deleted_pod_together_with_its_assumption() -> None:
    now = [100.0]
    cache = cache_with()
    cache.clock = lambda: now[0]
    pod = {
        "metadata": {"name": "gone", "namespace": "default", "labels": {"app": "gpu-demo"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]},
        "status": {"phase": "Pending"},
    }
    cache.set_pod(pod)
    replica = cache.pods[("default", "gone")]
    cache.assume(replica.with_status(node_name="idc001", unit=0))
    cache.put_replica(replica)  # a watch event that does not show the binding yet
    # The watch broke and the relist no longer has the pod: it was deleted meanwhile.
    cache._forget_missing("pods", set())
    now[0] += cache.assume_ttl_s + 1
    cache._expire()  # the assumption lapses: nothing may come back
    assert ("default", "gone") not in cache.pods


def _filter_args(name: str, uid: str, app: str = "capped") -> Obj:
    pod = {
        "metadata": {"name": name, "namespace": "default", "uid": uid, "labels": {"app": app},
                     "creationTimestamp": "2026-12-02T00:00:00Z"},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
                 "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists",
                                  "effect": "NoSchedule"}]},
        "status": {"phase": "Pending"},
    }  # fmt: skip
    return {"Pod": pod, "NodeNames": ["idc001", "virtual-kubelet-cn-hangzhou-b"]}


CAPPED = {
    "apiVersion": "scheduling.tierserve.io/v1alpha1",
    "kind": "ResourcePolicy",
    "metadata": {"name": "capped", "namespace": "default"},
    "spec": {"selector": {"app": "capped"}, "units": [{"resource": "eci", "max": 2}]},
}


def test_filter_counts_a_pod_the_watch_has_not_delivered_yet() -> None:
    # kube-scheduler filters pod after pod before the extender's watch shows any of them:
    # each placed pod counts toward max from the request itself
    cache = cache_with(policy=False)
    cache.set_policy("scheduling.tierserve.io", CAPPED)
    extender = Extender(cache, None)
    allowed = []
    for i in range(4):
        reply = extender.filter(_filter_args(f"p{i}", f"uid-{i}"))
        allowed.append(reply["NodeNames"])
    virtual = "virtual-kubelet-cn-hangzhou-b"
    assert allowed == [[virtual], [virtual], [], []]
    assert set(cache.pods) == {("default", "p0"), ("default", "p1")}
    # the watch then shows p0 still unbound: the assumption holds (bind comes next)
    cache.set_pod(_filter_args("p0", "uid-0")["Pod"])
    assert cache.pods[("default", "p0")].status.node_name == virtual


def test_an_assumption_the_api_never_confirms_lapses_and_frees_the_unit() -> None:
    now = [100.0]
    cache = cache_with(policy=False)
    cache.clock = lambda: now[0]
    cache.set_policy("scheduling.tierserve.io", CAPPED)
    extender = Extender(cache, None)
    for i in range(2):
        extender.filter(_filter_args(f"p{i}", f"uid-{i}"))
    assert extender.filter(_filter_args("p2", "uid-2"))["NodeNames"] == []
    now[0] += cache.assume_ttl_s + 1  # neither pod ever showed up in the watch
    assert extender.filter(_filter_args("p2", "uid-2"))["NodeNames"] != []
    assert ("default", "p0") not in cache.pods


def test_a_refused_filter_drops_the_pods_own_assumption() -> None:
    cache = cache_with(policy=False)
    cache.set_policy("scheduling.tierserve.io", CAPPED)
    extender = Extender(cache, None)
    extender.filter(_filter_args("p0", "uid-0"))
    # p0 is tried again with no candidate of its unit (kube-scheduler's own filters
    # dropped the virtual node): it is no longer placed, so it no longer counts
    args = _filter_args("p0", "uid-0")
    args["NodeNames"] = ["idc001"]
    assert extender.filter(args)["NodeNames"] == []
    assert ("default", "p0") not in cache.pods


def test_an_old_pod_of_the_same_name_does_not_undo_the_new_ones_assumption() -> None:
    cache = cache_with(policy=False)
    cache.set_policy("scheduling.tierserve.io", CAPPED)
    old = _filter_args("web-0", "uid-old")["Pod"]
    old["metadata"]["creationTimestamp"] = "2026-12-01T00:00:00Z"
    cache.set_pod({**old, "spec": {**old["spec"], "nodeName": "virtual-kubelet-cn-hangzhou-b"}})
    extender = Extender(cache, None)
    extender.filter(_filter_args("web-0", "uid-new"))  # recreated, as a StatefulSet does
    cache.set_pod(old, deleted=True)  # the watch delivers the old one's deletion late
    held = cache.pods[("default", "web-0")]
    assert held.metadata.uid == "uid-new" and held.status.node_name is not None


def test_a_filter_racing_the_pods_deletion_does_not_bring_it_back() -> None:
    cache = cache_with(policy=False)
    cache.set_policy("scheduling.tierserve.io", CAPPED)
    extender = Extender(cache, None)
    pod = _filter_args("p0", "uid-0")["Pod"]
    cache.set_pod(pod)
    cache.set_pod(pod, deleted=True)  # deleted (a scale-down) while kube-scheduler retried it
    extender.filter(_filter_args("p0", "uid-0"))
    assert ("default", "p0") not in cache.pods  # it would hold one of max's places for 30 s
    for i in (1, 2):
        assert extender.filter(_filter_args(f"p{i}", f"uid-{i}"))["NodeNames"] != []


def test_admission_review_answers_a_json_patch_for_a_selected_pod() -> None:
    import base64

    cache = cache_with()
    pod = {"kind": "Pod", "metadata": {"generateName": "gpu-demo-", "labels": {"app": "gpu-demo"}},
           "spec": {"containers": [{"name": "c"}]}}  # fmt: skip
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
              "request": {"uid": "r1", "namespace": "default", "operation": "CREATE",
                          "object": pod}}  # fmt: skip
    answer = Extender(cache, None).admit(review)
    assert answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "r1" and response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    assert patch == [
        {"op": "add", "path": "/spec/schedulerName", "value": "tierserve-scheduler"},
        {"op": "add", "path": "/spec/tolerations", "value": [
            {"key": "virtual-kubelet.io/provider", "operator": "Exists", "value": "",
             "effect": "NoSchedule"}]},
    ]  # fmt: skip
    # a pod no policy selects: allowed, untouched
    pod["metadata"]["labels"] = {"app": "other"}
    assert "patch" not in Extender(cache, None).admit(review)["response"]


def test_a_pod_rejected_as_a_whole_is_told_why_once() -> None:
    cache = cache_with(policy=False)
    grouped = {**CAPPED, "spec": {**CAPPED["spec"], "matchLabelKeys": ["pod-template-hash"]}}
    cache.set_policy("scheduling.tierserve.io", grouped)
    reply = Extender(cache, None).filter(_filter_args("p0", "uid-0"))
    messages = set(reply["FailedAndUnresolvableNodes"].values())
    assert messages == {
        "ResourcePolicy capped groups by label 'pod-template-hash', which the pod lacks"
    }


def test_a_placed_pod_is_allowed_its_best_node_or_with_all_feasible_every_fitting_one() -> None:
    cache = cache_with()
    for name in ("idc002", "idc003"):
        cache.set_node({**IDC, "metadata": {**IDC["metadata"], "name": name}})
    args = reference("002_prioritize.json")
    args["NodeNames"] = ["idc001", "idc002", "idc003", "virtual-kubelet-cn-hangzhou-b"]
    args.pop("Nodes")
    best = Extender(cache_with(), None).filter(dict(args))
    assert best["NodeNames"] == ["idc001"]  # one node: kube-scheduler skips scoring
    every = Extender(cache, None, all_feasible=True).filter(dict(args))
    assert every["NodeNames"] == ["idc001", "idc002", "idc003"]
