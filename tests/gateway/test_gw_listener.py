"""The gateway's listener (``listener.py``): every pending connection is accepted in one
loop iteration on either loop (uvloop's own server accepts one per iteration), errors
as asyncio's server treats them, binding errors that name the address."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

import pytest
import uvloop

from tierserve.gateway.listener import Listener, bind_sockets

LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}


class Counted(asyncio.Protocol):
    made: ClassVar[list[int]] = []
    """The loop iteration each connection was made in."""
    iteration: ClassVar[list[int]] = [0]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(self.iteration[0])
        self.transport = transport


@pytest.mark.parametrize("loop", list(LOOPS))
def test_every_pending_connection_is_accepted_in_one_iteration(loop: str) -> None:
    """200 connections queued while the loop was busy are all made in the same loop
    iteration (one with uvloop's ``create_server`` would take 200 iterations)."""

    async def scenario() -> None:
        running = asyncio.get_running_loop()
        Counted.made, Counted.iteration = [], [0]
        listener = Listener(running, Counted, bind_sockets("127.0.0.1", 0, reuse_port=False,
                                                           backlog=1024))  # fmt: skip
        clients = [socket.create_connection(("127.0.0.1", listener.port())) for _ in range(200)]

        def tick() -> None:  # counts the loop's iterations from now on
            Counted.iteration[0] += 1
            running.call_soon(tick)

        tick()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(Counted.made) == 200:
                break
        per_iteration = Counter(Counted.made)
        assert len(Counted.made) == 200 and len(per_iteration) == 1, per_iteration
        await listener.close()
        for c in clients:
            c.close()

    LOOPS[loop](scenario())


@pytest.mark.parametrize("loop", list(LOOPS))
def test_connections_carry_data_and_close_stops_accepting(loop: str) -> None:
    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t: asyncio.Transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.t.write(data.upper())

    async def scenario() -> None:
        listener = Listener(asyncio.get_running_loop(), Echo,
                            bind_sockets("127.0.0.1", 0, reuse_port=False, backlog=16))  # fmt: skip
        port = listener.port()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hi")
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"HI"
        await listener.close()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"still")  # a connection made before closing stays
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"STILL"
        writer.close()

    LOOPS[loop](scenario())


class FakeListening:
    """A listening socket whose ``accept`` raises from a script, then has nothing."""

    def __init__(self, real: socket.socket, errors: list[int]) -> None:
        self.real = real
        self.errors = errors

    def fileno(self) -> int:
        return self.real.fileno()

    def getsockname(self) -> Any:
        return self.real.getsockname()

    def accept(self) -> tuple[socket.socket, Any]:
        if self.errors:
            code = self.errors.pop(0)
            raise OSError(code, errno.errorcode[code])
        return self.real.accept()

    def close(self) -> None:
        self.real.close()


def test_out_of_descriptors_pauses_accepting_then_resumes() -> None:
    """EMFILE (as asyncio's server): accepting stops for the delay, the queued
    connection waits in the kernel, then is accepted; ECONNABORTED is skipped."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        Counted.made, Counted.iteration = [], [0]
        real = bind_sockets("127.0.0.1", 0, reuse_port=False, backlog=16)[0]
        fake = FakeListening(real, [errno.ECONNABORTED, errno.EMFILE])
        listener = Listener(loop, Counted, [fake], retry_delay_s=0.2)  # type: ignore[list-item]
        client = socket.create_connection(("127.0.0.1", listener.port()))
        t0 = loop.time()
        await asyncio.sleep(0.1)
        assert Counted.made == [] and fake.errors == []  # paused after EMFILE
        while not Counted.made and loop.time() - t0 < 5:
            await asyncio.sleep(0.02)
        assert len(Counted.made) == 1 and loop.time() - t0 >= 0.2
        await listener.close()
        client.close()

    asyncio.run(scenario())


def test_binding_a_busy_port_names_the_address_and_leaves_nothing_open() -> None:
    taken = bind_sockets("127.0.0.1", 0, reuse_port=False, backlog=1)[0]
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError) as err:
            bind_sockets("127.0.0.1", port, reuse_port=False, backlog=1)
        assert err.value.errno == errno.EADDRINUSE
        assert f"('127.0.0.1', {port})" in str(err.value) and "in use" in str(err.value)
    finally:
        taken.close()


def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    first = bind_sockets("127.0.0.1", 0, reuse_port=True, backlog=1)
    port = first[0].getsockname()[1]
    second = bind_sockets("127.0.0.1", port, reuse_port=True, backlog=1)
    assert second[0].getsockname()[1] == port
    for s in first + second:
        s.close()


def test_an_empty_host_binds_every_interface() -> None:
    sockets = bind_sockets("", 0, reuse_port=False, backlog=1)
    try:
        hosts = {s.getsockname()[0] for s in sockets}
        assert hosts & {"0.0.0.0", "::"}, hosts
    finally:
        for s in sockets:
            s.close()
