"""What one attempt on a replica means: retry it elsewhere? count it against the replica?

The gateway's proxy reports what an attempt came to (an :class:`Attempt`) and gets back
an :class:`AttemptDecision`. The line drawn is Envoy's "gateway failure" (outlier
detection's ``consecutive_gateway_failure``, ``retry_on: connect-failure,reset,
gateway-error``):

- **Replica faults**: the replica could not be reached, dropped the connection before
  its response was complete, used up the request's time, or answered 502/503/504 or a
  5xx without a body. They count toward the replica's ejection and, while no byte has
  reached the client and retries are left, are retried on another replica -- except a
  request timeout, whose time is already spent.
- **Answers**: any other response -- a 4xx, or a 500 that carries a body. The request
  caused it (a lone surrogate made the engine fail); another replica would fail the
  same way. It goes to the client unchanged, is not retried, and the replica counts as
  up (its back-off resets), so a client cannot eject healthy replicas.

==========================  ===================  ===================================
attempt                     fault                retried (no client bytes, retries)
==========================  ===================  ===================================
connect refused / reset     ``CONNECT``          yes
connect timeout             ``CONNECT_TIMEOUT``  yes
dropped before complete     ``DROPPED``          yes
request timeout             ``TIMEOUT``          no (``TIME_USED_UP``)
502 / 503 / 504             ``GATEWAY_STATUS``   yes
5xx with no body            ``EMPTY_5XX``        yes
anything else               None (an answer)     no
==========================  ===================  ===================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GATEWAY_STATUSES = frozenset({502, 503, 504})
"""What a proxy or load balancer in front of an engine answers when the engine is down."""


class Failure(StrEnum):
    """How an attempt failed below HTTP (no complete response)."""

    CONNECT = "connect"
    """Refused, reset or unreachable before the request was sent."""
    CONNECT_TIMEOUT = "connect_timeout"
    """The replica did not accept a connection within ``connect_timeout_s``."""
    DROPPED = "dropped"
    """The connection closed or broke before the response was complete."""
    TIMEOUT = "timeout"
    """The request's whole time (``request_timeout_s``) ran out."""


class Fault(StrEnum):
    """Why a replica is blamed for an attempt."""

    CONNECT = "connect"
    CONNECT_TIMEOUT = "connect_timeout"
    DROPPED = "dropped"
    TIMEOUT = "timeout"
    GATEWAY_STATUS = "gateway_status"
    EMPTY_5XX = "empty_5xx"

    @property
    def metric_reason(self) -> str:
        """The ``reason`` label of ``tierserve_gateway_retries_total``."""
        if self in (Fault.GATEWAY_STATUS, Fault.EMPTY_5XX):
            return "5xx"
        if self is Fault.TIMEOUT:
            return "timeout"
        return "connect"


class NoRetry(StrEnum):
    """Why a replica fault is not retried."""

    CLIENT_HAS_BYTES = "client_has_bytes"
    """The client already got part of the response (a stream broke)."""
    TIME_USED_UP = "time_used_up"
    """A request timeout: the request's time is spent."""
    RETRIES_USED = "retries_used"
    """``retries`` attempts were already made."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt came to: a ``failure``, or a response's ``status`` and whether
    it carried a body."""

    failure: Failure | None = None
    status: int | None = None
    has_body: bool = False
    client_has_bytes: bool = False
    """Bytes of this response already reached the client."""


@dataclass(frozen=True, slots=True)
class AttemptDecision:
    fault: Fault | None
    """Why the replica is blamed (counts toward its ejection); None: it answered."""
    retry: bool
    """Send the request to another replica."""
    no_retry: NoRetry | None = None
    """Why a fault is not retried (None when retried, or for an answer)."""

    @property
    def eject(self) -> bool:
        return self.fault is not None


_FAULT_OF = {
    Failure.CONNECT: Fault.CONNECT,
    Failure.CONNECT_TIMEOUT: Fault.CONNECT_TIMEOUT,
    Failure.DROPPED: Fault.DROPPED,
    Failure.TIMEOUT: Fault.TIMEOUT,
}


def fault_of(attempt: Attempt) -> Fault | None:
    """The replica's fault in ``attempt``, or None when it answered (see the table)."""
    if attempt.failure is not None:
        return _FAULT_OF[attempt.failure]
    status = attempt.status
    if status is None:  # no failure and no response: nothing arrived, so it dropped
        return Fault.DROPPED
    if status in GATEWAY_STATUSES:
        return Fault.GATEWAY_STATUS
    if status >= 500 and not attempt.has_body:
        return Fault.EMPTY_5XX
    return None


def decide_attempt(attempt: Attempt, retries_left: int) -> AttemptDecision:
    """Retry? eject? for one attempt, with ``retries_left`` more attempts allowed."""
    fault = fault_of(attempt)
    if fault is None:
        return AttemptDecision(None, retry=False)
    if attempt.client_has_bytes:
        return AttemptDecision(fault, retry=False, no_retry=NoRetry.CLIENT_HAS_BYTES)
    if fault is Fault.TIMEOUT:
        return AttemptDecision(fault, retry=False, no_retry=NoRetry.TIME_USED_UP)
    if retries_left <= 0:
        return AttemptDecision(fault, retry=False, no_retry=NoRetry.RETRIES_USED)
    return AttemptDecision(fault, retry=True)
