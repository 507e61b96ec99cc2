"""kubectl habits end to end: the real CLI against a real ``tierserve up``: ``get pods``
STATUS, ``-l``, ``-o name``, ``--watch``, ``get events``, ``describe``, ``logs -f``,
``delete pod``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tierserve import testing
from tierserve.examples import seed_text
from tierserve.testing import control_plane, interruptible, seed_service_yaml, wait_until

pytestmark = pytest.mark.slow


class Cli(testing.Cli):
    def rows(self, *args: str) -> list[list[str]]:
        """``get pods`` rows (without the header), split into columns."""
        out = self("get", "pods", *args).stdout.splitlines()
        return [line.split() for line in out[1:]]

    def background(self, *args: str) -> Background:
        return Background(
            subprocess.Popen(
                [sys.executable, "-m", "tierserve.cli.main", *args],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=interruptible,
            )
        )


class Background:
    """A long-running command (``get -w``, ``logs -f``) whose output is read as it comes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc, self.out = proc, ""
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)

    def wait_for(self, pattern: str, timeout_s: float = 60.0) -> None:
        def seen() -> bool:
            assert self.proc.stdout is not None
            self.out += (self.proc.stdout.read() or b"").decode()
            return re.search(pattern, self.out, re.M) is not None

        try:
            wait_until(seen, timeout_s, every_s=0.1)
        except AssertionError:
            status = self.proc.poll()
            stderr = (
                self.proc.stderr.read().decode() if status is not None and self.proc.stderr else ""
            )
            raise AssertionError(
                f"{pattern!r} not in:\n{self.out}\n(exit {status}) {stderr}"
            ) from None

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: the exit status and stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=20)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    with control_plane(Cli(tmp_path / "state"), "--hpa-period-s", "3600") as c:
        yield c


def test_kubectl_habits_on_the_local_runtime(cli: Cli, tmp_path: Path) -> None:
    manifests = tmp_path / "seed.yaml"
    manifests.write_text(
        seed_text("model-storage.yaml")
        + "---\n"
        + seed_text("resourcepolicy.yaml")
        + "---\n"
        + seed_service_yaml(1, "--time-scale 0.01")
    )
    watch = cli.background("get", "pods", "--watch")
    cli("apply", "-f", str(manifests))
    wait_until(
        lambda: [r[1:3] for r in cli.rows()] == [["1/1", "Running"]],
        timeout_s=60,
        message="one Running 1/1 replica",
    )
    ((name, *_),) = cli.rows()
    watch.wait_for(rf"^{name}\s+1/1\s+Running\s")

    # -l (equality, !=) and -o name
    assert cli("get", "pods", "-l", "app=isvc.deepseek-predictor", "-o", "name").stdout == (
        f"pod/{name}\n"
    )
    assert cli("get", "pods", "-l", "tierserve.io/tier!=cloud", "-o", "name").stdout == (
        f"pod/{name}\n"
    )
    none = cli("get", "pods", "-l", "tierserve.io/tier=cloud")
    assert (none.stdout, none.stderr) == ("", "No resources found in default namespace.\n")
    assert cli("get", "isvc", "-o", "name").stdout == (
        "inferenceservice.serving.tierserve.io/deepseek\n"
    )

    events = cli("get", "events").stdout.splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(re.match(rf"\d+s\s+Normal\s+Scheduled\s+pod/{name}\s", e) for e in events)
    assert any("SuccessfulCreate   inferenceservice/deepseek" in e for e in events)

    described = cli("describe", "pod", name).stdout
    assert described.startswith(f"Name:           {name}\nNamespace:      default\n")
    assert re.search(r"^Status:\s+Running$", described, re.M)
    assert re.search(r"^Events:\n  Type\s+Reason\s+Age\s+From\s+Message\n", described, re.M)
    assert re.search(r"^  Normal\s+Healthy\s+\d+s\s+tierserve\s+", described, re.M)
    assert not re.search(r"\d{10}\.\d", described), "epoch seconds in describe"
    assert "Cloud cost:" in cli("describe", "isvc", "deepseek").stdout

    logs = cli.background("logs", "-f", "--tail", "100", name)
    logs.wait_for("Starting vLLM API server")
    assert logs.interrupt() == (0, "")

    assert cli("delete", "pod", name).stdout == f"pod/{name} deleted\n"
    watch.wait_for(rf"^{name}\s+\S+\s+Terminating\s")  # a line per change
    watch.wait_for(rf"^(?!{name})deepseek-predictor-\S+\s+1/1\s+Running\s")  # its replacement
    # Ctrl-C ends it cleanly. When its first list came before the apply, kubectl's
    # "No resources found" went to stderr, then the rows came.
    code, stderr = watch.interrupt()
    assert code == 0 and stderr in ("", "No resources found in default namespace.\n")
    assert watch.out.count("NAME ") == 1  # the header once
