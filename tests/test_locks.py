"""Process-lifetime locks, and the one-scheduler election built on them."""

from __future__ import annotations

from datetime import UTC
from datetime import datetime

from flask import Flask
from sqlalchemy import text

from tests.conftest import AppFactory
from tests.helpers import create_agent
from tests.helpers import wait_for
from zerg import db
from zerg import serving
from zerg.locks import AdvisoryLocks
from zerg.locks import FileLocks
from zerg.locks import make_locks
from zerg.locks import split_key
from zerg.runs import scheduler
from zerg.runs.lifecycle import liveness_lock
from zerg.runs.pool import get_runner
from zerg.runs.scheduler import get_scheduler
from zerg.runs.scheduler import run_scheduled_agent


def test_a_lock_is_exclusive_visible_and_released(app: Flask) -> None:
    engine = db.get_database(app).engine
    mine, theirs = make_locks(engine), make_locks(engine)
    try:
        assert mine.try_acquire("job")
        assert mine.try_acquire("job")  # re-entrant for its holder
        assert not theirs.try_acquire("job")
        assert theirs.held("job")
        # Its holder sees it held too: asked, not remembered.
        assert mine.held("job")
        assert not theirs.held("free")

        mine.release("job")

        assert not theirs.held("job") and not mine.held("job")
        assert theirs.try_acquire("job")
    finally:
        mine.close()
        theirs.close()


def test_closing_frees_every_lock_as_dying_would(app: Flask) -> None:
    engine = db.get_database(app).engine
    mine, theirs = make_locks(engine), make_locks(engine)
    try:
        assert mine.try_acquire("a") and mine.try_acquire("b")
        mine.close()
        assert theirs.try_acquire("a") and theirs.try_acquire("b")
    finally:
        theirs.close()


def test_exactly_one_process_runs_the_scheduler_and_it_passes_on(make_app: AppFactory) -> None:
    config = {"SCHEDULER_ENABLED": True, "SCHEDULER_LOCK_POLL_SECONDS": 0.1}
    first, second = make_app(**config), make_app(**config)
    serving.start(first)
    serving.start(second)
    assert get_scheduler(first).running
    assert not get_scheduler(second).running
    # What the second's keeper tries at every poll, and fails while the first lives.
    assert not second.extensions[serving.EXTENSION_KEY].locks.try_acquire(scheduler.LOCK)
    assert not get_scheduler(second).running

    serving.stop(first)

    wait_for(lambda: get_scheduler(second).running)


def lose_lock(app: Flask, name: str) -> None:
    """Take a lock from whoever holds it, as a dead connection or a removed file would."""
    engine = db.get_database(app).engine
    probe = make_locks(engine)
    try:
        if isinstance(probe, AdvisoryLocks):
            classid, objid = split_key(probe.key(name))
            with engine.connect() as connection:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                        " AND classid = CAST(CAST(:classid AS bigint) AS oid)"
                        " AND objid = CAST(CAST(:objid AS bigint) AS oid)"
                    ),
                    {"classid": classid, "objid": objid},
                )
                connection.commit()
        else:
            assert isinstance(probe, FileLocks)
            probe.path(name).unlink()
    finally:
        probe.close()


def test_a_holder_that_loses_its_lock_stops_scheduling_until_it_holds_it_again(
    make_app: AppFactory,
) -> None:
    """On PostgreSQL the holder's lock connection is killed; on SQLite its lock file removed."""
    # The first notices slowly, so that the second has taken over by then.
    first = make_app(SCHEDULER_ENABLED=True, SCHEDULER_LOCK_POLL_SECONDS=1)
    second = make_app(SCHEDULER_ENABLED=True, SCHEDULER_LOCK_POLL_SECONDS=0.05)
    agent = create_agent(first.test_client(), schedule="* * * * *", task_instructions="Tick.")
    serving.start(first)
    serving.start(second)
    assert get_scheduler(first).running and not get_scheduler(second).running

    lose_lock(first, scheduler.LOCK)

    wait_for(lambda: get_scheduler(second).running, "the second to take over")
    # Until the first notices, its jobs may still fire: they start nothing.
    tick = datetime.now(UTC).replace(second=0, microsecond=0)
    assert run_scheduled_agent(first, agent["id"], scheduled_for=tick) is False
    wait_for(lambda: not get_scheduler(first).running, "the first to stop scheduling")
    assert run_scheduled_agent(second, agent["id"], scheduled_for=tick) is True
    assert get_scheduler(second).running and not get_scheduler(first).running

    serving.stop(second)

    wait_for(lambda: get_scheduler(first).running, "the first to hold the lock again")


def test_a_process_whose_lock_connection_dies_takes_its_liveness_lock_again(
    make_app: AppFactory,
) -> None:
    """Otherwise another process would think it dead and interrupt its runs."""
    app = make_app(SCHEDULER_LOCK_POLL_SECONDS=0.05)
    serving.start(app)
    liveness = liveness_lock(get_runner(app).instance_id)
    probe = make_locks(db.get_database(app).engine)
    try:
        assert probe.held(liveness)
        lose_lock(app, liveness)
        wait_for(lambda: probe.held(liveness), "the liveness lock to be taken again")
    finally:
        probe.close()
