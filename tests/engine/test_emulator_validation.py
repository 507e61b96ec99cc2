"""Client input the emulator refuses as vLLM 0.32 does: a 400 with OpenAI's error body, and
never a 500 for anything a client can send."""

from __future__ import annotations

import gzip
import json

import aiohttp
import pytest
from emukit import Emulator, StartEmulator

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
SAY = [{"role": "user", "content": "Say this is a test!"}]
ERROR_KEYS = {"message", "type", "param", "code"}


async def post_raw(
    emu: Emulator, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict]:  # type: ignore[type-arg]
    """POST bytes as they are; the status and the JSON answer ({} when not JSON)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        r = await s.post(emu.url + path, data=body, headers=sent)
        raw = await r.read()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {}
    return r.status, answer if isinstance(answer, dict) else {}


def chat(**fields: object) -> bytes:
    return json.dumps({"model": "deepseek-r1", "messages": SAY, "max_tokens": 2, **fields}).encode()


def assert_error(status: int, answer: dict, err_type: str, param: str | None) -> None:  # type: ignore[type-arg]
    assert status == 400, answer
    assert set(answer) == {"error"} and set(answer["error"]) == ERROR_KEYS
    assert answer["error"]["code"] == 400
    assert (answer["error"]["type"], answer["error"]["param"]) == (err_type, param)


async def test_a_lone_surrogate_is_a_400_at_its_field(emulator: Emulator) -> None:
    # json decodes "\ud800" to a lone surrogate, which UTF-8 cannot encode: the tokenizer's
    # and the answer's .encode() raised UnicodeEncodeError, a 500
    body = rb'{"messages":[{"role":"user","content":"\ud800"}]}'
    status, answer = await post_raw(emulator, CHAT, body)
    assert_error(status, answer, "Bad Request", "body.messages.0.content")
    assert "string_unicode" in answer["error"]["message"]
    assert "\\ud800" in answer["error"]["message"]  # echoed escaped, so the answer encodes


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (CHAT, rb'{"model":"\udc00","messages":[{"role":"user","content":"hi"}]}', "body.model"),
        (CHAT, chat(stop=["ok", "\ud800x"]), "body.stop.1"),
        (COMPLETIONS, rb'{"prompt":"a \ud83d b","max_tokens":2}', "body.prompt"),
        ("/tokenize", rb'{"prompt":"\udfff"}', "body.prompt"),
        # the UTF-8-style bytes of a surrogate, which json decodes with "surrogatepass"
        (CHAT, b'{"messages":[{"content":"\xed\xa0\x80"}]}', "body.messages.0.content"),
    ],
    ids=["model", "stop", "prompt", "tokenize", "surrogate-bytes"],
)
async def test_surrogates_anywhere_are_refused_where_they_are(
    emulator: Emulator, path: str, body: bytes, param: str
) -> None:
    status, answer = await post_raw(emulator, path, body)
    assert_error(status, answer, "Bad Request", param)


async def test_a_surrogate_pair_is_one_character_and_fine(emulator: Emulator) -> None:
    status, _ = await post_raw(
        emulator, CHAT, rb'{"messages":[{"role":"user","content":"\ud83d\ude00"}],"max_tokens":2}'
    )
    assert status == 200


@pytest.mark.parametrize("opener", [b"[", b'{"a":', b'{"messages":['])
async def test_json_nested_1000_deep_is_a_400(emulator: Emulator, opener: bytes) -> None:
    # Python's json raised RecursionError, a 500; FastAPI answers any body json.loads fails
    # on other than by a syntax error with this 400
    closer = {b"[": b"]", b'{"a":': b"}", b'{"messages":[': b"]}"}[opener]
    body = opener * 1000 + b"1" + closer * 1000
    status, answer = await post_raw(emulator, CHAT, body)
    assert_error(status, answer, "Bad Request", None)
    assert answer["error"]["message"] == "There was an error parsing the body"


async def test_brackets_inside_strings_do_not_count_as_nesting(emulator: Emulator) -> None:
    messages = [{"role": "user", "content": "[" * 3000}]
    status, _ = await post_raw(emulator, CHAT, chat(messages=messages))
    assert status == 200


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"top_logprobs": 5}, "top_logprobs", "when using `top_logprobs`, `logprobs` must be set"),
        ({"logprobs": False, "top_logprobs": 1}, "top_logprobs", "`logprobs` must be set to true"),
        ({"top_logprobs": -2, "logprobs": True}, "top_logprobs", "a positive value or -1"),
    ],
)
async def test_top_logprobs_without_logprobs_is_vllms_validation_error(
    emulator: Emulator, fields: dict, param: str, words: str  # type: ignore[type-arg]
) -> None:
    status, answer = await post_raw(emulator, CHAT, chat(**fields))
    # a VLLMValidationError from the request model's validator: pydantic's shape at
    # loc "body", the parameter the error names as param
    assert_error(status, answer, "Bad Request", param)
    assert "'loc': 'body'" in answer["error"]["message"] and words in answer["error"]["message"]


@pytest.mark.parametrize(
    ("path", "fields", "count"),
    [
        (CHAT, {"logprobs": True, "top_logprobs": 21}, 21),
        (CHAT, {"logprobs": True, "top_logprobs": -1}, 152064),  # -1: the whole vocabulary
        (COMPLETIONS, {"logprobs": 21}, 21),
    ],
)
async def test_more_than_20_logprobs_is_the_engines_400(
    emulator: Emulator, path: str, fields: dict, count: int  # type: ignore[type-arg]
) -> None:
    body = chat(**fields) if path == CHAT else json.dumps({"prompt": "hi", **fields}).encode()
    status, answer = await post_raw(emulator, path, body)
    assert_error(status, answer, "BadRequestError", "logprobs")
    assert answer["error"]["message"] == (
        f"Requested sample logprobs of {count}, which is greater than max allowed: 20 "
        f"(parameter=logprobs, value={count})"
    )


@pytest.mark.parametrize(
    "fields", [{"logprobs": True, "top_logprobs": 20}, {"logprobs": True}, {"top_logprobs": 0}]
)
async def test_logprobs_within_the_cap_are_served(emulator: Emulator, fields: dict) -> None:  # type: ignore[type-arg]
    status, _ = await post_raw(emulator, CHAT, chat(**fields))
    assert status == 200


@pytest.mark.parametrize(
    ("seed", "kind"),
    [
        (2**63, "less_than_equal"),
        (2**64 + 5, "less_than_equal"),
        (-(2**63) - 1, "greater_than_equal"),
    ],
)
async def test_a_seed_outside_int64_is_a_400(emulator: Emulator, seed: int, kind: str) -> None:
    status, answer = await post_raw(emulator, CHAT, chat(seed=seed))
    assert_error(status, answer, "Bad Request", "body.seed")
    assert f"'type': '{kind}'" in answer["error"]["message"]


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63)])
async def test_the_int64_bounds_are_valid_seeds(emulator: Emulator, seed: int) -> None:
    status, _ = await post_raw(emulator, CHAT, chat(seed=seed))
    assert status == 200


def _malformed() -> list[tuple[str, bytes, dict[str, str]]]:
    """(path, body, extra headers) a client might send, none of them valid."""
    say = json.dumps({"model": "deepseek-r1", "messages": SAY, "max_tokens": 2}).encode()
    cases: list[tuple[str, bytes, dict[str, str]]] = []
    wrong_types: list[dict[str, object]] = [
        {"messages": "hi"},
        {"messages": [1]},
        {"messages": [{"role": 1}]},
        {"messages": [{"role": "user", "content": {"a": [1, {"b": None}]}}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": [[[1]]]}]}]},
        {"model": 5},
        {"model": None, "max_tokens": "abc"},
        {"max_tokens": [1]},
        {"max_completion_tokens": {"a": 1}},
        {"temperature": {}},
        {"temperature": "1e999"},
        {"top_p": "x"},
        {"top_p": None, "n": "two"},
        {"stream": "maybe"},
        {"stream": True, "stream_options": [1]},
        {"stream": True, "stream_options": {"include_usage": "sometimes"}},
        {"stop": 5},
        {"stop": [1, None]},
        {"seed": "x"},
        {"seed": 1.5},
        {"seed": [2**70]},
        {"logprobs": "perhaps", "top_logprobs": 2},
        {"logprobs": True, "top_logprobs": "many"},
        {"logprobs": True, "top_logprobs": 1.5},
        {"max_tokens": 10**30},
        {"max_tokens": -(10**30)},
        {"n": 10**30},
        {"seed": 10**30},
        {"logprobs": True, "top_logprobs": 10**30},
        {"temperature": 10**400},
        {"top_p": -(10**400)},
        {"temperature": float("nan"), "top_p": float("inf")},
    ]
    for fields in wrong_types:
        body = json.dumps({"model": "deepseek-r1", "messages": SAY, "max_tokens": 2, **fields})
        cases.append((CHAT, body.encode(), {}))
    for prompt in ({"a": 1}, [[1, "x"]], [1.5], [[]], [None], 10**30, [10**30], ["\ud800"]):
        body = json.dumps({"prompt": prompt, "max_tokens": 2})
        cases.append((COMPLETIONS, body.encode("utf-8", "surrogatepass"), {}))
    raw_bodies = [
        b"",
        b"null",
        b"[]",
        b"1",
        b'"text"',
        b'{"messages": [',
        b"{" * 5,
        b"[" * 100_000,
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b'{"messages":[{"role":"user","content":"hi"}],"seed":' + b"9" * 5000 + b"}",
        b'{"messages":[{"role":"user","content":"hi"}],"temperature":' + b"9" * 5000 + b"}",
        b'{"messages":[{"role":"user","content":"\xff\xfe\xc3\x28"}]}',
        b"\xef\xbb\xbf" + say,  # a UTF-8 byte-order mark
        say.decode().encode("utf-16"),
        rb'{"messages":[{"role":"user","content":"\ud800"}]}',
        rb'{"messages":[{"role":"user","content":"hi"}],"stop":"\udc00"}',
        rb'{"\ud800":1,"messages":[{"role":"user","content":"hi"}]}',
        b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"x":NaN}',
    ]
    for path in (CHAT, COMPLETIONS, "/tokenize"):
        cases += [(path, body, {}) for body in raw_bodies]
    for ctype in ("text/plain", "", "application/jsonx", "multipart/form-data; boundary=x"):
        cases.append((CHAT, say, {"Content-Type": ctype}))
    for encoding in ("gzip", "deflate", "br", "zstd", "bogus"):
        cases.append((CHAT, say, {"Content-Encoding": encoding}))
    cases.append((CHAT, gzip.compress(say), {"Content-Encoding": "gzip"}))
    cases.append((CHAT, gzip.compress(say), {}))
    return cases


async def test_nothing_a_client_sends_is_a_500(start_emulator: StartEmulator) -> None:
    emu = await start_emulator("--mean-output-tokens", "4")
    seen: list[tuple[str, int]] = []
    for path, body, headers in _malformed():
        status, answer = await post_raw(emu, path, body, headers)
        seen.append((f"{path} {headers} {body[:60]!r}", status))
        if "error" in answer:  # every error answer in OpenAI's shape
            assert set(answer["error"]) == ERROR_KEYS, answer
            assert answer["error"]["code"] == status
    assert [case for case, status in seen if status >= 500] == []
    assert sum(status == 400 for _, status in seen) > len(seen) // 2
    async with aiohttp.ClientSession() as s:
        assert (await s.get(emu.url + "/health")).status == 200
        r = await s.post(emu.url + CHAT, json={"messages": SAY, "max_tokens": 3})
        assert r.status == 200 and (await r.json())["usage"]["completion_tokens"] == 3


async def test_content_encoding_is_not_decoded_as_uvicorn_does_not(emulator: Emulator) -> None:
    # Starlette reads request bodies as sent: a plain body labelled gzip is plain JSON to
    # vLLM, and aiohttp's decoder must not turn it into an error (it was a 500)
    status, _ = await post_raw(emulator, CHAT, chat(), {"Content-Encoding": "gzip"})
    assert status == 200
    status, answer = await post_raw(
        emulator, CHAT, gzip.compress(chat()), {"Content-Encoding": "gzip"}
    )
    assert_error(status, answer, "Bad Request", None)
