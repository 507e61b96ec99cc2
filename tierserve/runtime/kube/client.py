"""A small async Kubernetes REST client on aiohttp, typed, with watches.

Only kubeconfig/in-cluster loading uses the official (untyped) ``kubernetes`` package, at
this edge; requests go through aiohttp with JSON in and out, so the extender and the
controller share one event loop and never deserialise 20,000 pods into model classes.
API errors are translated at the boundary: 404 -> :class:`NotFoundError`, 409 ->
:class:`ConflictError`, anything else -> :class:`KubeApiError` (an ``ExternalError``
carrying the HTTP status and the API server's own message).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from tierserve.errors import ConflictError, ExternalError, NotFoundError, TierserveError

Obj = dict[str, Any]

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class KubeApiError(ExternalError):
    """The API server refused a request; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class KubeConfig:
    """Where the API server is and how to authenticate (from a kubeconfig or in-cluster)."""

    server: str
    namespace: str = "default"
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    verify: bool = True
    context: str = ""


def load_config(kubeconfig: str | None = None, context: str | None = None) -> KubeConfig:
    """Read a kubeconfig (``--kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config``) or, inside a
    pod with none of them, the service account. Raises ``NotFoundError`` when neither exists.
    """
    from kubernetes import client as k8s_client  # untyped: kept at this edge
    from kubernetes import config as k8s_module

    k8s_config: Any = k8s_module

    cfg: Any = k8s_client.Configuration()
    namespace = "default"
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    default_path = os.path.expanduser("~/.kube/config")
    name = ""
    try:
        if path or os.path.exists(default_path) or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            path = path or default_path
            if not os.path.exists(path):
                raise NotFoundError(f"no kubeconfig at {path}; pass --kubeconfig or set KUBECONFIG")
            k8s_config.load_kube_config(
                config_file=path, context=context, client_configuration=cfg, persist_config=False
            )
            contexts, active = k8s_config.list_kube_config_contexts(path)
            chosen = (
                next((c for c in contexts if c["name"] == context), active) if context else active
            )
            name = str(chosen.get("name", ""))
            namespace = str(chosen.get("context", {}).get("namespace") or "default")
        else:
            k8s_config.load_incluster_config(client_configuration=cfg)
            ns_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
            if os.path.exists(ns_file):
                with open(ns_file) as f:
                    namespace = f.read().strip() or "default"
    except k8s_config.ConfigException as exc:
        raise ExternalError(f"cannot load Kubernetes configuration: {exc}") from exc
    token = cfg.get_api_key_with_prefix("authorization") or cfg.get_api_key_with_prefix(
        "BearerToken"
    )
    if token and token.lower().startswith("bearer "):
        token = token[7:]
    return KubeConfig(
        server=str(cfg.host).rstrip("/"),
        namespace=namespace,
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=token,
        verify=bool(cfg.verify_ssl),
        context=name,
    )


class Api(Protocol):
    """What the adapters need from Kubernetes (a fake implements it in unit tests)."""

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj: ...

    def watch(self, path: str, resource_version: str) -> AsyncIterator[tuple[str, Obj]]: ...


