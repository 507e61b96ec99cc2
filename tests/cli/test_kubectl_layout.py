"""kubectl habits of the local runtime, pure: pod STATUS words, label selectors, ``-o name``,
``get events`` and ``describe`` layouts; and typer's usage errors through the real CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

from tierserve.cli import kubectl_layout
from tierserve.cli.common import parse_selector, selected
from tierserve.cli.output import object_name
from tierserve.cli.tables import age, describe_events, describe_lines, event_age
from tierserve.errors import ValidationError

NOW = 1_700_000_000.0


def pod(phase: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "tierserve.io/v1alpha1",
        "kind": "Replica",
        "metadata": {
            "name": f"deepseek-predictor-abc-{phase.lower()}",
            "namespace": "default",
            "labels": {"app": "isvc.deepseek-predictor", "tierserve.io/tier": "idc"},
        },
        "spec": {"service": "deepseek", "requests": {"nvidia.com/gpu": "1", "cpu": "4"}},
        "status": {"phase": phase, "createdS": NOW - 65, **status},
    }


@pytest.mark.parametrize(
    ("phase", "status", "ready"),
    [
        ("Pending", "Pending", "0/1"),
        ("Provisioning", "ContainerCreating", "0/1"),  # a virtual node's cold start
        ("Starting", "Running", "0/1"),  # the engine loads
        ("Ready", "Running", "1/1"),
        ("Terminating", "Terminating", "0/1"),
        ("Failed", "Error", "0/1"),
    ],
)
def test_get_pods_status_is_kubectls(phase: str, status: str, ready: str) -> None:
    headers, (row,) = kubectl_layout.TABLES["pods"]([pod(phase)], False, NOW)
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row[1:] == [ready, status, "0", "65s"]


def test_wide_keeps_tierserves_phase() -> None:
    headers, (row,) = kubectl_layout.TABLES["pods"]([pod("Ready", nodeName="idc001")], True, NOW)
    assert dict(zip(headers, row, strict=True))["PHASE"] == "Ready"
    assert dict(zip(headers, row, strict=True))["STATUS"] == "Running"


LABELS = {"app": "isvc.deepseek-predictor", "tierserve.io/tier": "cloud"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app=isvc.deepseek-predictor", True),
        ("app==isvc.deepseek-predictor", True),
        ("tierserve.io/tier=idc", False),
        ("tierserve.io/tier!=idc", True),
        ("team!=ml", True),  # kubectl: an object without the key matches !=
        ("app=isvc.deepseek-predictor,tierserve.io/tier=cloud", True),
        ("app=isvc.deepseek-predictor, tierserve.io/tier=idc", False),  # all must hold
        ("app", True),
        ("!app", False),
        ("!team", True),
    ],
)
def test_equality_selectors(selector: str, matches: bool) -> None:
    assert selected(LABELS, parse_selector(selector)) is matches


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("tier in (idc,cloud)", "set-based terms (in, notin) are not supported"),
        ("=idc", "'=idc' is not a selector term"),
        ("bad key=1", "is not a selector term"),
        ("app=a b", "is not a selector term"),
        ("-app=x", "'-app' is not a valid label key"),
    ],
)
def test_bad_selectors_name_the_flag(selector: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_selector(selector)
    assert str(info.value).startswith("-l: ") and message in str(info.value)


def test_names_as_kubectl_prints_them() -> None:
    assert object_name("Replica", "tierserve.io/v1alpha1", "x") == "pod/x"
    assert (
        object_name("InferenceService", "serving.tierserve.io/v1alpha1", "deepseek")
        == "inferenceservice.serving.tierserve.io/deepseek"
    )
    assert object_name("Node", "v1", "idc001") == "node/idc001"


def event(reason: str, last_ago: float, count: int = 1, first_ago: float | None = None) -> Any:
    return {
        "kind": "Replica",
        "namespace": "default",
        "name": "deepseek-predictor-abc",
        "type": "Normal",
        "reason": reason,
        "message": f"{reason} message",
        "count": count,
        "firstTimestamp": NOW - (first_ago if first_ago is not None else last_ago),
        "lastTimestamp": NOW - last_ago,
    }


def test_human_ages() -> None:
    assert [age(s) for s in (12, 119, 184, 600, 3 * 3600 + 120)] == [
        "12s", "119s", "3m4s", "10m", "3h2m",
    ]  # fmt: skip
    assert event_age(event("BackOff", 184, count=4, first_ago=600), NOW) == "3m4s (x4 over 10m)"


def test_get_events_columns() -> None:
    headers, rows = kubectl_layout.TABLES["events"]([event("Scheduled", 12)], False, NOW)
    assert headers == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert rows == [
        ["12s", "Normal", "Scheduled", "pod/deepseek-predictor-abc", "Scheduled message"]
    ]


def test_describe_aligns_keys_and_lists_events_oldest_first() -> None:
    events = describe_events([event("Healthy", 12), event("Scheduled", 184)], NOW)
    lines = describe_lines(
        [
            ("Name:", "x"),
            ("Service Account:", "y"),
            ("", "second"),
            "Requests:",
            ("  cpu:", "4"),
            *events,
        ]
    )
    assert lines == [
        "Name:             x",
        "Service Account:  y",
        "                  second",
        "Requests:",
        "  cpu:  4",
        "Events:",
        "  Type    Reason     Age   From       Message",
        "  ----    ------     ----  ----       -------",
        "  Normal  Scheduled  3m4s  tierserve  Scheduled message",
        "  Normal  Healthy    12s   tierserve  Healthy message",
    ]


def test_describe_pod_has_no_raw_yaml_or_epoch_seconds() -> None:
    ready = pod("Ready", nodeName="idc001", startedS=NOW - 60, readyS=NOW - 50, port=41000)
    nodes = {"idc001": {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}}
    lines = describe_lines(kubectl_layout.describe_pod(ready, nodes))
    text = "\n".join(lines)
    assert lines[0].startswith("Name:") and lines[1].split() == ["Namespace:", "default"]
    for key in ("Node:", "Start Time:", "Labels:", "Annotations:", "Status:", "Requests:"):
        assert any(line.startswith(key) for line in lines), key
    assert "Node:           idc001/127.0.0.1" in text
    assert re.search(r"Status:\s+Running$", text, re.M)
    assert "spec:" not in text and "createdS" not in text
    assert not re.search(r"\d{10}\.\d", text), "epoch seconds printed"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["serve", "kserve", "--name", "x", "--gpus=abc", "cmd"],
            "error: --gpus: 'abc' is not a valid integer",
        ),
        (["up", "--tick-s", "0"], "error: --tick-s: 0 is out of range; expected a value >= 0.01"),
        (["get"], "error: RESOURCE: is required"),
        (["get", "pods", "--bogus"], "error: --bogus: no such flag"),
        (
            ["serve", "kserve", "--gpu", "1"],
            "error: --gpu: no such flag; did you mean --cpu or --gpus?",
        ),
        (["nosuch"], "error: no such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_error_line_and_exit_1(args: list[str], line: str) -> None:
    result = run(*args)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n")
