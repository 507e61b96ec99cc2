"""The pure attempt decision: which outcomes are replica faults, which are retried."""

from __future__ import annotations

import pytest

from tierserve.policy.retry import (
    Attempt,
    AttemptDecision,
    Failure,
    Fault,
    NoRetry,
    decide_attempt,
    fault_of,
)


def failed(failure: Failure, *, client_has_bytes: bool = False) -> Attempt:
    return Attempt(failure=failure, client_has_bytes=client_has_bytes)


def answered(status: int, body: bool = True, *, client_has_bytes: bool = False) -> Attempt:
    return Attempt(status=status, has_body=body, client_has_bytes=client_has_bytes)


CASES = [
    # (attempt, retries_left, fault, retry, no_retry, why)
    (failed(Failure.CONNECT), 1, Fault.CONNECT, True, None, "refused: retried, ejects"),
    (failed(Failure.CONNECT_TIMEOUT), 1, Fault.CONNECT_TIMEOUT, True, None, "connect timeout"),
    (failed(Failure.DROPPED), 1, Fault.DROPPED, True, None, "dropped before the response"),
    (failed(Failure.TIMEOUT), 3, Fault.TIMEOUT, False, NoRetry.TIME_USED_UP, "request timeout"),
    (answered(502), 1, Fault.GATEWAY_STATUS, True, None, "502 with a body"),
    (answered(503), 1, Fault.GATEWAY_STATUS, True, None, "503 with a body"),
    (answered(504, body=False), 1, Fault.GATEWAY_STATUS, True, None, "504 without"),
    (answered(500, body=False), 1, Fault.EMPTY_5XX, True, None, "500 with no body"),
    (answered(501, body=False), 1, Fault.EMPTY_5XX, True, None, "any 5xx with no body"),
    (answered(500), 1, None, False, None, "500 with a body: the request caused it"),
    (answered(501), 1, None, False, None, "501 with a body"),
    (answered(507), 1, None, False, None, "507 with a body"),
    (answered(400), 1, None, False, None, "400: the client's"),
    (answered(404, body=False), 1, None, False, None, "4xx with no body is still an answer"),
    (answered(429), 1, None, False, None, "429 is the engine's answer"),
    (answered(200), 1, None, False, None, "200"),
    (answered(204, body=False), 1, None, False, None, "204 has no body by definition"),
    (Attempt(), 1, Fault.DROPPED, True, None, "nothing at all arrived"),
    (failed(Failure.CONNECT), 0, Fault.CONNECT, False, NoRetry.RETRIES_USED, "retries used"),
    (answered(503), 0, Fault.GATEWAY_STATUS, False, NoRetry.RETRIES_USED, "503, retries used"),
    (
        failed(Failure.DROPPED, client_has_bytes=True),
        1,
        Fault.DROPPED,
        False,
        NoRetry.CLIENT_HAS_BYTES,
        "a stream broke after its first byte: ejects, not retried",
    ),
    (
        failed(Failure.TIMEOUT, client_has_bytes=True),
        1,
        Fault.TIMEOUT,
        False,
        NoRetry.CLIENT_HAS_BYTES,
        "a stream ran out of time after its first byte",
    ),
    (answered(500, client_has_bytes=True), 1, None, False, None, "a streamed 500 passes on"),
]


@pytest.mark.parametrize(
    ("attempt", "retries_left", "fault", "retry", "no_retry", "why"),
    CASES,
    ids=[c[5] for c in CASES],
)
def test_decide_attempt(
    attempt: Attempt,
    retries_left: int,
    fault: Fault | None,
    retry: bool,
    no_retry: NoRetry | None,
    why: str,
) -> None:
    decision = decide_attempt(attempt, retries_left)
    assert decision == AttemptDecision(fault, retry, no_retry), why
    assert decision.eject is (fault is not None)
    assert fault_of(attempt) is fault


@pytest.mark.parametrize(
    ("fault", "label"),
    [
        (Fault.CONNECT, "connect"),
        (Fault.CONNECT_TIMEOUT, "connect"),
        (Fault.DROPPED, "connect"),
        (Fault.TIMEOUT, "timeout"),
        (Fault.GATEWAY_STATUS, "5xx"),
        (Fault.EMPTY_5XX, "5xx"),
    ],
)
def test_metric_reason(fault: Fault, label: str) -> None:
    assert fault.metric_reason == label
