"""Concurrent writers on one database, through a real threaded HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from tests.conftest import LiveServer
from tests.helpers import http_agent_and_thread
from zerg import db
from zerg.models import Agent
from zerg.models import ThreadMessage

WRITERS = 8
WRITES_EACH = 50


def test_parallel_http_writers_all_succeed(
    live_server: LiveServer, rows: Callable[..., int]
) -> None:
    base = live_server.url
    agent, thread = http_agent_and_thread(base, "busy")
    start = threading.Barrier(WRITERS)

    def writer(number: int) -> list[int]:
        statuses = []
        with requests.Session() as http:
            start.wait()
            for index in range(WRITES_EACH):
                # Each request reads the thread, inserts a message and updates the
                # thread: the read-then-write shape that trips SQLite's locking.
                response = http.post(
                    f"{base}/api/threads/{thread['id']}/messages",
                    json={"content": f"writer {number} message {index}"},
                    timeout=60,
                )
                statuses.append(response.status_code)
                if index % 10 == 0:
                    statuses.append(
                        http.put(
                            f"{base}/api/agents/{agent['id']}",
                            json={"task_instructions": f"from {number}/{index}"},
                            timeout=60,
                        ).status_code
                    )
        return statuses

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))

    statuses = [status for result in results for status in result]
    assert statuses.count(201) == WRITERS * WRITES_EACH
    assert set(statuses) == {200, 201}
    assert rows(ThreadMessage) == WRITERS * WRITES_EACH
    assert db.get_database(live_server.app).engine.pool.checkedout() == 0


def test_read_modify_write_units_do_not_lose_updates_on_sqlite(app: Flask) -> None:
    if db.get_database(app).engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's READ COMMITTED makes no such promise; SQLite's IMMEDIATE does")
    with db.session_scope(app) as session:
        session.add(Agent(name="0", model="offline"))

    def increment(_: int) -> None:
        for _ in range(25):
            with db.session_scope(app) as session:
                agent = session.scalars(select(Agent)).one()
                agent.name = str(int(agent.name) + 1)

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(increment, range(WRITERS)))

    with db.session_scope(app, write=False) as session:
        assert session.scalars(select(Agent.name)).one() == str(WRITERS * 25)
