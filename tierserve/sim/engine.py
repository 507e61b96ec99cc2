"""One engine replica (vLLM continuous batching) on virtual time: an exact model and a fast one.

Both implement ``ReplicaModel`` and give the same answers: ``StepReplica`` drives
``engine.perf.scheduler.BatchScheduler`` step by step (the emulator's own model);
``FastReplica`` reproduces it while touching each request O(1) times instead of once per
step, which is what lets a day of traffic on tens of replicas simulate in minutes.

Contract (both models)::

    submit(id, arrival_s, prompt, output)   arrival_s >= the last advance's until_s, in
                                            time order; may lie in the future
    advance(until_s) -> [Completion]        run every step that *starts* before until_s;
                                            return the requests whose last token came at
                                            or before until_s
    next_event_s() -> float | None          nothing visible happens before it (> until_s);
                                            None when idle with nothing submitted
    take_first_tokens() -> [FirstToken]     first tokens the last advance released

A request arriving while a step runs joins at the next step boundary; one arriving at
exactly a boundary joins that step (``simulate_arrivals``' rule), so a closed-loop client
submitting at a completion's ``end_s`` is in the next batch. Steps are committed when
planned (nothing submitted later can change a step that started before it), so a step
straddling ``until_s`` is already applied and its completions are held until time
reaches them. When the next step's batch still depends on arrivals at its start,
``next_event_s`` answers just after that boundary (``math.nextafter``), so advancing to it
plans exactly that step.

FastReplica
-----------
Between events the batch is constant: the same ``n`` sequences all decode, so every step
computes ``n`` tokens and the total context grows by ``n`` a step. With ``C`` the context
at the first step (the sum of each sequence's prompt and generated tokens), step ``j``
costs (``cost.step_time_s`` with no prefill)::

    f(j) = slow * (overhead + max(u0 + u1*j, v0 + v1*j))
    memory:  u0 = (W + (C + n) * kv) / bw_eff,   u1 = n * kv / bw_eff
    compute: v0 = (2 P n + A C) / flops_eff,     v1 = n * A / flops_eff   (A = 4 L H d)

a maximum of two affine functions, so it has at most one kink, at ``j* = (v0-u0)/(u1-v1)``.
The time of ``k`` steps is two arithmetic series, ``sum_{j=p}^{q-1} (a + b j) =
(q-p) a + b (q-p)(p+q-1)/2``, split at ``floor(j*) + 1``; the number of steps that start
before a horizon inverts it (the quadratic root of the piece at ``j = 0``, checked and, if
a kink intervenes, bisected). A stretch ends at the first of

- the earliest finish: sequences are keyed in a heap by the decode-step count at which
  they finish (``G + output - generated``), so no sequence is visited while it decodes;
- KV capacity: a sequence holding ``c`` tokens needs a new block when ``c % block == 0``;
  sequences are counted by the residue of the step count at which that happens, so the
  blocks needed over ``k`` steps are ``(k // block) * n`` plus a slice sum, and the
  stretch stops before the step that would preempt;
- the horizon: ``until_s`` or the next submitted arrival.

While the queue head cannot be admitted (no budget, ``max_num_seqs`` reached, or free
blocks below the 1 % watermark) it stays so for the whole stretch: free blocks only
shrink while nobody finishes. Steps with prefill work (admissions, chunked prompts) are
planned one at a time with the scheduler's own rules, but the decoding sequences enter
them only through the counters above. vLLM's order makes the counters sufficient:
running sequences are the decoding ones, in admission order, then the prefilling ones (a
chunk cut short by the token budget leaves no budget to admit anyone after it; one cut
short by free blocks leaves no free block). Only a step that must preempt, that has more
decoding sequences than ``max_num_batched_tokens``, or that follows the rare case of a
later prompt finishing before an earlier one, walks the running list as
``BatchScheduler.plan`` does.

Approximations: none in the scheduling (admission, chunking, watermark, preemption and
its victim order are BatchScheduler's); FastReplica is its arithmetic regrouped. Step
times are summed in closed form instead of one by one, so times differ from StepReplica's
in the last bits (1e-13 to 1e-9 relative in ``bench/sim/engine_error.py``), which could
move a step across an arrival landing within that distance of a boundary. The step
cost's terms are restated from ``cost.step_time_s`` (with its constants) and checked
against it when a replica is built, so a change there fails loudly here.

For a simulator: build a shape with ``engine_shape_for(gpu, profile, ...)`` or, from a
service's command line, ``emulator_config_for(command, gpu)`` (whose ``load_time_s`` is the
emulator's start-up time: ``cost.load_time_s``); a replica takes traffic only once started,
so create it, or start submitting, after that delay. To delete one, stop routing to it,
optionally ``abort_waiting()`` to re-route its queue, and advance it until
``next_event_s()`` is None (running requests finish); ``abort_all()`` is a crash.

Gauges: ``running``, ``waiting`` and ``kv_usage`` are the state at the next step boundary,
as the emulator's gauges show it after planning a step; running and waiting change only
at events, while KV use grows inside a decode stretch, so advance a replica to ``now``
for an exact ``kv_usage`` (cheap: the jump is cut there). ``sm_util_pct(now_s)`` is the
emulator's ``DCGM_CUSTOM_PROCESS_SM_UTIL``: the share of the last ``DCGM_WINDOW_S``
seconds spent executing steps, busy up to ``now_s`` while there is work, in percent
rounded to 0.1 (``engine.core.BusyTracker.fraction(active=...)`` and
``engine.dcgm.DcgmGauges.set_busy``); it needs no advance.
"""

