"""The vLLM-compatible engine emulator and its performance model.

- ``perf/``: the pure performance model (GPU and model shapes, step cost, KV-cache
  capacity, the continuous-batching scheduler, closed-loop predictions).
- ``args``: ``vllm serve``'s command line plus emulator options.
- ``core``: the scheduler driven on the wall clock (absolute step deadlines).
- ``body``/``protocol``/``apierror``/``responses``/``server``: the OpenAI API as vLLM
  0.32.0 serves it (body decoding, request validation, error answers, response bodies,
  routes and the uvicorn-like runner).
- ``metrics``/``static_metrics``/``dcgm``: vLLM's metric families (those the engine feeds,
  those fixed at start-up) and DCGM-style GPU gauges.
- ``run``: one emulator process (load time, faults, signals).
"""
