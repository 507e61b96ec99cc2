"""A Service stand-in for the test control plane: one address in front of several
replicas, sending each new connection to a replica whose readiness probe passes.

The test nodes have no kube-proxy. A Service with several endpoints routes only to the
Ready ones; this does the same for processes on loopback: every ``probe_s`` it probes
each backend (HTTPS ``GET /readyz`` trusting ``ca``), and forwards raw TCP (TLS passes
through untouched, client certificates included) to the first ready one. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

import aiohttp


@dataclass
class ReadyProxy:
    backends: list[tuple[str, int]]
    ca: str | None = None
    ready_path: str = "/readyz"
    probe_s: float = 0.2
    ready: list[tuple[str, int]] = field(default_factory=list)
    """The backends whose last probe passed, in order."""
    connections: int = 0
    _server: asyncio.Server | None = None
    _probe: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        if not host.startswith("127."):
            raise ValueError(f"{host}: the test proxy listens on loopback only")
        self._server = await asyncio.start_server(self._serve, host, port)
        self._probe = asyncio.create_task(self._probe_forever())
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _probe_forever(self) -> None:
        ctx: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.ca) if self.ca else False
        )
        scheme = "https" if self.ca else "http"
        timeout = aiohttp.ClientTimeout(total=max(0.5, self.probe_s * 2))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                ready = []
                for host, port in self.backends:
                    url = f"{scheme}://{host}:{port}{self.ready_path}"
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                        async with session.get(url, ssl=ctx) as resp:
                            if resp.status == 200:
                                ready.append((host, port))
                self.ready = ready
                await asyncio.sleep(self.probe_s)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.ready:
            writer.close()  # no ready endpoint: the connection is refused, as by a Service
            return
        host, port = self.ready[0]
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        self.connections += 1

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(ConnectionError, OSError):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


__all__ = ["ReadyProxy"]
