"""Locks that live exactly as long as the process holding them.

Two jobs need them once several processes serve one database: exactly one
process runs the scheduler, and a process starting up must tell a run whose
owner died (interrupted) from one whose owner is merely busy elsewhere.

On PostgreSQL they are session advisory locks on a connection kept for the
purpose, so they work across hosts and vanish when the process dies, however
it dies. On SQLite (one host by nature) they are ``flock`` locks on files in
the instance folder, which the kernel releases the same way.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import IO
from typing import Protocol

from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import TextClause
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """Map a lock name to PostgreSQL's signed 64-bit advisory key."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def database_lock_key(engine: Engine, name: str) -> int:
    """Map a lock name to its key in ``engine``'s database, apart from other deployments'.

    Advisory locks span the whole server: the key is namespaced by the
    database URL (schema options included), so two deployments, or two test
    runs, sharing a server do not block each other.
    """
    return lock_key(f"{engine.url.render_as_string(hide_password=True)}|{name}")


def split_key(key: int) -> tuple[int, int]:
    """Split an advisory key as ``pg_locks`` shows it: (classid, objid), the high and low halves."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


# Whether this connection's session holds the advisory lock on a bigint key.
HOLDS = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"
    " AND pid = pg_backend_pid() AND granted AND objsubid = 1"
    " AND classid = CAST(CAST(:classid AS bigint) AS oid)"
    " AND objid = CAST(CAST(:objid AS bigint) AS oid))"
)


class Liveness(Protocol):
    def held(self, name: str) -> bool:
        """Tell whether a live process, this one included, holds the lock.

        Asked of the lock itself, never of what this process remembers.
        """
        ...


class Locks(Liveness, Protocol):
    def try_acquire(self, name: str) -> bool:
        """Take the named lock for this process's lifetime, if no live process has it."""
        ...

    def holds(self, name: str) -> bool:
        """Check, not just remember, that this process still holds the lock.

        A lock can be lost without a word: its connection killed, its file
        removed. A lost lock is forgotten, so it can be taken again.
        """
        ...

    def release(self, name: str) -> None:
        """Give up a lock this process holds."""
        ...

    def close(self) -> None:
        """Release everything."""
        ...


class AdvisoryLocks:
    """PostgreSQL session advisory locks on one dedicated connection.

    Keys are namespaced by the database (:func:`database_lock_key`).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._guard = threading.Lock()
        self._connection: Connection | None = None
        self._held: set[str] = set()

    def _own(self) -> Connection:
        if self._connection is None or self._connection.closed:
            # Autocommit: advisory locks are per session, not per transaction.
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        return self._connection

    def key(self, name: str) -> int:
        """Return the advisory key of a lock name in this database."""
        return database_lock_key(self._engine, name)

    def _execute(self, query: TextClause, params: dict[str, int]) -> object:
        """Run a query on the lock connection; if it fails, its locks are gone with it."""
        try:
            return self._own().execute(query, params).scalar()
        except SQLAlchemyError:
            log.warning("the lock connection failed; its locks are lost", exc_info=True)
            if self._connection is not None:
                self._connection.invalidate()
                self._connection.close()
            self._connection = None
            self._held.clear()
            raise

    def try_acquire(self, name: str) -> bool:
        with self._guard:
            if name in self._held:
                return True
            query = text("SELECT pg_try_advisory_lock(:key)")
            if self._execute(query, {"key": self.key(name)}):
                self._held.add(name)
                return True
            return False

    def holds(self, name: str) -> bool:
        with self._guard:
            if name not in self._held:
                return False
            classid, objid = split_key(self.key(name))
            try:
                held = self._execute(HOLDS, {"classid": classid, "objid": objid})
            except SQLAlchemyError:
                return False
            if not held:
                self._held.discard(name)
            return bool(held)

    def release(self, name: str) -> None:
        with self._guard:
            if name in self._held and self._connection is not None:
                unlock = text("SELECT pg_advisory_unlock(:key)")
                self._connection.execute(unlock, {"key": self.key(name)})
            self._held.discard(name)

    def held(self, name: str) -> bool:
        # Probe from a pooled connection, another session than the lock
        # connection: if it can take the lock, nobody holds it, not even us.
        with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:
            key = {"key": self.key(name)}
            if probe.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
                probe.execute(text("SELECT pg_advisory_unlock(:key)"), key)
                return False
        return True

    def close(self) -> None:
        with self._guard:
            if self._connection is not None:
                self._connection.close()
            self._connection = None
            self._held.clear()


class FileLocks:
    """``flock`` locks on files in a folder beside the SQLite file, for its single host."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._guard = threading.Lock()
        self._files: dict[str, IO[bytes]] = {}

    def path(self, name: str) -> Path:
        """Return the file a lock name is held on."""
        return self._folder / f"{hashlib.sha1(name.encode()).hexdigest()}.lock"

    def try_acquire(self, name: str) -> bool:
        with self._guard:
            if name in self._files:
                return True
            self._folder.mkdir(parents=True, exist_ok=True)
            handle = self.path(name).open("ab")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                return False
            self._files[name] = handle
            return True

    def holds(self, name: str) -> bool:
        with self._guard:
            handle = self._files.get(name)
            if handle is None:
                return False
            # A lock file removed (or replaced) under us no longer excludes
            # anyone: another process can create a new one and lock it.
            try:
                held = os.stat(self.path(name)).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                held = False
            if not held:
                del self._files[name]
                handle.close()
            return held

    def release(self, name: str) -> None:
        with self._guard:
            handle = self._files.pop(name, None)
        if handle is not None:
            handle.close()

    def held(self, name: str) -> bool:
        # flock excludes another open file description even in this process,
        # so the probe sees this process's own locks too.
        path = self.path(name)
        if not path.exists():
            return False
        with path.open("ab") as probe:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(probe, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        with self._guard:
            files, self._files = self._files, {}
        for handle in files.values():
            handle.close()


def make_locks(engine: Engine) -> Locks:
    """Choose the lock kind the database allows; both are scoped to that database."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLocks(engine)
    database = Path(engine.url.database or "zerg.sqlite")
    return FileLocks(database.with_name(f"{database.name}.locks"))
