"""``tierserve dashboard`` (where the web dashboard is) and ``tierserve top`` (the same
overview in a terminal, refreshing: rich Live over ``GET /api/v1/dashboard/overview``)."""

from __future__ import annotations

import contextlib
import sys
import time
import webbrowser
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tierserve.cli.common import StateDirOption, client_for, root_of
from tierserve.cli.output import fail
from tierserve.errors import TierserveError
from tierserve.runtime.local.client import Client
from tierserve.runtime.local.config import TOKEN_FILE, ClientConfig

DASHBOARD_PATH = "/dashboard"
OVERVIEW_PATH = "/api/v1/dashboard/overview"
SPARK = "▁▂▃▄▅▆▇█"
SPARK_POINTS = 40
EVENTS_SHOWN = 8
PIPED_WIDTH = 220


def dashboard_url(config: ClientConfig) -> str:
    """The web dashboard of a running control plane (no token in it: the page asks)."""
    return config.api_url + DASHBOARD_PATH


# -- rendering (pure: an overview in, rich renderables out) ------------------------------------


def _last(history: dict[str, list[Any]], name: str) -> Any:
    column = history.get(name) or []
    return column[-1] if column else None


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}ms"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def spark(values: Sequence[float | None], width: int = SPARK_POINTS) -> str:
    """The last ``width`` values as a bar per value (a gap for a missing one)."""
    tail = list(values)[-width:]
    known = [v for v in tail if v is not None]
    top = max(known, default=0.0)
    if top <= 0:
        return "".join(" " if v is None else SPARK[0] for v in tail)
    return "".join(
        " " if v is None else SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1)))]
        for v in tail
    )


def _replicas_per_t(history: dict[str, list[Any]]) -> list[float | None]:
    idc, cloud = history.get("idcAllocated") or [], history.get("cloudAllocated") or []
    return [
        None if a is None and b is None else (a or 0) + (b or 0)
        for a, b in zip(idc, cloud, strict=False)
    ]


