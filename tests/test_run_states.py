"""A run's status is a state machine kept by the database: final states stay final.

Whatever ends a run (its worker, a cancel, the reaper, the sweep, a failure),
the first end to commit wins; the others find the run final and change
nothing: no second reply, no second count on the agent, no event that says
otherwise.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from tests.conftest import AppFactory
from tests.helpers import orphan_run
from tests.helpers import reap_dead_owners
from tests.helpers import wait_for
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from zerg import db
from zerg.runs import lifecycle

ACTIVE = ("queued", "running")


def test_a_run_reaped_while_alive_stays_interrupted_when_its_worker_finishes(
    make_app: AppFactory,
) -> None:
    """The reaper took a live run for dead; a new run answered; the old one ends late."""
    app = make_app(OFFLINE_DELAY_SECONDS=0.005)
    client = app.test_client()
    thread = new_thread(client, "question")
    old_id = orphan_run(app, thread)
    with db.session_scope(app) as session:
        execution = lifecycle.begin_run(session, old_id)
    assert execution is not None
    # Its owner's liveness lock looks free (no process holds it), so it is reaped.
    assert reap_dead_owners(app) == 1
    new = client.post(f"/api/threads/{thread['id']}/run")
    assert new.status_code == 202
    assert wait_run(client, new.get_json()["id"])["status"] == "success"

    # The old worker was alive after all, and reaches the end of its stream.
    execution.parts = ["a late answer"]
    with db.session_scope(app) as session:
        lifecycle.finish_run(session, execution)

    old = client.get(f"/api/runs/{old_id}").get_json()
    assert old["status"] == "interrupted"
    stored = messages(client, thread["id"])
    assert [m["role"] for m in stored] == ["user", "assistant"]
    assert "a late answer" not in stored[-1]["content"]
    runs = client.get(f"/api/runs?thread_id={thread['id']}").get_json()
    assert [r["status"] for r in runs] == ["success", "interrupted"]
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert (agent["status"], agent["last_run_status"]) == ("idle", "success")


def on_postgresql(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL (TEST_DATABASE_URL): SQLite's writers never overlap")


# The backends waiting for the backend :pid, directly or behind another waiter
# (the second to want a row lock waits for the first in line).
BLOCKED_BY = text(
    "WITH RECURSIVE waiting(pid) AS ("
    " SELECT pid FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
    " UNION SELECT a.pid FROM pg_stat_activity a JOIN waiting w"
    " ON w.pid = ANY(pg_blocking_pids(a.pid)))"
    " SELECT count(*) FROM waiting"
)


def wait_blocked(app: Flask, pid: int, count: int) -> None:
    """Wait until ``count`` backends wait for a lock the backend ``pid`` holds."""
    engine = db.get_database(app).engine.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as watcher:
        wait_for(
            lambda: watcher.execute(BLOCKED_BY, {"pid": pid}).scalar() == count,
            f"{count} transaction(s) to wait for the lock",
        )


def test_two_scheduled_failures_at_once_count_two(make_app: AppFactory, database_url: str) -> None:
    """Both load the agent before either holds its lock; the count must not go stale.

    On PostgreSQL the agent's row lock is held here until both wait for it, so
    they are certain to overlap; SQLite's write transactions never do.
    """
    app = make_app(SCHEDULE_MAX_FAILURES=5)
    client = app.test_client()
    fields = {"name": "flaky", "task_instructions": "Report.", "schedule": "0 * * * *"}
    agent = client.post("/api/agents", json=fields).get_json()
    threads = [
        client.post("/api/threads", json={"agent_id": agent["id"]}).get_json() for _ in range(2)
    ]
    executions = []
    for thread in threads:
        client.post(f"/api/threads/{thread['id']}/messages", json={"content": "report"})
        run_id = orphan_run(app, thread, owner="elsewhere", trigger="schedule")
        with db.session_scope(app) as session:
            execution = lifecycle.begin_run(session, run_id)
        assert execution is not None
        execution.status, execution.error = "failed", "the provider is down"
        executions.append(execution)
    start = threading.Barrier(len(executions))

    def finish(execution: lifecycle.Execution) -> None:
        start.wait(timeout=10)
        with db.session_scope(app) as session:
            lifecycle.finish_run(session, execution)

    workers = [threading.Thread(target=finish, args=(e,)) for e in executions]
    engine = db.get_database(app).engine
    with engine.connect() as holder:
        if engine.dialect.name == "postgresql":
            holder.execute(
                text("SELECT id FROM agents WHERE id = :id FOR NO KEY UPDATE"), {"id": agent["id"]}
            )
            pid = holder.execute(text("SELECT pg_backend_pid()")).scalar()
        for worker in workers:
            worker.start()
        if engine.dialect.name == "postgresql":
            wait_blocked(app, pid, 2)
        holder.rollback()
    for worker in workers:
        worker.join(timeout=20)

    counted = client.get(f"/api/agents/{agent['id']}").get_json()
    assert counted["consecutive_failures"] == 2
    assert (counted["status"], counted["last_run_status"]) == ("error", "failed")


def test_a_client_cannot_set_the_status_of_an_agent_whose_run_is_starting(
    make_app: AppFactory, database_url: str
) -> None:
    """The change waits for the agent's lock while the run begins, then sees it running."""
    on_postgresql(database_url)
    app = make_app()
    client = app.test_client()
    thread = new_thread(client)
    run_id = orphan_run(app, thread)
    answers: list[Any] = []
    change = threading.Thread(
        target=lambda: answers.append(
            client.patch(f"/api/agents/{thread['agent_id']}", json={"status": "error"})
        )
    )
    with db.session_scope(app) as session:
        execution = lifecycle.begin_run(session, run_id)
        assert execution is not None and not execution.agent_was_running
        change.start()
        wait_blocked(app, session.execute(text("SELECT pg_backend_pid()")).scalar(), 1)
    change.join(timeout=20)
    with db.session_scope(app) as session:
        lifecycle.mark_agent_running(session, execution)

    assert answers[0].status_code == 409
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert agent["status"] == "running"
    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "running"


