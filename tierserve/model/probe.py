"""A replica's readiness probe, in Kubernetes' words (``readinessProbe.httpGet``).

Unset fields keep the runtime's defaults, which suit engines that take minutes to load
(probe every second while starting). Without ``httpGet.path`` the probe asks
``/health`` (vLLM, TGI, SGLang, the emulator) and, when that path is not there (404, 405
or 501), ``/v1/models`` (most other OpenAI servers); any other answer counts as "not
ready yet".

One engine gets its own default: llama-cpp-python's ``llama_cpp.server`` runs every model
route, ``/v1/models`` included, behind one lock, and by default *interrupts* a running
generation as soon as another request waits for that lock — so probing ``/v1/models``
would cut streams short (and time out under load). Its ``/openapi.json`` takes no lock,
and its port opens only once the model is loaded, so that is what it is asked.
"""

from __future__ import annotations

import shlex

from pydantic import Field, field_validator

from tierserve.model.base import Strict

DEFAULT_READINESS_PATHS: tuple[str, ...] = ("/health", "/v1/models")
"""Tried in order when a service names no path; the next only when a path does not exist."""

LLAMA_CPP_READINESS_PATHS: tuple[str, ...] = ("/openapi.json",)
"""``python -m llama_cpp.server``: a path outside its model lock (see the module doc)."""


def default_readiness_paths(command: str) -> tuple[str, ...]:
    """The paths to probe for a service that names none, by the engine its command runs."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    if "llama_cpp.server" in words:
        return LLAMA_CPP_READINESS_PATHS
    return DEFAULT_READINESS_PATHS


class HTTPGetAction(Strict):
    path: str | None = None
    """The path to GET; None: ``DEFAULT_READINESS_PATHS``."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """The container port to probe; None: the service's ``port``."""

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or any(c in value for c in " \r\n")):
            raise ValueError(f"{value!r} is not an HTTP path: expected '/...' with no spaces")
        return value


class ReadinessProbe(Strict):
    """``readinessProbe``: when a replica takes traffic. Times are whole seconds, as in
    Kubernetes; None keeps the runtime's default (see ``SupervisorConfig``)."""

    http_get: HTTPGetAction = Field(default_factory=HTTPGetAction)
    initial_delay_seconds: int | None = Field(default=None, ge=0)
    period_seconds: int | None = Field(default=None, ge=1)
    timeout_seconds: int | None = Field(default=None, ge=1)
    failure_threshold: int | None = Field(default=None, ge=1)

    def paths(self, command: str = "") -> tuple[str, ...]:
        """The paths to try, in order (``command``: the engine's, for the default)."""
        return (self.http_get.path,) if self.http_get.path else default_readiness_paths(command)


__all__ = [
    "DEFAULT_READINESS_PATHS",
    "LLAMA_CPP_READINESS_PATHS",
    "HTTPGetAction",
    "ReadinessProbe",
    "default_readiness_paths",
]