def _message(status: int, text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip() or f"HTTP {status}"
    if isinstance(doc, dict) and doc.get("message"):
        return str(doc["message"])
    return text.strip()


def _raise_for(status: int, text: str) -> None:
    """The API server's error, translated: 404 -> NotFoundError, 409 -> ConflictError,
    any other >= 400 -> KubeApiError."""
    if status < 400:
        return
    message = _message(status, text)
    if status == 404:
        raise NotFoundError(message)
    if status == 409:
        raise ConflictError(message)
    raise KubeApiError(status, message)


class KubeClient:
    """Async client for one API server; ``async with KubeClient(cfg) as kube: ...``."""

    def __init__(self, config: KubeConfig, timeout_s: float = 30.0) -> None:
        self.config = config
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.config.server.startswith("https"):
            return False
        if not self.config.verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context(cafile=self.config.ca_file)
        if self.config.cert_file and self.config.key_file:
            ctx.load_cert_chain(self.config.cert_file, self.config.key_file)
        return ctx

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            headers = {"Accept": "application/json", "User-Agent": "tierserve"}
            if self.config.token:
                headers["Authorization"] = f"Bearer {self.config.token}"
            self._session = aiohttp.ClientSession(
                base_url=self.config.server,
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=self._ssl(), limit=32),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        try:
            async with self._session_now().request(
                method,
                path,
                data=data,
                params=dict(params or {}),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ExternalError(f"{method} {self.config.server}{path}: {exc}") from exc
        _raise_for(status, text)
        if not text:
            return {}
        result: Obj = json.loads(text)
        return result

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        """The body of ``GET path`` as it arrives (a pod's log, ``follow=true``), with no
        time limit; errors as :meth:`request` raises them."""
        try:
            async with self._session_now().get(
                path,
                params=dict(params or {}),
                headers={"Accept": "*/*"},
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout_s),
            ) as resp:
                if resp.status >= 400:
                    _raise_for(resp.status, await resp.text())
                async for chunk in resp.content.iter_any():
                    yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ExternalError(f"GET {self.config.server}{path}: {exc}") from exc

    async def create(self, path: str, body: Obj, dry_run: bool = False) -> Obj:
        return await self.request("POST", path, body, {"dryRun": "All"} if dry_run else None)

    async def patch(self, path: str, body: Obj, content_type: str = MERGE_PATCH) -> Obj:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, params: Mapping[str, str] | None = None) -> Obj:
        return await self.request("DELETE", path, params=params)

    async def apply(
        self, path: str, body: Obj, manager: str = "tierserve", dry_run: bool = False
    ) -> Obj:
        """Server-side apply of ``body`` at ``path`` (the object's own URL)."""
        params = {"fieldManager": manager, "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        return await self.request(
            "PATCH", path, body, params, content_type="application/apply-patch+yaml"
        )

    async def watch(self, path: str, resource_version: str) -> AsyncIterator[tuple[str, Obj]]:
        """``(type, object)`` events of a watch from ``resource_version`` until the server
        ends it (about 5-10 minutes); a ``410 Gone`` arrives as an ``ERROR`` event."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        try:
            async with self._session_now().get(
                path, params=params, timeout=aiohttp.ClientTimeout(total=None, sock_read=330)
            ) as resp:
                if resp.status >= 400:
                    text = await resp.text()
                    raise KubeApiError(resp.status, _message(resp.status, text))
                async for line in resp.content:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type", "")), event.get("object") or {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ExternalError(f"watch {path}: {exc}") from exc


async def list_then_watch(
    kube: Api,
    path: str,
    on_list: Callable[[list[Obj]], None],
    on_change: Callable[[Obj, bool], None],
) -> None:
    """Keep up with ``path`` until cancelled, as an informer does: list it
    (``on_list(items)``), then watch from the list's resourceVersion
    (``on_change(obj, deleted)`` per event); list again when the watch ends or reports an
    ERROR (e.g. 410 Gone), and after a failure, a second later."""
    while True:
        try:
            listed = await kube.request("GET", path)
            on_list(listed.get("items") or [])
            version = str(listed.get("metadata", {}).get("resourceVersion", ""))
            async for kind, obj in kube.watch(path, version):
                if kind == "ERROR":
                    log.info("watch %s: %s; relisting", path, obj.get("message", obj))
                    break
                if kind != "BOOKMARK":
                    on_change(obj, kind == "DELETED")
        except asyncio.CancelledError:
            raise
        except TierserveError as exc:
            log.warning("watch %s failed: %s; retrying in 1 s", path, exc)
            await asyncio.sleep(1.0)


__all__ = [
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "Api",
    "KubeApiError",
    "KubeClient",
    "KubeConfig",
    "Obj",
    "list_then_watch",
    "load_config",
]
