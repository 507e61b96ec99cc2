"""``tierserve logs -f`` against the API's contract for ``GET /api/v1/logs/{ns}/{name}``
(``?tail=N`` or ``?offset=BYTES``, answered with ``X-Log-Offset``: where to continue; 404
once the replica is gone): the real CLI, a small fake of that endpoint on 127.0.0.1 whose
log the test grows byte by byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tierserve.runtime.local.config import ENV_STATE_DIR, ClientConfig
from tierserve.testing import interruptible, wait_until

pytestmark = pytest.mark.slow  # the CLI in a subprocess, polling every 0.5 s
NAME = "deepseek-predictor-abc12"
GONE = f'pods "{NAME}" not found in namespace default'


class FakeApi:
    def __init__(self) -> None:
        self.log = b""  # what the replica wrote so far ("" also before it started)
        self.alive = True
        self.queries: list[dict[str, int]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if self.headers.get("Authorization") != "Bearer t0ken":
                    return self.answer(401, b"{}")
                if url.path != f"/api/v1/logs/default/{NAME}" or not api.alive:
                    return self.answer(404, json.dumps({"error": {"message": GONE}}).encode())
                query = {k: int(v[0]) for k, v in parse_qs(url.query).items()}
                api.queries.append(query)
                if "tail" in query:
                    lines = api.log.splitlines(keepends=True)
                    body = b"".join(lines[-query["tail"] :] if query["tail"] else [])
                else:
                    body = api.log[query.get("offset", 0) :]
                self.answer(200, body, {"X-Log-Offset": str(len(api.log))})

            def answer(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FakeApi]:
    fake = FakeApi()
    ClientConfig(api_url=fake.url, gateway_url="", token="t0ken", pid=os.getpid()).save(tmp_path)
    yield fake
    fake.server.shutdown()


def follow(state: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tierserve.cli.main", "logs", "-f", NAME, *args],
        env={**os.environ, ENV_STATE_DIR: str(state)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=interruptible,
    )


def read_until(proc: subprocess.Popen[bytes], wanted: bytes, out: bytearray) -> None:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)

    def more() -> bool:
        chunk = proc.stdout.read() if proc.stdout else None
        out.extend(chunk or b"")
        return wanted in out

    wait_until(more, timeout_s=20.0, message=f"{wanted!r} in logs -f output", every_s=0.05)


def test_follow_prints_the_tail_then_each_new_byte_once_until_ctrl_c(
    api: FakeApi, tmp_path: Path
) -> None:
    api.log = b"one\ntwo\nthree\n"
    proc = follow(tmp_path, "--tail", "2")
    out = bytearray()
    read_until(proc, b"three\n", out)
    # A character split between two answers prints whole.
    api.log += "four: déjà".encode()[:-1]
    time.sleep(0.8)
    api.log += "déjà".encode()[-1:] + b"\n"
    read_until(proc, "déjà\n".encode(), out)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert proc.stderr is not None and proc.stderr.read() == b""
    assert bytes(out) == "two\nthree\nfour: déjà\n".encode()
    # The tail first, then on from where the API said: never from 0 again.
    assert api.queries[0] == {"tail": 2}
    offsets = [q["offset"] for q in api.queries[1:]]
    assert offsets[0] == len(b"one\ntwo\nthree\n") and offsets == sorted(offsets)


def test_follow_waits_for_a_log_and_ends_by_itself_when_the_replica_is_gone(
    api: FakeApi, tmp_path: Path
) -> None:
    proc = follow(tmp_path)  # placed, not started: no log yet
    time.sleep(1.0)
    assert proc.poll() is None
    api.log = b"serving\n"
    out = bytearray()
    read_until(proc, b"serving\n", out)
    api.log += b"shutting down\n"
    read_until(proc, b"shutting down\n", out)
    api.alive = False
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None
    out.extend(proc.stdout.read() or b"")
    assert bytes(out) == b"serving\nshutting down\n"


def test_follow_of_an_unknown_replica_fails(api: FakeApi, tmp_path: Path) -> None:
    api.alive = False
    proc = follow(tmp_path)
    assert proc.wait(timeout=20) == 1
    assert proc.stderr is not None and proc.stderr.read().decode() == f"error: {GONE}\n"
