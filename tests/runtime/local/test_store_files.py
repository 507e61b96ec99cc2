"""The state database holds Secret values: it and its WAL/SHM files are mode 0600; an
object that an older version stored, and that today's rules would refuse, still loads."""

import json
import os
import sqlite3
import stat
from pathlib import Path

from tierserve.model import InferenceService, Secret, load_documents
from tierserve.runtime.local.store import SqliteStore

SECRET = """\
apiVersion: v1
kind: Secret
metadata: {name: oss-secret}
stringData: {akId: id, akSecret: sk}
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_wal_and_shm_are_private_after_a_real_write(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the common default, under which files were 0644
    try:
        store = SqliteStore(tmp_path / "state.db")
        store.put_all(load_documents(SECRET))
    finally:
        os.umask(old)
    files = [tmp_path / n for n in ("state.db", "state.db-wal", "state.db-shm")]
    assert all(f.exists() for f in files)
    assert [mode(f) for f in files] == [0o600, 0o600, 0o600]
    assert isinstance(store.get(Secret, "default", "oss-secret"), Secret)


def test_files_made_by_an_older_version_are_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    SqliteStore(db).put_all(load_documents(SECRET))
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        os.chmod(tmp_path / name, 0o644)
    SqliteStore(db)
    assert [mode(tmp_path / n) for n in ("state.db", "state.db-wal", "state.db-shm")] == [0o600] * 3


def test_an_object_stored_before_todays_rules_still_loads(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    (good,) = load_documents(
        "apiVersion: serving.tierserve.io/v1alpha1\nkind: InferenceService\n"
        "metadata: {name: deepseek}\nspec: {command: x}\n"
    )
    body = good.model_dump(by_alias=True, exclude_none=True, mode="json")
    body["metadata"]["name"] = "x" * 60  # accepted before names were checked
    broken = dict(body, metadata={"name": "y"})  # and one no version could read
    broken["spec"] = {"replicas": "many"}
    with sqlite3.connect(tmp_path / "state.db") as db:
        for obj in (body, broken):
            db.execute(
                "INSERT INTO objects VALUES (?, ?, ?, ?, ?)",
                ("InferenceService", "default", obj["metadata"]["name"], json.dumps(obj), 1),
            )
    # Listed (so controllers see it and report it) and readable (so it can be deleted);
    # the unreadable one is left out instead of failing every list.
    names = [s.name for s in store.list(InferenceService)]
    assert names == ["x" * 60]
    old = store.get(InferenceService, "default", "x" * 60)
    assert old is not None and store.delete(old)
