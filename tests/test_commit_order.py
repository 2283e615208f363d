"""Turns that keep one process's announcements in commit order while COMMITs overlap."""

from __future__ import annotations

import threading

import pytest
from flask import Flask
from sqlalchemy.exc import IntegrityError

from zerg import db
from zerg.commit_order import CommitOrder
from zerg.models import Agent


def finish(order: CommitOrder, turn: int, log: list[int]) -> None:
    """What a committed writer does: wait for the earlier turns, act, pass the turn on."""
    order.wait(turn)
    log.append(turn)
    order.done(turn)


def test_a_later_commit_waits_for_the_earlier_ones_to_act() -> None:
    order, log = CommitOrder(), []
    first, second = order.take(), order.take()
    later = threading.Thread(target=finish, args=(order, second, log))
    later.start()
    later.join(0.2)
    assert later.is_alive() and log == []  # its COMMIT returned first; it waits its turn
    finish(order, first, log)
    later.join(5)
    assert log == [first, second]


def test_turns_are_taken_without_waiting_for_commits_in_flight() -> None:
    order = CommitOrder()
    turns = [order.take() for _ in range(3)]  # no turn is done yet, and nobody waits
    assert turns == [0, 1, 2]
    log: list[int] = []
    for turn in turns:
        finish(order, turn, log)
    assert log == turns


def test_a_turn_given_back_out_of_order_is_skipped_when_it_comes() -> None:
    order, log = CommitOrder(), []
    first, failed, third = order.take(), order.take(), order.take()
    order.done(failed)  # its commit failed before the first one acted
    waiting = threading.Thread(target=finish, args=(order, third, log))
    waiting.start()
    finish(order, first, log)
    waiting.join(5)
    assert not waiting.is_alive()
    assert log == [first, third]


def test_a_failed_commit_does_not_hold_up_later_announcements(app: Flask) -> None:
    factory = db.get_session_factory(app)
    done: list[str] = []
    with factory() as session:
        taken = Agent(name="taken", task_instructions="x", model="m")
        session.add(taken)
        session.commit()
    with factory() as session:
        session.add(Agent(id=taken.id, name="again", task_instructions="x", model="m"))
        db.after_commit(session, lambda: done.append("never"))
        with pytest.raises(IntegrityError):
            session.commit()
    with factory() as session:
        session.add(Agent(name="next", task_instructions="x", model="m"))
        db.after_commit(session, lambda: done.append("next"))
        session.commit()
    assert done == ["next"]
