"""Direct statements (zerg.statements) load what the ORM loads and leave nothing behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import cast

import pytest
from flask import Flask
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import exc
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from zerg import db
from zerg.models import Agent
from zerg.models import Base
from zerg.statements import Statement
from zerg.statements import page_of
from zerg.statements import reading
from zerg.statements import row_by_id
from zerg.statements import writing

AGENTS = cast(Table, Agent.__table__)
AGENT = row_by_id(AGENTS)
NOW = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
RENAME = Statement(
    update(AGENTS)
    .where(AGENTS.c.id == bindparam("agent_id"))
    .values(name=bindparam("new_name"), updated_at=bindparam("now"))
    .returning(AGENTS.c.id, AGENTS.c.name)
)


def _add_agent(app: Flask, **fields: object) -> int:
    with db.session_scope(app) as session:
        agent = Agent(name="a", model="offline", **fields)
        session.add(agent)
        session.flush()
        return agent.id


def test_a_row_holds_what_the_orm_loads(app: Flask, db_session: Session) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    agent_id = _add_agent(
        app, config={"temperature": 0.5, "tags": ["x"]}, run_on_schedule=True, next_run_at=when
    )

    with reading(app) as connection:
        row = AGENT.first(connection, id=agent_id)

    loaded = db_session.get(Agent, agent_id)
    assert row is not None and loaded is not None
    assert row == {column.key: getattr(loaded, column.key) for column in Agent.__table__.c}
    assert row["next_run_at"] == when and row["next_run_at"].tzinfo is not None
    assert row["run_on_schedule"] is True
    assert row["config"] == {"temperature": 0.5, "tags": ["x"]}


def test_a_missing_row_is_none_and_pages_follow_the_order(app: Flask) -> None:
    ids = [_add_agent(app) for _ in range(5)]
    page = page_of(select(Agent.__table__).order_by(Agent.id))

    with reading(app) as connection:
        assert AGENT.first(connection, id=max(ids) + 1) is None
        rows = page.all(connection, skip=1, limit=3)

    assert [row["id"] for row in rows] == ids[1:4]


def test_every_parameter_must_be_given(app: Flask) -> None:
    with reading(app) as connection, pytest.raises(exc.InvalidRequestError):
        AGENT.first(connection)
    assert db.get_database(app).engine.pool.checkedout() == 0


def test_a_write_block_commits(app: Flask, db_session: Session) -> None:
    agent_id = _add_agent(app)

    with writing(app) as connection:
        assert RENAME.first(connection, agent_id=agent_id, new_name="renamed", now=NOW) == {
            "id": agent_id,
            "name": "renamed",
        }

    renamed = db_session.get(Agent, agent_id)
    assert renamed is not None and (renamed.name, renamed.updated_at) == ("renamed", NOW)


def test_a_statement_that_would_skip_a_python_side_default_is_refused(app: Flask) -> None:
    """updated_at has onupdate=utcnow, which only SQLAlchemy's execution would run."""
    rename = Statement(update(AGENTS).values(name=bindparam("new_name")).returning(AGENTS.c.id))
    with writing(app) as connection, pytest.raises(ValueError, match="updated_at"):
        rename.first(connection, new_name="x")


def test_a_failing_write_block_rolls_back_and_frees_its_connection(
    app: Flask, rows: Callable[[type[Base]], int], db_session: Session
) -> None:
    agent_id = _add_agent(app)

    with pytest.raises(RuntimeError), writing(app) as connection:
        RENAME.first(connection, agent_id=agent_id, new_name="lost", now=NOW)
        raise RuntimeError("after the write")

    database = db.get_database(app)
    assert database.engine.pool.checkedout() == 0
    if database.write_lock is not None:
        assert not database.write_lock.locked()
    assert db_session.get(Agent, agent_id).name == "a"  # type: ignore[union-attr]
    # The next writer is not blocked by what failed.
    with writing(app) as connection:
        RENAME.first(connection, agent_id=agent_id, new_name="next", now=NOW)
    assert rows(Agent) == 1


def test_a_database_error_in_a_write_block_rolls_back(app: Flask, db_session: Session) -> None:
    agent_id = _add_agent(app)
    dbapi = db.get_database(app).engine.dialect.loaded_dbapi

    with pytest.raises(dbapi.IntegrityError), writing(app) as connection:
        RENAME.first(connection, agent_id=agent_id, new_name="lost", now=NOW)
        RENAME.first(connection, agent_id=agent_id, new_name=None, now=NOW)  # NOT NULL

    assert db.get_database(app).engine.pool.checkedout() == 0
    assert db_session.get(Agent, agent_id).name == "a"  # type: ignore[union-attr]
