"""The I/O half of ``tierserve bench``: send the requests with aiohttp and time them.

One ``aiohttp.ClientSession`` with one connector (keep-alive unless ``-disable-keepalive``)
serves every worker. Closed loop (hey): ``-c`` workers share a request counter (exactly
``-n`` requests are sent) or run until ``-z``. Open loop (``--rate``): a dispatcher sends
at the Poisson offsets of ``schedule.poisson_arrivals`` while fewer than ``-c`` are in
flight. After ``-z`` no new request starts; those in flight finish (bounded by ``-t``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp

from tierserve.loadgen.flags import BenchConfig
from tierserve.loadgen.openai import DONE, SseDecoder, chunk_content, parse_json, usage_of
from tierserve.loadgen.result import RequestResult
from tierserve.loadgen.schedule import MAX_SCHEDULED, poisson_arrivals, worker_interval_s

Clock = Callable[[], float]
OnResult = Callable[[RequestResult], None]


@dataclass
class RunResult:
    """Every request's result and the run's wall time (first send to last completion)."""

    results: list[RequestResult] = field(default_factory=list)
    total_s: float = 0.0
    interrupted: bool = False


@dataclass
class _Phases:
    """Timestamps filled in by aiohttp's tracing hooks for one request."""

    conn_start: float | None = None
    conn_end: float | None = None
    dns_start: float | None = None
    dns_end: float | None = None
    ready: float | None = None  # connection in hand (new or reused)
    sent: float | None = None  # last byte of the request written


def _trace_config(clock: Clock) -> aiohttp.TraceConfig:
    tc = aiohttp.TraceConfig()

    def hook(setter: Callable[[_Phases, float], None]) -> Any:
        async def on_event(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: Any) -> None:
            phases = ctx.trace_request_ctx
            if isinstance(phases, _Phases):
                setter(phases, clock())

        return on_event

    def conn_end(p: _Phases, t: float) -> None:
        p.conn_end = p.ready = t

    def sent(p: _Phases, t: float) -> None:
        p.sent = t

    tc.on_connection_create_start.append(hook(lambda p, t: setattr(p, "conn_start", t)))
    tc.on_connection_create_end.append(hook(conn_end))
    tc.on_connection_reuseconn.append(hook(lambda p, t: setattr(p, "ready", t)))
    tc.on_dns_resolvehost_start.append(hook(lambda p, t: setattr(p, "dns_start", t)))
    tc.on_dns_resolvehost_end.append(hook(lambda p, t: setattr(p, "dns_end", t)))
    tc.on_request_headers_sent.append(hook(sent))
    tc.on_request_chunk_sent.append(hook(sent))
    return tc


