"""Simulator workloads: rates within statistical bounds, determinism by seed, laziness,
the closed-loop API, both trace layouts, and errors that name the field, line and value."""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tierserve.errors import ValidationError
from tierserve.sim.workload import (
    Arrival,
    Closed,
    ClosedLoop,
    Diurnal,
    Trace,
    Workload,
    arrivals,
    closed_loops,
    expected_count,
    expected_rate,
    merge,
    parse_timestamp,
    parse_workload,
    read_trace,
)

EXAMPLES = Path(__file__).parents[2] / "tierserve" / "examples" / "sim"


def run(spec: Any, seed: int = 1, until_s: float | None = None, **kw: Any) -> list[Arrival]:
    return list(arrivals(parse_workload(spec, **kw), seed, until_s=until_s))


def counts_per(items: list[Arrival], bin_s: float) -> Counter[int]:
    return Counter(int(a.t_s // bin_s) for a in items)


def errors_of(spec: Any, **kw: Any) -> str:
    with pytest.raises(ValidationError) as info:
        parse_workload(spec, **kw)
    return str(info.value)


# --- open-loop generators ---------------------------------------------------------------


def test_poisson_rate_and_exponential_gaps() -> None:
    got = run({"kind": "poisson", "rate": 5}, until_s=20_000)
    # 100,000 expected, sd sqrt(100,000) = 316: within 4 sd
    assert abs(len(got) - 100_000) < 4 * 316
    gaps = [b.t_s - a.t_s for a, b in itertools.pairwise(got)]
    assert statistics.mean(gaps) == pytest.approx(0.2, rel=0.02)
    assert statistics.stdev(gaps) == pytest.approx(0.2, rel=0.03)  # exponential: sd = mean
    assert all(a.t_s <= b.t_s for a, b in itertools.pairwise(got))


def test_constant_is_evenly_spaced_from_its_start() -> None:
    got = run({"kind": "constant", "rate": 4, "start": "10s", "duration": "1m"})
    assert len(got) == 240  # 4 req/s × 60 s, the first at 10 s, the last before 70 s
    assert got[0].t_s == 10.0
    assert got[1].t_s - got[0].t_s == pytest.approx(0.25)
    assert got[-1].t_s < 70.0


def test_step_phases_are_poisson_at_each_rate() -> None:
    # the seed's autoscaling load: quiet 0.5 req/s for 90 s, burst 3 for 180 s, quiet for 270 s
    # (×20 on the rates here so the counts are large enough to test)
    spec = {"kind": "step", "phases": [
        {"duration": "90s", "rate": 10}, {"duration": "3m", "rate": 60},
        {"duration": "270s", "rate": 10}]}
    got = run(spec)
    assert got[-1].t_s < 540.0  # nothing after the last phase
    quiet = sum(1 for a in got if a.t_s < 90)
    burst = sum(1 for a in got if 90 <= a.t_s < 270)
    assert abs(quiet - 900) < 4 * 30  # 10 × 90 = 900 ± 4 sd
    assert abs(burst - 10_800) < 4 * 104  # 60 × 180
    assert expected_count(parse_workload(spec), 0, 1e9) == 900 + 10_800 + 2_700


def test_steps_hold_their_rate_until_the_next_and_nothing_before_the_first() -> None:
    spec = {"kind": "step", "steps": [{"at": "1m", "rate": 20}, {"at": "2m", "rate": 0}]}
    got = run(spec, until_s=3600)
    assert all(60 <= a.t_s < 120 for a in got)
    assert abs(len(got) - 1200) < 4 * 35


def test_diurnal_peak_and_trough_follow_the_ratio() -> None:
    spec = {"kind": "diurnal", "rate": 2, "peakToTrough": 4, "peakAt": "14h"}
    got = run(spec, until_s=86_400)
    hours = counts_per(got, 3600)
    # rate(t) = 2 (1 + 0.6 cos(2π (t - 14h) / 24h)): 3.2/s at 14:00, 0.8/s at 02:00
    assert max(hours, key=lambda h: hours[h]) in (13, 14)
    assert min(hours, key=lambda h: hours[h]) in (1, 2)
    assert hours[13] / hours[1] == pytest.approx(4.0, rel=0.1)
    assert len(got) == pytest.approx(172_800, rel=0.01)
    assert expected_count(parse_workload(spec), 0, 86_400) == pytest.approx(172_800)
    # the peak hour: 2 × (3600 + 0.6 · (24h / 2π) · 2 sin(π/24)) = 2 × (3600 + 2153.8)
    assert expected_count(parse_workload(spec), 13.5 * 3600, 14.5 * 3600) == pytest.approx(
        11_507.7, rel=1e-4)


def test_diurnal_amplitude_one_has_an_empty_trough() -> None:
    spec = {"kind": "diurnal", "rate": 5, "amplitude": 1, "peakAt": "12h"}
    # rate(t) = 5 (1 - cos(2π t / 24h)) ≈ 5 (2π t / 24h)² / 2: 0.12 expected in 5 minutes
    assert expected_count(parse_workload(spec), 0, 300) == pytest.approx(0.119, rel=0.01)
    assert len(run(spec, until_s=300)) < 3


def test_diurnal_spikes_are_present_and_counted_in_the_expectation() -> None:
    flat = {"kind": "diurnal", "rate": 2, "amplitude": 0}
    spiky = {**flat, "spikes": {"perHour": 2, "height": 5, "duration": "2m"}}
    base = counts_per(run(flat, until_s=43_200), 60)
    hot = counts_per(run(spiky, until_s=43_200), 60)
    # a quiet minute: 120 ± 11; a spiked one 600: over 300 only in a spike
    assert max(base.values()) < 200  # the most of 720 minutes: ~+4 sd
    spiked = [m for m, n in hot.items() if n > 300]
    assert 10 <= len(spiked) <= 100  # ~24 spikes of 2 minutes over 12 h
    # fraction of time in a spike = 1 - exp(-2/h × 2 min) = 6.45 %, so × (1 + 4 × 0.0645)
    want = 2 * 43_200 * (1 + 4 * (1 - math.exp(-2 / 30)))
    assert expected_count(parse_workload(spiky), 0, 43_200) == pytest.approx(want)


def test_diurnal_noise_keeps_the_mean_and_adds_correlated_variance() -> None:
    flat = {"kind": "diurnal", "rate": 0.5, "amplitude": 0}
    noisy = {**flat, "noise": {"cv": 0.5, "correlationTime": "10m"}}
    per_10m = list(counts_per(run(noisy, until_s=4 * 86_400), 600).values())
    # 576 bins of 300 expected; the noise leaves the mean within ~3 % (1 sd, over seeds)
    assert statistics.mean(per_10m) == pytest.approx(300, rel=0.15)
    # Poisson alone: sd sqrt(300) = 17; a factor with cv 0.5 over 10 min adds ~100-150
    assert statistics.stdev(per_10m) > 80
    poisson_only = list(counts_per(run(flat, until_s=4 * 86_400), 600).values())
    assert statistics.stdev(poisson_only) < 30


def test_same_seed_same_arrivals_other_seed_other_arrivals() -> None:
    spec = {"kind": "diurnal", "rate": 3, "noise": {"cv": 0.3}, "spikes": {"perHour": 1},
            "promptTokens": {"dist": "lognormal", "mean": 1500, "sd": 700}}
    w = parse_workload(spec)
    first = list(itertools.islice(arrivals(w, 7), 2000))
    assert first == list(itertools.islice(arrivals(w, 7), 2000))
    assert first != list(itertools.islice(arrivals(w, 8), 2000))


def test_adding_a_source_or_changing_tokens_leaves_a_source_times_unchanged() -> None:
    alone = run({"kind": "poisson", "rate": 2, "service": "a"}, until_s=600)
    both = run([{"kind": "poisson", "rate": 2, "service": "a"},
                {"kind": "poisson", "rate": 2, "service": "b"}], until_s=600)
    assert [a for a in both if a.service == "a"] == alone
    assert {a.service for a in both} == {"a", "b"}
    assert all(a.t_s <= b.t_s for a, b in itertools.pairwise(both))
    other_tokens = run({"kind": "poisson", "rate": 2, "service": "a", "promptTokens": 10},
                       until_s=600)
    assert [a.t_s for a in other_tokens] == [a.t_s for a in alone]


def test_arrivals_are_lazy() -> None:
    # 24 h at 50 req/s is 4.3 M arrivals; the first ten come at once, none materialised
    w = parse_workload({"kind": "poisson", "rate": 50, "duration": "24h"})
    began = time.perf_counter()
    ten = list(itertools.islice(arrivals(w, 1), 10))
    assert len(ten) == 10 and time.perf_counter() - began < 0.1
    assert expected_count(w, 0, 86_400) == 4_320_000
    assert expected_rate(w, 0, 86_400) == 50
    d = parse_workload({"kind": "diurnal", "rate": 50, "noise": {"cv": 0.2}})
    began = time.perf_counter()
    assert len(list(itertools.islice(arrivals(d, 1), 10))) == 10
    assert time.perf_counter() - began < 0.1


def test_merge_is_by_time_and_ties_keep_argument_order() -> None:
    a = iter([Arrival(0.0, 1, 1, "x"), Arrival(2.0, 1, 1, "x")])
    b = iter([Arrival(0.0, 1, 1, None), Arrival(1.0, 1, 1, None)])
    assert [(x.t_s, x.service) for x in merge(a, b)] == [
        (0.0, "x"), (0.0, None), (1.0, None), (2.0, "x")]


# --- tokens ---------------------------------------------------------------------------


def test_tokens_default_to_the_seed_benchmark() -> None:
    got = run({"kind": "constant", "rate": 1}, until_s=5)
    assert {(a.prompt_tokens, a.output_tokens) for a in got} == {(1500, 256)}


def test_token_distributions() -> None:
    spec = {"kind": "constant", "rate": 100, "duration": "200s",
            "promptTokens": {"dist": "lognormal", "mean": 1500, "sd": 600, "max": 8192},
            "outputTokens": {"dist": "uniform", "min": 10, "max": 20}}
    got = run(spec)
    prompts = [a.prompt_tokens for a in got]
    assert statistics.mean(prompts) == pytest.approx(1500, rel=0.03)
    assert statistics.stdev(prompts) == pytest.approx(600, rel=0.08)
    assert max(prompts) <= 8192 and min(prompts) >= 1
    assert {a.output_tokens for a in got} == set(range(10, 21))
    chosen = run({"kind": "constant", "rate": 100, "duration": "100s",
                  "outputTokens": {"dist": "choice", "values": [64, 512], "weights": [3, 1]}})
    share = sum(1 for a in chosen if a.output_tokens == 64) / len(chosen)
    assert share == pytest.approx(0.75, abs=0.03)
    fixed = run({"kind": "constant", "rate": 1, "duration": 3,
                 "promptTokens": {"dist": "fixed", "value": 7}, "outputTokens": 9})
    assert {(a.prompt_tokens, a.output_tokens) for a in fixed} == {(7, 9)}


# --- closed loop ----------------------------------------------------------------------


def test_closed_loop_is_driven_by_completions() -> None:
    w = parse_workload([{"kind": "closed", "concurrency": 5, "thinkTime": "2s",
                         "duration": "5m", "service": "default/deepseek"},
                        {"kind": "poisson", "rate": 1}])
    assert isinstance(w.sources[0], Closed)
    assert all(a.service is None for a in itertools.islice(arrivals(w, 1), 50))  # open only
    (loop,) = closed_loops(w, seed=1)
    first = loop.first_arrivals(0.0)
    assert [a.t_s for a in first] == [0.0] * 5  # hey -c 5: every worker at once
    assert first[0] == Arrival(0.0, 1500, 256, "default/deepseek")
    nxt = loop.next_after(12.5)
    assert nxt is not None and nxt.t_s == 14.5  # completion + think time
    assert loop.next_after(299.0) is None  # 301 s is past the 5-minute duration
    assert loop.sent == 6


def test_closed_loop_stops_after_its_requests() -> None:
    spec = parse_workload({"kind": "closed", "concurrency": 3, "requests": 4, "start": 10})
    assert isinstance(spec.sources[0], Closed)
    loop = ClosedLoop(spec.sources[0], seed=0)
    assert [a.t_s for a in loop.first_arrivals(now_s=0.0)] == [10.0] * 3
    assert loop.next_after(11.0) == Arrival(11.0, 1500, 256, None)
    assert loop.next_after(12.0) is None


# --- traces ---------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_trace_replays_rows_with_speed_skip_and_start(tmp_path: Path) -> None:
    write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens,service\n"
          "0,100,10,a\n1.5,200,20,\n3,300,30,b\n6,400,40,a\n")
    spec = {"kind": "trace", "path": "t.csv", "speed": 2, "skip": "1s", "start": 100,
            "service": "dflt"}
    got = run(spec, base_dir=tmp_path)
    # trace time τ >= 1 arrives at 100 + (τ - 1) / 2
    assert got == [Arrival(100.25, 200, 20, "dflt"), Arrival(101.0, 300, 30, "b"),
                   Arrival(102.5, 400, 40, "a")]


def test_looped_trace_repeats_with_one_mean_gap(tmp_path: Path) -> None:
    write(tmp_path, "t.csv", "arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,2,2\n2,3,3\n")
    got = run({"kind": "trace", "path": "t.csv", "loop": True, "duration": "7s"},
              base_dir=tmp_path)
    # span 2 s + mean gap 1 s: a loop every 3 s
    assert [a.t_s for a in got] == [0, 1, 2, 3, 4, 5, 6]
    assert [a.prompt_tokens for a in got] == [1, 2, 3, 1, 2, 3, 1]
    endless = parse_workload({"kind": "trace", "path": "t.csv", "loop": True, "start": 0.5},
                             base_dir=tmp_path)
    # a row every second from 0.5 s: 10,000 in [0.5, 10,000.5), counted without replaying them
    assert expected_count(endless, 0, 10_000) == 10_000
    assert expected_count(endless, 1, 3.5) == 2  # 1.5 and 2.5 (3.5 is the window's open end)
    assert expected_count(endless, 0, math.inf) == math.inf


def test_azure_layout_times_are_relative_to_the_first_row(tmp_path: Path) -> None:
    write(tmp_path, "azure.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
          "2023-11-16 18:15:46.6805900,374,44\n"
          "2023-11-16 18:15:50.9951690,396,109\n"
          "2023-11-16 18:16:00.0000001,879,0\n")
    got = run({"kind": "trace", "path": "azure.csv"}, base_dir=tmp_path)
    assert [a.t_s for a in got] == pytest.approx([0.0, 4.314579, 13.3194101], abs=1e-7)
    assert [(a.prompt_tokens, a.output_tokens) for a in got] == [(374, 44), (396, 109), (879, 0)]


def test_parse_timestamp_layouts() -> None:
    whole, frac = parse_timestamp("2023-11-16 18:15:46.6805900")
    assert (whole, round(frac, 7)) == (1700158546, 0.68059)
    assert parse_timestamp("2023-11-16T18:15:46Z") == (1700158546, 0.0)
    assert parse_timestamp("2023-11-16T20:15:46.5+02:00") == (1700158546, 0.5)
    for bad in ("2023-11-16", "2023-13-01 00:00:00", "2023-11-16 25:00:00", "yesterday"):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_jsonl_trace_with_services_and_drawn_tokens(tmp_path: Path) -> None:
    write(tmp_path, "t.jsonl", '{"arrival_s": 0.5, "service": "default/a"}\n\n'
          '{"arrival_s": 1.0, "service": "default/b", "extra": 1}\n')
    got = run({"kind": "trace", "path": "t.jsonl", "promptTokens": 42}, base_dir=tmp_path)
    # no token keys in the file: promptTokens is drawn, outputTokens its default
    assert got == [Arrival(0.5, 42, 256, "default/a"), Arrival(1.0, 42, 256, "default/b")]


def test_example_traces_parse() -> None:
    w = parse_workload([{"kind": "trace", "path": "traces/azure-layout-sample.csv"},
                        {"kind": "trace", "path": "traces/two-services.jsonl"}],
                       base_dir=EXAMPLES)
    assert all(isinstance(s, Trace) for s in w.sources)
    got = list(arrivals(w, 0))
    assert len(got) == 260 and got[0].t_s == 0.0
    assert {a.service for a in got} == {None, "default/deepseek", "default/qwen"}
    assert expected_count(w, 0, 1e9) == 260


@pytest.mark.parametrize(("text", "where", "said"), [
    ("arrival_s,prompt_tokens,output_tokens\n0,1,1\n5,1,1\n4,1,1\n",
     "line 4, column arrival_s", "this row (4 s) is earlier than line 3 (5 s)"),
    ("arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,12x,1\n",
     "line 3, column prompt_tokens", "'12x' is not valid; expected a token count"),
    ("arrival_s,prompt_tokens,output_tokens\n0,1,1\nsoon,1,1\n",
     "line 3, column arrival_s", "'soon' is not valid; expected seconds"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,1,1\n"
     "2023-11-16 18:15:4x,1,1\n", "line 3, column TIMESTAMP", "'2023-11-16 18:15:4x'"),
    ("arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,1\n", "line 3", "2 fields, expected 3"),
])
def test_bad_trace_rows_name_file_line_column_and_value(
    tmp_path: Path, text: str, where: str, said: str
) -> None:
    path = write(tmp_path, "bad.csv", text)
    with pytest.raises(ValidationError) as info:
        list(read_trace(path))
    assert f"{path}: {where}: " in str(info.value)
    assert said in str(info.value)


def test_bad_jsonl_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}\n'
                 '{"arrival_s": 1, "prompt_tokens": 1.5, "output_tokens": 1}\n')
    with pytest.raises(ValidationError, match=r"line 2, column prompt_tokens: 1.5 is not valid"):
        list(read_trace(path))
    path = write(tmp_path, "bad2.jsonl", '{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": 1}'
                 '\n{"arrival_s": 1, "prompt_tokens": 1}\nnot json\n')
    with pytest.raises(ValidationError, match=r"line 2: .* has no output_tokens key"):
        list(read_trace(path))


