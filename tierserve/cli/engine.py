"""``tierserve engine``: engines tierserve can run (the vLLM-compatible emulator)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Engines: the vLLM-compatible emulator.", no_args_is_help=True)


@app.command(
    "emulate",
    context_settings={
        "allow_extra_args": True,
        "ignore_unknown_options": True,
        "help_option_names": [],
    },
    add_help_option=False,
)
def emulate(ctx: typer.Context) -> None:
    """Run the vLLM-compatible emulator with `vllm serve`'s command line.

    tierserve engine emulate [vllm serve | serve] MODEL_PATH --port 8080
    --served-model-name NAME [vLLM flags...] [--gpu V100-32G] [--model-profile NAME]
    [--time-scale 0.1] [--timeout-keep-alive 5] ... (--help lists every option.)
    """
    # Imported here so `tierserve --help` stays fast and aiohttp loads only when needed.
    from tierserve.engine.run import main

    raise typer.Exit(main(list(ctx.args)))
