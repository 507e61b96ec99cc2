"""The files in deploy/ and what their queries select, for the deploy tests.

Grafana's expressions carry dashboard variables; :func:`promql` substitutes a value for
each (the defaults a user sees) so the text is plain PromQL for the parser
(``promql-parser``, the Rust parser of GreptimeDB, compatible with Prometheus 2.45).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "tierserve-overview.json"
RULES = DEPLOY / "prometheus" / "recording-rules.yaml"
SCRAPE = DEPLOY / "prometheus" / "scrape-configs.yaml"
SCHEMA = Path(__file__).with_name("grafana-dashboard.schema.json")

BUILTINS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
"""Grafana's own variables, as a 5-minute rate would see them."""
ENGINE_LABELS = frozenset({"namespace", "service", "tier", "pod", "node", "job", "instance"})
"""Labels the engines' scrape job adds (scrape-configs.yaml) or Prometheus adds to a target."""
_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.DOTALL)


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return data


def variables(dash: dict[str, Any]) -> dict[str, str]:
    """Each templating variable's value as the dashboard opens (All: ``.*``)."""
    values: dict[str, str] = {}
    for var in dash["templating"]["list"]:
        current = var.get("current") or {}
        value = current.get("value")
        if var.get("includeAll") or value in (None, "", "$__all"):
            value = var.get("allValue") or ".*"
        values[var["name"]] = str(value[0] if isinstance(value, list) else value)
    return values


def used_variables(text: str) -> set[str]:
    return {a or b for a, b in _VAR.findall(text)}


def promql(text: str, values: dict[str, str]) -> str:
    """``text`` with every ``$var``/``${var}`` replaced by its value."""

    def value(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return BUILTINS.get(name) or values[name]

    return _VAR.sub(value, text)


def expressions(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and query variable of the dashboard."""
    values = variables(dash)
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dash["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        found = _LABEL_VALUES.match(query)
        assert found is not None, f"variable {var['name']}: {query!r} is not label_values(...)"
        out.append((f"variable {var['name']}", found.group(1)))
    return [(where, promql(expr, values)) for where, expr in out]


def rule_expressions(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"rule {rule['record']} (group {group['name']})", rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


@dataclass(frozen=True)
class Selector:
    metric: str
    labels: frozenset[str]
    """Label names the selector matches on."""


def selectors(expr: str) -> list[Selector]:
    """Every series selector in ``expr`` (raises ValueError when it is not valid PromQL)."""
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names = frozenset(m.name for m in node.matchers.matchers if m.name != "__name__")
            found.append(Selector(node.name or "", names))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found
