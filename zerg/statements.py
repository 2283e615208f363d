"""Core statements compiled once and run straight on a pooled DBAPI connection.

A request that reads a row into JSON, or writes one row and returns it, needs
none of what a session is for (identity map, change tracking, unit of work),
and the benchmarks priced that: loading one agent through a session cost
~240 us in-process against ~6 us for the query on the pooled connection, with
Core's execution layer alone ~45 us of the difference; adding a thread message
through load-and-flush cost ~1 ms. So the hottest routes run a
:class:`Statement`: SQL from an ordinary Core statement over the models'
tables, compiled once per dialect, with each bind and each result column going
through its type's own processors (``UTCDateTime``'s offset, JSON, SQLite's
booleans), so a row holds what the ORM would have loaded, as a plain dict.

Everything else uses the request's session (:func:`zerg.db.get_db`).
:func:`reading` and :func:`writing` lend the connection from the same pool,
and :func:`writing` opens its transaction the way a write session does
(``BEGIN IMMEDIATE`` on SQLite), so both paths lock alike.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import Dialect
from sqlalchemy import Select
from sqlalchemy import bindparam
from sqlalchemy import select
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.sql.expression import ReturnsRows

from zerg.db import SQLITE_BEGIN_WRITE
from zerg.db import acquire_write_lock
from zerg.db import get_database

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    """A statement as one dialect runs it."""

    sql: str
    construct_params: Callable[..., Any]  # SQLCompiler.construct_params
    bind_order: tuple[str, ...] | None  # names in placeholder order, for positional styles
    bind_processors: tuple[tuple[str, Processor], ...]
    keys: tuple[str, ...]
    result_processors: tuple[tuple[int, Processor], ...]


class Statement:
    """A SELECT, or an INSERT/UPDATE with RETURNING, compiled once per dialect.

    Parameters are the statement's named ``bindparam``s (or an INSERT's
    columns), passed as keywords; every one must be given.
    """

    def __init__(self, statement: ReturnsRows) -> None:
        self.statement = statement
        # Keyed by dialect name; two threads compiling at once build equal values.
        self._compiled: dict[str, _Compiled] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is not None:
            return compiled
        sql = self.statement.compile(dialect=dialect)
        # SQLAlchemy runs Python-side defaults (default=, onupdate=) in its
        # execution context, which this path skips: such columns need values.
        defaults = [*sql.insert_prefetch, *sql.update_prefetch]
        if defaults:
            names = ", ".join(sorted(column.key for column in defaults))
            raise ValueError(f"give a value for each column with a Python-side default: {names}")
        bind_processors = []
        for name, bind in sql.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                bind_processors.append((name, processor))
        result_processors = []
        for index, column in enumerate(self.statement.exported_columns):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                result_processors.append((index, processor))
        compiled = _Compiled(
            sql=sql.string,
            construct_params=sql.construct_params,
            bind_order=tuple(sql.positiontup or ()) if sql.positional else None,
            bind_processors=tuple(bind_processors),
            keys=tuple(column.key for column in self.statement.exported_columns),
            result_processors=tuple(result_processors),
        )
        self._compiled[dialect.name] = compiled
        return compiled

    def all(self, connection: Connection, **params: Any) -> list[dict[str, Any]]:
        """Return every row as a dict keyed by column."""
        compiled = self._compile(connection.dialect)
        values = compiled.construct_params(params)
        for name, processor in compiled.bind_processors:
            values[name] = processor(values[name])
        arguments: Any = values
        if compiled.bind_order is not None:
            arguments = tuple(values[name] for name in compiled.bind_order)
        cursor = connection.dbapi.cursor()
        try:
            cursor.execute(compiled.sql, arguments)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        keys, processors = compiled.keys, compiled.result_processors
        result = []
        for row in rows:
            cells = list(row)
            for index, processor in processors:
                cells[index] = processor(cells[index])
            result.append(dict(zip(keys, cells, strict=True)))
        return result

    def first(self, connection: Connection, **params: Any) -> dict[str, Any] | None:
        """Return the first row, or None if there is none."""
        rows = self.all(connection, **params)
        return rows[0] if rows else None


@dataclass(frozen=True)
class Connection:
    """A pooled DBAPI connection lent to a block, with the dialect that talks to it."""

    dbapi: DBAPIConnection
    dialect: Dialect


@contextmanager
def reading(app: Flask | None = None) -> Iterator[Connection]:
    """Lend a connection of the current (or given) app's pool for a few reads.

    Returning it to the pool rolls back whatever the driver began, so nothing
    a read did outlives the block.
    """
    engine = get_database(app).engine
    connection = engine.raw_connection()
    try:
        yield Connection(connection.dbapi_connection, engine.dialect)  # type: ignore[arg-type]
    finally:
        connection.close()


@contextmanager
def writing(app: Flask | None = None) -> Iterator[Connection]:
    """Lend a connection for one transaction: committed if the block succeeds, else rolled back.

    On SQLite it begins as a write session's does: it waits its turn on
    ``Database.write_lock`` behind this process's other writers, then takes
    the database's write lock up front; on PostgreSQL the driver begins it
    with the first statement.
    """
    database = get_database(app)
    lock = database.write_lock
    if lock is not None:
        acquire_write_lock(lock)
    try:
        pooled = database.engine.raw_connection()
        dbapi: Any = pooled.dbapi_connection
        try:
            if lock is not None:
                dbapi.execute(SQLITE_BEGIN_WRITE)
            yield Connection(dbapi, database.engine.dialect)
            dbapi.commit()
        except BaseException:
            dbapi.rollback()
            raise
        finally:
            pooled.close()
    finally:
        if lock is not None:
            lock.release()


def row_by_id(table: Any) -> Statement:
    """The SELECT of one row of ``table`` by its primary key (parameter ``id``)."""
    return Statement(select(table).where(table.c.id == bindparam("id")))


def page_of(statement: Select[Any]) -> Statement:
    """The SELECT of one page of ``statement`` (parameters ``skip`` and ``limit``)."""
    return Statement(statement.limit(bindparam("limit")).offset(bindparam("skip")))
