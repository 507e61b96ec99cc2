"""GatewayConfig: every knob of the gateway, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass

from tierserve.errors import FieldError, ValidationError
from tierserve.policy.routing import DEFAULT_ROUTING_POLICY, ROUTING_POLICIES, SLOW_START_S

DEFAULT_GATEWAY_PORT = 8000
"""vLLM's default port: clients pointed at ``vllm serve`` work unchanged."""


@dataclass(frozen=True)
class GatewayConfig:
    """How the gateway routes, retries, holds and limits requests.

    Defaults and why:

    - ``hold_timeout_s`` 60: a replica scaling from zero on an emulated or IDC GPU
      is usually Ready within a minute; past that the client gets 503 + Retry-After.
    - ``retries`` 1: one more replica after a replica fault (``policy/retry.py``), only
      before the first response byte reached the client.
    - ``request_timeout_s`` 600: a whole request, stream included (long generations).
    - ``connect_timeout_s`` 5: a replica that does not accept in 5 s is treated as down.
    - ``eject_base_s`` 5 / ``eject_max_s`` 60: outlier back-off, doubling per
      consecutive failure of the same replica.
    - ``slow_start_s`` 10: a replica's share of new requests ramps up over its first 10 s
      Ready (``policy/routing.py``): a fresh replica does not take every new request at
      once and queue their prefills (0: off).
    - ``max_body_bytes`` 16 MiB: long prompts fit, runaway uploads get 413.
    - ``api_keys``: empty means no client authentication (and the client's
      ``Authorization`` is passed to the engine unchanged).

    Client connections (as nginx's ``client_header_timeout``, ``client_body_timeout``,
    ``keepalive_timeout``), so slow or idle clients cannot hold sockets for minutes:

    - ``client_header_timeout_s`` 10: a request's head must arrive whole within this
      of its first byte (of the connection, for its first request); else 408 and close.
    - ``client_body_timeout_s`` 60: the longest wait for the next bytes of a body
      (between two reads, not the whole upload); else 408.
    - ``client_keepalive_s`` 75: an idle client connection is closed after this.

    Upstream connections:

    - ``upstream_keepalive_s`` 4: an idle pooled connection to a replica is reused and
      kept at most this long -- inside vLLM's (uvicorn's) 5 s keep-alive, so a request
      never lands on a socket the engine is closing.
    - ``upstream_max_idle`` 128: idle connections kept per replica (the oldest beyond
      it are closed); 0 keeps none.
    """

    policy: str = DEFAULT_ROUTING_POLICY
    hold_timeout_s: float = 60.0
    retry_after_s: int = 5
    retries: int = 1
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 5.0
    eject_base_s: float = 5.0
    eject_max_s: float = 60.0
    slow_start_s: float = SLOW_START_S
    max_body_bytes: int = 16 * 1024 * 1024
    api_keys: tuple[str, ...] = ()
    client_header_timeout_s: float = 10.0
    client_body_timeout_s: float = 60.0
    client_keepalive_s: float = 75.0
    upstream_keepalive_s: float = 4.0
    upstream_max_idle: int = 128

    def __post_init__(self) -> None:
        errors: list[FieldError] = []
        if self.policy not in ROUTING_POLICIES:
            choices = ", ".join(sorted(ROUTING_POLICIES))
            errors.append(FieldError("policy", f"{self.policy!r} is not one of: {choices}"))
        for name in ("hold_timeout_s", "eject_base_s", "slow_start_s"):
            if getattr(self, name) < 0:
                errors.append(FieldError(name, f"{getattr(self, name)} must be >= 0"))
        for name in (
            "request_timeout_s",
            "connect_timeout_s",
            "eject_max_s",
            "client_header_timeout_s",
            "client_body_timeout_s",
            "client_keepalive_s",
            "upstream_keepalive_s",
        ):
            if getattr(self, name) <= 0:
                errors.append(FieldError(name, f"{getattr(self, name)} must be > 0"))
        for name in ("retries", "retry_after_s", "upstream_max_idle"):
            if getattr(self, name) < 0:
                errors.append(FieldError(name, f"{getattr(self, name)} must be >= 0"))
        if self.max_body_bytes < 1:
            errors.append(FieldError("max_body_bytes", f"{self.max_body_bytes} must be >= 1"))
        if any(not key for key in self.api_keys):
            errors.append(FieldError("api_keys", "an API key must not be empty"))
        if errors:
            raise ValidationError("gateway", errors)
