"""The OpenAI API of the emulator, through the real ``openai`` client and raw HTTP."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from emukit import Emulator, StartEmulator, sse_events

SAY = [{"role": "user", "content": "Say this is a test!"}]


def client(emu: Emulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{emu.url}/v1", api_key="unused", max_retries=0)


async def test_openai_client_lists_models(emulator: Emulator) -> None:
    async with client(emulator) as c:
        models = await c.models.list()
    assert [m.id for m in models.data] == ["deepseek-r1"]
    assert models.data[0].owned_by == "vllm"


async def test_openai_client_chats_with_the_seed_request(emulator: Emulator) -> None:
    async with client(emulator) as c:
        r = await c.chat.completions.create(
            model="deepseek-r1", messages=SAY, max_tokens=32, temperature=0.7, top_p=0.9, seed=10
        )
    assert r.id.startswith("chatcmpl-") and r.model == "deepseek-r1"
    assert r.object == "chat.completion" and r.created > 0
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "length"
    # the seed's real response: "prompt_tokens":11 for this message on this model
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (11, 32, 43)


async def test_openai_client_streams_the_same_text_as_non_streaming(emulator: Emulator) -> None:
    async with client(emulator) as c:
        full = await c.chat.completions.create(
            model="deepseek-r1", messages=SAY, max_tokens=24, seed=10
        )
        stream = await c.chat.completions.create(
            model="deepseek-r1",
            messages=SAY,
            max_tokens=24,
            seed=10,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    roles = [ch.choices[0].delta.role for ch in chunks if ch.choices]
    assert roles[0] == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full.choices[0].message.content
    content_chunks = [ch for ch in chunks if ch.choices and ch.choices[0].delta.role is None]
    assert len(content_chunks) == 24  # one chunk per token: the token count is exact
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 24
    assert content_chunks[-1].choices[0].finish_reason == "length"


async def test_same_seed_same_text_other_seed_other_text(emulator: Emulator) -> None:
    async with client(emulator) as c:
        texts = [
            (
                await c.chat.completions.create(
                    model="deepseek-r1", messages=SAY, max_tokens=16, seed=s
                )
            )
            .choices[0]
            .message.content
            for s in (10, 10, 11)
        ]
    assert texts[0] == texts[1] != texts[2]


async def test_completions_non_streaming_and_streaming(emulator: Emulator) -> None:
    async with client(emulator) as c:
        r = await c.completions.create(
            model="deepseek-r1", prompt="Say this is a test!", max_tokens=8, seed=3
        )
        assert r.object == "text_completion" and r.id.startswith("cmpl-")
        assert r.usage is not None and r.usage.prompt_tokens == 6  # Say/ this/ is/ a/ test/ !
        assert r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length"
        stream = await c.completions.create(
            model="deepseek-r1", prompt="Say this is a test!", max_tokens=8, seed=3, stream=True
        )
        pieces = [ch.choices[0].text async for ch in stream if ch.choices]
    assert len(pieces) == 8 and "".join(pieces) == r.choices[0].text


async def test_default_completion_length_is_sixteen_tokens(emulator: Emulator) -> None:
    async with client(emulator) as c:
        r = await c.completions.create(model="deepseek-r1", prompt="hi")
    assert r.usage is not None and r.usage.completion_tokens == 16


async def test_stop_string_ends_with_finish_reason_stop(emulator: Emulator) -> None:
    async with client(emulator) as c:
        first = await c.chat.completions.create(
            model="deepseek-r1", messages=SAY, max_tokens=40, seed=5
        )
        text = first.choices[0].message.content or ""
        word = text.split()[3]
        r = await c.chat.completions.create(
            model="deepseek-r1", messages=SAY, max_tokens=40, seed=5, stop=[f" {word}"]
        )
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[: text.index(f" {word}")]
    assert r.usage is not None and r.usage.completion_tokens < 40


async def test_natural_end_is_an_empty_eos_chunk_with_stop(start_emulator: StartEmulator) -> None:
    emu = await start_emulator("--mean-output-tokens", "4")
    async with aiohttp.ClientSession() as s:
        r = await s.post(
            f"{emu.url}/v1/chat/completions",
            json={
                "model": "deepseek-r1",
                "messages": SAY,
                "max_tokens": 100,
                "seed": 1,
                "stream": True,
            },
        )
        events = sse_events(await r.text())
    import json

    last = json.loads(events[-2])
    assert last["choices"][0]["delta"] == {"content": ""}
    assert last["choices"][0]["finish_reason"] == "stop"
    assert "system_fingerprint" in last


async def test_many_concurrent_streams_all_complete(emulator: Emulator) -> None:
    import asyncio

    async with client(emulator) as c:

        async def one(i: int) -> int:
            stream = await c.chat.completions.create(
                model="deepseek-r1", messages=SAY, max_tokens=20, seed=i, stream=True
            )
            return len([ch async for ch in stream if ch.choices and ch.choices[0].delta.content])

        counts = await asyncio.gather(*(one(i) for i in range(40)))
    assert counts == [20] * 40  # every token is a non-empty word or mark
    assert emulator.state.engine.num_running == 0


async def test_wrong_model_is_404_through_the_client(emulator: Emulator) -> None:
    async with client(emulator) as c:
        with pytest.raises(openai.NotFoundError) as info:
            await c.chat.completions.create(model="gpt-4o", messages=SAY)
    assert info.value.status_code == 404


async def test_health_version_load_ping(emulator: Emulator) -> None:
    async with aiohttp.ClientSession() as s:
        for path, status in (("/health", 200), ("/ping", 200), ("/version", 200), ("/load", 200)):
            r = await s.get(emulator.url + path)
            assert r.status == status, path
        assert await (await s.get(emulator.url + "/version")).json() == {"version": "0.32.0"}
        tok = await (
            await s.post(
                emulator.url + "/tokenize",
                json={"model": "deepseek-r1", "prompt": "Say this is a test!"},
            )
        ).json()
    assert tok["count"] == 6 and len(tok["tokens"]) == 6


async def _gauge(session: aiohttp.ClientSession, url: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = await (await session.get(f"{url}/metrics")).text()
    fam = next(f for f in text_string_to_metric_families(text) if f.name == name)
    return float(fam.samples[0].value)


async def test_sm_util_is_near_100_with_one_request_in_flight(
    start_emulator: StartEmulator,
) -> None:
    import asyncio

    # window 1 emulated s = 10 ms wall at time scale 0.01; the request lasts ~23 emulated s
    emu = await start_emulator("--dcgm-window-s", "1", gpu="V100-32G", time_scale="0.01")
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(
            s.post(
                f"{emu.url}/v1/chat/completions",
                json={"model": "deepseek-r1", "messages": SAY, "max_tokens": 1000},
            )
        )
        await asyncio.sleep(0.08)
        busy = await _gauge(s, emu.url, "DCGM_CUSTOM_PROCESS_SM_UTIL")
        running = await _gauge(s, emu.url, "vllm:num_requests_running")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.05)
        idle = await _gauge(s, emu.url, "DCGM_FI_DEV_GPU_UTIL")
    assert running == 1
    assert busy > 95.0
    assert idle < 5.0