from __future__ import annotations

import heapq
import math
import shlex
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import NamedTuple, Protocol

from tierserve.engine.args import EmulatorConfig, parse_args
from tierserve.engine.perf.cost import (
    BW_EFFICIENCY,
    FLOPS_EFFICIENCY,
    EngineShape,
    kv_cache_blocks,
    step_time_s,
)
from tierserve.engine.perf.hardware import GPUS, GpuSpec
from tierserve.engine.perf.profiles import DEFAULT_PROFILE, ModelProfile
from tierserve.engine.perf.scheduler import WATERMARK_FRACTION, BatchScheduler, Sequence
from tierserve.errors import FieldError, NeverPossible, ValidationError


def _emulator_default(name: str) -> float:
    value = next(f.default for f in fields(EmulatorConfig) if f.name == name)
    assert isinstance(value, float)
    return value


DCGM_WINDOW_S = _emulator_default("dcgm_window_s")
"""Seconds the emulator's DCGM utilisation gauges average over (its ``--dcgm-window-s``)."""

_INF = math.inf


# --- what a replica reports -------------------------------------------------------------


class Completion(NamedTuple):
    """A finished request: arrival, first and last token (virtual s), and its tokens.
    (A tuple: a day of traffic makes millions of these.)"""

    request_id: int
    arrival_s: float
    first_token_s: float
    end_s: float
    prompt_tokens: int
    output_tokens: int
    preemptions: int = 0

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first (s); 0 for one-token outputs."""
        if self.output_tokens < 2:
            return 0.0
        return (self.end_s - self.first_token_s) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float:
        return self.end_s - self.arrival_s


class FirstToken(NamedTuple):
    """A request's first token (virtual s), for TTFT signals before it completes."""

    request_id: int
    arrival_s: float
    first_token_s: float


