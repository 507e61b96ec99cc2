"""``tierserve serve logs NAME --backend kubernetes``: one instance's log, through the API
server's ``pods/log`` subresource (which asks the node's kubelet for it).

The instance is picked as the local path picks it (``arena_layout.pick_instance``: ``-i``,
else the first Ready one, else the only one); this module reads the pod and its log:
``GET /api/v1/namespaces/NS/pods/POD/log?container=kserve-container&tailLines=N``
(``follow=true``: as it grows, until the pod's container ends or the caller stops).

Errors are messages, never tracebacks: a pod that is not on a node yet has no log; the
API server's own refusals (the kubelet unreachable, the container still waiting to
start) are given with the pod and its node named.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from tierserve.errors import ExternalError, NotFoundError, RetryLater
from tierserve.runtime.kube.client import KubeApiError, KubeClient, Obj
from tierserve.runtime.kube.serving import job_not_found, read_services, run

CONTAINER = "kserve-container"
"""The predictor's container, as KServe and ``serve kserve --raw`` name it."""


@dataclass(frozen=True)
class LogRequest:
    namespace: str
    pod: str
    tail: int | None = None
    follow: bool = False


def log_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods/{pod}/log"


def log_params(pod: Obj, tail: int | None, follow: bool) -> dict[str, str]:
    """The query: the predictor's container (when the pod has several, the one named
    ``kserve-container``, else the first), ``tailLines``, ``follow``."""
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    params = {"container": CONTAINER if CONTAINER in names else (names or [CONTAINER])[0]}
    if tail is not None:
        params["tailLines"] = str(tail)
    if follow:
        params["follow"] = "true"
    return params


async def _pod(kube: KubeClient, request: LogRequest) -> Obj:
    try:
        pod: Obj = await kube.get(f"/api/v1/namespaces/{request.namespace}/pods/{request.pod}")
    except NotFoundError:
        raise NotFoundError(
            f"instance {request.pod} is not in namespace {request.namespace} (gone?); "
            "`tierserve serve get NAME --backend kubernetes` lists the instances"
        ) from None
    if not (pod.get("spec") or {}).get("nodeName"):
        raise RetryLater(f"instance {request.pod} is Pending: not on a node yet, so it has no log")
    return pod


async def stream_log(kube: KubeClient, request: LogRequest) -> AsyncIterator[bytes]:
    """The log's bytes as the API server sends them (see the module doc for errors)."""
    pod = await _pod(kube, request)
    node = pod["spec"]["nodeName"]
    params = log_params(pod, request.tail, request.follow)
    try:
        async for chunk in kube.stream(log_path(request.namespace, request.pod), params):
            yield chunk
    except KubeApiError as exc:
        raise ExternalError(
            f"cannot read the log of instance {request.pod} (container {params['container']}) "
            f"on node {node}: the API server answered {exc.status}: {exc}"
        ) from None
    except NotFoundError as exc:
        raise NotFoundError(f"no log for instance {request.pod} on node {node}: {exc}") from None
    except ExternalError as exc:
        raise ExternalError(
            f"reading the log of instance {request.pod} on node {node} failed: {exc}"
        ) from None


async def pick_and_stream(
    kube: KubeClient,
    name: str,
    namespace: str,
    pick: Callable[[Obj, list[Obj]], str],
    tail: int | None,
    follow: bool,
    write: Callable[[bytes], None],
) -> None:
    """Find the job ``name`` (``serve get``'s view), ``pick`` its instance, ``write`` the log."""
    services, pods = await read_services(kube, namespace)
    found = [s for s in services if s["metadata"]["name"] == name]
    if not found:
        raise job_not_found(name, namespace)
    instance = pick(found[0], pods)
    async for chunk in stream_log(kube, LogRequest(namespace, instance, tail, follow)):
        write(chunk)


def logs(
    name: str,
    namespace: str,
    pick: Callable[[Obj, list[Obj]], str],
    write: Callable[[bytes], None],
    tail: int | None = None,
    follow: bool = False,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> None:
    """``serve logs --backend kubernetes``: write the picked instance's log."""

    async def read(kube: KubeClient) -> None:
        await pick_and_stream(kube, name, namespace, pick, tail, follow, write)

    run(read, kubeconfig, context)


__all__ = [
    "CONTAINER",
    "LogRequest",
    "log_params",
    "log_path",
    "logs",
    "pick_and_stream",
    "stream_log",
]
