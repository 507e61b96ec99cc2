"""deploy/grafana/tierserve-overview.json: a valid Grafana dashboard drawing the overview.

Validated against tests/deploy/grafana-dashboard.schema.json, a JSON Schema written from
Grafana's documented dashboard JSON model (no maintained PyPI package ships Grafana's
dashboard schema as a validator), with the ``jsonschema`` package; then what a schema
cannot say: panels do not overlap, ids and refIds are unique, every datasource is the one
``datasource`` variable, every variable used is defined, every query is valid PromQL.
"""

from __future__ import annotations

import json
from itertools import combinations
from typing import Any

import pytest
from deployfiles import BUILTINS, SCHEMA, dashboard, expressions, selectors, used_variables
from jsonschema import Draft202012Validator

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
OVERVIEW = (
    "Replicas per tier",
    "Request rate per tier",
    "TTFT p50 / p90 against the SLO",
    "TPOT p50 / p90 against the SLO",
    "SLO attainment",
    "Cloud cost per hour and cumulative",
    "$ per 1M output tokens per tier",
    "Budget blocks",
)
"""The charts of the dashboard's overview (and of simulate --html), by title."""


@pytest.fixture(scope="module")
def dash() -> dict[str, Any]:
    return dashboard()


def test_the_schema_is_valid_json_schema() -> None:
    Draft202012Validator.check_schema(json.loads(SCHEMA.read_text()))


def test_the_dashboard_validates_against_grafanas_model(dash: dict[str, Any]) -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(dash)]
    assert errors == []


def test_the_schema_refuses_what_grafana_would(dash: dict[str, Any]) -> None:
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(dash))
    del broken["panels"][0]["type"]
    broken["panels"][1]["gridPos"]["w"] = 25
    broken["panels"][2]["targets"][0].pop("expr")
    del broken["schemaVersion"]
    messages = [e.message for e in validator.iter_errors(broken)]
    assert any("'type' is a required property" in m for m in messages)
    assert any("25 is greater than the maximum of 24" in m for m in messages)
    assert any("'expr' is a required property" in m for m in messages)
    assert any("'schemaVersion' is a required property" in m for m in messages)


def test_it_draws_the_overview(dash: dict[str, Any]) -> None:
    titles = [p["title"] for p in dash["panels"]]
    for title in OVERVIEW:
        assert title in titles
    assert len(set(titles)) == len(titles)


def test_panels_do_not_overlap_and_ids_are_unique(dash: dict[str, Any]) -> None:
    panels = dash["panels"]
    assert len({p["id"] for p in panels}) == len(panels)

    def cells(p: dict[str, Any]) -> set[tuple[int, int]]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        return {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }

    for a, b in combinations(panels, 2):
        assert not cells(a) & cells(b), f"{a['title']!r} overlaps {b['title']!r}"
    for p in panels:
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs), p["title"]


def test_every_datasource_is_the_datasource_variable(dash: dict[str, Any]) -> None:
    (var,) = [v for v in dash["templating"]["list"] if v["type"] == "datasource"]
    assert (var["name"], var["query"]) == ("datasource", "prometheus")
    for p in dash["panels"]:
        assert p["datasource"] == DATASOURCE, p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE, (p["title"], t["refId"])
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"] == DATASOURCE, v["name"]


def test_every_variable_used_is_defined(dash: dict[str, Any]) -> None:
    defined = {v["name"] for v in dash["templating"]["list"]} | set(BUILTINS)
    text = json.dumps([p["targets"] for p in dash["panels"]]) + json.dumps(
        [v.get("query") for v in dash["templating"]["list"] if v["type"] == "query"]
    )
    assert used_variables(text) - {"datasource"} <= defined


def test_every_query_is_valid_promql(dash: dict[str, Any]) -> None:
    panels_selecting: dict[str, int] = {}
    for where, expr in expressions(dash):
        try:
            found = selectors(expr)  # vector($ttft_slo), the SLO line, selects nothing
        except ValueError as exc:
            pytest.fail(f"{where}: {exc}: {expr}")
        panel = where.rsplit(" ", 1)[0]
        panels_selecting[panel] = panels_selecting.get(panel, 0) + len(found)
    assert all(panels_selecting.values()), panels_selecting
