"""The routes document: the JSON (or YAML) shape a routes file or control-plane URL serves.

::

    {"services": [
      {"namespace": "default", "name": "deepseek",
       "host": "deepseek-default.example.com",          # optional, this is the default
       "models": ["deepseek-r1"],
       "backends": [
         {"replica": "deepseek-predictor-0", "url": "http://127.0.0.1:8001",
          "unit": 0, "tier": "idc", "ready": true}]}]}

Keys are camelCase or snake_case; unknown keys are rejected with the field path.
"""

from __future__ import annotations

from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from tierserve.errors import FieldError, ValidationError
from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.model.loader import field_errors


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendDoc(_Doc):
    replica: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://[^/\s]+/?$")
    unit: int = Field(default=0, ge=0)
    tier: str = "idc"
    ready: bool = True


class ServiceDoc(_Doc):
    namespace: str = "default"
    name: str = Field(min_length=1)
    host: str = ""
    models: list[str] = Field(default_factory=list)
    backends: list[BackendDoc] = Field(default_factory=list)


class RoutesDoc(_Doc):
    services: list[ServiceDoc] = Field(default_factory=list)


def parse_routes(doc: Any, source: str = "routes") -> list[ServiceRoute]:
    """Validate a routes document (already decoded) into ``ServiceRoute`` values."""
    if not isinstance(doc, dict):
        raise ValidationError(source, [FieldError("", "expected an object with 'services'")])
    try:
        parsed = RoutesDoc.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise ValidationError(source, field_errors(exc, RoutesDoc)) from exc
    return [
        ServiceRoute(
            namespace=s.namespace,
            name=s.name,
            host=s.host,
            model_names=tuple(s.models),
            backends=tuple(
                Backend(b.replica, b.url.rstrip("/"), b.unit, b.tier, b.ready) for b in s.backends
            ),
        )
        for s in parsed.services
    ]


def parse_routes_text(text: str, source: str = "routes") -> list[ServiceRoute]:
    """Parse JSON or YAML text (JSON is YAML) into routes."""
    try:
        doc = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise ValidationError(source, [FieldError("", f"not JSON or YAML: {exc}")]) from exc
    return parse_routes(doc, source)


def dump_routes(routes: list[ServiceRoute] | tuple[ServiceRoute, ...]) -> dict[str, Any]:
    """The routes document for ``routes`` (what a control plane serves at its routes URL)."""
    return {
        "services": [
            {
                "namespace": r.namespace,
                "name": r.name,
                "host": r.host,
                "models": list(r.model_names),
                "backends": [
                    {
                        "replica": b.replica,
                        "url": b.url,
                        "unit": b.unit,
                        "tier": b.tier,
                        "ready": b.ready,
                    }
                    for b in r.backends
                ],
            }
            for r in routes
        ]
    }
