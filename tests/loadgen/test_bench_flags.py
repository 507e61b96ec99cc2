"""hey's flags parsed into a BenchConfig; every bad flag exits 2 naming flag, value, expectation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchkit import SEED_BODY, bench
from typer.testing import CliRunner

from tierserve.cli.main import app
from tierserve.loadgen.flags import USER_AGENT, parse_duration_s, parse_flags, parse_slo
from tierserve.loadgen.stats import Slo

URL = "http://127.0.0.1:9/v1/chat/completions"  # never contacted: parsing only


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("3m", 180.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("300ms", 0.3),
        ("250us", 0.00025),
        ("0", 0.0),
        ("2m30s", 150.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["abc", "10", "", "5 m", "s", "-1s", "1d"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_s(text)


@pytest.mark.parametrize(
    ("text", "slo"),
    [
        ("ttft=500ms,tpot=50ms", Slo(ttft_s=0.5, tpot_s=0.05)),
        ("ttft=0.5s", Slo(ttft_s=0.5)),
        ("ttft:500,tpot:50", Slo(ttft_s=0.5, tpot_s=0.05)),  # vLLM's --goodput, in ms
        ("e2e=10s", Slo(e2e_s=10.0)),
        ("itl=40ms,e2el=2s", Slo(tpot_s=0.04, e2e_s=2.0)),
    ],
)
def test_slo(text: str, slo: Slo) -> None:
    assert parse_slo(text) == slo


def test_the_seeds_hey_line_parses() -> None:
    argv = ["-z", "5m", "-c", "5", "-m", "POST", "-host", "deepseek-default.example.com"]
    argv += ["-H", "Content-Type: application/json", "-d", SEED_BODY, URL]
    cfg = parse_flags(argv)
    assert cfg is not None
    assert (cfg.duration_s, cfg.concurrency, cfg.method, cfg.url) == (300.0, 5, "POST", URL)
    assert cfg.headers == {
        "Content-Type": "application/json",  # -H overrides -T's text/html, as in hey
        "Host": "deepseek-default.example.com",
        "User-Agent": USER_AGENT,
    }
    assert cfg.body == SEED_BODY.encode()
    assert (cfg.stream, cfg.mode, cfg.timeout_s) == (False, "closed-loop", 20.0)


def test_hey_defaults_and_extras() -> None:
    cfg = parse_flags([URL])
    assert cfg is not None
    assert (cfg.requests, cfg.concurrency, cfg.method, cfg.duration_s) == (200, 50, "GET", None)
    assert cfg.headers["Content-Type"] == "text/html"
    cfg = parse_flags(["-n", "10", "-c", "2", "-q", "3", "-t", "0", "-a", "u:pw", "-U", "me", URL])
    assert cfg is not None
    assert (cfg.requests, cfg.concurrency, cfg.qps_per_worker, cfg.timeout_s) == (10, 2, 3.0, None)
    assert cfg.headers["Authorization"] == "Basic dTpwdw=="  # base64("u:pw")
    assert cfg.headers["User-Agent"] == f"me {USER_AGENT}"
    cfg = parse_flags(["-disable-keepalive", "-cpus", "4", "-z", "0", "-n", "60", URL])
    assert cfg is not None
    assert cfg.disable_keepalive and cfg.duration_s is None and cfg.requests == 60


def test_stream_sets_stream_and_include_usage(tmp_path: Path) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_text(SEED_BODY)
    cfg = parse_flags(["-m", "POST", "-D", str(body_file), "--stream", "--rate", "2", URL])
    assert cfg is not None
    doc = json.loads(cfg.body)
    assert doc["stream"] is True and doc["stream_options"] == {"include_usage": True}
    assert doc["max_tokens"] == 512
    assert (cfg.stream, cfg.mode, cfg.rate_per_s, cfg.seed) == (True, "poisson", 2.0, 0)


def test_help_prints_usage() -> None:
    run = bench("--help")
    assert run.code == 0 and "-host" in run.out and "--slo" in run.out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-z", "abc", URL], ["-z", "'abc'", "a duration with a unit"]),
        (["-c", "0", URL], ["-c", "'0'", "an integer >= 1"]),
        (["-n", "lots", URL], ["-n", "'lots'", "an integer >= 1"]),
        (["-n", "3", "-c", "5", URL], ["-n", "3 is less than -c 5"]),
        ([], ["url", "missing", "expected a target like http://127.0.0.1"]),
        (["http://example.com/v1/chat/completions"], ["url", "'example.com'", "loopback"]),
        (["http://10.0.0.1:80/"], ["url", "'10.0.0.1'", "expected 127.0.0.1, ::1 or localhost"]),
        (["ftp://127.0.0.1/"], ["url", "'ftp://127.0.0.1/'", "http:// or https://"]),
        (["--slo", "ttft=fast", "--stream", "-d", "{}", URL], ["--slo", "'fast'", "duration"]),
        (["--slo", "speed=1ms", URL], ["--slo", "'speed=1ms'", "keys: ttft, tpot, e2e"]),
        (["--slo", "ttft=500ms", "-d", SEED_BODY, URL], ["--slo", "expected --stream"]),
        (["--stream", "-d", "not json", URL], ["--stream", "JSON object body"]),
        (["-H", "no-colon", URL], ["-H", "'no-colon'", '"Name: value"']),
        (["-m", "FETCH", URL], ["-m", "'FETCH'", "one of GET, POST"]),
        (["-q", "-1", URL], ["-q", "'-1'", "a finite number >= 0"]),
        (["-t", "soon", URL], ["-t", "'soon'", "a number >= 0"]),
        (["--rate", "0", URL], ["--rate", "'0'", "requests per second > 0"]),
        (["--start-at", "noon", URL], ["--start-at", "'noon'", "a number >= 0"]),
        (["-D", "/nonexistent/body.json", URL], ["-D", "/nonexistent/body.json", "readable file"]),
        (["-a", "nopassword", URL], ["-a", "'nopassword'", "username:password"]),
        (["-h2", URL], ["-h2", "not supported"]),
        (["--frobnicate", URL], ["unrecognized arguments: --frobnicate"]),
        ([URL, "-c"], ["-c", "expected one argument"]),
    ],
)
def test_bad_flags_exit_2_naming_flag_value_and_expectation(
    argv: list[str], expected: list[str]
) -> None:
    run = bench(*argv)
    assert run.code == 2, run
    assert run.out == ""
    for part in expected:
        assert part in run.err, (part, run.err)
    assert run.err.startswith("error: tierserve bench")


def test_every_bad_flag_is_reported_at_once() -> None:
    run = bench("-z", "abc", "-c", "0", "http://example.com/")
    assert run.code == 2
    flags = [line.split(": ")[2] for line in run.err.splitlines() if line.startswith("error:")]
    assert sorted(flags) == ["-c", "-z", "url"]


def test_bad_flags_through_the_tierserve_command() -> None:
    result = CliRunner().invoke(app, ["bench", "-z", "abc", "-host", "h.example.com", URL])
    assert result.exit_code == 2
    assert "-z: 'abc' is not valid; expected a duration" in result.output