class Runner:
    """Runs one load test; ``on_result`` is called as each request completes (progress)."""

    def __init__(
        self,
        cfg: BenchConfig,
        on_result: OnResult | None = None,
        clock: Clock = time.perf_counter,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self._on_result = on_result
        self._clock = clock
        self._stop = stop or asyncio.Event()
        self._out = RunResult()
        self._start = 0.0
        self._next_index = 0

    async def run(self) -> RunResult:
        cfg = self.cfg
        connector = aiohttp.TCPConnector(limit=cfg.concurrency, force_close=cfg.disable_keepalive)
        skip = ("Accept-Encoding",) if cfg.disable_compression else ()
        async with aiohttp.ClientSession(
            connector=connector,
            trace_configs=[_trace_config(self._clock)],
            skip_auto_headers=skip,
            timeout=aiohttp.ClientTimeout(total=cfg.timeout_s),
        ) as session:
            self._start = self._clock()
            if cfg.rate_per_s is not None:
                await self._open_loop(session, cfg.rate_per_s)
            else:
                await asyncio.gather(*(self._worker(session) for _ in range(cfg.concurrency)))
            self._out.total_s = self._clock() - self._start
        self._out.interrupted = self._stop.is_set()
        return self._out

    # -- dispatch ----------------------------------------------------------------------

    def _deadline_passed(self) -> bool:
        d = self.cfg.duration_s
        return d is not None and self._clock() - self._start >= d

    def _claim(self) -> int | None:
        """The next request's index, or ``None`` when the run is over."""
        cfg = self.cfg
        limit = MAX_SCHEDULED if cfg.duration_s is not None else cfg.requests
        if self._stop.is_set() or self._next_index >= limit or self._deadline_passed():
            return None
        index = self._next_index
        self._next_index += 1
        return index

    async def _sleep_until(self, offset_s: float) -> bool:
        """Sleep until ``offset_s`` after the start, waking early on stop; whether to go on."""
        delay = offset_s - (self._clock() - self._start)
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
        return not self._stop.is_set() and not self._deadline_passed()

    async def _worker(self, session: aiohttp.ClientSession) -> None:
        interval = worker_interval_s(self.cfg.qps_per_worker)
        next_start = 0.0
        for _ in range(MAX_SCHEDULED):
            if interval and not await self._sleep_until(next_start):
                return
            index = self._claim()
            if index is None:
                return
            now = self._clock() - self._start
            next_start = max(next_start + interval, now) if interval else 0.0
            await self._send(session, index, None)

    async def _open_loop(self, session: aiohttp.ClientSession, rate: float) -> None:
        slots = asyncio.Semaphore(self.cfg.concurrency)
        in_flight: set[asyncio.Task[None]] = set()

        async def one(index: int, scheduled: float) -> None:
            try:
                await self._send(session, index, scheduled)
            finally:
                slots.release()

        for scheduled in poisson_arrivals(rate, self.cfg.seed):
            if self.cfg.duration_s is not None and scheduled >= self.cfg.duration_s:
                break
            if not await self._sleep_until(scheduled):
                break
            await slots.acquire()
            index = self._claim()
            if index is None:
                slots.release()
                break
            task = asyncio.create_task(one(index, scheduled))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)

    # -- one request -------------------------------------------------------------------

    async def _send(
        self, session: aiohttp.ClientSession, index: int, scheduled: float | None
    ) -> None:
        cfg = self.cfg
        clock = self._clock
        t0 = clock()
        res = RequestResult(index=index, offset_s=t0 - self._start, scheduled_s=scheduled)
        phases = _Phases()
        t_headers = t0
        try:
            async with session.request(
                cfg.method,
                cfg.url,
                data=cfg.body or None,
                headers=cfg.headers,
                allow_redirects=not cfg.disable_redirects,
                trace_request_ctx=phases,
            ) as resp:
                t_headers = clock()
                res.status = resp.status
                if resp.content_type == "text/event-stream":
                    await self._read_stream(resp, res, t0)
                else:
                    body = await resp.read()
                    res.size_bytes = len(body)
                    tokens = (
                        usage_of(parse_json(body)) if resp.content_type.endswith("json") else None
                    )
                    if tokens is not None:
                        res.prompt_tokens, res.completion_tokens = tokens
        except TimeoutError:
            res.error = f"{cfg.method} {cfg.url}: timeout: no complete response in {cfg.timeout_s}s"
        except aiohttp.ClientError as exc:
            res.error = f"{cfg.method} {cfg.url}: {type(exc).__name__}: {exc}"
        except ValueError as exc:  # an SSE line too long
            res.error = f"{cfg.method} {cfg.url}: {exc}"
        t_end = clock()
        res.duration_s = t_end - t0
        _fill_phases(res, phases, t0, t_headers, t_end)
        self._out.results.append(res)
        if self._on_result is not None:
            self._on_result(res)

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, res: RequestResult, t0: float
    ) -> None:
        res.streamed = True
        decoder = SseDecoder()
        last: float | None = None
        async for data in resp.content.iter_any():
            now = self._clock()
            res.size_bytes += len(data)
            for payload in decoder.feed(data):
                last = _on_event(res, payload, now, t0, last)
        for payload in decoder.close():
            last = _on_event(res, payload, self._clock(), t0, last)


def _on_event(
    res: RequestResult, payload: str, now: float, t0: float, last: float | None
) -> float | None:
    """Account one SSE payload; returns the time of the latest content chunk."""
    if payload == DONE:
        return last
    event = parse_json(payload)
    tokens = usage_of(event)
    if tokens is not None:
        res.prompt_tokens, res.completion_tokens = tokens
    if not chunk_content(event):
        return last
    res.content_chunks += 1
    if last is None:
        res.ttft_s = now - t0
    else:
        res.itl_s.append(now - last)
    return now


def _fill_phases(res: RequestResult, p: _Phases, t0: float, t_headers: float, t_end: float) -> None:
    if p.conn_start is not None and p.conn_end is not None:
        res.conn_s = p.conn_end - p.conn_start
    if p.dns_start is not None and p.dns_end is not None:
        res.dns_s = p.dns_end - p.dns_start
    if res.error is not None:
        return
    ready = p.ready if p.ready is not None else t0
    sent = p.sent if p.sent is not None else ready
    res.req_write_s = max(0.0, sent - ready)
    res.resp_wait_s = max(0.0, t_headers - sent)
    res.resp_read_s = max(0.0, t_end - t_headers)