def render(overview: dict[str, Any]) -> RenderableType:
    """The overview as ``top`` draws it: services, nodes, the newest decisions."""
    now = overview.get("now")
    stamp = datetime.fromtimestamp(now).strftime("%H:%M:%S") if now else "–"
    memory = overview.get("bytesPerServiceHour", 0) / 1024
    head = Text.assemble(
        ("tierserve top", "bold"),
        f"  {stamp}  every {overview.get('intervalS', 0):g}s, window "
        f"{overview.get('windowS', 0):g}s, history {memory:.0f} KiB per service-hour  "
        "(Ctrl-C to quit)",
    )
    services = Table(title="Services", title_justify="left", expand=False, box=None)
    for col in (
        "SERVICE", "IDC", "CLOUD", "PENDING", "REQ/S", "TTFT p50/p90", "TPOT p50/p90",
        "SLO", "COST/H", "COST", "$/1M IDC·CLOUD", "REPLICAS",
    ):  # fmt: skip
        services.add_column(col, no_wrap=True)
    for s in overview.get("services", []):
        h = s.get("history", {})
        attainment = (
            f"{_pct(_last(h, 'attainmentTtft'))}·{_pct(_last(h, 'attainmentTpot'))}"
            if s.get("slo")
            else "–"
        )
        services.add_row(
            f"{s['namespace']}/{s['name']}",
            f"{_num(_last(h, 'idcReady'), 0)}/{_num(_last(h, 'idcAllocated'), 0)}",
            Text(
                f"{_num(_last(h, 'cloudReady'), 0)}/{_num(_last(h, 'cloudAllocated'), 0)}",
                style="bold yellow" if _last(h, "cloudAllocated") else "",
            ),
            _num(_last(h, "pending"), 0),
            _num(_last(h, "requestRate")),
            f"{_ms(_last(h, 'ttftP50'))}/{_ms(_last(h, 'ttftP90'))}",
            f"{_ms(_last(h, 'tpotP50'))}/{_ms(_last(h, 'tpotP90'))}",
            attainment,
            _num(_last(h, "cloudCostPerHour")),
            _num(_last(h, "cloudCostTotal"), 4),
            f"{_num(_last(h, 'usdPerMTokIdc'))}·{_num(_last(h, 'usdPerMTokCloud'))}",
            spark(_replicas_per_t(h)),
        )
    if not overview.get("services"):
        services.add_row("(no services)", *[""] * 11)
    nodes = Table(title="Nodes", title_justify="left", box=None)
    for col in ("NODE", "TIER", "GPU", "USED/TOTAL", "PRICE/GPU-H", "QUOTA", "COLD START",
                "REPLICAS"):  # fmt: skip
        nodes.add_column(col, no_wrap=True)
    for n in overview.get("nodes", []):
        nodes.add_row(
            n["name"],
            n["tier"],
            n.get("gpuModel") or "–",
            f"{n['gpusUsed']:g}/{n['gpus']:g}",
            _num(n.get("pricePerGpuHour")),
            "–" if n.get("gpuQuota") is None else str(n["gpuQuota"]),
            "–" if n.get("coldStartS") is None else f"{n['coldStartS']:g}s",
            ", ".join(f"{r['name']} ({r['phase']})" for r in n.get("replicas", [])) or "–",
        )
    events = Table(title="Decisions and events", title_justify="left", box=None)
    for col in ("TIME", "REASON", "OBJECT", "MESSAGE"):
        events.add_column(col, no_wrap=col != "MESSAGE", overflow="fold")
    newest = sorted(overview.get("events", []), key=lambda e: e["lastTimestamp"])
    for e in newest[-EVENTS_SHOWN:][::-1]:
        events.add_row(
            datetime.fromtimestamp(e["lastTimestamp"]).strftime("%H:%M:%S"),
            Text(e["reason"], style="red" if e["type"] == "Warning" else ""),
            f"{e['kind']} {e['name']}",
            e["message"],
        )
    return Group(head, Text(""), services, Text(""), nodes, Text(""), events)


# -- commands ---------------------------------------------------------------------------------


def _overview(client: Client) -> dict[str, Any]:
    # The newest points only: top draws a sparkline of SPARK_POINTS, not the whole history.
    data: dict[str, Any] = client.request("GET", f"{OVERVIEW_PATH}?points={SPARK_POINTS}")
    return data


def register(app: typer.Typer) -> None:
    @app.command()
    def dashboard(
        open_browser: bool = typer.Option(
            False, "--open", help="Also open it in this machine's web browser."
        ),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Print the web dashboard's URL (sign in with the state directory's token)."""
        client = client_for(state_dir)
        url = dashboard_url(client.config)
        typer.echo(f"Dashboard: {url}")
        typer.echo(f"Sign in with the token in {root_of(state_dir) / TOKEN_FILE}")
        if open_browser and not webbrowser.open(url):
            typer.echo("warning: no web browser could be opened here; open the URL", err=True)

    @app.command()
    def top(
        interval_s: float = typer.Option(
            1.0, "--interval-s", min=0.1, max=3600, help="Seconds between refreshes."
        ),
        once: bool = typer.Option(False, "--once", help="Print the overview once and exit."),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """The dashboard's overview in the terminal, refreshing, until Ctrl-C."""
        client = client_for(state_dir)
        # Piped (``--once > file``): as wide as the overview needs, not 80 columns.
        console = Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
        try:
            if once:
                console.print(render(_overview(client)))
                return
            with (
                contextlib.suppress(KeyboardInterrupt),
                Live(
                    render(_overview(client)),
                    console=console,
                    screen=True,
                    auto_refresh=False,
                    redirect_stderr=False,
                ) as live,
            ):
                while True:
                    time.sleep(interval_s)
                    live.update(render(_overview(client)), refresh=True)
        except TierserveError as exc:
            fail(exc)
