"""Process-lifetime locks, and the one-scheduler election built on them."""

from __future__ import annotations

import time

from flask import Flask

from tests.conftest import AppFactory
from tests.helpers import wait_for
from zerg import db
from zerg import serving
from zerg.locks import make_locks
from zerg.runs.scheduler import get_scheduler


def test_a_lock_is_exclusive_visible_and_released(app: Flask) -> None:
    engine = db.get_database(app).engine
    mine, theirs = make_locks(engine), make_locks(engine)
    try:
        assert mine.try_acquire("job")
        assert mine.try_acquire("job")  # re-entrant for its holder
        assert not theirs.try_acquire("job")
        assert theirs.held_elsewhere("job")
        assert not mine.held_elsewhere("job")
        assert not theirs.held_elsewhere("free")

        mine.release("job")

        assert not theirs.held_elsewhere("job")
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
    time.sleep(0.5)
    assert get_scheduler(first).running
    assert not get_scheduler(second).running

    serving.stop(first)

    wait_for(lambda: get_scheduler(second).running)
