"""deploy/prometheus/recording-rules.yaml: Prometheus' rule-file format, level:metric:operations
names, valid PromQL (``promql-parser``) and only rules the file defines or raw metrics."""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest
import yaml
from deployfiles import SCRAPE, dashboard, expressions, rule_expressions, rules, selectors

NAME = re.compile(r"^(?P<level>[a-z][a-z0-9_]*):(?P<metric>[a-zA-Z0-9_]+):(?P<ops>[a-z0-9_]+)$")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return rules()


def test_the_file_is_a_rule_file(doc: dict[str, Any]) -> None:
    assert set(doc) == {"groups"}
    names = [g["name"] for g in doc["groups"]]
    assert len(set(names)) == len(names)
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"record", "expr", "labels"}, rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()


def test_names_follow_level_metric_operations(doc: dict[str, Any]) -> None:
    for group in doc["groups"]:
        for rule in group["rules"]:
            found = NAME.match(rule["record"])
            assert found is not None, rule["record"]
            if re.search(r"rate|increase", found["ops"]):
                assert not found["metric"].endswith("_total"), rule["record"]  # dropped once rated
            top = promql_parser.parse(rule["expr"])
            if isinstance(top, promql_parser.AggregateExpr) and top.modifier is not None:
                # the level names the labels the aggregation keeps
                kept = sorted(top.modifier.labels)
                assert sorted(found["level"].split("_")) == kept, rule["record"]


def test_every_expression_is_valid_promql(doc: dict[str, Any]) -> None:
    for where, expr in rule_expressions(doc):
        try:
            assert selectors(expr), f"{where}: selects nothing"
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}")


def test_invalid_promql_is_caught() -> None:
    for bad in ("sum(rate(x[5m])", "rate(x)", "sum by (a (x)", "nosuchfunction(x)"):
        with pytest.raises(ValueError):
            selectors(bad)


def test_recorded_names_used_are_recorded(doc: dict[str, Any]) -> None:
    """A level:metric:operations name in a rule or the dashboard is one this file records."""
    recorded = {r["record"] for g in doc["groups"] for r in g["rules"]}
    for where, expr in rule_expressions(doc) + expressions(dashboard()):
        for s in selectors(expr):
            if NAME.match(s.metric):
                assert s.metric in recorded, f"{where}: {s.metric} is recorded nowhere"


def test_the_scrape_config_gives_the_engines_the_overview_labels() -> None:
    doc = yaml.safe_load(SCRAPE.read_text())
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {
        "tierserve-control-plane",
        "tierserve-gateway",
        "tierserve-engines",
        "tierserve-extender",
    }
    extender = jobs["tierserve-extender"]
    assert extender["scheme"] == "https"
    keep = extender["relabel_configs"][0]
    assert keep["action"] == "keep" and re.fullmatch(keep["regex"], "tierserve-extender;https")
    targets = {r.get("target_label") for r in jobs["tierserve-engines"]["relabel_configs"]}
    assert {"namespace", "service", "tier"} <= targets
    for relabel in jobs["tierserve-engines"]["relabel_configs"]:
        if "regex" in relabel:
            re.compile(relabel["regex"])
