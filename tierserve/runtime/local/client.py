"""A small synchronous client of the local control plane's API (what the CLI uses)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise ExternalError(
                f"cannot reach the control plane at {self.config.api_url} ({exc}); "
                "is `tierserve up` running?"
            ) from exc
        return payload.decode("utf-8", "replace") if raw else json.loads(payload)

    @staticmethod
    def _error(exc: urllib.error.HTTPError) -> TierserveError:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        if exc.code == 400:
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
        query = "?allNamespaces=1" if namespace is None else f"?namespace={namespace}"
        items: list[dict[str, Any]] = self.request("GET", f"/api/v1/{resource}{query}")["items"]
        return items

    def get(self, resource: str, name: str, namespace: str = "default") -> dict[str, Any]:
        obj: dict[str, Any] = self.request(
            "GET", f"/api/v1/{resource}/{name}?namespace={namespace}"
        )
        return obj

    def delete(self, resource: str, name: str, namespace: str = "default") -> list[dict[str, str]]:
        out = self.request("DELETE", f"/api/v1/{resource}/{name}?namespace={namespace}")
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

    def events(self, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        items: list[dict[str, Any]] = self.request("GET", f"/api/v1/events?{qs}")["items"]
        return items

    def cost(self) -> dict[str, Any]:
        out: dict[str, Any] = self.request("GET", "/api/v1/cost")
        return out

    def logs(self, namespace: str, name: str, tail: int | None = None) -> str:
        query = f"?tail={tail}" if tail is not None else ""
        text: str = self.request("GET", f"/api/v1/logs/{namespace}/{name}{query}", raw=True)
        return text

    def shutdown(self, stop_replicas: bool = True) -> None:
        self.request("POST", "/api/v1/shutdown", {"stopReplicas": stop_replicas})
