"""Engines and sessions: the only module that builds either.

``create_app`` calls :func:`init_app`, which builds one engine and one
sessionmaker per app and keeps them in ``app.extensions``. Everything else asks
the app for them: views through :func:`get_db`, background work through
:func:`session_scope`; either way the caller says whether it writes. This
module knows nothing of requests. Tables are made by migrations
(``zerg.migrate``). See DATABASE.md for the reasons.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any
from typing import TypeVar
from typing import cast

from flask import Flask
from flask import current_app
from flask import g
from pydantic_core import from_json
from sqlalchemy import Engine
from sqlalchemy import Executable
from sqlalchemy import Select
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.orm import Session
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import QueuePool

from zerg import dialects
from zerg.commit_order import CommitOrder
from zerg.dialects import WRITE_LOCK_OPTION
from zerg.domain_errors import NotFound
from zerg.errors import StartupError
from zerg.models import ID_MAX
from zerg.models import Base

EXTENSION_KEY = "zerg.db"
# Session.info keys: the app a session belongs to, whether it may write, what waits for its commit.
APP_KEY = "zerg.app"
WRITES_KEY = "zerg.writes"
AFTER_COMMIT_KEY = "zerg.after_commit"
# The process's turns that keep announcements in commit order, and a session's turn.
COMMIT_ORDER_KEY = "zerg.commit_order"
TURN_KEY = "zerg.commit_turn"

# What to install for a database driver that is missing: the package's extra.
DRIVER_HINTS = {"psycopg": "pip install -e '.[postgres]' (or the production extra)"}

log = logging.getLogger(__name__)

RowT = TypeVar("RowT", bound=Base)


@dataclass(frozen=True)
class Database:
    """The app's engine and sessionmaker, built once and shared by every thread.

    ``writer`` is the same engine (same pool) with an execution option that
    makes SQLite open write transactions with ``BEGIN IMMEDIATE``: a unit of work
    that reads and then writes takes the write lock up front and waits for it
    (busy timeout) instead of failing with "database is locked" when it tries to
    upgrade a read lock another writer has overtaken. The option's value is
    the lock (SQLite only; ``write_lock``) on which this process's writers take
    turns first (:func:`acquire_write_lock`), through the begin hook.

    ``reader`` is the engine read sessions use: on PostgreSQL the same pool in
    autocommit, so a read sends its statements and nothing else. Under READ
    COMMITTED each statement saw its own snapshot anyway; the BEGIN and
    ROLLBACK around them were two of a plain GET's three round trips.
    """

    engine: Engine
    sessionmaker: sessionmaker[Session]
    writer: Engine
    reader: Engine

    @property
    def write_lock(self) -> threading.Lock | None:
        """The lock this process's SQLite writers take turns on (None elsewhere)."""
        lock: threading.Lock | None = self.writer.get_execution_options().get(WRITE_LOCK_OPTION)
        return lock

    def session(self, *, write: bool = True) -> Session:
        """Open a session; ``write`` sessions lock SQLite for writing when they begin."""
        if write:
            return self.sessionmaker(bind=self.writer, info={WRITES_KEY: True})
        return self.sessionmaker(bind=self.reader, info={WRITES_KEY: False})


def make_engine(url: str, **options: Any) -> Engine:
    """Build an engine with the per-dialect settings zerg relies on.

    JSON columns are read with pydantic-core's parser, about five times
    faster than the standard library's on the small objects we store.
    """
    options.setdefault("json_deserializer", from_json)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        options.setdefault("connect_args", {}).setdefault("check_same_thread", False)
        engine = _create_engine(url, options)
        dialects.configure_sqlite(engine)
        return engine
    engine = _create_engine(url, options)
    if backend == "postgresql":
        dialects.check_idle_connections(engine)
    return engine


def _create_engine(url: str, options: dict[str, Any]) -> Engine:
    """Create the engine, or say in one line which driver to install for ``url``."""
    try:
        return create_engine(url, **options)
    except NoSuchModuleError:
        name = make_url(url).drivername
        raise StartupError(f"DATABASE_URL names {name!r}, which zerg does not know") from None
    except ModuleNotFoundError as exc:
        hint = DRIVER_HINTS.get(str(exc.name), f"install {exc.name}")
        raise StartupError(
            f"DATABASE_URL needs the driver {exc.name!r}, which is not installed: {hint}"
        ) from None


