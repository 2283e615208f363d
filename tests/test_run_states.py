"""A run's status is a state machine kept by the database: final states stay final.

Whatever ends a run (its worker, a cancel, the reaper, the sweep, a failure),
the first end to commit wins; the others find the run final and change
nothing: no second reply, no second count on the agent, no event that says
otherwise.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from tests.conftest import AppFactory
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from zerg import db
from zerg.locks import make_locks
from zerg.models import Run
from zerg.runs import lifecycle

ACTIVE = ("queued", "running")


def orphan_run(app: Flask, thread: dict[str, Any], owner: str = "presumed-dead") -> int:
    """Queue a run owned by a process that is not this app's, so no worker here takes it."""
    with db.session_scope(app) as session:
        run = Run(agent_id=thread["agent_id"], thread_id=thread["id"], trigger="api", owner=owner)
        session.add(run)
        session.flush()
        return run.id


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
    locks = make_locks(db.get_database(app).engine)
    try:
        with db.session_scope(app) as session:
            assert lifecycle.mark_interrupted(session, dead=locks) == 1
    finally:
        locks.close()
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
