"""``tierserve.aio``: the event loop choice and a server process's GC settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tierserve.aio import SERVER_GC_THRESHOLD, loop_factory, tune_gc_for_serving
from tierserve.errors import ValidationError


@pytest.fixture
def gc_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_served_process_keeps_its_startup_objects_out_of_collections(gc_restored: None) -> None:
    startup = [[i] for i in range(100)]  # allocated before serving: frozen
    tune_gc_for_serving()
    assert gc.get_freeze_count() >= len(startup)
    assert gc.get_threshold()[0] == SERVER_GC_THRESHOLD
    cycle: list[object] = []
    cycle.append(cycle)  # garbage made while serving is still collected
    del cycle
    assert gc.collect() >= 1


def test_loop_factory_refuses_an_unknown_loop() -> None:
    with pytest.raises(ValidationError):
        loop_factory("trio")
    assert loop_factory("asyncio") is None