def make_sessionmaker(engine: Engine, info: dict[str, Any] | None = None) -> sessionmaker[Session]:
    """Build the app's session factory; every session it makes starts with ``info``.

    ``expire_on_commit=False`` keeps committed objects readable, so views can
    commit and then serialise what they wrote without a second query. Actions
    registered with :func:`after_commit` run when a session's transaction
    commits and are dropped when it ends any other way.
    """
    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=True, info=info)
    event.listen(factory, "before_flush", _refuse_read_only_writes)
    event.listen(factory, "before_commit", _take_commit_turn)
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_transaction_end", _drop_after_commit)
    return factory


def make_database(app: Flask) -> Database:
    """Build the engine and sessionmaker an app's configuration asks for.

    Sessions carry their app (:func:`app_of`), so that the domain functions
    they are handed to can reach its event bus and settings.
    """
    config = app.config
    # A request that finds every connection taken waits at most
    # DATABASE_POOL_TIMEOUT for one, then gets 503 (zerg.errors).
    engine = make_engine(
        config["DATABASE_URL"],
        pool_size=config["DATABASE_POOL_SIZE"],
        max_overflow=10,
        pool_timeout=config["DATABASE_POOL_TIMEOUT"],
    )
    write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
    return Database(
        engine=engine,
        sessionmaker=make_sessionmaker(
            engine, info={APP_KEY: app, COMMIT_ORDER_KEY: CommitOrder()}
        ),
        writer=engine.execution_options(**{WRITE_LOCK_OPTION: write_lock}),
        reader=(
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        ),
    )


