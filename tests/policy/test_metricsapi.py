"""The custom metrics API's pure part: selectors as Kubernetes parses them, a pod's value
(summed series, as the local runtime reads them), quantities the HPA reads."""

from __future__ import annotations

import math

import pytest

from tierserve.errors import ValidationError
from tierserve.policy.metricsapi import (
    SERVED_METRICS,
    PodValue,
    api_resource_list,
    metric_names,
    metric_value_list,
    parse_selector,
    pod_value,
    quantity,
)

LABELS = {"app": "isvc.deepseek-predictor", "tier": "idc", "gpu": "0"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=isvc.deepseek-predictor", True),
        ("app==isvc.deepseek-predictor", True),
        ("app!=isvc.deepseek-predictor", False),
        ("app=isvc.deepseek-predictor,tier=cloud", False),
        ("tier in (idc, cloud)", True),
        ("tier notin (cloud)", True),
        ("tier notin (idc,cloud)", False),
        ("missing notin (x)", True),  # no key: notin holds, as in Kubernetes
        ("missing!=x", True),
        ("gpu", True),
        ("!gpu", False),
        ("!missing", True),
        ("app in (isvc.deepseek-predictor),tier", True),
    ],
)
def test_selectors_match_as_kubernetes_does(text: str, matches: bool) -> None:
    assert parse_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app in", "labelSelector: 'app in' is not a selector term"),
        ("tier in ()", "tier in ()': in needs at least one value"),
        ("=x", "'=x' is not a selector term"),
        ("!a=b", "'!a=b' is not a selector term"),
        ("a=b,,c", "'' is not a selector term"),
        ("-bad=x", "'-bad' is not a valid label key"),
        ("a=b c", "'a=b c' is not a selector term"),
        ("a=b%", "'b%' is not a valid label value"),
    ],
)
def test_a_bad_selector_names_the_field_and_the_term(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=r"^labelSelector: ") as err:
        parse_selector(text)
    assert message in str(err.value)


def test_selector_as_a_label_selector_object() -> None:
    assert parse_selector("").to_label_selector() is None
    assert parse_selector("gpu=0,pid in (1,2),!x").to_label_selector() == {
        "matchLabels": {"gpu": "0"},
        "matchExpressions": [
            {"key": "pid", "operator": "In", "values": ["1", "2"]},
            {"key": "x", "operator": "DoesNotExist"},
        ],
    }


SAMPLES = [
    ("DCGM_CUSTOM_PROCESS_SM_UTIL", {"gpu": "0", "pid": "11"}, 40.0),
    ("DCGM_CUSTOM_PROCESS_SM_UTIL", {"gpu": "1", "pid": "12"}, 35.5),
    ("vllm:num_requests_running", {"model_name": "m"}, 3.0),
    ("vllm:num_requests_waiting", {"model_name": "m"}, math.nan),
]


def test_a_pods_value_is_the_sum_of_its_selected_series() -> None:
    everything = parse_selector("")
    # 40 + 35.5: several label sets of one name add up, as the local runtime reads them
    assert pod_value(SAMPLES, "DCGM_CUSTOM_PROCESS_SM_UTIL", everything) == 75.5
    assert pod_value(SAMPLES, "DCGM_CUSTOM_PROCESS_SM_UTIL", parse_selector("gpu=1")) == 35.5
    assert pod_value(SAMPLES, "DCGM_CUSTOM_PROCESS_SM_UTIL", parse_selector("gpu=7")) is None
    assert pod_value(SAMPLES, "vllm:num_requests_running", everything) == 3.0
    assert pod_value(SAMPLES, "vllm:num_requests_waiting", everything) is None  # NaN only
    assert pod_value(SAMPLES, "DCGM_FI_DEV_GPU_UTIL", everything) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (2.0, "2"), (73.5, "73500m"), (0.0004, "0"), (0.0016, "2m"),
     (1500.0, "1500"), (1000.0, "1k"), (-1.25, "-1250m")],
)  # fmt: skip
def test_values_are_kubernetes_quantities(value: float, text: str) -> None:
    assert quantity(value) == text


def test_served_metrics_and_extra_names() -> None:
    assert metric_names() == SERVED_METRICS
    assert metric_names(["tierserve:inflight_requests"])[-1] == "tierserve:inflight_requests"
    assert metric_names(["DCGM_FI_DEV_GPU_UTIL"]) == SERVED_METRICS  # no duplicate
    with pytest.raises(ValidationError, match="--metric: 'bad-name' is not a Prometheus metric"):
        metric_names(["bad-name"])


def test_documents_have_the_v1beta2_shape() -> None:
    listed = api_resource_list(["DCGM_CUSTOM_PROCESS_SM_UTIL"])
    assert listed["groupVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert listed["resources"][0]["name"] == "pods/DCGM_CUSTOM_PROCESS_SM_UTIL"
    values = [PodValue("default", "p1", 62.25, "2026-01-01T00:00:00Z")]
    doc = metric_value_list("DCGM_CUSTOM_PROCESS_SM_UTIL", parse_selector(""), values, 1)
    assert doc["kind"] == "MetricValueList"
    assert doc["items"] == [
        {
            "describedObject": {"kind": "Pod", "namespace": "default", "name": "p1",
                                "apiVersion": "/v1"},
            "metric": {"name": "DCGM_CUSTOM_PROCESS_SM_UTIL", "selector": None},
            "timestamp": "2026-01-01T00:00:00Z",
            "windowSeconds": 1,
            "value": "62250m",
        }
    ]  # fmt: skip
