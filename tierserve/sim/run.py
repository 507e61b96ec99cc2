"""Run a scenario: its workload's arrivals into a :class:`~tierserve.sim.world.Simulation`."""

from __future__ import annotations

import time
from collections.abc import Callable

from tierserve.sim.scenario import Scenario
from tierserve.sim.workload import arrivals, closed_loops
from tierserve.sim.world import SimResult, Simulation


def simulate(scenario: Scenario, progress: Callable[[float], None] | None = None) -> SimResult:
    """Simulate ``scenario``; ``progress`` is called with the simulated time now and then."""
    started = time.perf_counter()
    sim = Simulation(
        scenario.objects,
        arrivals(scenario.workload, scenario.seed, until_s=scenario.duration_s),
        scenario.duration_s,
        settings=scenario.settings,
        slo=scenario.slo,
        name=scenario.name,
        closed_loops=closed_loops(scenario.workload, scenario.seed),
        progress=progress,
    )
    result = sim.run()
    result.wall_s = time.perf_counter() - started
    return result
