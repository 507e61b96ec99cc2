"""``tierserve serve kserve|update kserve --autoscaler slo``: the tier planner's flags
build ``spec.autoscaling``; every misuse is one ``error: FLAG: ...`` line, exit 1.

``serve kserve`` runs through ``--dry-run`` (the real command, no control plane);
``serve update kserve`` through :func:`serve.service_for_update` on a service as the API
returns it (the command only adds the read and the write around it)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from test_serve import VLLM, golden, invoke, seed_argv, service

from tierserve.cli import arena, serve
from tierserve.errors import ValidationError

BASE = ["kserve", "--name=deepseek", "--gpus=1", "--min-replicas=1", "--max-replicas=3"]
PLANNER = ["--autoscaler", "slo", "--slo", "ttft=2s,tpot=100ms"]


def dry_run(*flags: str) -> Any:
    return invoke(*BASE, *flags, "--dry-run", VLLM)


def spec_of(*flags: str) -> dict[str, Any]:
    result = dry_run(*flags)
    assert result.exit_code == 0, result.output
    spec: dict[str, Any] = yaml.safe_load(result.stdout)["spec"]
    return spec


def errors_of(*flags: str) -> list[str]:
    result = dry_run(*flags)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output
    return result.stderr.splitlines()


# -- the good case ---------------------------------------------------------------------------


def test_the_documented_command_builds_the_autoscaling_block() -> None:
    spec = spec_of(*PLANNER, "--cloud-budget-per-hour", "12", "--headroom", "0.1", "--rebalance")
    assert spec["autoscaling"] == {
        "policy": "slo",
        "slo": {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95},  # 100ms = 0.1 s
        "budget": {"cloudCostPerHour": 12},
        "headroom": 0.1,
        "rebalance": True,
    }
    # The planner sizes on the SLO: no HPA metric; the bounds bound the planner.
    assert "scaleMetric" not in spec and "scaleTarget" not in spec
    assert (spec["replicas"], spec["minReplicas"], spec["maxReplicas"]) == (1, 1, 3)


def test_on_kubernetes_the_planner_is_tierserves_autoscaler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    # No cluster: --dry-run renders offline. No HPA; the Deployment asks for tierserve's
    # autoscaler and carries the service, whose spec.autoscaling is the planner's.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    flags = [*PLANNER, "--cloud-budget-per-hour", "12", "--backend", "kubernetes", "--raw"]
    result = dry_run(*flags)
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert [d["kind"] for d in docs] == ["Deployment", "Service"]
    annotations = docs[0]["metadata"]["annotations"]
    assert annotations["autoscaling.tierserve.io/autoscaler"] == "tierserve"
    carried = json.loads(annotations["autoscaling.tierserve.io/service"])
    assert carried["spec"]["autoscaling"] == {
        "policy": "slo",
        "slo": {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95},
        "budget": {"cloudCostPerHour": 12},
        "headroom": 0.0,
    }
    assert (carried["spec"]["minReplicas"], carried["spec"]["maxReplicas"]) == (1, 3)
    assert "scaleMetric" not in carried["spec"]
    assert docs[0]["spec"]["replicas"] == 1


@pytest.mark.parametrize(
    ("value", "slo"),
    [
        ("ttft=2s,tpot=100ms", {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95}),
        ("ttft=1500ms", {"ttftSeconds": 1.5, "attainment": 0.95}),  # tpot optional
        (
            "ttft=0.5s,tpot=0.1s,attainment=99%",
            {"ttftSeconds": 0.5, "tpotSeconds": 0.1, "attainment": 0.99},
        ),
        ("attainment=0.9,ttft=3s", {"ttftSeconds": 3, "attainment": 0.9}),  # any order
        (" TTFT = 2s , tpot=.1s ,", {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95}),
        ("ttft=2s,attainment=100%", {"ttftSeconds": 2, "attainment": 1}),  # (0, 1] holds 1
    ],
)
def test_slo_values(value: str, slo: dict[str, float]) -> None:
    assert spec_of("--autoscaler", "slo", "--slo", value)["autoscaling"]["slo"] == slo


def test_planner_defaults_and_no_rebalance() -> None:
    plain = spec_of(*PLANNER)["autoscaling"]
    assert plain == {
        "policy": "slo",
        "slo": {"ttftSeconds": 2, "tpotSeconds": 0.1, "attainment": 0.95},
        "headroom": 0,
    }  # no budget, rebalance left to the model's default (on for slo)
    assert spec_of(*PLANNER, "--no-rebalance")["autoscaling"]["rebalance"] is False


def test_the_service_object_carries_the_planner_settings() -> None:
    svc = serve.service_for_submit(
        arena.KServeFlags(name="deepseek", gpus=1, command=[VLLM]),
        serve.AutoscalerFlags("slo", "ttft=2s,tpot=100ms", 12, 0.1, None),
    )
    auto = svc.spec.autoscaling
    assert auto is not None and auto.slo is not None and auto.budget is not None
    assert (auto.policy, auto.slo.ttft_seconds, auto.slo.tpot_seconds) == ("slo", 2, 0.1)
    assert (auto.budget.cloud_cost_per_hour, auto.headroom, auto.rebalances) == (12, 0.1, True)


# -- the default stays the HPA ---------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--autoscaler", "hpa"]])
def test_the_default_is_the_hpa_unchanged(extra: list[str]) -> None:
    result = invoke(*seed_argv(), *extra, "--dry-run")
    assert result.exit_code == 0, result.output
    golden("serve_kserve_seed_dry_run.yaml", result.stdout)  # byte for byte as before
    spec = yaml.safe_load(result.stdout)["spec"]
    assert "autoscaling" not in spec
    assert (spec["scaleMetric"], spec["scaleTarget"]) == ("DCGM_CUSTOM_PROCESS_SM_UTIL", 50)


# -- errors: one line each, naming the flag, the value and what was expected -----------------

DURATION = "is not a duration; expected a number and its unit, e.g. 2s, 1500ms or 0.1s"
PLANNER_SETTING = "a tier planner setting, given without --autoscaler slo; add --autoscaler slo"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--autoscaler", "slo"],
            ["--slo: is required with --autoscaler slo; e.g. --slo ttft=2s,tpot=100ms"],
        ),
        (["--autoscaler", "vpa"], ["--autoscaler: 'vpa' is not one of hpa, slo"]),
        (
            ["--slo", "ttft=2s"],
            [f"--slo: 'ttft=2s' is {PLANNER_SETTING}, or drop --slo"],
        ),
        (
            ["--cloud-budget-per-hour", "12"],
            [f"--cloud-budget-per-hour: 12 is {PLANNER_SETTING}, or drop --cloud-budget-per-hour"],
        ),
        (["--headroom", "0.1"], [f"--headroom: 0.1 is {PLANNER_SETTING}, or drop --headroom"]),
        (["--rebalance"], [f"--rebalance: is {PLANNER_SETTING}, or drop --rebalance"]),
        (["--no-rebalance"], [f"--no-rebalance: is {PLANNER_SETTING}, or drop --no-rebalance"]),
        (
            ["--autoscaler", "hpa", "--headroom", "0.1"],
            [
                "--headroom: 0.1 is a tier planner setting, given with --autoscaler hpa; add "
                "--autoscaler slo, or drop --headroom"
            ],
        ),
        (
            [*PLANNER, "--scale-metric", "DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target", "50"],
            [
                "--scale-metric: 'DCGM_CUSTOM_PROCESS_SM_UTIL' with --autoscaler slo: the tier "
                "planner sizes on the SLO; drop --scale-metric, or use --autoscaler hpa",
                "--scale-target: 50 with --autoscaler slo: the tier planner sizes on the SLO; "
                "drop --scale-target, or use --autoscaler hpa",
            ],
        ),
        (
            [*PLANNER, "--scale-target", "50"],  # not arena's "given without --scale-metric"
            [
                "--scale-target: 50 with --autoscaler slo: the tier planner sizes on the SLO; "
                "drop --scale-target, or use --autoscaler hpa"
            ],
        ),
        (
            [*PLANNER, "--cloud-budget-per-hour", "0"],
            ["--cloud-budget-per-hour: 0 is out of range; expected a value > 0"],
        ),
        (
            [*PLANNER, "--headroom", "-0.5"],
            ["--headroom: -0.5 is out of range; expected a value >= 0"],
        ),
        (
            [*PLANNER, "--headroom", "11"],
            ["--headroom: 11 is out of range; expected a value <= 10"],
        ),
    ],
)
def test_flag_errors(args: list[str], expected: list[str]) -> None:
    assert errors_of(*args) == [f"error: {line}" for line in expected]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ttfb=2s", "'ttfb=2s' has an unknown key 'ttfb'; did you mean 'ttft'?"),
        (
            "ttft=2s,latency=1s",
            "'latency=1s' has an unknown key 'latency'; expected ttft, tpot or attainment",
        ),
        (
            "ttft=2s,fast",
            "'fast' is not KEY=VALUE; expected ttft=DURATION[,tpot=DURATION][,attainment=SHARE], "
            "e.g. ttft=2s,tpot=100ms",
        ),
        ("ttft=2", f"'ttft=2' {DURATION}"),  # a bare number: seconds? milliseconds?
        ("ttft=2s,tpot=fast", f"'tpot=fast' {DURATION}"),
        ("ttft=-1s", f"'ttft=-1s' {DURATION}"),
        ("ttft=0s", "'ttft=0s' is out of range; expected a duration > 0s"),
        ("ttft=5000s", "'ttft=5000s' is out of range; expected a duration <= 3600s"),
        ("ttft=2s,tpot=61s", "'tpot=61s' is out of range; expected a duration <= 60s"),
        (
            "ttft=2s,attainment=120%",
            "'attainment=120%' is outside (0, 1]; expected a share such as 95% or 0.95",
        ),
        (
            "ttft=2s,attainment=95",  # a percentage without its %
            "'attainment=95' is outside (0, 1]; expected a share such as 95% or 0.95",
        ),
        (
            "ttft=2s,attainment=0",
            "'attainment=0' is outside (0, 1]; expected a share such as 95% or 0.95",
        ),
        (
            "ttft=2s,attainment=most",
            "'attainment=most' is not a share; expected a percentage or a fraction, e.g. 95% or "
            "0.95",
        ),
        (
            "ttft=2s,ttft=3s",
            "'ttft=3s' gives ttft a second time; expected each of ttft, tpot, attainment once",
        ),
        (
            "tpot=100ms",
            "'tpot=100ms' has no ttft; expected ttft=DURATION[,tpot=DURATION][,attainment=SHARE], "
            "e.g. ttft=2s,tpot=100ms (ttft: the time to first token, tpot: the time per output "
            "token)",
        ),
    ],
)
def test_bad_slo_items_are_named(value: str, expected: str) -> None:
    assert errors_of("--autoscaler", "slo", "--slo", value) == [f"error: --slo: {expected}"]


def test_every_bad_flag_is_reported_at_once() -> None:
    lines = errors_of(
        "--autoscaler",
        "slo",
        "--slo",
        "ttfb=2s,tpot=1",
        "--headroom",
        "-1",
        "--memory",
        "12GB",
        "--scale-metric",
        "m",
    )
    flags = [line.split(":")[1].strip() for line in lines]
    # arena's own checks first, then the planner's, each once
    assert flags == ["--memory", "--scale-metric", "--slo", "--slo", "--headroom"]


def test_a_value_of_the_wrong_type_is_a_usage_error() -> None:
    result = dry_run(*PLANNER, "--cloud-budget-per-hour", "lots")
    assert result.exit_code == 2  # click's usage error; `tierserve` prints it as one line
    assert "--cloud-budget-per-hour" in result.output and "Traceback" not in result.output


# -- serve update kserve ---------------------------------------------------------------------


def update(current: dict[str, Any], auto: serve.AutoscalerFlags, **flags: Any) -> dict[str, Any]:
    changed = serve.service_for_update(current, arena.UpdateFlags(name="deepseek", **flags), auto)
    spec: dict[str, Any] = changed.to_dict()["spec"]
    return spec


def update_error(current: dict[str, Any], auto: serve.AutoscalerFlags, **flags: Any) -> str:
    with pytest.raises(ValidationError) as info:
        update(current, auto, **flags)
    return str(info.value)


def planner_service() -> dict[str, Any]:
    current = service()
    current["spec"] = update(current, serve.AutoscalerFlags("slo", "ttft=2s,tpot=100ms"))
    return current


def test_update_switches_to_the_planner_and_drops_the_hpa_metric() -> None:
    spec = update(service(), serve.AutoscalerFlags("slo", "ttft=2s,tpot=100ms", 12))
    assert spec["autoscaling"] == {
        "policy": "slo",
        "slo": {"ttftSeconds": 2.0, "tpotSeconds": 0.1, "attainment": 0.95},
        "budget": {"cloudCostPerHour": 12.0},
        "headroom": 0.0,
    }
    assert "scaleMetric" not in spec and "scaleTarget" not in spec
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 3)  # kept; they bound the planner


def test_update_changes_one_planner_setting_of_a_planner_service() -> None:
    spec = update(planner_service(), serve.AutoscalerFlags(headroom=0.2, rebalance=False))
    assert spec["autoscaling"]["slo"] == {
        "ttftSeconds": 2.0,
        "tpotSeconds": 0.1,
        "attainment": 0.95,
    }
    assert (spec["autoscaling"]["headroom"], spec["autoscaling"]["rebalance"]) == (0.2, False)
    # --slo replaces the objective as a whole
    tighter = update(planner_service(), serve.AutoscalerFlags(slo="ttft=1s"))
    assert tighter["autoscaling"]["slo"] == {"ttftSeconds": 1.0, "attainment": 0.95}


def test_update_back_to_the_hpa() -> None:
    spec = update(
        planner_service(),
        serve.AutoscalerFlags("hpa"),
        scale_metric="DCGM_CUSTOM_PROCESS_SM_UTIL",
        scale_target=50,
    )
    assert "autoscaling" not in spec
    assert (spec["scaleMetric"], spec["scaleTarget"]) == ("DCGM_CUSTOM_PROCESS_SM_UTIL", 50)


def test_update_leaves_an_hpa_service_alone_without_autoscaler_flags() -> None:
    spec = update(service(), serve.AutoscalerFlags(), replicas=2)
    assert "autoscaling" not in spec and spec["scaleMetric"] == "DCGM_CUSTOM_PROCESS_SM_UTIL"


@pytest.mark.parametrize(
    ("current", "auto", "flags", "expected"),
    [
        (
            service,
            serve.AutoscalerFlags("slo"),
            {},
            "--slo: is required with --autoscaler slo (the service has no SLO yet); e.g. --slo "
            "ttft=2s,tpot=100ms",
        ),
        (
            service,
            serve.AutoscalerFlags(headroom=0.1),
            {},
            "--headroom: 0.1 is a tier planner setting, given without --autoscaler slo (the "
            "service's autoscaler is hpa); add --autoscaler slo, or drop --headroom",
        ),
        (
            planner_service,
            serve.AutoscalerFlags(),
            {"scale_metric": "m", "scale_target": 5},
            "--scale-metric: 'm' on a service of --autoscaler slo: the tier planner sizes on the "
            "SLO; drop --scale-metric, or use --autoscaler hpa",
        ),
        (
            service,
            serve.AutoscalerFlags("slo", "ttft=2s"),
            {"scale_metric": "m", "scale_target": 5},
            "--scale-metric: 'm' with --autoscaler slo: the tier planner sizes on the SLO; drop "
            "--scale-metric, or use --autoscaler hpa",
        ),
        (
            planner_service,
            serve.AutoscalerFlags("hpa", cloud_budget_per_hour=3),
            {},
            "--cloud-budget-per-hour: 3 is a tier planner setting, given with --autoscaler hpa",
        ),
        (
            planner_service,
            serve.AutoscalerFlags(slo="ttft=2s,attainment=2"),
            {},
            "--slo: 'attainment=2' is outside (0, 1]",
        ),
        (service, serve.AutoscalerFlags("SLO"), {}, "--autoscaler: 'SLO' is not one of hpa, slo"),
    ],
)
def test_update_errors(
    current: Any, auto: serve.AutoscalerFlags, flags: dict[str, Any], expected: str
) -> None:
    assert expected in update_error(current(), auto, **flags)


def test_update_with_only_planner_flags_is_a_change() -> None:
    result = invoke("update", "kserve", "--name", "deepseek")
    assert "--autoscaler, --slo, --cloud-budget-per-hour" in result.stderr
    assert serve.AutoscalerFlags(rebalance=False).given()
    assert not serve.AutoscalerFlags().given()