class ReplicaModel(Protocol):
    """One engine replica on virtual time (see the module docstring for the contract)."""

    @property
    def shape(self) -> EngineShape: ...

    def submit(
        self, request_id: int, arrival_s: float, prompt_tokens: int, output_tokens: int
    ) -> None: ...

    def next_event_s(self) -> float | None: ...

    def advance(self, until_s: float) -> list[Completion]: ...

    def take_first_tokens(self) -> list[FirstToken]: ...

    @property
    def running(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def kv_usage(self) -> float: ...

    @property
    def is_idle(self) -> bool: ...

    def busy_fraction(self, now_s: float, window_s: float = DCGM_WINDOW_S) -> float: ...

    def sm_util_pct(self, now_s: float, window_s: float = DCGM_WINDOW_S) -> float: ...

    def abort_waiting(self) -> list[int]: ...

    def abort_all(self) -> list[int]: ...

    # Counters since the replica was built (difference two readings for a rate). They
    # include the step in flight at the last until_s, which is already applied.
    @property
    def steps(self) -> int:
        """Engine steps executed."""
        ...

    @property
    def generated_tokens(self) -> int:
        """Output tokens emitted (vLLM's ``generation_tokens_total``)."""
        ...

    @property
    def prefill_tokens(self) -> int:
        """Prompt tokens computed, recomputation after preemption included."""
        ...

    @property
    def preemptions(self) -> int:
        """Sequences preempted (vLLM's ``num_preemptions_total``)."""
        ...

    @property
    def busy_s(self) -> float:
        """Seconds spent executing steps."""
        ...


# --- what both models share --------------------------------------------------------------

_Pending = tuple[int, float, int, int]  # request id, arrival_s, prompt, output


class _Replica:
    """Submitted arrivals, the advance loop, held events, busy spans and counters."""

    __slots__ = (
        "_busy_history_s",
        "_done",
        "_events",
        "_first_ready",
        "_firsts",
        "_last_arrival",
        "_last_span",
        "_pending",
        "_spans",
        "_t",
        "_until",
        "busy_s",
        "generated_tokens",
        "prefill_tokens",
        "shape",
        "steps",
    )

    def __init__(
        self,
        shape: EngineShape,
        *,
        first_token_events: bool = True,
        busy_history_s: float = DCGM_WINDOW_S,
    ) -> None:
        self.shape = shape
        self._events = first_token_events
        self._busy_history_s = busy_history_s
        self._t = -_INF  # the next step boundary: every step before it is applied
        self._until = -_INF  # the last advance's until_s
        self._last_arrival = -_INF
        self._pending: deque[_Pending] = deque()
        self._done: list[Completion] = []  # committed, in time order, not yet returned
        self._firsts: list[FirstToken] = []
        self._first_ready: list[FirstToken] = []
        self._last_span = [-_INF, -_INF]  # the newest busy span, [start, end]
        self._spans: deque[list[float]] = deque([self._last_span])
        self.busy_s = 0.0
        self.steps = 0
        self.generated_tokens = 0
        self.prefill_tokens = 0

    # Model-specific parts.
    def _fits(self, prompt_tokens: int, output_tokens: int) -> bool:
        raise NotImplementedError

    def _enqueue(self, item: _Pending) -> None:
        raise NotImplementedError

    def _has_work(self) -> bool:
        raise NotImplementedError

    def _run(self, horizon_s: float) -> None:
        """Apply steps starting at ``self._t`` while they start before ``horizon_s``."""
        raise NotImplementedError

    def _next_visible(self) -> float:
        """With work at boundary ``self._t``: a time before which nothing is emitted."""
        return math.nextafter(self._t, _INF)

    def _queued(self) -> int:
        raise NotImplementedError

    def _take_unstarted(self) -> list[int]:
        """Remove queued requests never scheduled (not the preempted ones); their ids."""
        raise NotImplementedError

    def _clear(self) -> list[int]:
        """Drop running and queued requests; their ids."""
        raise NotImplementedError

    # The contract.
    def submit(
        self, request_id: int, arrival_s: float, prompt_tokens: int, output_tokens: int
    ) -> None:
        """Queue a request. Raises ``ValueError`` for times out of order and
        ``NeverPossible`` for one the KV cache can never hold."""
        if arrival_s < self._until or arrival_s < self._last_arrival:
            raise ValueError(
                f"submit: arrival_s={arrival_s} is before "
                f"{max(self._until, self._last_arrival)}; submit in time order, "
                "at or after the last advance"
            )
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError(
                f"submit: prompt_tokens={prompt_tokens}, output_tokens={output_tokens}; "
                "expected >= 1 each"
            )
        if not self._fits(prompt_tokens, output_tokens):
            raise NeverPossible(
                f"request {request_id}: {prompt_tokens} + {output_tokens} tokens exceed the "
                f"KV cache ({kv_cache_blocks(self.shape) * self.shape.block_size} tokens)"
            )
        self._last_arrival = arrival_s
        self._pending.append((request_id, arrival_s, prompt_tokens, output_tokens))

    def advance(self, until_s: float) -> list[Completion]:
        """Run the engine up to ``until_s``; the requests that finished by then."""
        if until_s < self._until:
            raise ValueError(f"advance: until_s={until_s} is before {self._until}")
        self._until = until_s
        pending = self._pending
        if self._t >= until_s and not (pending and pending[0][1] <= self._t):
            return self._release(until_s)  # woken for events already computed
        while True:
            t = self._t
            while pending and pending[0][1] <= t:
                self._enqueue(pending.popleft())
            if not self._has_work():
                if pending and pending[0][1] < until_s:
                    self._t = pending[0][1]  # idle until the next arrival
                    continue
                break
            if t >= until_s:
                break
            self._run(min(until_s, pending[0][1]) if pending else until_s)
        if self._done or self._firsts:
            return self._release(until_s)
        if self._first_ready:
            self._first_ready = []
        return []

    def _release(self, until_s: float) -> list[Completion]:
        firsts = self._firsts
        if not firsts:
            if self._first_ready:
                self._first_ready = []
        elif firsts[-1].first_token_s > until_s:
            i = len(firsts)
            while i and firsts[i - 1].first_token_s > until_s:
                i -= 1
            self._first_ready, self._firsts = firsts[:i], firsts[i:]
        else:
            self._first_ready, self._firsts = firsts, []
        done = self._done
        if not done:
            return []
        if done[-1].end_s <= until_s:
            self._done = []
            return done
        i = len(done)
        while i and done[i - 1].end_s > until_s:
            i -= 1
        self._done = done[i:]
        return done[:i]

    def take_first_tokens(self) -> list[FirstToken]:
        """First tokens in the last advance's interval (empty unless ``first_token_events``)."""
        out, self._first_ready = self._first_ready, []
        return out

    def next_event_s(self) -> float | None:
        """Nothing visible (a completion, or a first token with ``first_token_events``)
        happens before this time; it is later than the last ``until_s``. None when idle."""
        held = self._done[0].end_s if self._done else _INF
        if self._firsts:
            held = min(held, self._firsts[0].first_token_s)
        if held < _INF:
            return held
        pending = self._pending
        if pending:
            # The step at max(t, arrival) must be planned with it: wake just after.
            e = math.nextafter(max(self._t, pending[0][1]), _INF)
            if pending[0][1] > self._t and self._has_work():
                e = min(e, self._next_visible())
        elif self._has_work():
            e = self._next_visible()
        else:
            return None
        return max(e, math.nextafter(self._until, _INF))

    # Gauges.
    @property
    def waiting(self) -> int:
        """Queued requests, counting those submitted for times up to the boundary."""
        arrived, now = 0, max(self._t, self._until)
        for item in self._pending:
            if item[1] > now:
                break
            arrived += 1
        return self._queued() + arrived

    @property
    def is_idle(self) -> bool:
        """No request in flight, queued, submitted or held back."""
        return not (self._has_work() or self._pending or self._done)

    def _busy(self, start: float, end: float) -> None:
        """The GPU executed a step over ``[start, end]``."""
        self.busy_s += end - start
        last = self._last_span
        if start <= last[1] + 1e-9:
            last[1] = end
        else:
            self._new_span(start, end)

    def _new_span(self, start: float, end: float) -> None:
        spans = self._spans
        lo = start - self._busy_history_s
        while spans and spans[0][1] < lo:
            spans.popleft()
        self._last_span = [start, end]
        spans.append(self._last_span)

    def busy_fraction(self, now_s: float, window_s: float = DCGM_WINDOW_S) -> float:
        """Share of ``[now_s - window_s, now_s]`` spent executing steps (0-1). With work in
        hand the engine counts as busy up to ``now_s`` (the emulator's ``active``): steps
        run back to back, so a replica need not be advanced to ``now_s`` first."""
        if window_s > self._busy_history_s:
            raise ValueError(
                f"busy_fraction: window_s={window_s} exceeds the replica's "
                f"busy_history_s={self._busy_history_s}"
            )
        if window_s <= 0:
            return 0.0
        lo = now_s - window_s
        busy = 0.0
        for start, end in self._spans:
            busy += max(0.0, min(end, now_s) - max(start, lo))
        if self._has_work():
            busy += max(0.0, now_s - max(self._last_span[1], lo))
        return min(1.0, busy / window_s)

    def sm_util_pct(self, now_s: float, window_s: float = DCGM_WINDOW_S) -> float:
        """The emulator's ``DCGM_CUSTOM_PROCESS_SM_UTIL`` at ``now_s`` (%, 0.1 steps)."""
        return round(100.0 * self.busy_fraction(now_s, window_s), 1)

    # Draining and deletion.
    def abort_waiting(self) -> list[int]:
        """Take back requests not yet started (submitted or queued, never scheduled), e.g.
        to route them elsewhere when the replica is being deleted; running and preempted
        ones stay and finish."""
        ids = self._take_unstarted()
        ids += [item[0] for item in self._pending]
        self._pending.clear()
        self._last_arrival = self._until
        return ids

    def abort_all(self) -> list[int]:
        """The replica is gone at the last ``until_s``: drop everything not yet reported
        (also requests whose last step straddles ``until_s``); their ids."""
        ids = [c.request_id for c in self._done] + self._clear()
        ids += [item[0] for item in self._pending]
        self._done, self._firsts = [], []
        self._pending.clear()
        self._last_arrival = self._until
        spans = self._spans
        if spans and spans[-1][1] > self._until:
            cut = max(spans[-1][0], self._until)
            self.busy_s -= spans[-1][1] - cut
            spans[-1][1] = cut
        self._t = self._until
        return ids


# --- the exact model -----------------------------------------------------------------


@dataclass(slots=True)
class _StepMeta:
    request_id: int
    first_token_s: float = -1.0


class StepReplica(_Replica):
    """The reference: ``BatchScheduler.plan``/``commit`` for every step (exact, slow)."""

    __slots__ = ("_meta", "_preempt_base", "_sched")

    def __init__(
        self,
        shape: EngineShape,
        *,
        first_token_events: bool = True,
        busy_history_s: float = DCGM_WINDOW_S,
    ) -> None:
        super().__init__(
            shape, first_token_events=first_token_events, busy_history_s=busy_history_s
        )
        self._sched = BatchScheduler(shape)
        self._meta: dict[Sequence, _StepMeta] = {}
        self._preempt_base = 0

    @property
    def running(self) -> int:
        return len(self._sched.running)

    @property
    def kv_usage(self) -> float:
        return self._sched.kv_usage

    @property
    def preemptions(self) -> int:
        return self._preempt_base + self._sched.num_preemptions

    def _fits(self, prompt_tokens: int, output_tokens: int) -> bool:
        return self._sched.fits_ever(prompt_tokens, output_tokens)

    def _enqueue(self, item: _Pending) -> None:
        rid, arrival, prompt, output = item
        seq = Sequence(str(rid), prompt, output, arrival)
        self._meta[seq] = _StepMeta(rid)
        self._sched.add(seq)

    def _has_work(self) -> bool:
        return bool(self._sched.running or self._sched.waiting)

    def _queued(self) -> int:
        return len(self._sched.waiting)

    def _run(self, horizon_s: float) -> None:
        sched, meta, events = self._sched, self._meta, self._events
        t = self._t
        while t < horizon_s:
            plan = sched.plan(t)
            if plan is None:
                raise NeverPossible(f"replica stuck at t={t}: queued work that never fits")
            end = t + plan.duration_s
            self._busy(t, end)
            self.steps += 1
            self.prefill_tokens += sum(n for _, n in plan.prefill)
            for ev in sched.commit(plan):
                self.generated_tokens += 1
                m = meta[ev.seq]
                if ev.index == 1:
                    m.first_token_s = end
                    if events:
                        self._firsts.append(FirstToken(m.request_id, ev.seq.arrival_s, end))
                if ev.finished:
                    seq = ev.seq
                    del meta[seq]
                    self._done.append(
                        Completion(
                            m.request_id,
                            seq.arrival_s,
                            m.first_token_s,
                            end,
                            seq.prompt_tokens,
                            seq.output_len,
                            seq.num_preemptions,
                        )
                    )
            t = end
            if not (sched.running or sched.waiting):
                break
        self._t = t

    def _take_unstarted(self) -> list[int]:
        waiting = self._sched.waiting
        ids = [self._meta.pop(seq).request_id for seq in waiting if seq.num_preemptions == 0]
        self._sched.waiting = deque(seq for seq in waiting if seq.num_preemptions > 0)
        return ids

    def _clear(self) -> list[int]:
        ids = [m.request_id for m in self._meta.values()]
        self._meta.clear()
        self._preempt_base += self._sched.num_preemptions
        self._sched = BatchScheduler(self.shape)
        return ids


# --- the fast model ------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Seq:
    """A request inside FastReplica. While decoding, ``gen`` is its generated tokens when
    the replica's decode-step count was ``g`` (it has ``gen + G - g`` at count ``G``), and
    its KV blocks follow from that; ``computed``/``blocks`` count only while prefilling.
    ``serial`` names its live finish-heap entry (-1: none)."""

    rid: int
    arrival_s: float
    prompt: int
    output: int
    gen: int = 0
    g: int = 0
    computed: int = 0
    blocks: int = 0
    prefilling: bool = True
    first_token_s: float = -1.0
    preemptions: int = 0
    serial: int = -1


def _series(a: float, b: float, p: int, q: int) -> float:
    """sum_{j=p}^{q-1} (a + b j)."""
    m = q - p
    return m * a + b * m * (p + q - 1) * 0.5


class FastReplica(_Replica):
    """BatchScheduler's arithmetic, with pure-decode stretches jumped in closed form."""

    __slots__ = (
        "_C",
        "_G",
        "_bs",
        "_budget",
        "_cmp_ctx",
        "_cmp_tok",
        "_cnt",
        "_free",
        "_heap",
        "_max_seqs",
        "_mem0",
        "_mem_tok",
        "_memo",
        "_mixed",
        "_n_dec",
        "_oh",
        "_prefill",
        "_running",
        "_serial",
        "_slow",
        "_total",
        "_waiting",
        "_watermark",
        "preemptions",
    )

    def __init__(
        self,
        shape: EngineShape,
        *,
        first_token_events: bool = True,
        busy_history_s: float = DCGM_WINDOW_S,
    ) -> None:
        super().__init__(
            shape, first_token_events=first_token_events, busy_history_s=busy_history_s
        )
        self._bs = shape.block_size
        self._budget = shape.max_num_batched_tokens
        self._max_seqs = shape.max_num_seqs
        self._total = kv_cache_blocks(shape)
        self._watermark = int(self._total * WATERMARK_FRACTION)
        # The terms of cost.step_time_s, restated for speed (and checked below).
        p = shape.profile
        kv = shape.kv_bytes_per_token
        inv_bw = 1.0 / (shape.gpu.mem_bw_bytes_s * BW_EFFICIENCY)
        peak = shape.gpu.fp16_flops if shape.dtype_bytes <= 2 else shape.gpu.fp16_flops / 8.0
        inv_fl = 1.0 / (peak * FLOPS_EFFICIENCY)
        self._mem0 = shape.weight_bytes * inv_bw
        self._mem_tok = kv * inv_bw
        self._cmp_tok = 2.0 * p.params * inv_fl
        self._cmp_ctx = 4.0 * p.layers * p.q_heads * p.head_dim * inv_fl
        self._oh = shape.overhead_s
        self._slow = shape.slow_factor
        for point in ((1, 1, 0, 0.0), (8, 4096, 0, 0.0), (64, 10**7, 0, 0.0), (3, 900, 2000, 3e6)):
            want = step_time_s(shape, *point)
            got = self._step_s(*point)
            if abs(got - want) > 1e-9 * want:
                raise RuntimeError(
                    f"FastReplica's step cost ({got}) disagrees with cost.step_time_s "
                    f"({want}) at {point}: update tierserve/sim/engine.py"
                )
        self._reset()
        self.preemptions = 0

    def _reset(self) -> None:
        self._free = self._total
        self._running: list[_Seq] = []  # admission order: decoding, then prefilling
        self._prefill: list[_Seq] = []  # the running ones still prefilling, in order
        self._waiting: deque[_Seq] = deque()
        self._G = 0  # decode steps so far
        self._C = 0  # sum over decoding sequences of prompt + generated
        self._n_dec = 0
        self._mixed = False  # a prefilling sequence precedes a decoding one
        self._cnt = [0] * self._bs  # decoding sequences by G % block_size of block need
        self._heap: list[tuple[int, int, _Seq]] = []  # (G at finish, serial, seq)
        self._serial = 0
        # What next_event_s found at (t, G, queue length): steps to jump and their end.
        self._memo: tuple[float, int, int, float, int] = (_INF, 0, 0, _INF, 0)

    def _step_s(self, decode: int, ctx: int, prefill: int, pairs: float) -> float:
        """``cost.step_time_s`` with the shape's terms precomputed (s)."""
        tokens = decode + prefill
        mem = self._mem0 + self._mem_tok * (ctx + tokens)
        cmp = self._cmp_tok * tokens + self._cmp_ctx * (ctx + pairs)
        return self._slow * (self._oh + max(mem, cmp))

    # Gauges and bookkeeping.
    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def kv_usage(self) -> float:
        return 1.0 - self._free / self._total if self._total else 0.0

    def _fits(self, prompt_tokens: int, output_tokens: int) -> bool:
        return -(-(prompt_tokens + output_tokens) // self._bs) <= self._total

    def _enqueue(self, item: _Pending) -> None:
        rid, arrival, prompt, output = item
        self._waiting.append(_Seq(rid, arrival, prompt, output))

    def _has_work(self) -> bool:
        return bool(self._running or self._waiting)

    def _queued(self) -> int:
        return len(self._waiting)

    def _take_unstarted(self) -> list[int]:
        self._memo = (_INF, 0, 0, _INF, 0)  # the queue head may change
        ids = [s.rid for s in self._waiting if s.preemptions == 0]
        self._waiting = deque(s for s in self._waiting if s.preemptions > 0)
        return ids

    def _clear(self) -> list[int]:
        ids = [s.rid for s in self._running] + [s.rid for s in self._waiting]
        self._reset()
        return ids

    # Decoding sequences enter and leave the counters.
    def _start_decoding(self, s: _Seq) -> None:
        """``s`` has ``s.gen`` tokens at the current count ``G`` and decodes from now on."""
        G = self._G
        s.g = G
        s.prefilling = False
        s.blocks = 0  # now implied by its tokens
        self._cnt[(G + 1 - s.prompt - s.gen) % self._bs] += 1
        self._C += s.prompt + s.gen
        self._n_dec += 1
        self._serial += 1
        s.serial = self._serial
        heapq.heappush(self._heap, (G + s.output - s.gen, self._serial, s))

    def _stop_decoding(self, s: _Seq) -> int:
        """Take ``s`` out of the counters; its generated tokens now (also set on it)."""
        gen = s.gen + self._G - s.g
        self._cnt[(s.g + 1 - s.prompt - s.gen) % self._bs] -= 1
        self._C -= s.prompt + gen
        self._n_dec -= 1
        s.gen, s.g, s.serial = gen, self._G, -1
        return gen

    def _preempt(self, v: _Seq) -> None:
        """vLLM's recompute preemption of the most recently admitted sequence ``v``."""
        self._running.pop()
        if v.prefilling:
            self._prefill.pop()
            self._free += v.blocks
        else:
            gen = self._stop_decoding(v)
            self._free += -(-(v.prompt + gen - 1) // self._bs)
            v.prefilling = True
        v.blocks = v.computed = 0
        v.preemptions += 1
        self.preemptions += 1
        self._waiting.appendleft(v)

    def _finish_decoders(self, end: float) -> None:
        heap, G, bs, cnt = self._heap, self._G, self._bs, self._cnt
        done, running = self._done, self._running
        while heap and heap[0][0] <= G:
            _, serial, s = heapq.heappop(heap)
            if s.serial != serial:
                continue
            # _stop_decoding, with generated == output.
            cnt[(s.g + 1 - s.prompt - s.gen) % bs] -= 1
            self._C -= s.prompt + s.output
            self._n_dec -= 1
            s.serial = -1
            self._free += (s.prompt + s.output + bs - 2) // bs
            running.remove(s)
            done.append(
                Completion(
                    s.rid, s.arrival_s, s.first_token_s, end, s.prompt, s.output, s.preemptions
                )
            )

    def _complete(self, s: _Seq, end: float) -> None:
        self._done.append(
            Completion(s.rid, s.arrival_s, s.first_token_s, end, s.prompt, s.output, s.preemptions)
        )

    # The engine.
    def _run(self, horizon_s: float) -> None:
        while self._t < horizon_s and (self._running or self._waiting):
            memo = self._memo
            if memo[0] == self._t and memo[1] == self._G and memo[4] == len(self._waiting):
                kk = memo[2]  # next_event_s has just looked
            else:
                kk = self._stretch()
            if kk:
                self._jump(kk, horizon_s)
            else:
                self._step()

    def _stretch(self) -> int:
        """Steps that can be jumped from here (0: plan the next step one by one)."""
        n = self._n_dec
        if self._prefill or not n or n > self._budget:
            return 0
        bs, G, free = self._bs, self._G, self._free
        waiting = self._waiting
        if waiting and n < self._budget and len(self._running) < self._max_seqs:
            s = waiting[0]
            chunk = min(s.prompt + s.gen - s.computed, self._budget - n)
            need = -(-(s.computed + chunk) // bs) - s.blocks
            if free - self._cnt[G % bs] - need >= self._watermark:
                return 0  # it is admitted at the next step
        heap = self._heap
        while heap[0][2].serial != heap[0][1]:  # drop entries of sequences gone or moved
            heapq.heappop(heap)
        kk = heap[0][0] - G
        if (kk + bs - 1) // bs * n <= free:
            return kk
        # KV capacity: q full cycles of block_size steps take q * n blocks.
        q = free // n
        k = q * bs
        if k >= kk:
            return kk
        rest = free - q * n
        cnt = self._cnt
        for j in range(bs):
            need = cnt[(G + k + j) % bs]
            if need > rest or k + j == kk:
                return k + j
            rest -= need
        return kk  # unreachable: a full cycle needs n > rest blocks

    def _blocks_needed(self, k: int) -> int:
        """Blocks the decoding sequences take over the next ``k`` steps."""
        bs = self._bs
        full, part = divmod(k, bs)
        out = full * self._n_dec
        if part:
            a = self._G % bs
            cnt = self._cnt
            if a + part <= bs:
                out += sum(cnt[a : a + part])
            else:
                out += sum(cnt[a:]) + sum(cnt[: a + part - bs])
        return out

    def _decode_step_s(self, j: int) -> float:
        """Duration of the ``j``-th pure-decode step from now (s), ``f(j)``."""
        n = self._n_dec
        x = self._C + j * n
        mem = self._mem0 + self._mem_tok * (x + n)
        cmp = self._cmp_tok * n + self._cmp_ctx * x
        return self._slow * (self._oh + (mem if mem >= cmp else cmp))

    def _stretch_s(self, k: int) -> float:
        """Duration of the next ``k`` pure-decode steps (s): the module docstring's sum."""
        n, x = self._n_dec, self._C
        mt, cc = self._mem_tok, self._cmp_ctx
        u0 = self._mem0 + mt * (x + n)
        v0 = self._cmp_tok * n + cc * x
        if u0 >= v0 and mt >= cc:  # memory-bound now, and memory grows at least as fast
            return self._slow * (k * (self._oh + u0) + mt * n * k * (k - 1) * 0.5)
        return self._slow * (k * self._oh + _sum_max(u0, mt * n, v0, cc * n, k))

    def _steps_before(self, d: float, kk: int) -> tuple[int, float]:
        """How many of the next ``kk`` steps start less than ``d`` seconds from now, and
        their duration: the smallest ``k >= 1`` with ``S(k) >= d``, at most ``kk``."""
        S = self._stretch_s
        if d == _INF:
            return kk, S(kk)
        # First guess: the root of S(k) = d on the piece that dominates at j = 0.
        n, c = self._n_dec, self._C
        u0 = self._mem0 + self._mem_tok * (c + n)
        v0 = self._cmp_tok * n + self._cmp_ctx * c
        a, b = (u0, self._mem_tok * n) if u0 >= v0 else (v0, self._cmp_ctx * n)
        qa = self._slow * b * 0.5
        qb = self._slow * (self._oh + a - b * 0.5)
        root = d / qb if qa == 0.0 else (math.sqrt(qb * qb + 4.0 * qa * d) - qb) / (2.0 * qa)
        k = max(math.ceil(root), 1)
        if k >= kk and S(kk - 1) < d:
            return kk, S(kk)
        lo, hi = 1, kk - 1  # S(kk - 1) >= d
        k = min(k, hi)
        before = S(k - 1)
        dur = before + self._decode_step_s(k - 1)  # S(k) = S(k - 1) + f(k - 1)
        if dur >= d:
            if before < d:
                return k, dur
            hi = k - 1
        else:
            lo = k + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if S(mid) >= d:
                hi = mid
            else:
                lo = mid + 1
        return lo, S(lo)

    def _jump(self, kk: int, horizon_s: float) -> None:
        t = self._t
        memo = self._memo
        if memo[0] == t and memo[1] == self._G and memo[2] == kk and memo[3] <= horizon_s:
            k, end = kk, memo[3]  # next_event_s has just summed this stretch
        else:
            k, dur = self._steps_before(horizon_s - t, kk)
            end = t + dur
        n = self._n_dec
        self._free -= self._blocks_needed(k)
        self._G += k
        self._C += k * n
        self.steps += k
        self.generated_tokens += k * n
        self.busy_s += end - t
        last = self._last_span
        if t <= last[1] + 1e-9:
            last[1] = end
        else:
            self._new_span(t, end)
        self._t = end
        if self._heap[0][0] <= self._G:
            self._finish_decoders(end)

    def _step(self) -> None:
        """One step planned and committed as ``BatchScheduler`` does it."""
        t, bs, G = self._t, self._bs, self._G
        running, cnt = self._running, self._cnt
        n = self._n_dec
        chunks: list[tuple[_Seq, int]] = []
        tokens, pairs = 0, 0.0
        skipped: list[_Seq] = []
        if not self._mixed and n <= self._budget and cnt[G % bs] <= self._free:
            # Every decoding sequence grows and nobody is preempted: counters only.
            self._free -= cnt[G % bs]
            budget = self._budget - n
            decoded, ctx = n, self._C
            for s in self._prefill:
                if budget <= 0:
                    break
                m = self._chunk(s, budget)
                if m > 0:
                    chunks.append((s, m))
                    budget -= m
                    tokens += m
                    pairs += m * s.computed + m * (m + 1) / 2
        else:
            # BatchScheduler.plan's walk over the running list, in order, with preemption.
            budget, decoded, ctx, i = self._budget, 0, 0, 0
            while i < len(running) and budget > 0:
                s = running[i]
                if s.prefilling:
                    m = self._chunk(s, budget)
                    if m > 0:
                        chunks.append((s, m))
                        budget -= m
                        tokens += m
                        pairs += m * s.computed + m * (m + 1) / 2
                    i += 1
                    continue
                c = s.prompt + s.gen + G - s.g - 1
                need = 1 if c % bs == 0 else 0
                while need > self._free:
                    victim = running[-1]
                    self._preempt(victim)
                    if victim is s:
                        break
                if s.prefilling:  # it was its own victim, and the last one running
                    continue
                self._free -= need
                decoded += 1
                ctx += c + 1
                budget -= 1
                i += 1
            skipped = [s for s in running[i:] if not s.prefilling]
        free = self._free
        waiting = self._waiting
        while waiting and budget > 0 and len(running) < self._max_seqs:
            s = waiting[0]
            m = min(s.prompt + s.gen - s.computed, budget)
            need = -(-(s.computed + m) // bs) - s.blocks
            if free - need < self._watermark:
                break
            waiting.popleft()
            free -= need
            s.blocks += need
            running.append(s)
            self._prefill.append(s)
            chunks.append((s, m))
            budget -= m
            tokens += m
            pairs += m * s.computed + m * (m + 1) / 2
        if decoded == 0 and not chunks:
            raise NeverPossible(f"replica stuck at t={t}: queued work that never fits")
        end = t + self._step_s(decoded, ctx, tokens, pairs)
        # Commit: the counters move every decoding sequence one token on...
        self._free = free
        self._G = G + 1
        self._C += self._n_dec
        for s in skipped:  # ...except those the token budget left out this step
            self._stop_decoding(s)
            s.gen -= 1
            self._start_decoding(s)
        heap = self._heap
        if heap and heap[0][0] <= G + 1:
            self._finish_decoders(end)
        if chunks:
            self._commit_chunks(chunks, end)
        self.steps += 1
        self.generated_tokens += decoded
        self.prefill_tokens += tokens
        self.busy_s += end - t
        last = self._last_span
        if t <= last[1] + 1e-9:
            last[1] = end
        else:
            self._new_span(t, end)
        self._t = end

    def _chunk(self, s: _Seq, budget: int) -> int:
        """The next prompt chunk of running ``s`` (tokens), as far as free blocks allow."""
        bs = self._bs
        m = min(s.prompt + s.gen - s.computed, budget, (s.blocks + self._free) * bs - s.computed)
        if m > 0:
            need = -(-(s.computed + m) // bs) - s.blocks
            if need > 0:
                self._free -= need
                s.blocks += need
        return m

    def _commit_chunks(self, chunks: list[tuple[_Seq, int]], end: float) -> None:
        running = self._running
        prefilled = 0
        for s, m in chunks:
            if s.blocks == 0:  # preempted after its chunk was planned
                continue
            s.computed += m
            if s.computed < s.prompt + s.gen:
                continue
            prefilled += 1
            s.gen += 1
            self.generated_tokens += 1
            if s.gen == 1:
                s.first_token_s = end
                if self._events:
                    self._firsts.append(FirstToken(s.rid, s.arrival_s, end))
            if s.gen >= s.output:
                s.prefilling = False
                self._free += s.blocks
                running.remove(s)
                self._complete(s, end)
            else:
                self._start_decoding(s)
        if prefilled == len(self._prefill):  # every prompt in hand is done
            self._prefill = []
            self._mixed = False
            return
        prefill = self._prefill = [s for s in self._prefill if s.prefilling]
        # Running is "decoding, then prefilling" unless a later chunk finished first.
        k = len(prefill)
        self._mixed = any(a is not b for a, b in zip(prefill, running[-k:], strict=True))

    def _next_visible(self) -> float:
        t = self._t
        kk = self._stretch()
        end = t + self._stretch_s(kk) if kk else math.nextafter(t, _INF)
        self._memo = (t, self._G, kk, end, len(self._waiting))
        return end


def _sum_max(u0: float, u1: float, v0: float, v1: float, k: int) -> float:
    """sum_{j=0}^{k-1} max(u0 + u1 j, v0 + v1 j): two series split where the lines cross."""
    d0, d1 = v0 - u0, v1 - u1  # v - u = d0 + d1 j
    if d1 == 0.0:
        return _series(v0, v1, 0, k) if d0 > 0 else _series(u0, u1, 0, k)
    jstar = -d0 / d1
    split = k if jstar >= k else 0 if jstar < 0 else min(k, math.floor(jstar) + 1)
    if d1 > 0:  # u dominates up to the crossing, v after it
        return _series(u0, u1, 0, split) + _series(v0, v1, split, k)
    return _series(v0, v1, 0, split) + _series(u0, u1, split, k)


# --- building replicas -------------------------------------------------------------------

REPLICA_MODELS: dict[str, type[StepReplica] | type[FastReplica]] = {
    "step": StepReplica,
    "fast": FastReplica,
}
"""The replica models by name: ``step`` is exact and slow, ``fast`` the simulator's."""


def make_replica(
    shape: EngineShape,
    model: str = "fast",
    *,
    first_token_events: bool = True,
    busy_history_s: float = DCGM_WINDOW_S,
) -> ReplicaModel:
    """A replica of ``shape`` with the named model. Raises ``ValidationError``."""
    cls = REPLICA_MODELS.get(model)
    if cls is None:
        raise ValidationError(
            "replica model",
            [FieldError("model", f"got {model!r}; expected one of {', '.join(REPLICA_MODELS)}")],
        )
    return cls(shape, first_token_events=first_token_events, busy_history_s=busy_history_s)


def resolve_gpu(name: str | GpuSpec) -> GpuSpec:
    """A GPU by its emulator name (``V100-32G``, a node's ``spec.gpu.model``), product name
    (``Tesla V100-SXM2-32GB``, DCGM's ``modelName``) or an unambiguous family or prefix
    (``V100``, ``a10``, ``H1``). Raises ``ValidationError``."""
    if isinstance(name, GpuSpec):
        return name
    key = name.lower()
    for spec in GPUS.values():
        if key in (spec.name.lower(), spec.product_name.lower()):
            return spec
    found = [spec for spec in GPUS.values() if spec.name.lower().split("-")[0] == key]
    found = found or [spec for spec in GPUS.values() if spec.name.lower().startswith(key)]
    if len(found) == 1:
        return found[0]
    choices = ", ".join(s.name for s in found) if found else ", ".join(GPUS)
    raise ValidationError("engine", [FieldError("gpu", f"got {name!r}; expected one of {choices}")])


def emulator_config_for(command: str, gpu: str | GpuSpec) -> EmulatorConfig:
    """What the emulator would run for a service's ``command`` (``vllm serve MODEL ...``)
    on a node with ``gpu``: ``.shape`` and ``.load_time_s`` (start-up time) as the
    runtime's replica gets them. Raises ``ValidationError``."""
    spec = resolve_gpu(gpu)
    return parse_args([*shlex.split(command), "--gpu", spec.name])


def engine_shape_for(
    gpu: str | GpuSpec,
    model: str | ModelProfile = DEFAULT_PROFILE,
    *,
    dtype: str = "auto",
    gpu_memory_utilization: float | None = None,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    block_size: int | None = None,
    enforce_eager: bool = False,
    slow_factor: float | None = None,
) -> EngineShape:
    """The engine shape for ``gpu`` and a model profile (name, alias, ``key=value,...`` or
    a ``ModelProfile``), with vLLM's flags defaulting as the emulator's do (the flags are
    parsed by the emulator's own parser). Raises ``ValidationError``."""
    spec = resolve_gpu(gpu)
    argv = ["/model/sim", "--gpu", spec.name, "--dtype", dtype]
    if isinstance(model, str):
        argv += ["--model-profile", model]
    flags: list[tuple[str, float | int | None]] = [
        ("--gpu-memory-utilization", gpu_memory_utilization),
        ("--max-model-len", max_model_len),
        ("--max-num-seqs", max_num_seqs),
        ("--max-num-batched-tokens", max_num_batched_tokens),
        ("--block-size", block_size),
        ("--fault-slow-factor", slow_factor),
    ]
    argv += [w for flag, value in flags if value is not None for w in (flag, str(value))]
    if enforce_eager:
        argv.append("--enforce-eager")
    shape = parse_args(argv).shape
    if isinstance(model, ModelProfile):
        shape = replace(shape, profile=model)
    return shape
