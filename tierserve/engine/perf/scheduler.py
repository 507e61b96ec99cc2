"""Continuous batching as vLLM (V1) schedules it: a deterministic state machine.

No I/O, no clock, no asyncio: the caller passes ``now`` and applies the plan when the
step's duration has elapsed (the emulator on the wall clock, the simulator on virtual
time). Per step:

1. every running sequence that is decoding gets one token (KV grows by one; when the
   cache is out of blocks the most recently admitted sequence is *preempted*: its
   blocks are freed and it goes back to the front of the queue to be recomputed);
2. a running sequence whose prompt is only partly computed continues (chunked prefill);
3. waiting sequences are admitted first-come-first-served while the token budget
   (``max_num_batched_tokens``), ``max_num_seqs`` and the free KV blocks (keeping a 1 %
   watermark, as vLLM does) allow. Those that cannot stay *waiting*.

A sequence emits a token at the end of every step in which it decoded or finished its
prefill (the first token is sampled with the last prompt chunk).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tierserve.engine.perf.cost import EngineShape, kv_cache_blocks, step_time_s

WATERMARK_FRACTION = 0.01
"""Share of KV blocks kept free when admitting (vLLM's ``watermark`` default, 0.01)."""


@dataclass(slots=True, eq=False)
class Sequence:
    """One request inside the engine.

    ``output_len``: tokens it will generate in total (already capped by max_tokens).
    ``computed``: tokens whose KV is in the cache. ``generated``: tokens emitted.
    ``arrival_s``/``first_scheduled_s``: for queue-time accounting (s).
    """

    request_id: str
    prompt_tokens: int
    output_len: int
    arrival_s: float
    computed: int = 0
    generated: int = 0
    blocks: int = 0
    prefilling: bool = True
    first_scheduled_s: float | None = None
    num_preemptions: int = 0

    @property
    def prefill_target(self) -> int:
        """Tokens whose KV must exist before the next token can be sampled."""
        return self.prompt_tokens + self.generated


@dataclass(frozen=True, slots=True)
class StepPlan:
    """What one step computes and how long it takes (``duration_s``, emulated seconds)."""

    duration_s: float
    decode: tuple[Sequence, ...]
    prefill: tuple[tuple[Sequence, int], ...]
    admitted: tuple[Sequence, ...]
    preempted: tuple[Sequence, ...]

    @property
    def num_tokens(self) -> int:
        return len(self.decode) + sum(n for _, n in self.prefill)


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A token produced at the end of a step; ``finished`` when it was the last one."""

    seq: Sequence
    index: int
    finished: bool


def _blocks_for(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


@dataclass
class BatchScheduler:
    """The engine's queue and batch. ``plan(now)`` then ``commit(plan)``, step by step."""

    shape: EngineShape
    total_blocks: int = 0
    free_blocks: int = 0
    waiting: deque[Sequence] = field(default_factory=deque)
    running: list[Sequence] = field(default_factory=list)
    num_preemptions: int = 0

    def __post_init__(self) -> None:
        if self.total_blocks == 0:
            self.total_blocks = kv_cache_blocks(self.shape)
        self.free_blocks = self.total_blocks

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (0-1), vLLM's ``kv_cache_usage_perc``."""
        if self.total_blocks == 0:
            return 0.0
        return 1.0 - self.free_blocks / self.total_blocks

    def fits_ever(self, prompt_tokens: int, output_len: int) -> bool:
        """Whether a sequence could ever be scheduled on an empty cache."""
        needed = _blocks_for(prompt_tokens + output_len, self.shape.block_size)
        return needed <= self.total_blocks

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def abort(self, seq: Sequence) -> None:
        """Drop a sequence (client went away), freeing its blocks."""
        if seq in self.running:
            self.running.remove(seq)
            self._free(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def _free(self, seq: Sequence) -> None:
        self.free_blocks += seq.blocks
        seq.blocks = 0

    def _preempt(self, victim: Sequence) -> None:
        self.running.remove(victim)
        self._free(victim)
        victim.computed = 0
        victim.prefilling = True
        victim.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(victim)

    def _grow(self, seq: Sequence, tokens: int) -> bool:
        """Give ``seq`` blocks for ``tokens`` total; False when the cache is full."""
        need = _blocks_for(tokens, self.shape.block_size) - seq.blocks
        if need <= 0:
            return True
        if need > self.free_blocks:
            return False
        self.free_blocks -= need
        seq.blocks += need
        return True

    def plan(self, now: float) -> StepPlan | None:
        """Choose the next step's batch at ``now`` (emulated s). None when idle."""
        budget = self.shape.max_num_batched_tokens
        bs = self.shape.block_size
        decode: list[Sequence] = []
        prefill: list[tuple[Sequence, int]] = []
        preempted: list[Sequence] = []
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            if seq.prefilling:
                n = min(seq.prefill_target - seq.computed, budget)
                # Chunk only as far as free blocks allow; the rest waits a step.
                room = (seq.blocks + self.free_blocks) * bs - seq.computed
                n = min(n, room)
                if n > 0 and self._grow(seq, seq.computed + n):
                    prefill.append((seq, n))
                    budget -= n
                i += 1
                continue
            while not self._grow(seq, seq.computed + 1):
                victim = self.running[-1]
                self._preempt(victim)
                preempted.append(victim)
                if victim is seq:
                    break
            if seq.prefilling:  # it was its own victim
                continue
            decode.append(seq)
            budget -= 1
            i += 1
        admitted: list[Sequence] = []
        watermark = int(self.total_blocks * WATERMARK_FRACTION)
        while self.waiting and budget > 0 and len(self.running) < self.shape.max_num_seqs:
            seq = self.waiting[0]
            n = min(seq.prefill_target - seq.computed, budget)
            need = _blocks_for(seq.computed + n, bs) - seq.blocks
            if self.free_blocks - need < watermark:
                break
            self.waiting.popleft()
            self._grow(seq, seq.computed + n)
            self.running.append(seq)
            if seq.first_scheduled_s is None:
                seq.first_scheduled_s = now
            admitted.append(seq)
            prefill.append((seq, n))
            budget -= n
        if not decode and not prefill:
            return None
        ctx = sum(s.computed + 1 for s in decode)
        pairs = sum(n * s.computed + n * (n + 1) / 2 for s, n in prefill)
        tokens = sum(n for _, n in prefill)
        duration = step_time_s(self.shape, len(decode), ctx, tokens, pairs)
        return StepPlan(duration, tuple(decode), tuple(prefill), tuple(admitted), tuple(preempted))

    def commit(self, plan: StepPlan) -> list[TokenEvent]:
        """Apply a finished step: advance KV, emit tokens, retire finished sequences."""
        events: list[TokenEvent] = []
        done: list[Sequence] = []
        for seq in plan.decode:
            if seq.blocks == 0:  # aborted while the step ran
                continue
            seq.computed += 1
            seq.generated += 1
            finished = seq.generated >= seq.output_len
            events.append(TokenEvent(seq, seq.generated, finished))
            if finished:
                done.append(seq)
        for seq, n in plan.prefill:
            if seq.blocks == 0:
                continue
            seq.computed += n
            if seq.computed >= seq.prefill_target:
                seq.prefilling = False
                seq.generated += 1
                finished = seq.generated >= seq.output_len
                events.append(TokenEvent(seq, seq.generated, finished))
                if finished:
                    done.append(seq)
        for seq in done:
            self.running.remove(seq)
            self._free(seq)
        return events
