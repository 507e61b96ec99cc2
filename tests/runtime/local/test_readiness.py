"""Readiness: a service's ``readinessProbe`` reaches the supervisor, the initial delay
holds checks back, and the HTTP check falls back from ``/health`` to ``/v1/models`` only
when ``/health`` does not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from tierserve.model import InferenceService
from tierserve.model.probe import DEFAULT_READINESS_PATHS, LLAMA_CPP_READINESS_PATHS
from tierserve.policy.lifecycle import (
    Observation,
    Stage,
    SupervisorConfig,
    SupervisorState,
    config_for_service,
    decide,
)
from tierserve.runtime.local.health import HttpHealthProbe, ProbeTarget
from tierserve.runtime.local.ports import LOOPBACK

BASE = SupervisorConfig()
VLLM = "vllm serve /model/m --port 8080"
LLAMA = "python -m llama_cpp.server --model /m.gguf --port {port}"


def service(command: str = VLLM, probe: dict[str, object] | None = None) -> InferenceService:
    spec: dict[str, object] = {"command": command}
    if probe is not None:
        spec["readinessProbe"] = probe
    built: InferenceService = InferenceService.new("m", spec=spec)
    return built


def test_unset_probe_keeps_the_runtime_defaults() -> None:
    assert config_for_service(BASE, service()) == BASE
    assert config_for_service(BASE, service(probe={})) == BASE  # every field unset
    assert BASE.probe_paths == DEFAULT_READINESS_PATHS == ("/health", "/v1/models")


def test_llama_cpp_server_is_probed_outside_its_model_lock() -> None:
    # /v1/models waits for llama_cpp.server's model lock and interrupts a running stream.
    assert config_for_service(BASE, service(LLAMA)).probe_paths == LLAMA_CPP_READINESS_PATHS
    given = service(LLAMA, {"httpGet": {"path": "/v1/models"}})
    assert config_for_service(BASE, given).probe_paths == ("/v1/models",)  # the user decides


def test_probe_fields_become_supervisor_timings() -> None:
    probe: dict[str, object] = {
        "httpGet": {"path": "/ready"},
        "initialDelaySeconds": 7,
        "periodSeconds": 3,
        "timeoutSeconds": 2,
        "failureThreshold": 5,
    }
    config = config_for_service(BASE, service(probe=probe))
    assert config.probe_paths == ("/ready",)
    assert config.initial_delay_s == 7 and config.probe_timeout_s == 2
    assert config.probe_interval_s == config.check_interval_s == 3  # period, starting and Ready
    assert config.failure_threshold == 5
    assert config.start_timeout_s == BASE.start_timeout_s


def test_initial_delay_holds_the_first_check_back() -> None:
    config = SupervisorConfig(initial_delay_s=30)
    started = decide(SupervisorState(), Observation(now_s=100, running=False), config)
    assert started.wake_in_s == 30
    state = started.state
    assert not state.probe_due(129.9) and state.probe_due(130)
    # Woken early (no check made): wait out the rest of the delay, not a probe period.
    early = decide(state, Observation(now_s=110, running=True, healthy=None), config)
    assert early.state.stage == Stage.STARTING and early.wake_in_s == pytest.approx(20)


def test_adopted_process_is_checked_at_once() -> None:
    assert SupervisorState.adopted(100.0).probe_due(100.0)


# -- the HTTP check ------------------------------------------------------------------------


Routes = dict[str, int]
StartEngine = Callable[[Routes], Awaitable[int]]


@pytest.fixture
async def engine() -> AsyncIterator[StartEngine]:
    """Start a server answering each path of ``routes`` with its status (others: 404)."""
    runners: list[web.AppRunner] = []

    async def start(routes: Routes) -> int:
        app = web.Application()
        for path, status in routes.items():

            async def answer(_: web.Request, status: int = status) -> web.Response:
                return web.Response(status=status, text="{}")

            app.router.add_get(path, answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        runners.append(runner)
        return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("routes", "target", "ready"),
    [
        ({"/health": 200}, ProbeTarget(), True),  # vLLM, the emulator
        ({"/v1/models": 200}, ProbeTarget(), True),  # llama_cpp.server: /health is 404
        ({"/health": 503, "/v1/models": 200}, ProbeTarget(), False),  # loading: not ready
        ({"/health": 500}, ProbeTarget(), False),
        ({}, ProbeTarget(), False),  # nothing there at all
        ({"/v1/models": 200}, ProbeTarget(paths=("/ready",)), False),  # the user's path only
        ({"/ready": 200}, ProbeTarget(paths=("/ready",)), True),
    ],
)
async def test_http_check_walks_its_paths(
    engine: StartEngine, routes: Routes, target: ProbeTarget, ready: bool
) -> None:
    port = await engine(routes)
    probe = HttpHealthProbe()
    try:
        assert await probe.healthy(port, target) is ready
    finally:
        await probe.close()
