"""``simulate --html``: one self-contained page of a run, or of a comparison of several.

The page is one file that opens offline and can be shared as it is: the vendored uPlot
(``tierserve/web/static/vendor``, MIT) and the report's own chart code
(``tierserve/web/static/report.js``, ``report.css``) are inlined, and the data is one
JSON document in ``<script type="application/json" id="report-data">``:

``{"title", "runs": [{"label", "summary", "services", "decisions", "decisions_left_out"}],
"comparison": {"columns", "rows"} | null}``, where ``summary`` is
:func:`tierserve.sim.report.summarize`'s (what ``--json`` prints), ``services`` are
:func:`tierserve.sim.series.run_series`'s per-service series and ``comparison`` is the
terminal's comparison table (the same columns, their best values flagged), present when
more than one configuration ran.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from tierserve.errors import NeverPossible
from tierserve.sim import series
from tierserve.sim.report import COMPARED, compared, summarize
from tierserve.sim.world import SimResult

STATIC = ("tierserve.web", "static")
VENDOR_JS = "vendor/uPlot.iife.min.js"
VENDOR_CSS = "vendor/uPlot.min.css"
REPORT_JS = "report.js"
REPORT_CSS = "report.css"
FORMAT = 1
"""The embedded document's format version."""


class HtmlReportError(NeverPossible):
    """``--html`` names a file that cannot be written."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"--html: {path}: {problem}")


def check_path(path: Path) -> None:
    """Refuse, before anything runs, a target that cannot be written: a directory, a file
    in a folder that does not exist or is not writable, an existing file not writable."""
    if str(path) == "" or path.name in ("", ".", ".."):
        raise HtmlReportError(path, "expected a file name such as report.html")
    if path.is_dir():
        raise HtmlReportError(path, "is a directory; expected a file name such as report.html")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise HtmlReportError(path, f"folder {parent} does not exist")
    if not parent.is_dir():
        raise HtmlReportError(path, f"{parent} is not a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise HtmlReportError(path, "exists and is not writable")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise HtmlReportError(path, f"folder {parent} is not writable")


def _comparison(summaries: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The terminal's comparison table as data: each cell's value, its text and whether it
    is the column's best (ties all best)."""
    values, best = compared(summaries)
    rows = []
    for (label, _), row in zip(summaries, values, strict=True):
        cells = [
            {
                "value": value,
                "text": "–" if value is None else column.show(value),
                "best": value is not None and value == best[i],
            }
            for i, (column, value) in enumerate(zip(COMPARED, row, strict=True))
        ]
        rows.append({"label": label, "cells": cells})
    return {"columns": [c.header for c in COMPARED], "rows": rows}


def report_data(
    results: Sequence[tuple[str, SimResult]], title: str | None = None
) -> dict[str, Any]:
    """The document the page embeds (module doc), for ``(label, result)`` pairs."""
    runs: list[dict[str, Any]] = []
    for label, result in results:
        summary = summarize(result)
        kept, left_out = series.decisions(result)
        runs.append(
            {
                "label": label or result.name,
                "summary": summary,
                "services": series.run_series(result),
                "decisions": kept,
                "decisions_left_out": left_out,
            }
        )
    labels = [str(r["label"]) for r in runs]
    summaries = [(str(r["label"]), r["summary"]) for r in runs]
    return {
        "format": FORMAT,
        "title": title or (labels[0] if len(labels) == 1 else "comparison: " + ", ".join(labels)),
        "runs": runs,
        "comparison": _comparison(summaries) if len(runs) > 1 else None,
    }


def _static(name: str) -> str:
    package, folder = STATIC
    return resources.files(package).joinpath(folder, name).read_text(encoding="utf-8")


def _script_safe(text: str) -> str:
    """Text that cannot end the ``<script>`` or ``<style>`` element it is inlined in."""
    return text.replace("</", "<\\/")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def render(data: dict[str, Any]) -> str:
    """The page for ``data`` (:func:`report_data`), as one HTML string."""
    # "<" as \u003c: the JSON parses the same and can never close its <script> element.
    document = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    document = document.replace("<", "\\u003c")
    title = escape(str(data.get("title", "simulation")))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            '<meta name="generator" content="tierserve simulate --html">',
            f"<title>tierserve simulate: {title}</title>",
            f"<style>{_script_safe(_static(VENDOR_CSS))}</style>",
            f"<style>{_script_safe(_static(REPORT_CSS))}</style>",
            "</head>",
            "<body>",
            f"<header><h1>tierserve simulate: {title}</h1></header>",
            '<main id="report"><p class="note">The charts need JavaScript.</p></main>',
            '<pre id="report-error" hidden></pre>',
            f'<script type="application/json" id="report-data">{document}</script>',
            f"<script>{_script_safe(_static(VENDOR_JS))}</script>",
            f"<script>{_script_safe(_static(REPORT_JS))}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )


def write(results: Sequence[tuple[str, SimResult]], path: Path) -> None:
    """Write the page for ``results`` to ``path`` (whole or not at all: a temporary file
    in the same folder, then renamed)."""
    check_path(path)
    page = render(report_data(results))
    parent = path.parent if str(path.parent) else Path(".")
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise HtmlReportError(path, exc.strerror or str(exc)) from exc


__all__ = ["HtmlReportError", "check_path", "render", "report_data", "write"]
