"""Where a local control plane keeps its state, and how clients find it.

The state directory (``--state-dir``, else ``$TIERSERVE_STATE_DIR``, else the user's data
directory) holds the SQLite database, the bearer token (mode 0600), ``client.json`` with
the API and gateway addresses, the control plane's pid file, replica working directories
and logs. Several independent instances run side by side with different state dirs.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from platformdirs import user_data_dir

from tierserve.errors import ConflictError, NotFoundError
from tierserve.runtime.local.procfs import read_stat

ENV_STATE_DIR = "TIERSERVE_STATE_DIR"
DB_FILE = "state.db"
TOKEN_FILE = "token"
CLIENT_FILE = "client.json"
PID_FILE = "controlplane.pid"
LOG_FILE = "controlplane.log"


def state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The state directory: the flag, then ``$TIERSERVE_STATE_DIR``, then the data dir."""
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return Path(user_data_dir("tierserve", appauthor=False))


def running_pid(root: Path) -> int | None:
    """The pid of the control plane running on this state directory, if one is alive."""
    try:
        pid = int((root / PID_FILE).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return None
    if pid <= 0:
        return None
    stat = read_stat(pid)
    # Gone, or killed and not yet reaped (a zombie is not a running control plane).
    if stat is None or stat.zombie:
        return None
    return pid


def ensure_not_running(root: Path) -> None:
    """Refuse a second control plane on one state directory (it would share the store)."""
    other = running_pid(root)
    if other is not None and other != os.getpid():
        raise ConflictError(
            f"a control plane (pid {other}) already runs on {root}; stop it with "
            "`tierserve down` or use another --state-dir"
        )


def ensure_token(root: Path) -> str:
    """The bearer token, generated at first start and stored with mode 0600."""
    path = root / TOKEN_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


@dataclass(frozen=True)
class ClientConfig:
    """What every CLI command needs to reach a running control plane."""

    api_url: str
    gateway_url: str
    token: str
    pid: int

    def save(self, root: Path) -> None:
        path = root / CLIENT_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(tmp, path)

    @classmethod
    def load(cls, root: Path) -> ClientConfig:
        path = root / CLIENT_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NotFoundError(
                f"no control plane found in {root}: start one with `tierserve up` "
                f"(or point --state-dir / ${ENV_STATE_DIR} at its state directory)"
            ) from None
        return cls(**data)
