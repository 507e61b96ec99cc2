"""Settings every test shares."""

from __future__ import annotations

import pytest

from tierserve.testing import interrupt_on_sigterm


def pytest_configure(config: pytest.Config) -> None:
    interrupt_on_sigterm()  # SIGTERM tears fixtures down (and their processes), as Ctrl-C


@pytest.fixture(autouse=True)
def _a_terminal_that_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that render with rich on a forced terminal expect styles and live refresh;
    rich turns both off when ``TERM=dumb`` (as some CI shells set it). The product's own
    behaviour there is right; the tests pin a terminal type so they do not depend on the
    shell that runs them."""
    monkeypatch.setenv("TERM", "xterm-256color")
