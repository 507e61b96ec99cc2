"""The model's predictions for a workload, by running the scheduler on virtual time.

``simulate_closed_loop`` is what "the model predicts" in benchmarks and the
calibration table: ``concurrency`` clients, each sending its next request the moment
the previous one ends (like ``hey -c N`` or ``vllm bench serve --max-concurrency N``),
all starting together at t=0. Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierserve.engine.perf.cost import EngineShape
from tierserve.engine.perf.scheduler import BatchScheduler, Sequence


@dataclass(frozen=True)
class RequestTiming:
    """One simulated request: arrival, first token and end (s), tokens generated."""

    arrival_s: float
    first_token_s: float
    end_s: float
    output_tokens: int

    @property
    def ttft_s(self) -> float:
        return self.first_token_s - self.arrival_s

    @property
    def itl_s(self) -> float:
        """Mean inter-token latency after the first token (s); 0 for one-token outputs."""
        if self.output_tokens < 2:
            return 0.0
        return (self.end_s - self.first_token_s) / (self.output_tokens - 1)


@dataclass(frozen=True)
class LoadPrediction:
    """What a closed-loop load run would measure, in emulated seconds."""

    requests: tuple[RequestTiming, ...]
    duration_s: float

    @property
    def output_tokens_per_s(self) -> float:
        total = sum(r.output_tokens for r in self.requests)
        return total / self.duration_s if self.duration_s > 0 else 0.0

    def mean_ttft_s(self, first_wave_only: int = 0) -> float:
        reqs = self.requests[:first_wave_only] if first_wave_only else self.requests
        return sum(r.ttft_s for r in reqs) / len(reqs)

    def mean_itl_s(self) -> float:
        reqs = [r for r in self.requests if r.output_tokens > 1]
        return sum(r.itl_s for r in reqs) / len(reqs)


def simulate_closed_loop(
    shape: EngineShape,
    concurrency: int,
    prompt_tokens: int,
    output_tokens: int,
    requests_per_client: int = 1,
) -> LoadPrediction:
    """Simulate ``concurrency`` clients sending ``requests_per_client`` requests each.

    Requests are listed in order of arrival: the first ``concurrency`` entries are the
    first wave (all arriving at t=0).
    """
    sched = BatchScheduler(shape)
    now = 0.0
    remaining = {c: requests_per_client for c in range(concurrency)}
    owner: dict[int, int] = {}
    first: dict[int, float] = {}
    done: dict[int, RequestTiming] = {}
    seqs: list[Sequence] = []

    def submit(client: int, at: float) -> None:
        seq = Sequence(f"r{len(seqs)}", prompt_tokens, output_tokens, at)
        owner[id(seq)] = client
        seqs.append(seq)
        remaining[client] -= 1
        sched.add(seq)

    for c in range(concurrency):
        submit(c, 0.0)
    while sched.has_work():
        plan = sched.plan(now)
        if plan is None:  # cannot happen with work queued unless a prompt never fits
            raise ValueError("workload never fits the KV cache")
        now += plan.duration_s
        for ev in sched.commit(plan):
            key = id(ev.seq)
            if ev.index == 1:
                first[key] = now
            if ev.finished:
                done[key] = RequestTiming(ev.seq.arrival_s, first[key], now, ev.seq.output_len)
                client = owner[key]
                if remaining[client] > 0:
                    submit(client, now)
    timings = tuple(done[id(s)] for s in seqs)
    return LoadPrediction(timings, now)


def simulate_arrivals(
    shape: EngineShape, arrivals_s: list[float], prompt_tokens: int, output_tokens: int
) -> LoadPrediction:
    """Open loop: one request at each of ``arrivals_s`` (emulated s, any order).

    Requests arriving while a step runs join at the next step boundary, as in the
    emulator. Timings are listed in the order of ``arrivals_s``.
    """
    order = sorted(range(len(arrivals_s)), key=lambda i: arrivals_s[i])
    sched = BatchScheduler(shape)
    seqs: dict[int, Sequence] = {}
    index: dict[int, int] = {}
    first: dict[int, float] = {}
    done: dict[int, RequestTiming] = {}
    now = arrivals_s[order[0]] if order else 0.0
    nxt = 0
    while nxt < len(order) or sched.has_work():
        while nxt < len(order) and arrivals_s[order[nxt]] <= now:
            i = order[nxt]
            seq = Sequence(f"r{i}", prompt_tokens, output_tokens, arrivals_s[i])
            seqs[i], index[id(seq)] = seq, i
            sched.add(seq)
            nxt += 1
        plan = sched.plan(now)
        if plan is None:
            if nxt >= len(order):
                raise ValueError("workload never fits the KV cache")
            now = arrivals_s[order[nxt]]
            continue
        now += plan.duration_s
        for ev in sched.commit(plan):
            i = index[id(ev.seq)]
            if ev.index == 1:
                first[i] = now
            if ev.finished:
                done[i] = RequestTiming(ev.seq.arrival_s, first[i], now, ev.seq.output_len)
    timings = tuple(done[i] for i in range(len(arrivals_s)))
    return LoadPrediction(timings, now)
