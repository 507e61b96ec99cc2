"""Every metric the Grafana dashboard and the recording rules query is one tierserve exports.

The names come from a real running control plane (``tierserve up`` with the emulator
engine, the seed's service scaled onto the cloud, requests through its gateway): its
API's ``/metrics``, its gateway's and a replica engine's, as Prometheus would scrape them,
not from a list kept by hand. A recorded ``level:metric:operations`` name must be one the
rules file records; every other name must be exported, and the labels a query matches on
must be labels the series carry (the engines' from the scrape config's relabelling).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployfiles import ENGINE_LABELS, dashboard, expressions, rule_expressions, rules, selectors
from prometheus_client.parser import text_string_to_metric_families

from tierserve import testing
from tierserve.examples import seed_text
from tierserve.testing import control_plane, seed_service_yaml, wait_until

pytestmark = pytest.mark.slow
ENGINE_FLAGS = "--time-scale 0.01"
HOST = "deepseek-default.example.com"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def get(url: str, token: str | None = None, data: bytes | None = None) -> str:
    request = urllib.request.Request(url, data=data)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Host", HOST)
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


UNSEEN = "?"
"""Among a name's labels: the family has no sample yet, so its labels cannot be checked."""


def exported(text: str) -> dict[str, set[str]]:
    """Series name -> label names, for every family in a /metrics text; a family with no
    sample yet (a counter nobody incremented) counts under the names it would have, its
    labels unknown (``UNSEEN``)."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        labels: set[str] = set() if family.samples else {UNSEEN}
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
            labels.update(k for k in sample.labels if k not in ("le", "quantile"))
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.setdefault(family.name + suffix, set()).update(labels)
        names.setdefault(family.name, set()).update(labels)
    return names


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, set[str]]]]:
    root = tmp_path_factory.mktemp("metrics")
    with control_plane(testing.Cli(root / "state")) as cli:
        seed = root / "seed.yaml"
        seed.write_text(
            seed_text("model-storage.yaml") + "---\n" + seed_text("resourcepolicy.yaml")
        )
        service = root / "svc.yaml"
        service.write_text(seed_service_yaml(3, ENGINE_FLAGS))  # idc001 is full: two on the cloud
        cli("apply", "-f", str(seed))
        cli("apply", "-f", str(service))
        config = cli.config()

        def pods() -> list[dict[str, object]]:
            items = json.loads(get(config["api_url"] + "/api/v1/pods", config["token"]))["items"]
            return list(items)

        wait_until(
            lambda: sum(p["status"]["phase"] == "Ready" for p in pods()) == 3,  # type: ignore[index]
            timeout_s=60,
            message="3 replicas Ready (1 IDC, 2 cloud)",
        )
        body = json.dumps(
            {
                "model": "deepseek-r1",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8,
                "stream": True,
            }
        ).encode()
        for _ in range(3):
            get(config["gateway_url"] + "/v1/chat/completions", data=body)
        port = pods()[0]["status"]["port"]  # type: ignore[index]
        yield {
            "control plane": exported(get(config["api_url"] + "/metrics", config["token"])),
            "gateway": exported(get(config["gateway_url"] + "/metrics")),
            "engine": exported(get(f"http://127.0.0.1:{port}/metrics")),
        }


def queried() -> list[tuple[str, str]]:
    return expressions(dashboard()) + rule_expressions(rules())


def test_every_metric_queried_is_exported(scraped: dict[str, dict[str, set[str]]]) -> None:
    recorded = {r["record"] for g in rules()["groups"] for r in g["rules"]}
    everywhere: dict[str, set[str]] = {}
    for names in scraped.values():
        for name, labels in names.items():
            everywhere.setdefault(name, set()).update(labels)
    missing = []
    for where, expr in queried():
        for s in selectors(expr):
            if s.metric in recorded:
                continue
            if s.metric not in everywhere:
                missing.append(f"{where}: {s.metric}")
                continue
            carried = everywhere[s.metric] | {"le"}
            if UNSEEN in carried:
                continue  # no sample yet: its labels are in docs/metrics.md, not checkable here
            if s.metric in scraped["engine"]:
                carried |= ENGINE_LABELS  # added by the engines' scrape job
            assert s.labels <= carried, f"{where}: {s.metric} has no label {s.labels - carried}"
    assert missing == []


def test_the_overview_families_are_there(scraped: dict[str, dict[str, set[str]]]) -> None:
    """The control plane's and the gateway's families carry the overview's labels."""
    control, gateway = scraped["control plane"], scraped["gateway"]
    assert {"namespace", "service", "tier", "phase"} <= control["tierserve_replicas"]
    assert {"namespace", "service", "tier"} <= control["tierserve_gpu_seconds_total"]
    assert {"namespace", "service"} <= control["tierserve_cloud_cost_total"]
    assert "tierserve_budget_blocked_total" in control
    assert {"namespace", "service", "tier"} <= gateway["tierserve_gateway_requests_total"]
    assert "le" in gateway["tierserve_gateway_time_to_first_byte_seconds_bucket"]
    assert "vllm:request_time_per_output_token_seconds_bucket" in scraped["engine"]
    assert "vllm:generation_tokens_total" in scraped["engine"]


def test_the_ttft_histogram_has_a_bucket_at_the_default_slo() -> None:
    """Attainment at TTFT <= 2 s is read from the bucket at 2 s: it must exist."""
    from tierserve.gateway.metrics import LATENCY_BUCKETS

    assert 2.0 in LATENCY_BUCKETS


def test_a_missing_metric_would_be_caught(scraped: dict[str, dict[str, set[str]]]) -> None:
    names = set().union(*scraped.values())
    (s,) = selectors("sum(rate(tierserve_no_such_metric_total[5m]))")
    assert s.metric not in names
    assert Path(__file__).name.startswith("test_")