def two_runs_of_one_agent(app: Flask, client: FlaskClient) -> tuple[dict[str, Any], int, int]:
    """Two threads of one agent, each with a question and a queued run no worker holds.

    Returns the first thread and the two runs' ids.
    """
    first = new_thread(client)
    second = client.post("/api/threads", json={"agent_id": first["agent_id"]}).get_json()
    client.post(f"/api/threads/{second['id']}/messages", json={"content": "and this?"})
    return first, orphan_run(app, first), orphan_run(app, second)


def test_runs_of_one_agent_begin_side_by_side(make_app: AppFactory, database_url: str) -> None:
    """A beginning run holds its agent's lock shared: the next one begins without waiting.

    An end of one of the agent's runs waits for both, then counts them running.
    """
    on_postgresql(database_url)
    app = make_app()
    client = app.test_client()
    first, first_run, second_run = two_runs_of_one_agent(app, client)
    began: list[lifecycle.Execution | None] = []

    def begin_second() -> None:
        with db.session_scope(app) as session:
            began.append(lifecycle.begin_run(session, second_run))

    with db.session_scope(app) as session:
        execution = lifecycle.begin_run(session, first_run)
        assert execution is not None
        beside = threading.Thread(target=begin_second)
        beside.start()
        beside.join(timeout=20)
        assert began and began[0] is not None, "the second run waited for the first"
    with db.session_scope(app) as session:
        lifecycle.mark_agent_running(session, execution)

    # The first run ends while the second is running: the agent stays running.
    with db.session_scope(app) as session:
        lifecycle.finish_run(session, execution)
    agent = client.get(f"/api/agents/{first['agent_id']}").get_json()
    assert agent["status"] == "running"
    assert client.get(f"/api/runs/{second_run}").get_json()["status"] == "running"


def test_an_end_waits_for_a_beginning_run_of_its_agent(
    make_app: AppFactory, database_url: str
) -> None:
    """The end of a run cannot set the agent idle past a run that began meanwhile."""
    on_postgresql(database_url)
    app = make_app()
    client = app.test_client()
    first, first_run, second_run = two_runs_of_one_agent(app, client)
    with db.session_scope(app) as session:
        execution = lifecycle.begin_run(session, first_run)
    assert execution is not None
    with db.session_scope(app) as session:
        lifecycle.mark_agent_running(session, execution)
    ending = threading.Thread(target=lambda: finish(app, execution))
    with db.session_scope(app) as session:
        beginning = lifecycle.begin_run(session, second_run)
        assert beginning is not None and beginning.agent_was_running
        ending.start()
        wait_blocked(app, session.execute(text("SELECT pg_backend_pid()")).scalar(), 1)
    ending.join(timeout=20)

    agent = client.get(f"/api/agents/{first['agent_id']}").get_json()
    assert agent["status"] == "running"
    assert client.get(f"/api/runs/{first_run}").get_json()["status"] == "success"


def test_an_agent_is_marked_running_only_while_a_run_of_it_is(make_app: AppFactory) -> None:
    """The marking after a begin sees what ended in between: a run already over marks nothing."""
    app = make_app()
    client = app.test_client()
    thread = new_thread(client)
    run_id = orphan_run(app, thread)
    with db.session_scope(app) as session:
        execution = lifecycle.begin_run(session, run_id)
    assert execution is not None and not execution.agent_was_running
    agent_url = f"/api/agents/{thread['agent_id']}"
    assert client.get(agent_url).get_json()["status"] == "idle"
    finish(app, execution)
    with db.session_scope(app) as session:
        lifecycle.mark_agent_running(session, execution)
    assert client.get(agent_url).get_json()["status"] == "idle"


def finish(app: Flask, execution: lifecycle.Execution) -> None:
    with db.session_scope(app) as session:
        lifecycle.finish_run(session, execution)
