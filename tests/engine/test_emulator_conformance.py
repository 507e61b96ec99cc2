"""The emulator against captures of a real ``vllm serve`` (0.32.0) with the seed's flags.

Same status codes, error schema and ``param``; same body field names; same SSE
framing; same metric families, types and labels. Text and numbers differ by design.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from emukit import (
    REF,
    Emulator,
    StartEmulator,
    ref_json,
    ref_request_body,
    ref_request_line,
    sse_events,
)
from prometheus_client.parser import text_string_to_metric_families

ERROR_CASES = [
    "err_chat_wrong_model",
    "err_chat_wrong_model_stream",
    "err_completions_wrong_model",
    "err_chat_missing_messages",
    "err_chat_empty_messages",
    "err_completions_missing_prompt",
    "err_chat_max_tokens_40000",
    "err_chat_max_tokens_40000_stream",
    "err_completions_max_tokens_40000",
    "err_chat_malformed_json",
    "err_completions_malformed_json",
    "err_chat_wrong_type_temperature",
    "err_chat_negative_max_tokens",
    "err_chat_no_content_type",
    "err_unknown_route",
    "err_get_on_chat",
]


async def replay(emu: Emulator, name: str) -> aiohttp.ClientResponse:
    method, path, ctype = ref_request_line(name)
    body = ref_request_body(name) if method == "POST" else None
    headers = {"Content-Type": ctype} if ctype else {}
    async with aiohttp.ClientSession() as s:
        r = await s.request(method, emu.url + path, data=body, headers=headers)
        await r.read()
        return r


@pytest.mark.parametrize("name", ERROR_CASES)
async def test_error_answers_match_vllm(emulator: Emulator, name: str) -> None:
    ref_status = next(e["status"] for e in ref_json("index.json") if e["name"] == name)
    expected = ref_json(f"{name}.json")
    r = await replay(emulator, name)
    got = json.loads(await r.read())
    assert r.status == ref_status
    assert r.headers["Content-Type"].startswith("application/json")
    if "detail" in expected:  # FastAPI's own 404/405
        assert got == expected
        return
    assert set(got) == {"error"} and set(got["error"]) == {"message", "type", "param", "code"}
    for key in ("type", "param", "code"):
        assert got["error"][key] == expected["error"][key], key
    if expected["error"]["type"] != "Bad Request":  # pydantic's text differs in input echo
        assert got["error"]["message"] == expected["error"]["message"]


async def test_prompt_too_long_matches_vllm(emulator: Emulator) -> None:
    expected = ref_json("err_chat_prompt_too_long.json")
    # the captured request is ~200 kB; rebuild it: one " hello" token per word
    body = {
        "model": "deepseek-r1",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": " hello" * 32765}],
    }
    async with aiohttp.ClientSession() as s:
        r = await s.post(emulator.url + "/v1/chat/completions", json=body)
        got = await r.json()
    assert r.status == 400 and got["error"]["param"] == "input_tokens"
    assert got["error"]["type"] == expected["error"]["type"]
    # 32765 + 5 = 32770 tokens; like vLLM, counting stops at max_model_len + 1 = 32769
    assert got["error"]["message"] == expected["error"]["message"]


async def test_prompt_plus_max_tokens_over_the_limit_is_clamped(emulator: Emulator) -> None:
    body = {
        "model": "deepseek-r1",
        "max_tokens": 32768,
        "messages": [{"role": "user", "content": " hello" * 32750}],
    }
    async with aiohttp.ClientSession() as s:
        r = await s.post(emulator.url + "/v1/chat/completions", json=body)
        got = await r.json()
    # 32750 words + 5 template tokens = 32755 leave 13: vLLM 0.32 silently clamps max_tokens
    assert r.status == 200 and got["usage"]["completion_tokens"] == 13


@pytest.mark.parametrize(
    ("path", "ref"),
    [("/v1/chat/completions", "chat_nonstream"), ("/v1/completions", "completions_nonstream")],
)
async def test_non_streaming_bodies_have_vllms_fields(
    emulator: Emulator, path: str, ref: str
) -> None:
    expected = ref_json(f"{ref}.json")
    body = json.loads(ref_request_body(ref))
    async with aiohttp.ClientSession() as s:
        r = await s.post(emulator.url + path, json=body)
        got = await r.json()
    assert r.headers["Content-Type"] == "application/json"
    assert list(got) == list(expected)
    assert list(got["choices"][0]) == list(expected["choices"][0])
    assert list(got["usage"]) == list(expected["usage"])
    if "message" in expected["choices"][0]:
        assert list(got["choices"][0]["message"]) == list(expected["choices"][0]["message"])


def _shape(event: str) -> object:
    """An event's structure: keys (recursively) and which values are null."""
    if event == "[DONE]":
        return event

    def walk(v: object) -> object:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v[:1]]
        return None if v is None else type(v).__name__

    obj = json.loads(event)
    shape = walk(obj)
    assert isinstance(shape, dict)
    return shape


