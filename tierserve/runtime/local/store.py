"""The local state store: every object and event in one SQLite database (WAL mode).

One table of objects keyed by (kind, namespace, name) holding the object's JSON and a
monotonically increasing ``resourceVersion``; one table of events (Kubernetes-style:
type, reason, message, count, first/last seen, deduplicated on object + reason +
message); one table of counters (cloud GPU-seconds and cost); one table of controller
state (key -> JSON value). The database and its ``-wal``/``-shm`` files are mode 0600:
they hold Secret values.

Transactions. Every write method is one transaction. ``with store.transaction():``
groups several into one, all or nothing; blocks nest (an inner block that raises undoes
only its own writes, through a SAVEPOINT). Controller state goes in the same transaction
as the objects it belongs with, so a restart never sees one without the other::

    with store.transaction():
        store.put(service)
        store.put_state("autoscaler/default/deepseek", {"recommendations": [...]})

``get_state(key)`` reads a value back (None if absent; inside a transaction it sees that
transaction's writes), ``put_state(key, None)`` removes it, ``state_items(prefix)``
lists the values under a key prefix (``"autoscaler/"``). Keys are free-form; by
convention ``<controller>/<namespace>/<name>``. Values are anything ``json.dumps``
takes. Do not ``await`` inside a block: another task's writes would join it.

Objects are read back with ``context=STORED``: rules that only new input must pass are
not applied again, so an object stored by an older version still loads; a row that does
not load at all is left out of ``list`` (and logged) rather than failing every reader.
The store is used from one thread (the control plane's event loop).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pydantic

from tierserve.errors import ConflictError
from tierserve.model import KINDS, TypedObject
from tierserve.model.base import STORED

T = TypeVar("T", bound=TypedObject)
log = logging.getLogger("tierserve.store")
FILE_MODE = 0o600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    body TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
    type TEXT NOT NULL, reason TEXT NOT NULL, message TEXT NOT NULL,
    count INTEGER NOT NULL, first_s REAL NOT NULL, last_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_object ON events (kind, namespace, name);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT NOT NULL, labels TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (name, labels)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Event:
    """A Kubernetes-style event about one object."""

    kind: str
    namespace: str
    name: str
    type: str  # Normal | Warning
    reason: str
    message: str
    count: int
    first_s: float
    last_s: float

    def to_dict(self) -> dict[str, Any]:
        """As ``GET /api/v1/events`` lists it, with an ``id`` that stays the same while a
        repeat bumps its count (or, folded, changes its message)."""
        return {
            "id": f"{self.kind}/{self.namespace}/{self.name}/{self.reason}/{self.first_s!r}",
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "count": self.count,
            "firstTimestamp": self.first_s,
            "lastTimestamp": self.last_s,
        }


class Store(Protocol):
    """What controllers and the API server need from state."""

    def get(self, cls: type[T], namespace: str, name: str) -> T | None: ...
    def list(self, cls: type[T], namespace: str | None = None) -> builtins.list[T]: ...
    def put(self, obj: TypedObject, expect_version: int | None = None) -> TypedObject: ...
    def put_all(self, objs: Iterable[TypedObject]) -> builtins.list[TypedObject]: ...
    def delete(self, obj: TypedObject) -> bool: ...
    def record(
        self,
        obj: TypedObject,
        type_: str,
        reason: str,
        message: str,
        now_s: float,
        fold: bool = False,
    ) -> None: ...
    def events(self, obj: TypedObject | None = None) -> builtins.list[Event]: ...
    def add_counter(self, name: str, labels: dict[str, str], delta: float) -> None: ...
    def counters(self, name: str) -> dict[tuple[tuple[str, str], ...], float]: ...
    def transaction(self) -> AbstractContextManager[None]: ...
    def get_state(self, key: str) -> Any: ...
    def put_state(self, key: str, value: Any) -> None: ...
    def state_items(self, prefix: str = "") -> dict[str, Any]: ...


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ns(obj: TypedObject) -> str:
    return obj.namespace if obj.NAMESPACED else ""


class SqliteStore:
    """``Store`` on SQLite; safe for one writer process and any number of readers."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._depth = 0  # nesting of open transactions
        _private_files(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        _private_files(self.path)  # -wal/-shm now exist; SQLite gives them the db's mode

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; inside another, a savepoint of it."""
        outer = self._depth == 0
        savepoint = f"sp{self._depth}"
        self._db.execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {savepoint}")
        self._depth += 1
        try:
            yield self._db
        except BaseException:
            self._depth -= 1
            if outer:
                self._db.execute("ROLLBACK")
            else:
                self._db.execute(f"ROLLBACK TO {savepoint}")
                self._db.execute(f"RELEASE {savepoint}")
            raise
        self._depth -= 1
        self._db.execute("COMMIT" if outer else f"RELEASE {savepoint}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes made inside the block into one transaction (see the module)."""
        with self._tx():
            yield

    # -- objects ---------------------------------------------------------------------------

    @staticmethod
    def _decode(body: str, version: int) -> TypedObject:
        data = json.loads(body)
        data.setdefault("metadata", {})["resourceVersion"] = str(version)
        return KINDS[data["kind"]].model_validate(data, context=STORED)

    def get(self, cls: type[T], namespace: str, name: str) -> T | None:
        ns = namespace if cls.NAMESPACED else ""
        row = self._db.execute(
            "SELECT body, version FROM objects WHERE kind=? AND namespace=? AND name=?",
            (cls.KIND, ns, name),
        ).fetchone()
        if row is None:
            return None
        obj = self._decode(row[0], row[1])
        assert isinstance(obj, cls)
        return obj

    def list(self, cls: type[T], namespace: str | None = None) -> builtins.list[T]:
        query = "SELECT namespace, name, body, version FROM objects WHERE kind=?"
        args: tuple[Any, ...] = (cls.KIND,)
        if namespace is not None and cls.NAMESPACED:
            query += " AND namespace=?"
            args += (namespace,)
        rows = self._db.execute(query + " ORDER BY namespace, name", args).fetchall()
        out: builtins.list[T] = []
        for namespace_, name, body, version in rows:
            try:
                obj = self._decode(body, version)
            except (pydantic.ValidationError, ValueError, KeyError) as exc:
                # One unreadable row must not fail every reader (every controller tick).
                log.error(
                    "stored %s %s/%s does not load and is left out (%s); delete it",
                    cls.KIND,
                    namespace_,
                    name,
                    type(exc).__name__,
                )
                continue
            assert isinstance(obj, cls)
            out.append(obj)
        return out

    def _next_version(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
        version = int(row[0]) + 1 if row else 1
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('version', ?)", (version,))
        return version

    def _write(
        self, db: sqlite3.Connection, obj: TypedObject, expect_version: int | None
    ) -> TypedObject:
        key = (obj.KIND, _ns(obj), obj.name)
        if expect_version is not None:
            row = db.execute(
                "SELECT version FROM objects WHERE kind=? AND namespace=? AND name=?", key
            ).fetchone()
            current = row[0] if row else 0
            if current != expect_version:
                raise ConflictError(
                    f"{obj.KIND} {obj.name} was changed (version {current}, "
                    f"expected {expect_version}); read it again and retry"
                )
        version = self._next_version(db)
        body = obj.model_dump(by_alias=True, exclude_none=True, mode="json")
        meta = body["metadata"]
        meta.pop("resourceVersion", None)
        if "creationTimestamp" not in meta:
            row = db.execute(
                "SELECT body FROM objects WHERE kind=? AND namespace=? AND name=?", key
            ).fetchone()
            created = json.loads(row[0])["metadata"].get("creationTimestamp") if row else None
            meta["creationTimestamp"] = created or rfc3339(self._clock())
        db.execute(
            "INSERT OR REPLACE INTO objects (kind, namespace, name, body, version) "
            "VALUES (?, ?, ?, ?, ?)",
            (*key, json.dumps(body, separators=(",", ":")), version),
        )
        return self._decode(json.dumps(body), version)

    def put(self, obj: TypedObject, expect_version: int | None = None) -> TypedObject:
        """Create or replace; with ``expect_version`` fail on a concurrent change (0 = new)."""
        with self._tx() as db:
            return self._write(db, obj, expect_version)

    def put_all(self, objs: Iterable[TypedObject]) -> builtins.list[TypedObject]:
        """Write several objects in one transaction."""
        with self._tx() as db:
            return [self._write(db, obj, None) for obj in objs]

    def delete(self, obj: TypedObject) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM objects WHERE kind=? AND namespace=? AND name=?",
                (obj.KIND, _ns(obj), obj.name),
            )
            return cur.rowcount > 0

    # -- events ----------------------------------------------------------------------------

    def record(
        self,
        obj: TypedObject,
        type_: str,
        reason: str,
        message: str,
        now_s: float,
        fold: bool = False,
    ) -> None:
        """Record an event; a repeat of the last identical one bumps its count instead.

        ``fold``: the message changes from one repeat to the next (a countdown, say), so a
        repeat of the last event's type and reason bumps its count and takes the newest
        message, rather than adding an event per tick."""
        key = (obj.KIND, _ns(obj), obj.name)
        with self._tx() as db:
            row = db.execute(
                "SELECT id, type, reason, message FROM events WHERE kind=? AND namespace=? "
                "AND name=? ORDER BY id DESC LIMIT 1",
                key,
            ).fetchone()
            same = row is not None and row[2] == reason and row[3] == message
            folds = fold and row is not None and row[1] == type_ and row[2] == reason
            if same or folds:
                db.execute(
                    "UPDATE events SET count = count + 1, last_s = ?, message = ? WHERE id = ?",
                    (now_s, message, row[0]),
                )
                return
            db.execute(
                "INSERT INTO events (kind, namespace, name, type, reason, message, count, "
                "first_s, last_s) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (*key, type_, reason, message, now_s, now_s),
            )

    def events(self, obj: TypedObject | None = None) -> builtins.list[Event]:
        query = "SELECT kind, namespace, name, type, reason, message, count, first_s, last_s "
        query += "FROM events"
        args: tuple[str, ...] = ()
        if obj is not None:
            query += " WHERE kind=? AND namespace=? AND name=?"
            args = (obj.KIND, _ns(obj), obj.name)
        return [Event(*row) for row in self._db.execute(query + " ORDER BY id", args)]

    # -- counters --------------------------------------------------------------------------

    def add_counter(self, name: str, labels: dict[str, str], delta: float) -> None:
        encoded = json.dumps(sorted(labels.items()))
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters (name, labels, value) VALUES (?, ?, ?) "
                "ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value",
                (name, encoded, delta),
            )

    def counters(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        rows = self._db.execute("SELECT labels, value FROM counters WHERE name=?", (name,))
        return {tuple(tuple(p) for p in json.loads(labels)): value for labels, value in rows}

    # -- controller state ------------------------------------------------------------------

    def get_state(self, key: str) -> Any:
        """The JSON value stored under ``key``, or None."""
        row = self._db.execute("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_state(self, key: str, value: Any) -> None:
        """Store ``value`` (anything ``json.dumps`` takes) under ``key``; None removes it."""
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM state WHERE key=?", (key,))
                return
            db.execute(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)",
                (key, json.dumps(value, separators=(",", ":"))),
            )

    def state_items(self, prefix: str = "") -> dict[str, Any]:
        """Every stored value whose key starts with ``prefix``, by key."""
        rows = self._db.execute(
            "SELECT key, value FROM state WHERE substr(key, 1, ?) = ? ORDER BY key",
            (len(prefix), prefix),
        )
        return {key: json.loads(value) for key, value in rows}


def _private_files(path: str) -> None:
    """Create the database file with mode 0600 and narrow it (and -wal, -shm) if wider.

    SQLite creates ``-wal`` and ``-shm`` with the database file's permissions, so the
    database is created first, with ``os.open``'s mode (no umask change: that is
    process-wide and would race other threads)."""
    if path == ":memory:" or path.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            if os.stat(name).st_mode & 0o777 != FILE_MODE:
                os.chmod(name, FILE_MODE)
