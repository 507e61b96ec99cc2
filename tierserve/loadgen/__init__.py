"""``tierserve bench``: hey's load generator with LLM figures (TTFT, TPOT/ITL, goodput).

::

    flags.py     hey's command line -> validated BenchConfig (errors name flag, value, expectation)
    schedule.py  pure: Poisson arrival offsets (--rate, --seed), per-worker -q interval
    runner.py    I/O: aiohttp client, closed-loop workers or open-loop dispatcher, phase timing
    openai.py    pure: SSE framing, content chunks, usage
    result.py    one request's measurements
    stats.py     pure: hey's histogram and latency distribution, percentiles, goodput
    report.py    pure: results -> Report (every figure)
    render.py    hey's text layout + LLM section, or --json
    progress.py  rich live progress bar on stderr
    main.py      flags -> run -> report -> output; exit codes
"""
