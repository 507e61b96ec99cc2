"""The emulated engine: the pure scheduler driven on the wall clock.

One asyncio task runs steps back to back. Each step's end is an *absolute* deadline
(``step_start + duration``) and the next step starts at that deadline, not at the
moment the task woke up, so timer lateness never accumulates into drift. Tokens are
fanned out at each deadline by bumping a counter on each request and waking only the
handlers that wait for it (streams; non-streaming requests wake once, at the end).

Emulated time runs ``1 / time_scale`` times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from tierserve.engine.metrics import EngineMetrics
from tierserve.engine.perf.cost import EngineShape
from tierserve.engine.perf.scheduler import BatchScheduler, Sequence, TokenEvent
from tierserve.engine.textgen import PlannedOutput

log = logging.getLogger(__name__)

RESYNC_AFTER_S = 1.0
"""Wall seconds of lateness after which the loop gives up catching up and restarts
its timeline at "now" (e.g. after the process was suspended)."""


@dataclass(eq=False)
class Request:
    """One in-flight request as the HTTP layer sees it.

    ``emitted``: tokens available so far; ``done`` once the last one is out (or the
    request was aborted). ``stream``: whether each token should wake the handler.
    """

    seq: Sequence
    output: PlannedOutput
    stream: bool
    max_tokens_param: int
    emitted: int = 0
    done: bool = False
    aborted: bool = False
    first_token_s: float | None = None
    last_token_s: float | None = None
    _waiter: asyncio.Future[None] | None = field(default=None, repr=False)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, seen: int) -> None:
        """Return once more than ``seen`` tokens are out or the request is done."""
        if self.emitted > seen or self.done:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class BusyTracker:
    """Busy intervals of the emulated GPU (emulated s), for DCGM-style utilisation."""

    def __init__(self) -> None:
        self._spans: deque[list[float]] = deque()

    def add(self, start: float, end: float) -> None:
        if self._spans and start <= self._spans[-1][1] + 1e-9:
            self._spans[-1][1] = max(self._spans[-1][1], end)
        else:
            self._spans.append([start, end])

    def fraction(self, now: float, window_s: float, active: bool = False) -> float:
        """Share of ``[now - window_s, now]`` spent executing steps (0-1).

        ``active``: the engine has work, so it is busy up to ``now`` even if the event
        loop has not yet started the next step (wall-clock lateness is not idleness).
        """
        if active and self._spans:
            self._spans[-1][1] = max(self._spans[-1][1], now)
        lo = now - window_s
        while self._spans and self._spans[0][1] < lo:
            self._spans.popleft()
        busy = 0.0
        for start, end in self._spans:
            busy += max(0.0, min(end, now) - max(start, lo))
        return min(1.0, busy / window_s) if window_s > 0 else 0.0


class EmulatedEngine:
    """Continuous batching on the wall clock; call ``start()`` inside a running loop."""

    def __init__(
        self,
        shape: EngineShape,
        metrics: EngineMetrics,
        time_scale: float = 1.0,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.shape = shape
        self.metrics = metrics
        self.time_scale = time_scale
        self.scheduler = BatchScheduler(shape)
        self.busy = BusyTracker()
        self._requests: dict[int, Request] = {}
        self._wall = wall_clock
        self._t0 = 0.0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.hung = False

    # --- clock -----------------------------------------------------------------
    def _wall_now(self) -> float:
        if self._wall is not None:
            return self._wall()
        return asyncio.get_running_loop().time()

    def now(self) -> float:
        """Emulated seconds since the engine started."""
        return (self._wall_now() - self._t0) / self.time_scale

    def _to_wall(self, emulated_s: float) -> float:
        return self._t0 + emulated_s * self.time_scale

    # --- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._t0 = self._wall_now()
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="emulated-engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for req in list(self._requests.values()):
            req.aborted = req.done = True
            req._wake()

    def hang(self) -> None:
        """Fault: stop stepping for good; requests in flight never finish."""
        self.hung = True

    # --- requests -------------------------------------------------------------------
    def submit(
        self, prompt_tokens: int, output: PlannedOutput, stream: bool, max_tokens: int
    ) -> Request:
        seq = Sequence(f"r{id(output)}", prompt_tokens, len(output.pieces), self.now())
        req = Request(seq, output, stream, max_tokens)
        self._requests[id(seq)] = req
        self.scheduler.add(seq)
        self.metrics.params_max_tokens.observe(max_tokens)
        self.metrics.params_n.observe(1)
        if self._wakeup is not None:
            self._wakeup.set()
        return req

    def abort(self, req: Request) -> None:
        """The client went away: free the sequence and count it as aborted."""
        if req.done:
            return
        self.scheduler.abort(req.seq)
        self._requests.pop(id(req.seq), None)
        req.aborted = req.done = True
        self.metrics.success["abort"].inc()

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    def refresh_gauges(self, window_s: float) -> None:
        """Bring the scrape-time gauges up to date: the batch, the queue, KV usage and DCGM
        utilisation. They are read only by ``/metrics``, which calls this first, so the
        step loop does not set them."""
        m = self.metrics
        sched = self.scheduler
        active = sched.has_work() and not self.hung
        m.dcgm.set_busy(self.busy.fraction(self.now(), window_s, active))
        m.running.set(len(sched.running))
        waiting = len(sched.waiting)
        m.waiting.set(waiting)
        m.waiting_capacity.set(waiting)
        m.kv_usage.set(sched.kv_usage)

    # --- the step loop --------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        start = self.now()
        while True:
            if self.hung:
                await asyncio.Event().wait()
            plan = self.scheduler.plan(start)
            if plan is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                start = self.now()
                continue
            end = start + plan.duration_s
            self.busy.add(start, end)
            self._on_plan(plan.admitted, plan.preempted, plan.num_tokens, plan.prefill, start)
            wall_deadline = self._to_wall(end)
            delay = wall_deadline - loop.time()
            if delay > 0:
                fut: asyncio.Future[None] = loop.create_future()
                handle = loop.call_at(wall_deadline, fut.set_result, None)
                try:
                    await fut
                finally:
                    handle.cancel()
            else:
                await asyncio.sleep(0)  # stay fair to the HTTP handlers
            if self.hung:
                continue
            self._deliver(self.scheduler.commit(plan), end)
            if loop.time() - wall_deadline > RESYNC_AFTER_S:
                end = self.now()
            start = end

    def _on_plan(
        self,
        admitted: tuple[Sequence, ...],
        preempted: tuple[Sequence, ...],
        num_tokens: int,
        prefill: tuple[tuple[Sequence, int], ...],
        start: float,
    ) -> None:
        m = self.metrics
        for seq in admitted:
            if seq.num_preemptions == 0:
                m.queue.observe(start - seq.arrival_s)
                m.prefix_cache_queries.inc(seq.prompt_tokens)
        if preempted:
            m.preemptions.inc(len(preempted))
        m.iteration_tokens.observe(num_tokens)
        prompt = 0
        for seq, n in prefill:
            # Recomputed tokens after a preemption are not new prompt tokens.
            prompt += max(0, min(seq.computed + n, seq.prompt_tokens) - seq.computed)
        if prompt:
            m.prompt_tokens.inc(prompt)
            m.prompt_tokens_computed.inc(prompt)

    def _deliver(self, events: list[TokenEvent], now: float) -> None:
        m = self.metrics
        itl = m.itl
        generated = 0
        for ev in events:
            req = self._requests.get(id(ev.seq))
            if req is None:
                continue
            generated += 1
            req.emitted = ev.index
            if req.first_token_s is None:
                req.first_token_s = now
                m.ttft.observe(now - ev.seq.arrival_s)
            elif req.last_token_s is not None:
                itl.observe(now - req.last_token_s)
            req.last_token_s = now
            if ev.finished:
                self._finish(req, now)
                req._wake()
            elif req.stream:
                req._wake()
        if generated:
            m.generation_tokens.inc(generated)

    def _finish(self, req: Request, now: float) -> None:
        m = self.metrics
        seq = req.seq
        self._requests.pop(id(seq), None)
        req.done = True
        m.success[req.output.finish_reason].inc()
        first = req.first_token_s if req.first_token_s is not None else now
        scheduled = seq.first_scheduled_s if seq.first_scheduled_s is not None else seq.arrival_s
        m.e2e.observe(now - seq.arrival_s)
        m.inference.observe(now - scheduled)
        m.prefill.observe(first - scheduled)
        m.decode.observe(now - first)
        m.req_prompt_tokens.observe(seq.prompt_tokens)
        m.req_generation_tokens.observe(seq.output_len)
        m.req_max_generation_tokens.observe(seq.output_len)  # the most of its n=1 choices
        m.req_preemptions.observe(seq.num_preemptions)
        m.req_prefill_computed.observe(seq.prompt_tokens)  # no prefix cache hits
        if seq.output_len > 1:
            m.tpot.observe((now - first) / (seq.output_len - 1))
