"""What each database needs of its connections, set up as the engine is built.

SQLite: WAL and foreign keys on every connection, and write transactions that
take the write lock up front (``BEGIN IMMEDIATE``), one writer of the process
at a time, waiting for other processes in Python rather than in SQLite's C
busy handler. PostgreSQL: a connection idle for a while is checked before
use. ``zerg.db`` builds the engines and calls these; DATABASE.md says why.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError

SQLITE_BUSY_TIMEOUT_MS = 30_000
# The pauses between tries for SQLite's write lock, as SQLite's own busy handler makes them.
SQLITE_BUSY_STEPS = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.05, 0.1)
# How SQLite write transactions begin: taking the write lock up front (see db.Database).
SQLITE_BEGIN_WRITE = "BEGIN IMMEDIATE"
# The writer engine's execution option (and connection info key) for the write lock.
WRITE_LOCK_OPTION = "zerg_write_lock"
# A pooled PostgreSQL connection used this recently is taken to be alive (HikariCP's
# "alive bypass window" is 500 ms); one idle longer is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0
# Connection info key: when the connection was last given back to the pool (or opened).
LAST_USED = "zerg.last_used"

log = logging.getLogger(__name__)


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode, also when another connection is switching it.

    Switching needs the database to itself, and SQLite refuses at once ("database
    is locked": the busy timeout does not apply) while another connection, which
    found a new database too, has switched it and begun writing. Either the mode
    is WAL by then, or the other connection's transaction ends and we try again.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def configure_sqlite(engine: Engine) -> None:
    """Apply per-connection PRAGMAs and let SQLAlchemy, not pysqlite, issue BEGIN."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # pysqlite would otherwise emit its own deferred BEGIN before DML; with
        # isolation_level None it stays out of the way and the "begin" hook
        # below decides. Python 3.11 has no ``autocommit`` attribute.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _use_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A write connection carries its app's write lock as an execution
        # option (Database.writer): it waits its turn, then takes SQLite's
        # write lock up front. BEGIN goes straight to the driver: through
        # exec_driver_sql it cost ~15 us of every request.
        lock = connection.get_execution_options().get(WRITE_LOCK_OPTION)
        driver = connection.connection.driver_connection
        if lock is None:
            driver.execute("BEGIN")
            return
        acquire_write_lock(lock)
        connection.connection.info[WRITE_LOCK_OPTION] = lock
        begin_write(driver)

    def _give_back(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        # A session returns its connection as soon as it has committed or
        # rolled back, so the turn ends with the transaction.
        lock = record.info.pop(WRITE_LOCK_OPTION, None)
        if lock is not None:
            lock.release()

    event.listen(engine, "checkin", _give_back)
    event.listen(engine, "invalidate", _give_back)


def begin_write(driver: sqlite3.Connection) -> None:
    """Begin a write transaction, waiting for another process's write lock in Python.

    SQLite's busy handler sleeps in C: under gevent that froze every request
    and websocket of the worker while one write waited for another process.
    So the busy timeout is off for this statement, the only one of a write
    transaction that waits (in WAL mode, readers never wait and the lock is
    taken up front), and the pauses between tries are ``time.sleep``, which
    gevent makes cooperative. Threads wait exactly as they did.
    """
    driver.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        for attempt in itertools.count():
            try:
                driver.execute(SQLITE_BEGIN_WRITE)
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                if attempt == 0:
                    log.debug("another process holds SQLite's write lock; waiting for it")
                time.sleep(SQLITE_BUSY_STEPS[min(attempt, len(SQLITE_BUSY_STEPS) - 1)])
    finally:
        driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def acquire_write_lock(lock: threading.Lock) -> None:
    """Wait for this process's SQLite write turn, no longer than the busy timeout.

    SQLite lets one writer in at a time, and a writer that finds it taken
    sleeps in the busy handler, backing off in steps of up to 100 ms however
    soon the database frees up: with 16 request threads writing, POST p99 was
    ~760 ms. Writers queued on a lock are woken the moment the last one is
    done (p99 ~35 ms); the busy handler is left to arbitrate between processes.
    """
    if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise sqlite3.OperationalError("database is locked (by this process's other writers)")


def check_idle_connections(engine: Engine, idle_seconds: float = PING_AFTER_IDLE_SECONDS) -> None:
    """Ping a pooled connection before use only if it sat idle longer than ``idle_seconds``.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: one more round
    trip for every transaction, a quarter of a plain GET's, and under gevent
    one more wait for the hub. A connection given back a moment ago was
    alive then; one that sat idle may have been cut (a restart, a failover,
    an idle timeout) and is pinged. A dead one is replaced, and the pool
    drops the others opened before it (DisconnectionError). A restart within
    the window costs the request that finds it a 503, which a retry gets past.
    """

    def used(_dbapi_connection: Any, record: Any, *_: Any) -> None:
        record.info[LAST_USED] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(LAST_USED, 0.0) < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"a pooled connection is dead: {exc}") from exc

    event.listen(engine, "connect", used)
    event.listen(engine, "checkin", used)
    event.listen(engine, "checkout", check)
