"""A throwaway PostgreSQL cluster for tests and benchmarks: `ablab server`'s own LocalPostgres
(initdb, run as the unprivileged `postgres` user when we are root) in a folder under /tmp,
with the `optuna` database created. Fails, naming the fix, where PostgreSQL is not installed
(`make system-deps` installs it)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.server import LocalPostgres, ensure_databases, with_db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed() -> bool:
    return bool(shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


@contextlib.contextmanager
def postgres(db: str = "optuna") -> Iterator[str]:
    """Yields the URL of database `db` on a fresh cluster; stops and removes it after."""
    if not installed():
        raise RuntimeError("PostgreSQL's initdb is not installed (make system-deps installs it)")
    # the unprivileged user must reach the folder: not under pytest's private tmp
    root = Path(tempfile.mkdtemp(prefix="ablab-pg-", dir="/tmp"))
    root.chmod(0o755)
    pg = LocalPostgres(root / "postgres", _free_port())
    try:
        pg.init()
        pg.start()
        ensure_databases(pg.url(), (db,))
        yield with_db(pg.url(), db)
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
