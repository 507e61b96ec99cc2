"""``tierserve simulate``: a scenario on virtual time, with the runtimes' own decisions.

    tierserve simulate -f tierserve/examples/sim/seed-burst.yaml [--plot out.png] [--json]
    tierserve simulate -f seed-burst.yaml --vary spec.autoscaler=hpa,slo --html report.html
    tierserve simulate -f seed-burst.yaml --vary 'autoscaling=@a.yaml,@b.yaml'
    tierserve simulate -f a.yaml -f b.yaml          # several scenarios side by side
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from tierserve.cli.output import fail
from tierserve.errors import TierserveError


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        files: list[Path] = typer.Option(
            ..., "-f", "--filename", help="Scenario YAML (repeat to compare several)."
        ),
        vary: str | None = typer.Option(
            None,
            "--vary",
            help="PATH=V1,V2: run each value (YAML or @file.yaml) side by side; PATH is "
            "'autoscaling' (merged into every InferenceService's spec) or a dotted path "
            "such as spec.controllers.autoscaler.periodSeconds.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
        plot: Path | None = typer.Option(
            None, "--plot", help="Write a PNG: replicas per tier, load, TTFT p90, cost."
        ),
        engine: str | None = typer.Option(
            None, "--engine", help="Engine model: fast (default) or step (the reference)."
        ),
        seed: int | None = typer.Option(None, "--seed", help="Override the scenario's seed."),
        html: Path | None = typer.Option(
            None,
            "--html",
            help="Write one self-contained HTML page: the dashboard's charts per service "
            "(and, comparing, a summary table and the configurations side by side).",
        ),
        timeline: bool = typer.Option(
            False, "--timeline", help="With --json: include the per-interval timeline."
        ),
        progress: bool = typer.Option(
            True, "--progress/--no-progress", help="A progress bar on stderr for long runs."
        ),
    ) -> None:
        """Simulate scenarios: SLO attainment, latency, replicas per tier, cloud cost."""
        try:
            if html is not None:  # a bad path fails now, not after a long run
                from tierserve.sim.html import check_path

                check_path(html)
            runs = _runs(files, vary, engine, seed)
            results = [(label, _simulate(scenario, progress)) for label, scenario in runs]
            if html is not None:
                from tierserve.sim.html import write

                write(results, html)
        except TierserveError as exc:
            fail(str(exc))
        _output(results, as_json, plot, timeline)


def _runs(
    files: list[Path], vary: str | None, engine: str | None, seed: int | None
) -> list[tuple[str, Any]]:
    from tierserve.sim import scenario as sc

    overrides: list[tuple[str, dict[str, Any]]] = []
    if vary is not None:
        key, values = sc.parse_vary(vary, files[0].parent if len(files) == 1 else Path("."))
        overrides = [(label, {key: value}) for label, value in values]
    extra: dict[str, Any] = {}
    if engine is not None:
        extra["spec.engine.model"] = engine
    if seed is not None:
        extra["spec.seed"] = seed
    runs: list[tuple[str, Any]] = []
    for path in files:
        for label, override in overrides or [("", {})]:
            name = f"{path.stem} {label}".strip() if len(files) > 1 or not label else label
            runs.append((name, sc.load(path, {**extra, **override})))
    return runs


def _simulate(scenario: Any, show: bool) -> Any:
    from tierserve.sim.run import simulate

    if not show or not sys.stderr.isatty() or scenario.duration_s < 3600:
        return simulate(scenario)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"simulating {scenario.name}", total=scenario.duration_s)
        return simulate(scenario, progress=lambda t: bar.update(task, completed=max(t, 0.0)))


def _output(
    results: list[tuple[str, Any]], as_json: bool, plot: Path | None, timeline: bool
) -> None:
    from tierserve.sim import report

    summaries = [(label or r.name, report.summarize(r)) for label, r in results]
    if plot is not None:
        from tierserve.sim.plot import plot as draw

        try:
            for i, (_, r) in enumerate(results):
                target = plot if len(results) == 1 else plot.with_stem(f"{plot.stem}-{i + 1}")
                draw(r, target)
        except TierserveError as exc:
            fail(str(exc))
    if as_json:
        out: list[dict[str, Any]] = []
        for (label, summary), (_, r) in zip(summaries, results, strict=True):
            item = {**summary, "name": label, "decisions": report.decisions_json(r)}
            if timeline:
                item["timeline"] = report.windows(r)
            out.append(item)
        typer.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))
        return
    console = Console()
    if len(summaries) == 1:
        report.render_summary(summaries[0][1], console)
    else:
        report.render_comparison(summaries, console)
