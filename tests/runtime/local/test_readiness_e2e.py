"""An OpenAI server with no ``/health`` (like llama.cpp's) becomes Ready through
``tierserve up`` + ``serve kserve --gpus=0`` and takes traffic through the gateway."""

from __future__ import annotations

import json
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierserve import testing
from tierserve.testing import control_plane, wait_until

pytestmark = pytest.mark.slow

# Answers /v1/models and /v1/chat/completions; 404 everywhere else, /health included.
ENGINE = textwrap.dedent(
    """
    import http.server, json, sys

    class H(http.server.BaseHTTPRequestHandler):
        def _json(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            if self.path == "/v1/models":
                self._json({"object": "list", "data": [{"id": "tiny", "object": "model"}]})
            else:
                self.send_error(404)
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                return self.send_error(404)
            self._json({"id": "c1", "object": "chat.completion", "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": "pong"}}]})
        def log_message(self, *a):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    with control_plane(testing.Cli(tmp_path / "state")) as c:
        yield c


def _phase(cli: testing.Cli) -> str:
    items = cli.pods()
    return str(items[0]["status"]["phase"]) if items else ""


def test_server_without_health_becomes_ready_and_serves(cli: testing.Cli, tmp_path: Path) -> None:
    script = tmp_path / "engine.py"
    script.write_text(ENGINE)
    cli(
        "serve", "kserve", "--name=tiny", "--gpus=0", "--model-name=tiny",
        f"{sys.executable} {script} {{port}}",
    )  # fmt: skip
    wait_until(lambda: _phase(cli) == "Ready", timeout_s=30, message="the replica is Ready")
    gateway = cli.config()["gateway_url"]
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        gateway + "/v1/chat/completions",
        data=json.dumps(chat).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["choices"][0]["message"]["content"] == "pong"
    assert "StartTimeout" not in cli("describe", "isvc", "tiny").stdout
