"""The local control plane's HTTP API (JSON; the CLI talks only to it).

Every route but ``/healthz`` and the dashboard's login page needs ``Authorization:
Bearer <token>``; the dashboard's read-only data also takes its session cookie. Errors are
``{"error": {"message": ..., "reason": ...}}``: 400 (bad input, nothing changed), 401,
404, 405, 409, 413 (a body over ``MAX_BODY_BYTES``) or 415 (a body that is not
``application/json``). Client input never gets a 5xx: every error aiohttp raises while
routing or reading a request gets this JSON body too.

    GET    /healthz
    GET    /api/v1/{resource}[?namespace=NS]            list (Secrets redacted)
    GET    /api/v1/{resource}/{name}[?namespace=NS]     one object
    DELETE /api/v1/{resource}/{name}[?namespace=NS]
    POST   /api/v1/apply    {"documents": YAML, "source": name, "dryRun": bool}
    POST   /api/v1/delete   {"documents": YAML, "source": name}
    GET    /api/v1/events[?resource=&name=&namespace=]
    GET    /api/v1/cost
    GET    /api/v1/logs/{namespace}/{name}[?tail=N|?offset=BYTES]   a replica's log
    GET    /api/v1/routes                               the gateway's routes (docs/gateway.md)
    POST   /api/v1/shutdown {"stopReplicas": bool}
    GET    /metrics                                     Prometheus text
    GET    /dashboard, /api/v1/dashboard/{overview,stream}   the web dashboard
                                                        (``tierserve.web.dashboard``)

Input limits: a body of at most ``MAX_BODY_BYTES`` (8 MiB), ``documents`` of at most
1 MiB of YAML, within ``tierserve.model.yamlsafe``'s bounds on aliases and nesting.
Names and namespaces in paths and queries are checked as object names are (a namespace
is a DNS-1123 label) before they reach the store or the disk. Parsing and validating
documents runs in a worker thread, so a big apply does not stall the event loop that
also runs the controllers and the gateway.

Logs: ``{name}`` is a replica in the store (404 otherwise), never a path. The answer is
``text/plain`` with ``X-Log-Offset``: the byte offset just past what was sent. ``tail=N``
sends the last N lines; ``offset=BYTES`` sends what was written since (at most
``LOG_CHUNK_BYTES`` at once: ask again with the new offset while the chunk is full), so
``logs -f`` polls with the offset of its last answer. An offset past the end of the log
(the log was cut) starts again from 0.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import CollectorRegistry, generate_latest

from tierserve.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    TierserveError,
    ValidationError,
)
from tierserve.model import InferenceService, Replica, TypedObject, load_documents
from tierserve.model.display import cut, shown
from tierserve.model.dns import label_problem, subdomain_problem
from tierserve.model.names import PLURALS, resolve_resource
from tierserve.runtime.clock import Clock
from tierserve.runtime.local.command import replica_dirs
from tierserve.runtime.local.costs import CostCollector, cost_summary
from tierserve.runtime.local.logfile import LOG_CHUNK_BYTES, read_log
from tierserve.runtime.local.store import Store, rfc3339
from tierserve.web import dashboard as web_dashboard
from tierserve.web.dashboard import DashboardRoutes

log = logging.getLogger("tierserve.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY_BYTES = 8 * 2**20
"""Room for 1 MiB of YAML even when JSON escapes every character."""
LOG_OFFSET_HEADER = "X-Log-Offset"
_PARSERS = 2
"""Documents parsed at once (each in a worker thread); more requests wait their turn."""


def _error(
    status: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "reason": reason}}, status=status, headers=headers
    )


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError("request", [FieldError(field, message)])


def _checked_name(value: str, field: str) -> str:
    problem = subdomain_problem(value)
    if problem is not None:
        raise _bad(field, problem)
    return value


def _checked_namespace(value: str, field: str = "namespace") -> str:
    problem = label_problem(value, "namespace")
    if problem is not None:
        raise _bad(field, problem)
    return value


def _count(request: web.Request, field: str) -> int | None:
    """A non-negative integer query parameter, or None when absent."""
    text = request.query.get(field)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise _bad(field, f"{shown(text)} is not a whole number >= 0")
    return int(text)


def _parse_json(raw: bytes) -> Any:
    """The JSON value of a UTF-8 body, or a ValidationError saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("body", f"not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise _bad("body", "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _bad("body", f"not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise _bad("body", f"not valid JSON: {cut(str(exc), 120)}") from None


def _spec_of(obj: TypedObject) -> dict[str, Any]:
    """What ``apply`` compares: everything but status and server-set metadata."""
    data = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
    data.pop("status", None)
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation"):
        data["metadata"].pop(key, None)
    return data


class ApiServer:
    """Builds the aiohttp application; ``on_shutdown`` is how ``tierserve down`` stops us."""

    def __init__(
        self,
        store: Store,
        token: str,
        state_dir: str,
        on_shutdown: Callable[[bool], None],
        tier_of: Callable[[Replica], str],
        clock: Clock,
        routes: Callable[[], dict[str, Any]] | None = None,
        log_chunk_bytes: int = LOG_CHUNK_BYTES,
        dashboard: DashboardRoutes | None = None,
    ) -> None:
        """``log_chunk_bytes``: the most of a log one ``offset`` answer sends;
        ``dashboard``: the web dashboard's routes (none: no dashboard)."""
        self.dashboard = dashboard
        self.log_chunk_bytes = log_chunk_bytes
        self.clock = clock
        self.routes = routes
        self.store = store
        self.token = token
        self.state_dir = state_dir
        self.on_shutdown = on_shutdown
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CostCollector(store, lambda: store.list(Replica), tier_of))
        self._parsers = asyncio.Semaphore(_PARSERS)

    def app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors, self._auth], client_max_size=MAX_BODY_BYTES
        )
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/api/v1/apply", self._apply)
        app.router.add_post("/api/v1/delete", self._delete_docs)
        app.router.add_get("/api/v1/events", self._events)
        app.router.add_get("/api/v1/cost", self._cost)
        app.router.add_get("/api/v1/logs/{namespace}/{name}", self._logs)
        app.router.add_post("/api/v1/shutdown", self._shutdown)
        app.router.add_get("/api/v1/routes", self._routes)
        if self.dashboard is not None:
            self.dashboard.add(app.router)
        app.router.add_get("/api/v1/{resource}", self._list)
        app.router.add_get("/api/v1/{resource}/{name}", self._get)
        app.router.add_delete("/api/v1/{resource}/{name}", self._delete)
        return app

    # -- middlewares -------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        opened = self.dashboard is not None and web_dashboard.public(request)
        if request.path == "/healthz" or opened:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        bearer = scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), self.token)
        session = (
            self.dashboard is not None
            and web_dashboard.cookie_allowed(request)
            and web_dashboard.has_session(request, self.token)
        )
        if not (bearer or session):
            return _error(
                401,
                "Unauthorized",
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                "with the token from the state directory's 'token' file",
            )
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every error as the API's JSON body; only a bug of ours is a 500."""
        try:
            return await handler(request)
        except ValidationError as exc:
            return _error(400, "Invalid", str(exc))
        except NotFoundError as exc:
            return _error(404, "NotFound", str(exc))
        except ConflictError as exc:
            return _error(409, "Conflict", str(exc))
        except TierserveError as exc:
            return _error(400, "BadRequest", str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error(
                exc.status,
                exc.reason.replace(" ", ""),
                self._http_message(exc, request),
                headers={
                    k: v
                    for k, v in exc.headers.items()
                    if k.lower() not in ("content-type", "content-length")
                },
            )
        except (RequestPayloadError, HttpProcessingError) as exc:  # e.g. a bad Content-Encoding
            detail = cut(" ".join(str(exc).split()), 200)
            return _error(400, "BadRequest", f"the request body cannot be read ({detail})")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("API %s %s failed", request.method, cut(request.path, 200))
            return _error(500, "InternalError", "internal error (see controlplane.log)")

    @staticmethod
    def _http_message(exc: web.HTTPException, request: web.Request) -> str:
        if exc.status == 404:
            return f"no such route: {request.method} {cut(request.path, 200)}"
        if exc.status == 405:
            return f"method {request.method} is not allowed on {cut(request.path, 200)}"
        return cut(exc.text or exc.reason, 300)

    # -- helpers -----------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """The request's JSON object: application/json, UTF-8, within MAX_BODY_BYTES."""
        charset = (request.charset or "utf-8").lower()
        if request.content_type != "application/json" or charset not in ("utf-8", "utf8"):
            raise web.HTTPUnsupportedMediaType(
                text="expected a body of Content-Type: application/json (UTF-8)"
            )
        raw = await request.read()  # 413 past client_max_size
        data = await asyncio.to_thread(_parse_json, raw)
        if not isinstance(data, dict):
            raise _bad("body", "expected a JSON object")
        return data

    def _namespace(self, request: web.Request) -> str:
        return _checked_namespace(request.query.get("namespace", "default"))

    def _find(self, request: web.Request) -> TypedObject:
        cls = resolve_resource(request.match_info["resource"])
        namespace = self._namespace(request)
        name = _checked_name(request.match_info["name"], "name")
        obj = self.store.get(cls, namespace, name)
        if obj is None:
            where = f" in namespace {namespace}" if cls.NAMESPACED else ""
            raise NotFoundError(f'{PLURALS[cls]} "{name}" not found{where}')
        return obj

    # -- handlers ----------------------------------------------------------------------------

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), content_type="text/plain", charset="utf-8"
        )

    async def _list(self, request: web.Request) -> web.Response:
        cls = resolve_resource(request.match_info["resource"])
        namespace = None if request.query.get("allNamespaces") else self._namespace(request)
        items = [o.to_dict() for o in self.store.list(cls, namespace)]
        return web.json_response({"kind": f"{cls.KIND}List", "items": items})

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self._find(request).to_dict())

    async def _delete(self, request: web.Request) -> web.Response:
        obj = self._find(request)
        if isinstance(obj, Replica):
            # Like `kubectl delete pod`: the deletion is asked for (deletionTimestamp); the
            # controllers terminate the replica and its service replaces it.
            if not obj.terminating and obj.metadata.deletion_timestamp is None:
                meta = obj.metadata.model_copy(
                    update={"deletion_timestamp": rfc3339(self.clock.now())}
                )
                self.store.put(obj.model_copy(update={"metadata": meta}))
        else:
            self.store.delete(obj)
        return web.json_response({"results": [self._result(obj, "deleted")]})

    @staticmethod
    def _result(obj: TypedObject, action: str) -> dict[str, str]:
        return {
            "kind": obj.KIND,
            "apiVersion": obj.api_version,
            "namespace": obj.namespace,
            "name": obj.name,
            "action": action,
        }

    async def _documents(self, body: dict[str, Any]) -> list[TypedObject]:
        """The body's documents, parsed and validated in a worker thread."""
        text = body.get("documents")
        given = body.get("source")
        source = cut(given, 200) if isinstance(given, str) and given else "<input>"
        if not isinstance(text, str):
            raise _bad("documents", "expected YAML text")
        async with self._parsers:
            objs = await asyncio.to_thread(load_documents, text, source)
        managed = [
            FieldError(
                f"Replica {o.name}",
                "replicas are created by their InferenceService; "
                "apply the service (or change its replicas) instead",
            )
            for o in objs
            if isinstance(o, Replica)
        ]
        if managed:
            raise ValidationError(source, managed)
        return objs

    async def _apply(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        objs = await self._documents(body)
        results, writes = [], []
        for obj in objs:
            current = self.store.get(type(obj), obj.namespace, obj.name)
            if current is None:
                action = "created"
            elif _spec_of(current) == _spec_of(obj):
                action = "unchanged"
            else:
                action = "configured"
            if action != "unchanged":
                if isinstance(obj, InferenceService) and isinstance(current, InferenceService):
                    obj = obj.model_copy(update={"status": current.status})
                writes.append(obj)
            results.append(self._result(obj, action))
        if not body.get("dryRun"):
            self.store.put_all(writes)
        return web.json_response({"results": results})

    async def _delete_docs(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        results = []
        for obj in await self._documents(body):
            current = self.store.get(type(obj), obj.namespace, obj.name)
            if current is None:
                results.append(self._result(obj, "not found"))
                continue
            self.store.delete(current)
            results.append(self._result(obj, "deleted"))
        return web.json_response({"results": results})

    async def _events(self, request: web.Request) -> web.Response:
        events = self.store.events()
        q = request.query
        if "resource" in q:
            kind = resolve_resource(q["resource"]).KIND
            events = [e for e in events if e.kind == kind]
        if "name" in q:
            name = _checked_name(q["name"], "name")
            events = [e for e in events if e.name == name]
        if "namespace" in q:
            namespace = _checked_namespace(q["namespace"])
            events = [e for e in events if e.namespace in (namespace, "")]
        return web.json_response({"items": [e.to_dict() for e in events]})

    async def _cost(self, _: web.Request) -> web.Response:
        return web.json_response(cost_summary(self.store))

    async def _logs(self, request: web.Request) -> web.Response:
        namespace = _checked_namespace(request.match_info["namespace"])
        name = _checked_name(request.match_info["name"], "name")
        tail, offset = _count(request, "tail"), _count(request, "offset")
        if tail is not None and offset is not None:
            raise _bad("offset", "give tail or offset, not both")
        replica = self.store.get(Replica, namespace, name)
        if replica is None:
            raise NotFoundError(f'pods "{name}" not found in namespace {namespace}')
        # The path comes from the stored replica, never from the request.
        root = os.path.realpath(os.path.join(self.state_dir, "logs"))
        _, path = replica_dirs(self.state_dir, replica.namespace, replica.name)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise NotFoundError(f'no log for replica "{namespace}/{name}"')
        data, end = await asyncio.to_thread(read_log, path, tail, offset, self.log_chunk_bytes)
        return web.Response(
            body=data,
            content_type="text/plain",
            charset="utf-8",
            headers={LOG_OFFSET_HEADER: str(end)},
        )

    async def _routes(self, _: web.Request) -> web.Response:
        """The gateway's routes document (for ``tierserve gateway --routes-url``)."""
        return web.json_response(self.routes() if self.routes else {"services": []})

    async def _shutdown(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        self.on_shutdown(bool(body.get("stopReplicas", True)))
        return web.json_response({"stopping": True})
