"""Read-only views of Linux ``/proc``: a process's identity, group and environment.

A pid alone is not an identity (pids are recycled); ``(pid, start_time)`` is, where
``start_time`` is field 22 of ``/proc/<pid>/stat`` (clock ticks after boot, fixed
when the process was forked). Every function returns ``None``/empty for a process
that is gone or not ours to read rather than raising.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

PROC = "/proc"


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` the runtime needs."""

    pid: int
    state: str
    """``R``, ``S``, ``D``, ``Z`` (zombie: exited, not yet reaped), ``T``, ..."""
    ppid: int
    pgrp: int
    session: int
    start_time: int
    """Field 22, clock ticks after boot."""

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def parse_stat(pid: int, text: str) -> ProcStat:
    """Parse one ``stat`` line; the command name (field 2) may hold spaces and ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3; field N is rest[N - 3].
    return ProcStat(
        pid=pid,
        state=rest[0],
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        start_time=int(rest[19]),
    )


def read_stat(pid: int, proc: str = PROC) -> ProcStat | None:
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return parse_stat(pid, fh.read())
    except (OSError, ValueError, IndexError):
        return None


def read_environ(pid: int, proc: str = PROC) -> dict[str, str]:
    """The environment the process was started with; empty if gone, a zombie or not ours."""
    try:
        with open(f"{proc}/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    env: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def pids(proc: str = PROC) -> Iterator[int]:
    """Every pid in the process table right now."""
    try:
        names = os.listdir(proc)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def descendants(pid: int, proc: str = PROC) -> set[int]:
    """``pid`` and every live process below it (vLLM's workers, an engine's children)."""
    children: dict[int, list[int]] = {}
    for other in pids(proc):
        stat = read_stat(other, proc)
        if stat is not None and not stat.zombie:
            children.setdefault(stat.ppid, []).append(other)
    found = {pid}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
