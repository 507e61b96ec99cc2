"""A small synchronous client of the local control plane's API (what the CLI uses)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tierserve.errors import (
    ConflictError,
    ExternalError,
    FieldError,
    NotFoundError,
    TierserveError,
    ValidationError,
)
from tierserve.runtime.local.config import ClientConfig


class ApiError(TierserveError):
    """The API answered with an error."""


LOG_OFFSET_HEADER = "X-Log-Offset"


def _segment(value: str) -> str:
    """One path segment, quoted (a '/' in a name stays inside the segment)."""
    return quote(value, safe="")


class Client:
    def __init__(self, config: ClientConfig, timeout_s: float = 30.0) -> None:
        self.config = config
        self.timeout_s = timeout_s
        # Loopback only: never send the token through a proxy from the environment.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @classmethod
    def from_state_dir(cls, root: Path) -> Client:
        return cls(ClientConfig.load(root))

    def request(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        payload, _ = self._send(method, path, body)
        return payload.decode("utf-8", "replace") if raw else json.loads(payload)

    def _send(self, method: str, path: str, body: Any = None) -> tuple[bytes, dict[str, str]]:
        """(body, headers) of one request; API errors raised as tierserve errors."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.config.api_url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.config.token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                payload: bytes = resp.read()
                headers = dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise ExternalError(
                f"cannot reach the control plane at {self.config.api_url} ({exc}); "
                "is `tierserve up` running?"
            ) from exc
        return payload, headers

    @staticmethod
    def _error(exc: urllib.error.HTTPError) -> TierserveError:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        if exc.code in (400, 413, 415):  # bad input; nothing changed
            return ValidationError("", [FieldError("", line) for line in message.splitlines()])
        if exc.code == 404:
            return NotFoundError(message)
        if exc.code == 409:
            return ConflictError(message)
        return ApiError(message)

    # -- verbs -------------------------------------------------------------------------------

    def list_objects(
        self, resource: str, namespace: str | None = "default"
    ) -> list[dict[str, Any]]:
        query = urlencode({"allNamespaces": 1} if namespace is None else {"namespace": namespace})
        path = f"/api/v1/{_segment(resource)}?{query}"
        items: list[dict[str, Any]] = self.request("GET", path)["items"]
        return items

    def get(self, resource: str, name: str, namespace: str = "default") -> dict[str, Any]:
        obj: dict[str, Any] = self.request("GET", self._object_path(resource, name, namespace))
        return obj

    def delete(self, resource: str, name: str, namespace: str = "default") -> list[dict[str, str]]:
        out = self.request("DELETE", self._object_path(resource, name, namespace))
        results: list[dict[str, str]] = out["results"]
        return results

    def apply(self, documents: str, source: str, dry_run: bool = False) -> list[dict[str, str]]:
        body = {"documents": documents, "source": source, "dryRun": dry_run}
        results: list[dict[str, str]] = self.request("POST", "/api/v1/apply", body)["results"]
        return results

    def delete_documents(self, documents: str, source: str) -> list[dict[str, str]]:
        body = {"documents": documents, "source": source}
        results: list[dict[str, str]] = self.request("POST", "/api/v1/delete", body)["results"]
        return results

    @staticmethod
    def _object_path(resource: str, name: str, namespace: str) -> str:
        query = urlencode({"namespace": namespace})
        return f"/api/v1/{_segment(resource)}/{_segment(name)}?{query}"

    def events(self, **query: str) -> list[dict[str, Any]]:
        path = f"/api/v1/events?{urlencode(query)}"
        items: list[dict[str, Any]] = self.request("GET", path)["items"]
        return items

    def cost(self) -> dict[str, Any]:
        out: dict[str, Any] = self.request("GET", "/api/v1/cost")
        return out

    def logs(self, namespace: str, name: str, tail: int | None = None) -> str:
        query = f"?tail={tail}" if tail is not None else ""
        text: str = self.request("GET", self._log_path(namespace, name) + query, raw=True)
        return text

    def log_bytes(
        self, namespace: str, name: str, offset: int | None = None, tail: int | None = None
    ) -> tuple[bytes, int]:
        """(log bytes, offset to ask from next) for following a log (``logs -f``): from
        byte ``offset`` (at most one chunk: ask again while more comes), or its last
        ``tail`` lines, or all of it."""
        query = {"offset": offset} if offset is not None else {}
        if tail is not None:
            query["tail"] = tail
        path = self._log_path(namespace, name) + (f"?{urlencode(query)}" if query else "")
        payload, headers = self._send("GET", path)
        given = {k.lower(): v for k, v in headers.items()}.get(LOG_OFFSET_HEADER.lower(), "")
        return payload, int(given) if given.isdigit() else (offset or 0) + len(payload)

    @staticmethod
    def _log_path(namespace: str, name: str) -> str:
        return f"/api/v1/logs/{_segment(namespace)}/{_segment(name)}"

    def shutdown(self, stop_replicas: bool = True) -> None:
        self.request("POST", "/api/v1/shutdown", {"stopReplicas": stop_replicas})
