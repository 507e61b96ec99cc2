"""Pure statistics: hey's histogram and distribution, percentiles, TPOT, SLO and goodput."""

from __future__ import annotations

import math

import pytest

from tierserve.loadgen import stats
from tierserve.loadgen.openai import SseDecoder, chunk_content, usage_of
from tierserve.loadgen.stats import Bucket, Percentile, Slo


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # rank 1.5 -> 2 + 0.5 * (3 - 2)
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([4.0, 1.0, 3.0, 2.0], 90, 3.7),  # unsorted; rank 2.7 -> 3 + 0.7
        ([5.0], 99, 5.0),
        (list(map(float, range(101))), 99, 99.0),  # rank 99 exactly
    ],
)
def test_percentile_interpolates_like_numpy(
    values: list[float], pct: float, expected: float
) -> None:
    assert stats.percentile(values, pct) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan_and_out_of_range_is_refused() -> None:
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError, match="outside"):
        stats.percentile([1.0], 101)


def test_summarize() -> None:
    s = stats.summarize([0.1, 0.2, 0.3, 0.4])
    assert s is not None
    assert (s.count, s.min, s.max) == (4, 0.1, 0.4)
    assert s.mean == pytest.approx(0.25)
    assert s.p50 == pytest.approx(0.25)
    assert stats.summarize([]) is None


@pytest.mark.parametrize(
    ("lats", "expected"),
    [
        ([], []),
        # fastest 1, slowest 2: marks 1.0, 1.1, ..., 1.9, then 2.0
        (
            [1.0, 1.05, 1.5, 2.0],
            [
                *[(1.0, 1), (1.1, 1), (1.2, 0), (1.3, 0), (1.4, 0), (1.5, 1)],
                *[(1.6, 0), (1.7, 0), (1.8, 0), (1.9, 0), (2.0, 1)],
            ],
        ),
        # all equal: width 0, every latency in the first row (hey does the same)
        ([0.5, 0.5, 0.5], [(0.5, 3)] + [(0.5, 0)] * 10),
    ],
)
def test_hey_histogram(lats: list[float], expected: list[tuple[float, int]]) -> None:
    got = stats.hey_histogram(lats)
    assert [b.count for b in got] == [count for _, count in expected]
    assert [b.mark_s for b in got] == pytest.approx([mark for mark, _ in expected])
    assert sum(b.count for b in got) == len(lats)
    if got:
        assert got[0] == Bucket(min(lats), got[0].count, got[0].count / len(lats))


@pytest.mark.parametrize(
    ("count", "peak", "bar"),
    [(10, 10, 40), (5, 10, 20), (1, 80, 1), (1, 81, 0), (0, 10, 0), (3, 0, 0)],
    # hey: (count * 40 + peak / 2) / peak with integer division; (1*40 + 40) // 80 = 1
)
def test_hey_bar(count: int, peak: int, bar: int) -> None:
    assert stats.hey_bar(count, peak) == bar


def test_hey_latency_distribution_picks_first_index_reaching_each_percentage() -> None:
    lats = [float(i) for i in range(1, 101)]  # 100 values: index i has i*100//100 = i
    got = stats.hey_latency_distribution(lats)
    # index 10 is the value 11.0, and so on
    assert got == [
        Percentile(10, 11.0),
        Percentile(25, 26.0),
        Percentile(50, 51.0),
        Percentile(75, 76.0),
        Percentile(90, 91.0),
        Percentile(95, 96.0),
        Percentile(99, 100.0),
    ]


def test_hey_latency_distribution_of_a_small_run_omits_unreached_rows() -> None:
    # 4 values: indexes give 0, 25, 50, 75 -> 90/95/99 are never reached, as in hey
    got = stats.hey_latency_distribution([4.0, 3.0, 2.0, 1.0])
    assert [(p.percentage, p.latency_s) for p in got] == [
        (10, 2.0),
        (25, 2.0),
        (50, 3.0),
        (75, 4.0),
    ]
    assert stats.hey_latency_distribution([]) == []


@pytest.mark.parametrize(
    ("e2e", "ttft", "tokens", "expected"),
    [
        (1.1, 0.1, 11, 0.1),  # (1.1 - 0.1) / (11 - 1)
        (0.5, 0.5, 1, None),  # one token: no TPOT
        (0.0, 0.0, 0, None),
    ],
)
def test_tpot(e2e: float, ttft: float, tokens: int, expected: float | None) -> None:
    got = stats.tpot_s(e2e, ttft, tokens)
    assert got == (pytest.approx(expected) if expected is not None else None)


SLO = Slo(ttft_s=0.5, tpot_s=0.05)


@pytest.mark.parametrize(
    ("slo", "ttft", "tpot", "e2e", "good"),
    [
        (SLO, 0.4, 0.04, 9.0, True),
        (SLO, 0.5, 0.05, 9.0, True),  # bounds are inclusive
        (SLO, 0.6, 0.04, 9.0, False),  # TTFT too slow
        (SLO, 0.4, 0.06, 9.0, False),  # TPOT too slow
        (SLO, None, None, 9.0, False),  # not streamed: no TTFT to check
        (SLO, 0.4, None, 0.4, True),  # one output token: no TPOT, passes it
        (Slo(e2e_s=1.0), None, None, 0.9, True),
        (Slo(e2e_s=1.0), None, None, 1.1, False),
    ],
)
def test_meets_slo(
    slo: Slo, ttft: float | None, tpot: float | None, e2e: float, good: bool
) -> None:
    assert stats.meets_slo(slo, ttft, tpot, e2e) is good


def test_goodput() -> None:
    gp = stats.goodput(good=30, total=40, duration_s=60.0)
    assert gp.requests_per_s == pytest.approx(0.5)  # 30 / 60
    assert gp.attainment_pct == pytest.approx(75.0)  # 30 / 40
    assert stats.goodput(1, 1, 0.0).requests_per_s == 0.0
    assert stats.goodput(0, 0, 1.0).attainment_pct == 0.0


def test_sse_decoder_reassembles_events_across_network_chunks() -> None:
    raw = b'data: {"a": 1}\n\ndata: {"b"' + b": 2}\r\n\r\ndata: [DONE]\n\n"
    dec = SseDecoder()
    got = [p for i in range(0, len(raw), 5) for p in dec.feed(raw[i : i + 5])] + dec.close()
    assert got == ['{"a": 1}', '{"b": 2}', "[DONE]"]
    dec = SseDecoder()
    assert dec.feed(b"data: tail") == []
    assert dec.close() == ["tail"]


@pytest.mark.parametrize(
    ("event", "text"),
    [
        ({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, ""),
        ({"choices": [{"delta": {"content": " we"}}]}, " we"),
        ({"choices": [{"text": " more"}]}, " more"),
        ({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}, ""),
        ("not a dict", ""),
    ],
)
def test_chunk_content(event: object, text: str) -> None:
    assert chunk_content(event) == text


def test_usage_of() -> None:
    assert usage_of({"usage": {"prompt_tokens": 11, "completion_tokens": 512}}) == (11, 512)
    assert usage_of({"usage": None}) is None
    assert usage_of([]) is None