def test_a_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"arrival_s,prompt_tokens,output_tokens\n0,1,1\n1,\xff,1\n")
    with pytest.raises(ValidationError, match=r"bin.csv: is not UTF-8 text \(byte 0xff\)"):
        list(read_trace(path))


def test_missing_columns_are_found_when_the_scenario_loads(tmp_path: Path) -> None:
    write(tmp_path, "t.csv", "time,prompt_tokens\n0,1\n")
    said = errors_of({"kind": "trace", "path": "t.csv"}, base_dir=tmp_path)
    assert "workload.path: 't.csv' has no arrival_s (or timestamp, TIMESTAMP) and no " \
           "output_tokens (or GeneratedTokens) column" in said
    assert "cannot be read" in errors_of({"kind": "trace", "path": "nope.csv"},
                                         base_dir=tmp_path)
    assert "set format: csv or jsonl" in errors_of({"kind": "trace", "path": "t.txt"},
                                                  base_dir=tmp_path)


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "said"), [
    ([{"kind": "poisson", "rate": 1}, {"kind": "poisson", "rate": "-3"}],
     "scenario: workload[1].rate: '-3' is not valid; expected a rate in requests/s > 0"),
    ({"kind": "poisson", "rate": -3}, "workload.rate: -3 is not valid"),
    ({"kind": "poison", "rate": 1}, "workload.kind: 'poison' is not valid; expected one of "
     "constant, poisson, step, diurnal, closed, trace; did you mean 'poisson'?"),
    ({"rate": 1}, "workload.kind: required field is missing"),
    ({"kind": "poisson"}, "workload.rate: required field is missing"),
    ({"kind": "poisson", "rate": 1, "durration": "5m"},
     "workload.durration: unknown field; did you mean 'duration'?"),
    ({"kind": "poisson", "rate": 1, "duration": "5 min"},
     "workload.duration: '5 min' is not valid; expected seconds (a number) or a duration "
     "such as 90s, 5m, 1h30m, 24h, > 0"),
    ({"kind": "step", "steps": [{"at": "1m", "rate": 1}, {"at": "30s", "rate": 2}]},
     "workload.steps[1].at: '30s' is not valid; expected later than steps[0].at (60 s)"),
    ({"kind": "step", "phases": [{"rate": 1}]}, "workload.phases[0].duration: required"),
    ({"kind": "step", "rate": 1}, "workload: expected one of steps"),
    ({"kind": "diurnal", "rate": 1, "amplitude": 0.5, "peakToTrough": 3},
     "workload.amplitude: give one of amplitude and peakToTrough, not both"),
    ({"kind": "diurnal", "rate": 1, "amplitude": 1.5}, "workload.amplitude: 1.5 is not valid"),
    ({"kind": "diurnal", "rate": 1, "noise": {"cv": 0.1, "correlationTime": "100ms"}},
     "workload.noise.correlationTime: '100ms' is not valid; expected at least 1s"),
    ({"kind": "diurnal", "rate": 1, "spikes": {"height": 2}},
     "workload.spikes.perHour: required field is missing"),
    ({"kind": "closed", "concurrency": 0}, "workload.concurrency: 0 is not valid; expected a "
     "number of workers >= 1"),
    ({"kind": "poisson", "rate": 1, "promptTokens": 0}, "workload.promptTokens: 0 is not valid"),
    ({"kind": "poisson", "rate": 1, "promptTokens": {"dist": "lognormal", "mean": 100}},
     "workload.promptTokens.sd: required field is missing"),
    ({"kind": "poisson", "rate": 1, "outputTokens": {"dist": "uniform", "min": 9, "max": 3}},
     "workload.outputTokens.max: 3 is not valid; expected >= min (9)"),
    ({"kind": "poisson", "rate": 1, "outputTokens": {"dist": "choice", "values": [1, 2],
                                                     "weights": [1]}},
     "workload.outputTokens.weights: [1] is not valid"),
    ({"kind": "poisson", "rate": 1, "outputTokens": {"dist": "gamma"}},
     "workload.outputTokens.dist: 'gamma' is not valid; expected one of fixed, uniform"),
    ([], "workload: [] is not valid; expected a source or a non-empty list of sources"),
])
def test_bad_specs_name_the_field_the_value_and_the_expectation(spec: Any, said: str) -> None:
    assert said in errors_of(spec)


def test_every_bad_field_is_listed_at_once() -> None:
    said = errors_of([{"kind": "poisson", "rate": 0, "start": "x"}, {"kind": "constant"}])
    assert said.splitlines() == [
        "scenario: workload[0].rate: 0 is not valid; expected a rate in requests/s > 0",
        "scenario: workload[0].start: 'x' is not valid; expected seconds (a number) or a "
        "duration such as 90s, 5m, 1h30m, 24h, >= 0",
        "scenario: workload[1].rate: required field is missing",
    ]


def test_durations_in_every_spelling() -> None:
    (d,) = parse_workload({"kind": "diurnal", "rate": 1, "period": "1h30m", "peakAt": 600,
                           "start": "5m", "duration": "24h"}).sources
    assert isinstance(d, Diurnal)
    assert (d.period_s, d.peak_at_s, d.start_s, d.duration_s) == (5400, 600, 300, 86_400)


def test_workload_splits_open_and_closed_sources() -> None:
    w = parse_workload([{"kind": "poisson", "rate": 1}, {"kind": "closed", "concurrency": 2}])
    assert isinstance(w, Workload)
    assert len(w.open_sources) == 1 and len(w.closed_sources) == 1
    assert expected_count(w, 0, 10) == 10  # closed loops are not counted