STREAM_CASES = [
    ("chat_stream", "/v1/chat/completions", {"max_tokens": 6}),
    (
        "chat_stream_include_usage",
        "/v1/chat/completions",
        {"max_tokens": 6, "stream_options": {"include_usage": True}},
    ),
    (
        "chat_stream_continuous_usage",
        "/v1/chat/completions",
        {
            "max_tokens": 6,
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        },
    ),
    ("completions_stream", "/v1/completions", {"max_tokens": 6}),
    (
        "completions_stream_include_usage",
        "/v1/completions",
        {"max_tokens": 6, "stream_options": {"include_usage": True}},
    ),
]


@pytest.mark.parametrize(("ref", "path", "extra"), STREAM_CASES)
async def test_sse_framing_matches_vllm(
    emulator: Emulator, ref: str, path: str, extra: dict
) -> None:  # type: ignore[type-arg]
    expected = sse_events((REF / f"{ref}.sse").read_text())
    base = (
        {"messages": [{"role": "user", "content": "Say this is a test!"}]}
        if "chat" in ref
        else {"prompt": "Say this is a test!"}
    )
    body = {"model": "deepseek-r1", "seed": 10, "stream": True, **base, **extra}
    async with aiohttp.ClientSession() as s:
        r = await s.post(emulator.url + path, json=body)
        text = await r.text()
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    got = sse_events(text)
    assert got[-1] == "[DONE]"
    # Same first event, same middle event, same last 2-3 events, as structures.
    # (The reference's last content chunk is an EOS "stop"; ours ends by length: the
    # finish_reason value differs, the fields do not.)
    assert _shape(got[0]) == _shape(expected[0])
    assert _shape(got[1]) == _shape(expected[1])
    tail = 3 if "include_usage" in ref or "continuous" in ref else 2
    for g, e in zip(got[-tail:], expected[-tail:], strict=True):
        assert _shape(g) == _shape(e)


def reference_families() -> dict[str, tuple[str, set[str]]]:
    """vLLM's families from ``metrics_names.txt``: name as the parser names it (counters
    without ``_total``) -> (type, label names but ``le``); ``_created`` gauges left out."""
    out: dict[str, tuple[str, set[str]]] = {}
    for line in (REF / "metrics_names.txt").read_text().splitlines()[1:]:
        family, mtype, labels, *_ = line.split("\t")
        if family.endswith("_created"):
            continue
        if mtype == "counter":
            family = family.removesuffix("_total")
        out[family] = (mtype, set(filter(None, labels.split(","))) - {"le"})
    return out


def value(fams: dict, family: str, sample: str | None = None, **labels: str) -> float:  # type: ignore[type-arg]
    """One sample's value (the family's own sample when ``sample`` is None)."""
    name = sample or family
    for s in fams[family].samples:
        if s.name == name and labels.items() <= s.labels.items():
            return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


HI = {"model": "deepseek-r1", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}


