"""Helpers shared by the bench tests (a uniquely named module: conftest.py is not
importable by name when several test folders have one)."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass

from tierserve.loadgen.main import main

SEED_BODY = (
    '{"model": "deepseek-r1", "messages": [{"role": "user", "content": "Say this is a test!"}], '
    '"max_tokens": 512, "temperature": 0.7, "top_p": 0.9, "seed": 10}'
)
"""The seed's hey -d body, byte for byte."""


def chat_body(max_tokens: int) -> str:
    return SEED_BODY.replace('"max_tokens": 512', f'"max_tokens": {max_tokens}')


@dataclass
class Run:
    code: int
    out: str
    err: str


def bench(*argv: str) -> Run:
    """``tierserve bench ARGV`` in-process, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


@dataclass
class EmulatorProcess:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_url(self) -> str:
        return f"{self.base}/v1/chat/completions"
