"""hey's command line (plus the LLM options) parsed into a validated ``BenchConfig``.

hey spells long flags with one dash (``-host``, ``-disable-keepalive``); argparse accepts
those as long options, click does not, so ``tierserve bench`` hands its raw arguments here.
Every bad flag raises ``ValidationError`` naming the flag, the value and what was expected;
nothing is sent before the whole command line is valid.
"""

from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from tierserve import __version__
from tierserve.errors import FieldError, ValidationError
from tierserve.loadgen.stats import Slo

SUBJECT = "tierserve bench"
USER_AGENT = f"tierserve-bench/{__version__}"

DEFAULT_REQUESTS = 200  # hey's -n
DEFAULT_CONCURRENCY = 50  # hey's -c
DEFAULT_TIMEOUT_S = 20.0  # hey's -t
DEFAULT_CONTENT_TYPE = "text/html"  # hey's -T
METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")
LOOPBACK_NAMES = ("localhost",)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_HEADER = re.compile(r"^([\w-]+):\s*(.+)$")  # hey's headerRegexp
_AUTH = re.compile(r"^(.+):([^\s].+)$")  # hey's authRegexp
_SLO_KEYS = {"ttft": "ttft_s", "tpot": "tpot_s", "itl": "tpot_s", "e2e": "e2e_s", "e2el": "e2e_s"}

USAGE = """\
Usage: tierserve bench [options...] <url>

hey's options:
  -n  Number of requests to run. Default is 200.
  -c  Number of workers to run concurrently (with --rate: most requests in flight).
      Total number of requests cannot be smaller than the concurrency level. Default is 50.
  -q  Rate limit, in queries per second (QPS) per worker. Default is no rate limit.
  -z  Duration of application to send requests, e.g. -z 10s -z 3m. If duration is
      specified, n is ignored. In-flight requests are waited for (up to -t).
  -m  HTTP method, one of GET, POST, PUT, DELETE, HEAD, OPTIONS, PATCH.
  -H  Custom HTTP header, repeatable: -H "Accept: text/html" -H "Content-Type: application/json".
  -t  Timeout for each request in seconds. Default is 20, use 0 for infinite.
  -A  HTTP Accept header.
  -d  HTTP request body.
  -D  HTTP request body from file.
  -T  Content-type, defaults to "text/html".
  -U  User-Agent, defaults to "tierserve-bench/<version>".
  -a  Basic authentication, username:password.
  -host  HTTP Host header.
  -disable-compression  Disable compression (no Accept-Encoding).
  -disable-keepalive    Open a new TCP connection for every request.
  -disable-redirects    Do not follow HTTP redirects.
  -cpus  Accepted for compatibility; the load runs on one asyncio event loop.

LLM options:
  --stream          Set "stream": true and stream_options.include_usage on the JSON body;
                    TTFT is measured at the first content chunk.
  --rate R          Open loop: Poisson arrivals of R requests/s (vLLM's --request-rate);
                    -c caps the requests in flight, -n or -z bounds the run.
  --seed N          Seed of the Poisson arrivals (default 0).
  --slo LIST        Goodput objectives, e.g. ttft=500ms,tpot=50ms,e2e=10s (bare numbers are ms).
  --json            Print one JSON object with every figure (no progress, no text).
  --no-progress     No live progress bar (it is off anyway when stderr is not a terminal).
  --allow-remote    Allow a target that is not a loopback address (127.0.0.1, ::1, localhost).
  --start-at T      Wait until the Unix time T (seconds) before the first request: benches
                    started ahead of a schedule begin on it, not after their start-up.
"""


