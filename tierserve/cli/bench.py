"""``tierserve bench``: hey's command line, plus LLM figures."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to the ``tierserve`` app."""

    @app.command(
        "bench",
        context_settings={
            "allow_extra_args": True,
            "ignore_unknown_options": True,
            "help_option_names": [],
        },
        add_help_option=False,
    )
    def bench(ctx: typer.Context) -> None:
        """Load-test an endpoint with hey's flags; adds TTFT, TPOT/ITL, tokens/s and goodput.

        tierserve bench [-n 200] [-c 50] [-q QPS] [-z 5m] [-m POST] [-H "K: V"]... [-d BODY|-D FILE]
        [-host HOST] [-t 20] [-T TYPE] [--stream] [--rate R --seed N] [--slo ttft=500ms,tpot=50ms]
        [--json] [--no-progress] URL   (--help lists every option.)
        """
        # Imported here so `tierserve --help` stays fast and aiohttp loads only when needed.
        from tierserve.loadgen.main import main

        raise typer.Exit(main(list(ctx.args)))
