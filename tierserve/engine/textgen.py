"""Synthetic tokens: a word tokenizer for prompts and a seeded generator for outputs.

There is no real tokenizer or model. Prompts are counted as words and punctuation
marks (each word with its leading space is one token, as BPE tokenizers mostly do
for common English); outputs are words drawn from a fixed vocabulary by a PRNG seeded
from the request's ``seed`` and prompt, so the same seed gives the same text, streamed
or not, and every emitted token is exactly one counted token.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

_TOKEN_RE = re.compile(r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]|\s+")

_WORDS = (
    "the model test this is a of and to in that it for as with on be by we can answer "
    "question think first need let me so check make sure step result value number case "
    "each then also which from here now okay right wait should would could because since "
    "if when what how why about more some any all one two three"
)
VOCAB: tuple[str, ...] = (*(" " + w for w in _WORDS.split(" ")), ".", ",", "\n\n", "?", "!")
"""Output vocabulary: words with their leading space, plus punctuation."""

EOS_TEXT = ""
"""Text of the end-of-sequence token (vLLM streams it as an empty delta)."""


def count_tokens(text: str) -> int:
    """Number of prompt tokens in ``text`` under the emulator's word tokenizer."""
    return len(_TOKEN_RE.findall(text))


def token_ids(text: str, vocab_size: int) -> list[int]:
    """Stable pseudo token ids for ``/tokenize`` (a hash of each piece)."""
    out = []
    for piece in _TOKEN_RE.findall(text):
        digest = hashlib.blake2b(piece.encode(), digest_size=4).digest()
        out.append(int.from_bytes(digest, "big") % vocab_size)
    return out


def request_rng(seed: int, prompt_key: str) -> random.Random:
    """The PRNG of one request: same seed and prompt, same sequence of tokens."""
    digest = hashlib.blake2b(f"{seed}\x00{prompt_key}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def natural_length(rng: random.Random, mean_tokens: int) -> int:
    """Where the synthetic model would stop on its own (EOS), in tokens, >= 1.

    Uniform on [mean/2, 3*mean/2]: bounded, so a request with ``max_tokens`` under
    ``mean/2`` always ends by length, as reasoning models mostly do at the seed's 512.
    """
    low = max(1, mean_tokens // 2)
    return rng.randint(low, max(low, mean_tokens + mean_tokens // 2))


def draw_tokens(rng: random.Random, count: int) -> list[str]:
    """``count`` output token texts."""
    vocab = VOCAB
    n = len(vocab)
    rand = rng.random
    return [vocab[int(rand() * n)] for _ in range(count)]


@dataclass(frozen=True)
class PlannedOutput:
    """A request's whole output, decided at admission.

    ``pieces``: text of each generated token (its count is ``completion_tokens``);
    ``finish_reason``: ``"length"`` or ``"stop"``; ``stop_reason``: the stop string
    that ended it, if any (vLLM's field).
    """

    pieces: list[str]
    finish_reason: str
    stop_reason: str | None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def plan_output(
    rng: random.Random, max_tokens: int, mean_tokens: int, stops: Sequence[str]
) -> PlannedOutput:
    """Decide what a request generates.

    Stops at EOS (the natural length, an empty-text token, ``finish_reason="stop"``),
    at ``max_tokens`` (``"length"``), or at the token completing a stop string
    (``"stop"``, text cut before the stop string, vLLM's default
    ``include_stop_str_in_output=False``).
    """
    natural = natural_length(rng, mean_tokens)
    if natural <= max_tokens:
        pieces = draw_tokens(rng, natural - 1)
        pieces.append(EOS_TEXT)
        finish = "stop"
    else:
        pieces = draw_tokens(rng, max_tokens)
        finish = "length"
    if stops:
        cut = _find_stop(pieces, stops)
        if cut is not None:
            count, keep_chars, stop = cut
            return PlannedOutput(_truncate(pieces[:count], keep_chars), "stop", stop)
    return PlannedOutput(pieces, finish, None)


def _find_stop(pieces: Sequence[str], stops: Sequence[str]) -> tuple[int, int, str] | None:
    """(tokens up to the one completing a stop string, chars to keep, the stop)."""
    text = ""
    for i, piece in enumerate(pieces):
        start = len(text)
        text += piece
        best: tuple[int, str] | None = None
        for stop in stops:
            if not stop:
                continue
            pos = text.find(stop, max(0, start - len(stop) + 1))
            if pos != -1 and (best is None or pos < best[0]):
                best = (pos, stop)
        if best is not None:
            return i + 1, best[0], best[1]
    return None


def _truncate(pieces: list[str], keep_chars: int) -> list[str]:
    out = []
    used = 0
    for piece in pieces:
        room = max(0, keep_chars - used)
        out.append(piece[:room])
        used += len(piece)
    return out
