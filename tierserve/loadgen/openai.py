"""Reading OpenAI-style responses: SSE framing, content chunks and ``usage`` (pure)."""

from __future__ import annotations

import json
from typing import Any

DONE = "[DONE]"


class SseDecoder:
    """Splits a byte stream into the ``data:`` payloads of server-sent events, whatever the
    network chunking. ``feed`` returns the payloads completed by these bytes."""

    MAX_BUFFER = 16 * 1024 * 1024  # one event larger than this is not an LLM token chunk

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        if len(self._buffer) > self.MAX_BUFFER:
            raise ValueError(f"an SSE line longer than {self.MAX_BUFFER} bytes")
        *lines, self._buffer = self._buffer.split(b"\n")
        out = []
        for raw in lines:
            line = raw.rstrip(b"\r")
            if line.startswith(b"data:"):
                out.append(line[5:].strip().decode("utf-8", errors="replace"))
        return out

    def close(self) -> list[str]:
        """A last event not followed by a newline."""
        rest, self._buffer = self._buffer, b""
        return self.feed(rest + b"\n") if rest.strip() else []


def parse_json(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def chunk_content(event: Any) -> str:
    """Generated text in one streamed chunk: ``delta.content`` (chat, or its reasoning
    part) or ``text`` (completions); ``""`` for role, usage and finish-only chunks."""
    if not isinstance(event, dict):
        return ""
    choices = event.get("choices")
    if not isinstance(choices, list):
        return ""
    text = ""
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            for key in ("content", "reasoning_content", "reasoning"):
                value = delta.get(key)
                if isinstance(value, str):
                    text += value
        value = choice.get("text")
        if isinstance(value, str):
            text += value
    return text


def usage_of(doc: Any) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` of a response or a usage chunk, if present."""
    if not isinstance(doc, dict):
        return None
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None
