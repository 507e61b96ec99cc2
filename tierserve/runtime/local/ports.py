"""Free TCP ports on 127.0.0.1 for replicas, and the check that one is being served.

``PortAllocator`` asks the kernel for a free port (bind to port 0) and remembers what
it handed out, so two replicas started in the same control plane never get the same
port even if the first has not bound it yet. Ports of re-adopted replicas are
``reserve``d so they are not handed out again.
"""

from __future__ import annotations

import socket

from tierserve.errors import ExternalError, RetryLater

LOOPBACK = "127.0.0.1"


class PortAllocator:
    """Hands out distinct free ports on ``host``; ``release`` returns one to the pool."""

    def __init__(self, host: str = LOOPBACK, attempts: int = 50) -> None:
        self.host = host
        self._attempts = attempts
        self._taken: set[int] = set()

    @property
    def taken(self) -> frozenset[int]:
        return frozenset(self._taken)

    def allocate(self) -> int:
        for _ in range(self._attempts):
            port = _free_port(self.host)
            if port not in self._taken:
                self._taken.add(port)
                return port
        raise RetryLater(f"no free TCP port on {self.host} after {self._attempts} attempts")

    def reserve(self, port: int) -> None:
        """Mark a port as in use (a re-adopted replica's)."""
        self._taken.add(port)

    def release(self, port: int) -> None:
        self._taken.discard(port)


def _free_port(host: str) -> int:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port
    except OSError as exc:
        raise ExternalError(f"cannot bind a TCP port on {host}: {exc}") from exc


def port_open(port: int, host: str = LOOPBACK, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
