"""Runs on the offline model: starting, streaming, storing, cancelling, recovering."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import stream_watch
from tests.helpers import wait_for
from tests.wsclient import WSClient
from zerg import db
from zerg import serving
from zerg.locks import make_locks
from zerg.models import Agent
from zerg.models import Run
from zerg.models import Thread
from zerg.models import ThreadMessage
from zerg.models import utcnow
from zerg.realtime import events
from zerg.runs.lifecycle import build_context
from zerg.runs.lifecycle import mark_interrupted
from zerg.runs.pool import get_runner

FAST = {"OFFLINE_DELAY_SECONDS": 0.005}
SLOW = {"OFFLINE_DELAY_SECONDS": 0.15}


def get_run(client: FlaskClient, run_id: int) -> dict[str, Any]:
    run: dict[str, Any] = client.get(f"/api/runs/{run_id}").get_json()
    return run


def wait_run(client: FlaskClient, run_id: int, timeout: float = 10) -> dict[str, Any]:
    """Poll a run until it has finished; return it."""
    wait_for(
        lambda: get_run(client, run_id)["status"] not in ("queued", "running"),
        f"run {run_id} to finish",
        timeout,
    )
    return get_run(client, run_id)


def wait_status(client: FlaskClient, run_id: int, status: str, timeout: float = 5) -> None:
    wait_for(
        lambda: get_run(client, run_id)["status"] == status, f"run {run_id} to be {status}", timeout
    )


def new_thread(client: FlaskClient, message: str | None = "Hello, agent") -> dict[str, Any]:
    agent = client.post(
        "/api/agents", json={"name": "helper", "system_instructions": "Be brief."}
    ).get_json()
    thread: dict[str, Any] = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    if message is not None:
        client.post(f"/api/threads/{thread['id']}/messages", json={"content": message})
    return thread


def messages(client: FlaskClient, thread_id: int) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = client.get(f"/api/threads/{thread_id}/messages").get_json()
    return result


@pytest.fixture
def fast_app(make_app: AppFactory) -> Flask:
    return make_app(**FAST)


@pytest.fixture
def fast(fast_app: Flask) -> FlaskClient:
    return fast_app.test_client()


def test_a_thread_run_answers_and_records_everything(fast: FlaskClient) -> None:
    thread = new_thread(fast)
    response = fast.post(f"/api/threads/{thread['id']}/run")
    assert response.status_code == 202
    queued = response.get_json()
    assert queued["status"] == "queued"
    assert queued["trigger"] == "api"
    assert queued["thread_id"] == thread["id"]

    run = wait_run(fast, queued["id"])

    assert run["status"] == "success"
    assert run["error"] is None
    assert run["started_at"] and run["finished_at"]
    assert run["duration_ms"] >= 0
    assert run["completion_tokens"] > 0 and run["total_tokens"] > run["completion_tokens"]
    user, reply = messages(fast, thread["id"])
    assert user["processed"] is True
    assert reply["role"] == "assistant"
    assert reply["partial"] is False
    assert "offline model" in reply["content"]
    assert "Hello, agent" in reply["content"]
    agent = fast.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert agent["status"] == "idle"
    assert agent["last_run_at"] == run["finished_at"]
    assert agent["last_run_status"] == "success"


def test_a_run_needs_something_to_answer(fast: FlaskClient, rows: Callable[..., int]) -> None:
    thread = new_thread(fast, message=None)
    response = fast.post(f"/api/threads/{thread['id']}/run")
    assert response.status_code == 409
    assert "no unanswered user message" in response.get_json()["detail"]
    assert rows(Run) == 0


def test_runs_of_a_missing_thread_or_agent_are_404(fast: FlaskClient) -> None:
    assert fast.post("/api/threads/999/run").status_code == 404
    assert fast.post("/api/agents/999/run").status_code == 404
    assert fast.get("/api/runs/999").status_code == 404
    assert fast.post("/api/runs/999/cancel").status_code == 404


def test_one_active_run_per_thread(make_app: AppFactory, rows: Callable[..., int]) -> None:
    client = make_app(**SLOW).test_client()
    thread = new_thread(client)
    first = client.post(f"/api/threads/{thread['id']}/run")
    assert first.status_code == 202
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "and another"})

    second = client.post(f"/api/threads/{thread['id']}/run")

    assert second.status_code == 409
    assert "already has an active run" in second.get_json()["detail"]
    assert rows(Run) == 1
    client.post(f"/api/runs/{first.get_json()['id']}/cancel")
    wait_run(client, first.get_json()["id"])


def test_the_database_refuses_a_second_running_run_even_in_a_race(fast_app: Flask) -> None:
    client = fast_app.test_client()
    thread = new_thread(client)
    ids = {"agent_id": thread["agent_id"], "thread_id": thread["id"], "trigger": "api"}
    with db.session_scope(fast_app) as session:
        session.add(Run(**ids, status="running"))
        session.add(Run(**ids, status="queued"))  # queued runs may wait behind it
    with pytest.raises(Exception, match="(?i)unique"), db.session_scope(fast_app) as session:
        session.add(Run(**ids, status="running"))


def test_an_agent_run_uses_a_thread_of_its_own(fast: FlaskClient) -> None:
    agent = fast.post(
        "/api/agents", json={"name": "digest", "task_instructions": "Summarise the day."}
    ).get_json()
    chat = fast.post("/api/threads", json={"agent_id": agent["id"]}).get_json()

    response = fast.post(f"/api/agents/{agent['id']}/run")

    assert response.status_code == 202
    run = wait_run(fast, response.get_json()["id"])
    assert run["trigger"] == "manual"
    assert run["status"] == "success"
    assert run["thread_id"] != chat["id"]
    task_thread = fast.get(f"/api/threads/{run['thread_id']}").get_json()
    assert task_thread["thread_type"] == "manual"
    task, reply = messages(fast, run["thread_id"])
    assert task["content"] == "Summarise the day." and task["processed"] is True
    assert "Summarise the day." in reply["content"]
    assert messages(fast, chat["id"]) == []


def test_an_agent_without_task_instructions_cannot_run(
    fast: FlaskClient, rows: Callable[..., int]
) -> None:
    agent = fast.post("/api/agents", json={"name": "idle"}).get_json()
    response = fast.post(f"/api/agents/{agent['id']}/run")
    assert response.status_code == 409
    assert (rows(Run), rows(Thread)) == (0, 0)


def test_cancelling_a_running_run_keeps_the_partial_reply(make_app: AppFactory) -> None:
    app = make_app(**SLOW)
    client = app.test_client()
    thread = new_thread(client)
    with stream_watch(app) as watch:
        run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
        watch.wait(run_id)

    response = client.post(f"/api/runs/{run_id}/cancel")

    assert response.status_code == 202
    run = wait_run(client, run_id)
    assert run["status"] == "cancelled"
    user, reply = messages(client, thread["id"])
    assert reply["partial"] is True
    assert reply["content"] and "Hello, agent" not in reply["content"]
    assert user["processed"] is True
    assert client.get(f"/api/agents/{thread['agent_id']}").get_json()["status"] == "idle"
    assert client.post(f"/api/runs/{run_id}/cancel").status_code == 409


def test_cancelling_a_queued_run_stops_it_before_it_starts(make_app: AppFactory) -> None:
    app = make_app(RUN_WORKERS=1, **SLOW)
    client = app.test_client()
    busy = new_thread(client)
    waiting = new_thread(client)
    busy_run = client.post(f"/api/threads/{busy['id']}/run").get_json()["id"]
    wait_status(client, busy_run, "running")
    queued_run = client.post(f"/api/threads/{waiting['id']}/run").get_json()["id"]

    response = client.post(f"/api/runs/{queued_run}/cancel")

    assert response.status_code == 200
    assert response.get_json()["status"] == "cancelled"
    assert response.get_json()["stop_requested"] == "cancel"
    client.post(f"/api/runs/{busy_run}/cancel")
    wait_run(client, busy_run)
    # The one worker, free again, is done with every run handed to it, the cancelled one too.
    wait_for(lambda: get_runner(app).in_flight() == 0, "the pool to be done with its runs")
    assert client.get(f"/api/runs/{queued_run}").get_json()["status"] == "cancelled"
    assert [m["role"] for m in messages(client, waiting["id"])] == ["user"]


def test_runs_list_newest_first_with_filters(fast: FlaskClient) -> None:
    first = new_thread(fast)
    second = new_thread(fast)
    one = wait_run(fast, fast.post(f"/api/threads/{first['id']}/run").get_json()["id"])
    two = wait_run(fast, fast.post(f"/api/threads/{second['id']}/run").get_json()["id"])

    assert [r["id"] for r in fast.get("/api/runs").get_json()] == [two["id"], one["id"]]
    by_thread = fast.get(f"/api/runs?thread_id={first['id']}").get_json()
    assert [r["id"] for r in by_thread] == [one["id"]]
    by_agent = fast.get(f"/api/runs?agent_id={second['agent_id']}").get_json()
    assert [r["id"] for r in by_agent] == [two["id"]]
    assert len(fast.get("/api/runs?status=success").get_json()) == 2
    assert fast.get("/api/runs?status=failed").get_json() == []
    assert [r["id"] for r in fast.get("/api/runs?limit=1").get_json()] == [two["id"]]
    fast.patch(f"/api/agents/{first['agent_id']}", json={"task_instructions": "Sum up."})
    task = fast.post(f"/api/agents/{first['agent_id']}/run")
    assert task.status_code == 202
    by_trigger = fast.get("/api/runs?trigger=manual").get_json()
    assert [r["id"] for r in by_trigger] == [task.get_json()["id"]]
    assert [r["id"] for r in fast.get("/api/runs?trigger=api").get_json()] == [two["id"], one["id"]]
    assert fast.get("/api/runs?trigger=schedule").get_json() == []


@pytest.mark.parametrize(
    "query",
    ["status=done", "trigger=cron", "agent_id=x", "thread_id=0", "limit=0", "x=1", "q=", "q=%00"],
)
def test_runs_list_refuses_bad_filters(fast: FlaskClient, query: str) -> None:
    response = fast.get(f"/api/runs?{query}")
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        # The agent's name, ignoring case: every run of Nightly Report.
        ("q=nightly", ["Timeout at 50%", None]),
        # Or the run's error.
        ("q=timeout", ["Timeout at 50%", "TIMEOUT upstream"]),
        ("q=50%25", ["Timeout at 50%"]),
        ("q=5_%25", []),
        ("q=timeout&status=failed&limit=1", ["Timeout at 50%"]),
        ("q=timeout&skip=1", ["TIMEOUT upstream"]),
    ],
)
def test_runs_list_finds_q_in_the_agent_name_or_the_error(
    fast_app: Flask, query: str, errors: list[str | None]
) -> None:
    client = fast_app.test_client()
    report = new_thread(client, message=None)
    other = new_thread(client, message=None)
    client.patch(f"/api/agents/{report['agent_id']}", json={"name": "Nightly Report"})
    with db.session_scope(fast_app) as session:
        for thread, status, error in [
            (other, "failed", "TIMEOUT upstream"),
            (report, "success", None),
            (report, "failed", "Timeout at 50%"),
        ]:
            session.add(
                Run(
                    agent_id=thread["agent_id"],
                    thread_id=thread["id"],
                    trigger="api",
                    status=status,
                    error=error,
                )
            )

    response = client.get(f"/api/runs?{query}")

    assert response.status_code == 200
    assert [run["error"] for run in response.get_json()] == errors


def test_startup_marks_unfinished_runs_interrupted(fast_app: Flask) -> None:
    client = fast_app.test_client()
    thread = new_thread(client)
    with db.session_scope(fast_app) as session:
        agent = session.get(Agent, thread["agent_id"])
        assert agent is not None
        agent.status = "running"
        session.add(
            Run(
                agent_id=thread["agent_id"],
                thread_id=thread["id"],
                trigger="api",
                status="running",
                # After the thread's message: it was answering it.
                started_at=utcnow(),
            )
        )
        other = Thread(agent_id=thread["agent_id"], title="other")
        session.add(other)
        session.flush()
        session.add(Run(agent_id=thread["agent_id"], thread_id=other.id, trigger="api"))
        session.add(
            Run(agent_id=thread["agent_id"], thread_id=other.id, trigger="api", status="success")
        )

    serving.start(fast_app)

    runs = {r["status"] for r in client.get("/api/runs").get_json()}
    assert runs == {"interrupted", "success"}
    interrupted = client.get("/api/runs?status=interrupted").get_json()
    assert len(interrupted) == 2
    assert all(r["finished_at"] and "stopped" in r["error"] for r in interrupted)
    agent = client.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert (agent["status"], agent["last_run_status"]) == ("idle", "interrupted")
    with db.session_scope(fast_app) as session:
        dead = make_locks(db.get_database(fast_app).engine)
        assert mark_interrupted(session, dead=dead) == 0
    # The thread is free again: a new run can start.
    assert client.post(f"/api/threads/{thread['id']}/run").status_code == 202


def test_deleting_an_agent_mid_run_ends_cleanly(
    make_app: AppFactory, rows: Callable[..., int]
) -> None:
    app = make_app(**SLOW)
    with serve(app) as server:
        client = app.test_client()
        thread = new_thread(client)
        with WSClient(f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}") as ws:
            ws.recv_type("thread_history")
            run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
            ws.recv_type("run_updated")
            ws.recv_type("run_updated")
            ws.recv_type("stream_start")

            assert client.delete(f"/api/agents/{thread['agent_id']}").status_code == 204

            frames = []
            while not frames or frames[-1]["type"] != "stream_end":
                frames.append(ws.recv(timeout=10))
            assert any(f["type"] == "thread_deleted" for f in frames)
            assert frames[-1]["run_id"] == run_id
    assert (rows(Run), rows(Thread), rows(ThreadMessage), rows(Agent)) == (0, 0, 0, 0)


@pytest.fixture
def live_fast(make_app: AppFactory) -> Iterator[LiveServer]:
    with serve(make_app(**FAST)) as server:
        yield server


def stream_frames(ws: WSClient, until: str = "stream_end") -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] != until:
        frames.append(ws.recv(timeout=10))
    return frames


def test_a_websocket_watcher_sees_the_reply_stream_in_order(live_fast: LiveServer) -> None:
    api = requests.Session()
    base = f"{live_fast.url}/api"
    agent = api.post(f"{base}/agents", json={"name": "streamer"}, timeout=10).json()
    thread = api.post(f"{base}/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    api.post(f"{base}/threads/{thread['id']}/messages", json={"content": "stream me"}, timeout=10)
    with WSClient(f"{live_fast.ws_url}/api/ws?initial_topics=thread:{thread['id']}") as ws:
        ws.recv_type("thread_history")
        run = api.post(f"{base}/threads/{thread['id']}/run", timeout=10).json()

        frames = [f for f in stream_frames(ws) if f["type"] != "run_updated"]

    kinds = [f["type"] for f in frames]
    assert kinds[0] == "stream_start"
    assert kinds[-2:] == ["thread_message", "stream_end"]
    chunks = [f for f in frames if f["type"] == "stream_chunk"]
    assert len(chunks) >= 2
    assert kinds[1 : 1 + len(chunks)] == ["stream_chunk"] * len(chunks)
    assert all(f["run_id"] == run["id"] and f["thread_id"] == thread["id"] for f in chunks)
    stored = frames[-2]["message"]
    assert stored["role"] == "assistant"
    assert stored["content"] == "".join(f["content"] for f in chunks)
    assert frames[-1]["status"] == "success"
    saved = api.get(f"{base}/threads/{thread['id']}/messages", timeout=10).json()[-1]
    assert saved == stored
    api.close()


def test_send_message_over_the_websocket_gets_an_answer(live_fast: LiveServer) -> None:
    base = f"{live_fast.url}/api"
    agent = requests.post(f"{base}/agents", json={"name": "chatty"}, timeout=10).json()
    thread = requests.post(f"{base}/threads", json={"agent_id": agent["id"]}, timeout=10).json()
    with WSClient(f"{live_fast.ws_url}/api/ws?initial_topics=thread:{thread['id']}") as ws:
        ws.recv_type("thread_history")
        ws.send({"type": "send_message", "thread_id": thread["id"], "content": "first"})
        ws.send({"type": "send_message", "thread_id": thread["id"], "content": "second"})

        # Both are answered: by one run if the second arrived before the run
        # read the thread, otherwise the second by a follow-up run.
        while True:
            frame = ws.recv(timeout=10)
            if frame["type"] != "stream_end":
                continue
            stored = requests.get(f"{base}/threads/{thread['id']}/messages", timeout=10).json()
            if all(m["processed"] for m in stored if m["role"] == "user"):
                break

    assert [m["content"] for m in stored if m["role"] == "user"] == ["first", "second"]
    assert "second" in stored[-1]["content"] and stored[-1]["role"] == "assistant"
    runs = requests.get(f"{base}/runs?thread_id={thread['id']}", timeout=10).json()
    assert {r["trigger"] for r in runs} == {"websocket"}
    assert all(r["status"] == "success" for r in runs)


def test_context_keeps_the_newest_messages(fast_app: Flask) -> None:
    client = fast_app.test_client()
    thread = new_thread(client, message=None)
    for index in range(6):
        client.post(f"/api/threads/{thread['id']}/messages", json={"content": f"m{index}"})
    with db.session_scope(fast_app, write=False) as session:
        agent = session.scalars(select(Agent)).one()
        context, unanswered = build_context(session, agent, thread["id"], limit=3)
    assert context == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "m3"},
        {"role": "user", "content": "m4"},
        {"role": "user", "content": "m5"},
    ]
    assert len(unanswered) == 6


def test_messages_that_arrive_mid_run_get_a_follow_up_run(make_app: AppFactory) -> None:
    client = make_app(OFFLINE_DELAY_SECONDS=0.02).test_client()
    thread = new_thread(client, message="first")
    first = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
    wait_status(client, first, "running")
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "second"})

    assert wait_run(client, first)["status"] == "success"

    def both_ended() -> bool:
        runs = client.get(f"/api/runs?thread_id={thread['id']}").get_json()
        return len(runs) == 2 and all(r["status"] not in ("queued", "running") for r in runs)

    wait_for(both_ended, "the follow-up run to end")
    runs = client.get(f"/api/runs?thread_id={thread['id']}").get_json()

    assert [r["status"] for r in runs] == ["success", "success"]
    assert {r["trigger"] for r in runs} == {"api"}
    contents = [m["content"] for m in messages(client, thread["id"])]
    # Stored in time order: the second message came before the first reply.
    assert contents[:2] == ["first", "second"]
    assert "You said: first" in contents[2]
    assert "You said: second" in contents[3]


def test_a_streaming_run_holds_no_database_connection(make_app: AppFactory) -> None:
    app = make_app(**SLOW)
    client = app.test_client()
    thread = new_thread(client)
    pool = db.get_database(app).engine.pool
    samples: list[int] = []

    def sample(event: events.Event) -> None:
        # In the worker, as it hands on each piece: it waits on the model with no session open.
        if event.type is events.EventType.STREAM_CHUNK:
            samples.append(pool.checkedout())

    unsubscribe = events.get_bus(app).subscribe(sample)
    with stream_watch(app) as watch:
        run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
        watch.wait(run_id, pieces=5)
    unsubscribe()
    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "running"
    assert len(samples) >= 5 and set(samples) == {0}
    client.post(f"/api/runs/{run_id}/cancel")
    wait_run(client, run_id)


def test_runs_leave_part_of_the_pool_to_requests(make_app: AppFactory) -> None:
    """Runs hold at most RUN_DATABASE_TURNS connections: a run waits its turn, requests do not."""
    app = make_app(RUN_DATABASE_TURNS=1, DATABASE_POOL_TIMEOUT=1)
    client = app.test_client()
    thread = new_thread(client)
    with get_runner(app).database_turn():
        run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
        # The run's worker waits for the turn held here; requests answer meanwhile.
        for _ in range(3):
            assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "queued"
    assert wait_run(client, run_id)["status"] == "success"


def test_start_up_leaves_a_live_sibling_s_runs_alone(make_app: AppFactory) -> None:
    worker_a, worker_b = make_app(**SLOW), make_app(**SLOW)
    serving.start(worker_a)
    client_a = worker_a.test_client()
    thread = new_thread(client_a)
    run_id = client_a.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
    wait_status(client_a, run_id, "running")

    serving.start(worker_b)

    assert worker_b.test_client().get(f"/api/runs/{run_id}").get_json()["status"] == "running"
    serving.stop(worker_a)
    run = client_a.get(f"/api/runs/{run_id}").get_json()
    assert run["status"] == "interrupted"
    assert "shut down" in run["error"]
    reply = messages(client_a, thread["id"])[-1]
    assert reply["role"] == "assistant" and reply["partial"] is True


def test_stopping_gives_runs_their_grace_to_finish(make_app: AppFactory) -> None:
    app = make_app(OFFLINE_DELAY_SECONDS=0.02)
    serving.start(app)
    client = app.test_client()
    thread = new_thread(client)
    run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
    wait_status(client, run_id, "running")

    serving.stop(app, grace=10)

    assert client.get(f"/api/runs/{run_id}").get_json()["status"] == "success"


def test_a_run_is_cancelled_from_another_worker(
    make_app: AppFactory, redis_url: str, redis_stream: str
) -> None:
    """The cancel travels over the bus to the worker executing the run."""
    shared = {"EVENT_BACKEND": "redis", "REDIS_URL": redis_url, "EVENT_STREAM": redis_stream}
    owner, other = make_app(**SLOW, **shared), make_app(**SLOW, **shared)
    for worker in (owner, other):
        serving.start(worker)  # the Redis listener starts with the serving process
    client = owner.test_client()
    thread = new_thread(client)
    with stream_watch(owner) as watch:
        run_id = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
        watch.wait(run_id)

    response = other.test_client().post(f"/api/runs/{run_id}/cancel")

    assert response.status_code == 202, response.get_json()
    run = wait_run(client, run_id)
    assert run["status"] == "cancelled"
    reply = messages(client, thread["id"])[-1]
    assert reply["role"] == "assistant" and reply["partial"] is True
    assert reply["content"] and "Hello, agent" not in reply["content"]


def test_an_agent_stays_running_while_another_of_its_runs_streams(make_app: AppFactory) -> None:
    client = make_app(**SLOW).test_client()
    first = new_thread(client)
    agent_id = first["agent_id"]
    second = client.post("/api/threads", json={"agent_id": agent_id}).get_json()
    client.post(f"/api/threads/{second['id']}/messages", json={"content": "Me too"})
    one = client.post(f"/api/threads/{first['id']}/run").get_json()["id"]
    two = client.post(f"/api/threads/{second['id']}/run").get_json()["id"]
    wait_status(client, one, "running")
    wait_status(client, two, "running")

    client.post(f"/api/runs/{two}/cancel")

    assert wait_run(client, two)["status"] == "cancelled"
    assert client.get(f"/api/agents/{agent_id}").get_json()["status"] == "running"
    # Nor can a client declare it idle while it runs.
    refused = client.patch(f"/api/agents/{agent_id}", json={"status": "idle"})
    assert refused.status_code == 409
    client.post(f"/api/runs/{one}/cancel")
    assert wait_run(client, one)["status"] == "cancelled"
    assert client.get(f"/api/agents/{agent_id}").get_json()["status"] == "idle"
    assert client.patch(f"/api/agents/{agent_id}", json={"status": "error"}).status_code == 200


def test_stopping_interrupts_runs_that_never_started_without_waiting_for_them(
    make_app: AppFactory,
) -> None:
    app = make_app(RUN_WORKERS=1, OFFLINE_DELAY_SECONDS=0.02)
    serving.start(app)
    client = app.test_client()
    threads = [new_thread(client) for _ in range(3)]
    running, *waiting = [
        client.post(f"/api/threads/{thread['id']}/run").get_json()["id"] for thread in threads
    ]
    wait_status(client, running, "running")
    grace = 5
    started = time.monotonic()

    serving.stop(app, grace=grace)

    # It waited for the running run only, not for the grace.
    assert time.monotonic() - started < grace
    assert client.get(f"/api/runs/{running}").get_json()["status"] == "success"
    for run_id, thread in zip(waiting, threads[1:], strict=True):
        run = client.get(f"/api/runs/{run_id}").get_json()
        assert run["status"] == "interrupted"
        assert run["started_at"] is None
        assert "before it started" in run["error"]
        # The message stays unanswered, ready for a new run.
        [message] = messages(client, thread["id"])
        assert message["processed"] is False


def test_a_follow_up_run_queued_while_stopping_never_starts(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(OFFLINE_DELAY_SECONDS=0.02)
    serving.start(app)
    client = app.test_client()
    thread = new_thread(client)
    first = client.post(f"/api/threads/{thread['id']}/run").get_json()["id"]
    wait_status(client, first, "running")
    # Arrives mid-run: the run queues a follow-up when it finishes, during the grace.
    client.post(f"/api/threads/{thread['id']}/messages", json={"content": "and then?"})

    serving.stop(app, grace=10)

    follow_up, finished = client.get(f"/api/runs?thread_id={thread['id']}").get_json()
    assert (finished["id"], finished["status"]) == (first, "success")
    assert follow_up["status"] == "interrupted" and "before it started" in follow_up["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_agent_whose_runs_end_together_ends_idle(make_app: AppFactory) -> None:
    """Each ending run checks for the others; together they must not all see one running."""
    client = make_app(RUN_WORKERS=8, OFFLINE_DELAY_SECONDS=0.01).test_client()
    first = new_thread(client, message="one two")
    agent_id = first["agent_id"]
    threads = [first] + [
        client.post("/api/threads", json={"agent_id": agent_id}).get_json() for _ in range(7)
    ]
    for thread in threads[1:]:
        client.post(f"/api/threads/{thread['id']}/messages", json={"content": "one two"})
    for _round in range(3):
        run_ids = [
            client.post(f"/api/threads/{thread['id']}/run").get_json()["id"] for thread in threads
        ]
        assert {wait_run(client, run_id)["status"] for run_id in run_ids} == {"success"}
        assert client.get(f"/api/agents/{agent_id}").get_json()["status"] == "idle"
        for thread in threads:
            client.post(f"/api/threads/{thread['id']}/messages", json={"content": "again"})
