"""Response bodies and SSE events, field for field as vLLM 0.32.0 writes them.

Streaming is the hot path (one event per token per stream), so each stream renders
its constant JSON prefix and suffix once and a token costs one ``json.dumps`` of its
text and a bytes concatenation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

VLLM_VERSION = "0.32.0"
"""The vLLM version whose API the emulator reproduces (reported by ``/version``)."""

SYSTEM_FINGERPRINT = f"vllm-{VLLM_VERSION}-{hashlib.sha1(b'tierserve-emulator').hexdigest()[:8]}"
DONE_EVENT = b"data: [DONE]\n\n"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def new_id(kind: str) -> str:
    """``chatcmpl-<16 hex>`` or ``cmpl-<16 hex>`` as vLLM makes them."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + secrets.token_hex(8)


def usage(
    prompt: int, completion: int, *, details: bool = True, continuous: bool = False
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "completion_tokens": completion,
    }
    if continuous:
        out["completion_tokens_details"] = None
    elif details:
        out["prompt_tokens_details"] = None
        out["completion_tokens_details"] = None
    return out


def chat_body(
    rid: str,
    created: int,
    model: str,
    text: str,
    finish: str,
    stop_reason: str | None,
    prompt: int,
    completion: int,
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "reasoning": None,
                },
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "token_ids": None,
                "routed_experts": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "usage": usage(prompt, completion),
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "prompt_text": None,
        "kv_transfer_params": None,
        "ec_transfer_params": None,
        "metrics": None,
    }


def completion_body(
    rid: str,
    created: int,
    model: str,
    text: str,
    finish: str,
    stop_reason: str | None,
    prompt: int,
    completion: int,
) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "token_ids": None,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
                "routed_experts": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "usage": usage(prompt, completion),
        "kv_transfer_params": None,
        "ec_transfer_params": None,
        "metrics": None,
    }


@dataclass
class StreamRenderer:
    """Renders the SSE events of one streamed response.

    Chat: a role chunk first, one chunk per token (the last one carries
    ``finish_reason`` and ``stop_reason``), then with ``include_usage`` a usage chunk
    with ``"choices": []``; ``system_fingerprint`` rides on the last event before
    ``[DONE]``. Completions: the same without the role chunk.
    """

    kind: str
    rid: str
    created: int
    model: str
    prompt_tokens: int
    include_usage: bool
    continuous_usage: bool

    def __post_init__(self) -> None:
        head = (
            f'data: {{"id":"{self.rid}","object":"{self._object}","created":{self.created},'
            f'"model":{_dumps(self.model)},"choices":[{{"index":0,'
        )
        if self.kind == "chat":
            self._prefix = (head + '"delta":{"content":').encode()
            self._suffix = b'},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'
        else:
            self._prefix = (head + '"text":').encode()
            self._suffix = (
                b',"logprobs":null,"finish_reason":null,"stop_reason":null,'
                b'"prompt_token_ids":null,"token_ids":null}]}\n\n'
            )

    @property
    def _object(self) -> str:
        return "chat.completion.chunk" if self.kind == "chat" else "text_completion"

    def _event(self, choices: list[dict[str, Any]], extra: dict[str, Any]) -> bytes:
        obj: dict[str, Any] = {
            "id": self.rid,
            "object": self._object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        obj.update(extra)
        return b"data: " + _dumps(obj).encode() + b"\n\n"

    def _usage(self, completion: int) -> dict[str, Any]:
        return {"usage": usage(self.prompt_tokens, completion, continuous=True)}

    def role_event(self) -> bytes | None:
        if self.kind != "chat":
            return None
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        extra: dict[str, Any] = self._usage(0) if self.continuous_usage else {}
        extra.update({"prompt_token_ids": None, "prompt_text": None})
        return self._event([choice], extra)

    def token_event(self, piece: str, index: int) -> bytes:
        """A middle token (``index`` is 1-based, for continuous usage)."""
        if self.continuous_usage:
            return self._event([self._choice(piece, None, None, last=False)], self._usage(index))
        return self._prefix + _dumps(piece).encode() + self._suffix

    def _choice(
        self, piece: str, finish: str | None, stop_reason: str | None, last: bool
    ) -> dict[str, Any]:
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "delta": {"content": piece},
                "logprobs": None,
                "finish_reason": finish,
            }
            if last:
                choice["stop_reason"] = stop_reason
            choice["token_ids"] = None
            return choice
        return {
            "index": 0,
            "text": piece,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": stop_reason,
            "prompt_token_ids": None,
            "token_ids": None,
        }

    def final_events(
        self, piece: str, index: int, finish: str, stop_reason: str | None
    ) -> list[bytes]:
        """The last token's event, the usage event if asked, and ``[DONE]``."""
        extra: dict[str, Any] = self._usage(index) if self.continuous_usage else {}
        if not self.include_usage:
            extra["system_fingerprint"] = SYSTEM_FINGERPRINT
        out = [self._event([self._choice(piece, finish, stop_reason, last=True)], extra)]
        if self.include_usage:
            out.append(
                self._event(
                    [],
                    {
                        "usage": usage(self.prompt_tokens, index, details=False),
                        "system_fingerprint": SYSTEM_FINGERPRINT,
                    },
                )
            )
        out.append(DONE_EVENT)
        return out


def models_body(
    names: tuple[str, ...], root: str, max_model_len: int, created: int
) -> dict[str, Any]:
    data = []
    for name in names:
        data.append(
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": root,
                "parent": None,
                "max_model_len": max_model_len,
                "permission": [
                    {
                        "id": f"modelperm-{secrets.token_hex(8)}",
                        "object": "model_permission",
                        "created": created,
                        "allow_create_engine": False,
                        "allow_sampling": True,
                        "allow_logprobs": True,
                        "allow_search_indices": False,
                        "allow_view": True,
                        "allow_fine_tuning": False,
                        "organization": "*",
                        "group": None,
                        "is_blocking": False,
                    }
                ],
            }
        )
    return {"object": "list", "data": data}


def dumps_bytes(obj: Any) -> bytes:
    return _dumps(obj).encode()