async def test_metrics_have_vllms_families_types_and_labels(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as s:
        await s.post(emulator.url + "/v1/chat/completions", json=HI)
        r = await s.get(emulator.url + "/metrics")
        text = await r.text()
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    ours = {f.name: f for f in text_string_to_metric_families(text)}
    ref = reference_families()
    # Every vLLM family the capture has, the emulator has too ...
    missing = sorted(name for name in ref if name.startswith("vllm:") and name not in ours)
    assert missing == [], f"vLLM families the emulator lacks: {missing}"
    # ... and every vllm: family it has is vLLM's, with vLLM's type and labels.
    for name, fam in ours.items():
        if not name.startswith("vllm:") or name.endswith("_created"):
            continue
        assert name in ref, f"{name} is not a vLLM family"
        mtype, labels = ref[name]
        assert fam.type == mtype, name
        for sample in fam.samples:
            if sample.name.endswith("_created"):
                continue
            assert set(sample.labels) - {"le"} == labels, sample.name
            if "engine" in labels:
                assert sample.labels["engine"] == "0"
            if "model_name" in labels:
                assert sample.labels["model_name"] == "deepseek-r1"
    assert value(ours, "vllm:generation_tokens", "vllm:generation_tokens_total") == 4
    for dcgm in (
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_CUSTOM_PROCESS_SM_UTIL",
        "DCGM_FI_DEV_FB_USED",
    ):
        fam = ours[dcgm]
        assert fam.type == "gauge" and {"gpu", "UUID", "modelName"} <= set(fam.samples[0].labels)


async def test_newer_families_carry_the_emulators_values_or_vllms(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as s:
        r = await s.post(emulator.url + "/v1/chat/completions", json=HI)
        prompt = (await r.json())["usage"]["prompt_tokens"]
        text = await (await s.get(emulator.url + "/metrics")).text()
    ours = {f.name: f for f in text_string_to_metric_families(text)}
    total = "vllm:prompt_tokens_by_source_total"
    assert value(ours, "vllm:prompt_tokens_by_source", total, source="local_compute") == prompt
    assert value(ours, "vllm:prompt_tokens_by_source", total, source="local_cache_hit") == 0
    assert value(ours, "vllm:prompt_tokens", "vllm:prompt_tokens_total") == prompt
    assert value(ours, "vllm:prefix_cache_queries", "vllm:prefix_cache_queries_total") == prompt
    assert value(ours, "vllm:prefix_cache_hits", "vllm:prefix_cache_hits_total") == 0
    # one finished request: 4 generated tokens, never preempted, the whole prompt computed
    hist = {
        "vllm:request_max_num_generation_tokens": 4,
        "vllm:request_num_preemptions": 0,
        "vllm:request_prefill_kv_computed_tokens": prompt,
    }
    for family, total_value in hist.items():
        assert value(ours, family, family + "_count") == 1, family
        assert value(ours, family, family + "_sum") == total_value, family
    # awake, as vLLM reports it: 1 on the state it is in, 0 on the others
    sleep = {
        state: value(ours, "vllm:engine_sleep_state", sleep_state=state)
        for state in ("awake", "weights_offloaded", "discard_all")
    }
    assert sleep == {"awake": 1, "weights_offloaded": 0, "discard_all": 0}
    for reason in ("max_num_queued_reqs", "max_num_queued_tokens"):
        rejected = value(
            ours, "vllm:admission_rejections", "vllm:admission_rejections_total", reason=reason
        )
        assert rejected == 0


HEADER_CASES = [
    *ERROR_CASES,
    "chat_nonstream",
    "chat_stream",
    "completions_nonstream",
    "completions_stream",
    "health_after_ready",
    "ping_get",
    "models",
    "version",
    "load",
    "metrics",
    "tokenize",
]


def ref_headers(name: str) -> dict[str, str]:
    lines = (REF / f"{name}.headers.txt").read_text().splitlines()[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.mark.parametrize("name", HEADER_CASES)
async def test_vary_origin_where_vllm_sends_it(emulator: Emulator, name: str) -> None:
    expected = ref_headers(name).get("vary")
    r = await replay(emulator, name)
    assert r.headers.get("Vary") == expected


async def test_request_preemptions_are_the_schedulers(start_emulator: StartEmulator) -> None:
    # 3760 KV tokens (0.48 of a V100 with the 7B profile) for 8 requests of 1000 tokens and
    # more each: the scheduler has to preempt, and each request's count lands in the histogram.
    emu = await start_emulator(
        "--gpu-memory-utilization", "0.48", "--max-model-len", "2048", gpu="V100-32G"
    )
    body = {**HI, "max_tokens": 1000}
    async with aiohttp.ClientSession() as s:
        statuses = await asyncio.gather(
            *(s.post(emu.url + "/v1/chat/completions", json=body) for _ in range(8))
        )
        assert [r.status for r in statuses] == [200] * 8
        text = await (await s.get(emu.url + "/metrics")).text()
    ours = {f.name: f for f in text_string_to_metric_families(text)}
    preempted = value(ours, "vllm:num_preemptions", "vllm:num_preemptions_total")
    assert preempted > 0
    family = "vllm:request_num_preemptions"
    assert value(ours, family, family + "_count") == 8
    assert value(ours, family, family + "_sum") == preempted