def app_of(session: Session) -> Flask:
    """Return the app whose factory made ``session``."""
    app: Flask = session.info[APP_KEY]
    return app


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction commits; forget it otherwise.

    Domain functions announce events and hand runs to the worker pool this
    way: the caller at the edge decides when to commit, and a change that is
    rolled back announces nothing. Actions run in the order they were added,
    before the connection goes back to the pool (so, on SQLite, still inside
    this process's write turn): they must be quick and never wait on I/O,
    which is why publishing an event only queues it for the bus. Register
    them after the work they describe has succeeded: a savepoint that rolls
    back does not take them with it.
    """
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(action)


def _refuse_read_only_writes(session: Session, *_: object) -> None:
    """Refuse to flush ORM changes from a read session, on either database.

    On SQLite it skips the write turn and BEGIN IMMEDIATE, so such a write
    would fail under load: the caller asked for the wrong session, and the
    first test of its path says so. (Core DML is not seen here.)
    """
    if not session.info.get(WRITES_KEY, True) and (session.new or session.dirty or session.deleted):
        raise RuntimeError("a read session cannot write; ask for a write session (write=True)")


def _take_commit_turn(session: Session) -> None:
    """Before a commit that has announcements, take this process's next turn to announce.

    On PostgreSQL a commit releases the row locks that ordered two writers
    (a thread's lock, say) before either has announced anything, so the
    second could announce first, and watchers would see two messages in the
    opposite order of a reload. The turn is taken once the last changes are
    flushed, holding their row locks, so writers ordered by a lock take
    turns in that order (:mod:`zerg.commit_order`).
    """
    order: CommitOrder | None = session.info.get(COMMIT_ORDER_KEY)
    if order is None or not session.info.get(AFTER_COMMIT_KEY) or TURN_KEY in session.info:
        return
    session.flush()
    session.info[TURN_KEY] = order.take()


def _run_after_commit(session: Session) -> None:
    # Releasing a savepoint fires this too; only the outermost commit counts.
    if session.in_nested_transaction():
        return
    turn = session.info.pop(TURN_KEY, None)
    try:
        if turn is not None:
            session.info[COMMIT_ORDER_KEY].wait(turn)
        for action in session.info.pop(AFTER_COMMIT_KEY, ()):
            try:
                action()
            except Exception:
                # The change is committed whatever happens here; one failed
                # announcement must not hide it from the caller or stop the others.
                log.exception("an action after commit failed")
    finally:
        if turn is not None:
            session.info[COMMIT_ORDER_KEY].done(turn)


def _drop_after_commit(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(AFTER_COMMIT_KEY, None)
        # A commit that failed after taking its turn gives it back here.
        turn = session.info.pop(TURN_KEY, None)
        if turn is not None:
            session.info[COMMIT_ORDER_KEY].done(turn)


def get_database(app: Flask | None = None) -> Database:
    """Return the current (or given) app's database state."""
    target = app if app is not None else current_app
    try:
        state: Database = target.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError("zerg.db.init_app(app) has not been called for this app") from None
    return state


def get_session_factory(app: Flask | None = None) -> sessionmaker[Session]:
    """Return the current (or given) app's sessionmaker."""
    return get_database(app).sessionmaker


def load_row(session: Session, model: type[RowT], ident: int, *, lock: bool = False) -> RowT:
    """Load a row by primary key (``lock``: FOR UPDATE) or raise NotFound.

    Ids past the id columns' range name nothing; they are answered here, since
    PostgreSQL would reject them as out of range rather than find no row.
    """
    row = session.get(model, ident, with_for_update=lock) if ident <= ID_MAX else None
    if row is None:
        raise NotFound(model.__name__, ident)
    return row


# The escape character of the LIKE patterns built by like_pattern.
LIKE_ESCAPE = "\\"


def like_pattern(text: str) -> str:
    """Return a LIKE pattern that finds ``text`` anywhere, its ``%`` and ``_`` taken literally."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return f"%{text}%"


def fetch_rows(
    session: Session, statement: Executable, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Run a Core SELECT in the session and return its rows as plain dicts.

    Plain dicts are what pydantic-core serialises directly (it does not know
    SQLAlchemy's row types); zipping each row with the column names costs a
    third of converting its RowMapping, and fetching all rows at once saves a
    driver call per row.
    """
    result = session.execute(statement, params)
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result.all()]


@cache
def by_id(model: type[Base]) -> Select[Any]:
    """The SELECT of one row of ``model``'s table by primary key (parameter ``id``)."""
    table = cast(Table, model.__table__)
    return select(table).where(table.c.id == bindparam("id"))


def read_row(session: Session, model: type[Base], ident: int) -> dict[str, Any]:
    """Read one row of ``model``'s table as a dict, or raise NotFound."""
    rows = fetch_rows(session, by_id(model), {"id": ident}) if ident <= ID_MAX else []
    if not rows:
        raise NotFound(model.__name__, ident)
    return rows[0]


def get_db(*, write: bool = False) -> Session:
    """Return this app context's session, opening it on first use; ``write`` to change data.

    The first caller in a context chooses: a read session (never waits for a
    writer) or a write session, which serves later readers too. Asking to
    write once a read session is open raises. The teardown closes either.
    """
    session: Session | None = g.get("db_session")
    if session is None:
        session = g.db_session = get_database().session(write=write)
    elif write and not session.info[WRITES_KEY]:
        raise RuntimeError("this app context has a read session; ask for get_db(write=True) first")
    return session


def close_db(exc: BaseException | None = None) -> None:
    """Roll back whatever the app context left uncommitted and return the connection."""
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        # Closing rolls back an open transaction and returns the connection;
        # an explicit rollback() first would only add ORM bookkeeping.
        session.close()


@contextmanager
def session_scope(app: Flask | None = None, *, write: bool = True) -> Iterator[Session]:
    """Run one unit of work outside a request: commit on success, roll back on error.

    Pass ``app`` from threads that have no app context (scheduler jobs, the
    runner, websocket handlers).
    """
    session = get_database(app).session(write=write)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(session: Session) -> bool:
    """Tell whether the session's database answers a trivial query."""
    try:
        session.execute(text("SELECT 1"))
    except DBAPIError:
        return False
    return True


def pool_stats(app: Flask | None = None) -> tuple[int, int]:
    """Return the pool's (checked-out, open) connection counts, for leak checks."""
    pool = get_database(app).engine.pool
    if not isinstance(pool, QueuePool):
        return 0, 0
    return pool.checkedout(), pool.checkedout() + pool.checkedin()


def init_app(app: Flask) -> None:
    """Build the app's engine and sessionmaker and register the session teardown."""
    if EXTENSION_KEY in app.extensions:
        raise RuntimeError("zerg.db is already registered on this app")
    app.extensions[EXTENSION_KEY] = make_database(app)
    app.teardown_appcontext(close_db)