@dataclass(frozen=True)
class BenchConfig:
    """A validated load test. Times in seconds; ``None`` means no limit."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    requests: int = DEFAULT_REQUESTS
    concurrency: int = DEFAULT_CONCURRENCY
    qps_per_worker: float = 0.0
    duration_s: float | None = None
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    disable_keepalive: bool = False
    disable_compression: bool = False
    disable_redirects: bool = False
    stream: bool = False
    rate_per_s: float | None = None
    seed: int = 0
    slo: Slo = field(default_factory=Slo)
    json_output: bool = False
    progress: bool = True
    start_at: float | None = None
    """Unix time of the first request (None: at once)."""

    @property
    def mode(self) -> str:
        return "poisson" if self.rate_per_s is not None else "closed-loop"


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing its own usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise ValidationError(SUBJECT, [FieldError("", message)])


def _parser() -> _Parser:
    p = _Parser(prog="tierserve bench", add_help=False, allow_abbrev=False)
    p.add_argument("url", nargs="?")
    for flag in ("-n", "-c", "-q", "-z", "-m", "-t", "-A", "-d", "-D", "-T", "-U", "-a"):
        p.add_argument(flag, dest=flag[1:])
    p.add_argument("-H", dest="H", action="append", default=[])
    p.add_argument("-host", "--host-header", dest="host")
    p.add_argument("-cpus", dest="cpus")
    p.add_argument("-o", dest="o")
    p.add_argument("-h2", dest="h2", action="store_true")
    p.add_argument("-x", dest="x")
    for flag in ("compression", "keepalive", "redirects"):
        p.add_argument(f"-disable-{flag}", f"--disable-{flag}", action="store_true")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--rate")
    p.add_argument("--seed")
    p.add_argument("--slo")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--allow-remote", action="store_true")
    p.add_argument("--start-at")
    p.add_argument("-help", "--help", action="store_true")
    return p


def parse_duration_s(text: str) -> float:
    """Go's ``time.ParseDuration`` (what hey's ``-z`` takes): ``10s``, ``3m``, ``1h30m``,
    ``1.5s``, ``300ms``; ``0`` alone is zero. Raises ``ValueError`` otherwise."""
    s = text.strip()
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            raise ValueError(text)
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if not s:
        raise ValueError(text)
    return total


def parse_slo_duration_s(text: str) -> float:
    """An SLO bound: a Go-style duration (``500ms``, ``1.5s``) or a bare number of ms
    (vLLM's ``--goodput ttft:500``)."""
    try:
        return float(text) / 1000.0
    except ValueError:
        return parse_duration_s(text)


def parse_slo(text: str) -> Slo:
    """``ttft=500ms,tpot=50ms,e2e=10s`` (``itl`` is an alias of tpot, ``e2el`` of e2e)."""
    values: dict[str, float] = {}
    expected = "expected key=duration pairs like ttft=500ms,tpot=50ms,e2e=10s"
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep:
            key, sep, raw = part.partition(":")  # vLLM's ttft:500
        name = _SLO_KEYS.get(key.strip().lower())
        if not sep or name is None:
            raise ValueError(f"{part!r} is not an objective; {expected} (keys: ttft, tpot, e2e)")
        try:
            seconds = parse_slo_duration_s(raw.strip())
        except ValueError:
            raise ValueError(
                f"{key}={raw!r}: {raw!r} is not a duration; {expected} (bare numbers are ms)"
            ) from None
        if seconds <= 0:
            raise ValueError(f"{key}={raw!r} must be > 0; {expected}")
        values[name] = seconds
    if not values:
        raise ValueError(f"{text!r} names no objective; {expected}")
    return Slo(**values)


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Errors:
    """Collects every bad flag so the user sees them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, flag: str, value: object, expected: str) -> None:
        self.items.append(FieldError(flag, f"{value!r} is not valid; expected {expected}"))

    def note(self, flag: str, message: str) -> None:
        self.items.append(FieldError(flag, message))


def _int(errs: _Errors, flag: str, raw: str | None, default: int, minimum: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        errs.add(flag, raw, f"an integer >= {minimum}")
        return default
    if value < minimum:
        errs.add(flag, raw, f"an integer >= {minimum}")
    return value


def _float(errs: _Errors, flag: str, raw: str | None, default: float, minimum: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        errs.add(flag, raw, f"a number >= {minimum:g}")
        return default
    if not value >= minimum or value == float("inf"):
        errs.add(flag, raw, f"a finite number >= {minimum:g}")
    return value


def parse_flags(argv: list[str]) -> BenchConfig | None:
    """The validated config, or ``None`` when help was asked for. Raises ``ValidationError``."""
    ns = _parser().parse_args(argv)
    if ns.help:
        return None
    errs = _Errors()
    unsupported = {"-h2": ns.h2, "-x": ns.x, "-o": ns.o}
    for flag, value in unsupported.items():
        if value:
            errs.note(flag, "is not supported by tierserve bench (HTTP/1.1, no proxy, text/JSON)")

    url = _check_url(errs, ns.url, ns.allow_remote)
    n = _int(errs, "-n", ns.n, DEFAULT_REQUESTS, 1)
    c = _int(errs, "-c", ns.c, DEFAULT_CONCURRENCY, 1)
    q = _float(errs, "-q", ns.q, 0.0, 0.0)
    _int(errs, "-cpus", ns.cpus, 1, 1)
    duration_s: float | None = None
    if ns.z is not None:
        try:
            duration_s = parse_duration_s(ns.z)
        except ValueError:
            errs.add("-z", ns.z, "a duration with a unit, e.g. 10s, 3m, 1h30m, 500ms")
        else:
            if duration_s <= 0:
                duration_s = None  # hey: -z 0 means no duration, -n applies
    timeout = _float(errs, "-t", ns.t, DEFAULT_TIMEOUT_S, 0.0)
    rate: float | None = None
    if ns.rate is not None:
        rate = _float(errs, "--rate", ns.rate, 1.0, 0.0)
        if rate == 0:
            errs.add("--rate", ns.rate, "requests per second > 0")
    seed = _int(errs, "--seed", ns.seed, 0, -(2**63))
    start_at = None if ns.start_at is None else _float(errs, "--start-at", ns.start_at, 0.0, 0.0)
    if duration_s is None and rate is None and ns.n is not None and ns.c is not None and n < c:
        errs.note("-n", f"{n} is less than -c {c}; expected at least one request per worker")

    method = (ns.m or "GET").upper()
    if method not in METHODS:
        errs.add("-m", ns.m, f"one of {', '.join(METHODS)}")
    headers = _headers(errs, ns)
    if ns.a is not None:
        m = _AUTH.match(ns.a)
        if m is None:
            errs.add("-a", ns.a, "username:password")
        else:  # hey's req.SetBasicAuth: wins over an -H Authorization
            token = base64.b64encode(f"{m.group(1)}:{m.group(2)}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
    body = _body(errs, ns)
    slo = Slo()
    if ns.slo is not None:
        try:
            slo = parse_slo(ns.slo)
        except ValueError as exc:
            errs.note("--slo", str(exc))
    body, streaming = _streaming(errs, body, ns.stream)
    if slo.needs_streaming and not streaming:
        errs.note(
            "--slo",
            f"{ns.slo!r}: ttft and tpot are measured on streamed responses; "
            "expected --stream (or only e2e=... without it)",
        )
    if errs.items:
        raise ValidationError(SUBJECT, errs.items)
    assert url is not None
    return BenchConfig(
        url=url,
        method=method,
        headers=headers,
        body=body,
        requests=n,
        concurrency=c,
        qps_per_worker=q,
        duration_s=duration_s,
        timeout_s=timeout if timeout > 0 else None,
        disable_keepalive=ns.disable_keepalive,
        disable_compression=ns.disable_compression,
        disable_redirects=ns.disable_redirects,
        stream=streaming,
        rate_per_s=rate,
        seed=seed,
        slo=slo,
        json_output=ns.json,
        progress=not (ns.no_progress or ns.json),
        start_at=start_at,
    )


def _check_url(errs: _Errors, url: str | None, allow_remote: bool) -> str | None:
    if not url:
        errs.note(
            "url", "missing; expected a target like http://127.0.0.1:8080/v1/chat/completions"
        )
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errs.add("url", url, "an http:// or https:// URL with a host")
        return None
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        errs.add("url", url, "a port between 0 and 65535")
        return None
    if not allow_remote and not is_loopback(parts.hostname):
        errs.note(
            "url",
            f"{url!r}: host {parts.hostname!r} is not a loopback address; expected 127.0.0.1, "
            "::1 or localhost (pass --allow-remote to load another machine)",
        )
        return None
    return url


def _headers(errs: _Errors, ns: argparse.Namespace) -> dict[str, str]:
    """hey's order: Content-Type from -T, then -H (overriding), then -A, Host, User-Agent."""
    headers = {"Content-Type": ns.T or DEFAULT_CONTENT_TYPE}
    for raw in ns.H:
        m = _HEADER.match(raw)
        if m is None:
            errs.add("-H", raw, '"Name: value", e.g. -H "Content-Type: application/json"')
            continue
        name = next((k for k in headers if k.lower() == m.group(1).lower()), m.group(1))
        headers[name] = m.group(2)
    if ns.A:
        headers["Accept"] = ns.A
    if ns.host:
        headers["Host"] = ns.host
    ua = next((v for k, v in headers.items() if k.lower() == "user-agent"), None)
    headers = {k: v for k, v in headers.items() if k.lower() != "user-agent"}
    prefix = ns.U or ua
    headers["User-Agent"] = f"{prefix} {USER_AGENT}" if prefix else USER_AGENT
    return headers


def _body(errs: _Errors, ns: argparse.Namespace) -> bytes:
    body = ns.d.encode() if ns.d else b""
    if ns.D:  # hey: -D wins over -d
        try:
            body = Path(ns.D).read_bytes()
        except OSError as exc:
            errs.add("-D", ns.D, f"a readable file ({exc.strerror})")
    return body


def _streaming(errs: _Errors, body: bytes, stream_flag: bool) -> tuple[bytes, bool]:
    """With ``--stream``, the body with ``stream`` and ``stream_options.include_usage`` set;
    and whether responses will stream (``--stream``, or a body that asks for it)."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if not stream_flag:
        return body, isinstance(doc, dict) and doc.get("stream") is True
    if not isinstance(doc, dict):
        errs.note("--stream", 'needs a JSON object body (-d or -D) to set "stream": true on')
        return body, False
    options = doc.get("stream_options")
    doc["stream"] = True
    doc["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return json.dumps(doc, separators=(",", ":")).encode(), True
