"""A run asked for while its thread is busy: reject, enqueue, interrupt or rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import assert_problem
from tests.helpers import stream_watch
from tests.helpers import wait_for
from tests.test_runs import SLOW
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.test_runs import wait_run
from tests.wsclient import WSClient
from zerg import db
from zerg import serving
from zerg.models import Run
from zerg.runs import domain
from zerg.runs import lifecycle


def run(client: FlaskClient, thread_id: int, strategy: str | None = None) -> Any:
    body = None if strategy is None else {"multitask_strategy": strategy}
    return client.post(f"/api/threads/{thread_id}/run", json=body)


def say(client: FlaskClient, thread_id: int, content: str) -> None:
    response = client.post(f"/api/threads/{thread_id}/messages", json={"content": content})
    assert response.status_code == 201


def streaming(client: FlaskClient, thread_id: int) -> int:
    """Start a run and wait until it has streamed a few pieces; return its id."""
    with stream_watch(client.application) as watch:
        run_id: int = run(client, thread_id).get_json()["id"]
        watch.wait(run_id)
    return run_id


@pytest.fixture
def fast_app(make_app: AppFactory) -> Flask:
    return make_app(OFFLINE_DELAY_SECONDS=0.005)


@pytest.fixture
def slow(make_app: AppFactory) -> FlaskClient:
    return make_app(**SLOW).test_client()


@pytest.mark.parametrize("body", [None, {"multitask_strategy": "reject"}])
def test_reject_is_the_default_and_refuses_a_busy_thread(
    slow: FlaskClient, rows: Callable[..., int], body: dict[str, str] | None
) -> None:
    thread = new_thread(slow)
    first = streaming(slow, thread["id"])

    response = slow.post(f"/api/threads/{thread['id']}/run", json=body)

    assert_problem(response, 409)
    assert "multitask_strategy" in response.get_json()["detail"]
    assert rows(Run) == 1
    slow.post(f"/api/runs/{first}/cancel")
    wait_run(slow, first)


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        ({"multitask_strategy": "later"}, ["body", "multitask_strategy"], "literal_error"),
        ({"multitask_strategy": None}, ["body", "multitask_strategy"], "literal_error"),
        ({"strategy": "enqueue"}, ["body", "strategy"], "extra_forbidden"),
        ([], ["body"], "model_type"),
    ],
)
def test_a_bad_run_body_is_refused_and_queues_nothing(
    slow: FlaskClient, rows: Callable[..., int], body: Any, loc: list[str], error_type: str
) -> None:
    thread = new_thread(slow)
    response = slow.post(f"/api/threads/{thread['id']}/run", json=body)
    assert_problem(response, 422, loc, error_type)
    assert rows(Run) == 0


def test_a_run_body_that_is_not_json_is_refused(
    slow: FlaskClient, rows: Callable[..., int]
) -> None:
    thread = new_thread(slow)
    url = f"/api/threads/{thread['id']}/run"
    assert_problem(slow.post(url, data="{", content_type="application/json"), 400)
    assert_problem(
        slow.post(url, data="multitask_strategy=enqueue", content_type="text/plain"), 415
    )
    assert rows(Run) == 0


def test_enqueue_runs_one_after_the_other_in_order(make_app: AppFactory) -> None:
    client = make_app(OFFLINE_DELAY_SECONDS=0.05).test_client()
    thread = new_thread(client, "one")
    first = streaming(client, thread["id"])
    say(client, thread["id"], "two")
    second = run(client, thread["id"], "enqueue")
    say(client, thread["id"], "three")
    third = run(client, thread["id"], "enqueue")

    assert second.status_code == third.status_code == 202
    assert second.get_json()["status"] == third.get_json()["status"] == "queued"
    done = [wait_run(client, run_id) for run_id in (first, second.json["id"], third.json["id"])]

    assert [r["status"] for r in done] == ["success"] * 3
    for before, after in zip(done, done[1:], strict=False):
        assert after["started_at"] >= before["finished_at"]
    stored = messages(client, thread["id"])
    assert [(m["role"], m["partial"]) for m in stored] == [("user", False)] * 3 + [
        ("assistant", False)
    ] * 3
    assert all(m["processed"] for m in stored)
    # The follow-up the first run would have queued for "two" is the queued run.
    assert len(client.get(f"/api/runs?thread_id={thread['id']}").get_json()) == 3


def test_enqueue_on_an_idle_thread_just_runs(make_app: AppFactory) -> None:
    client = make_app(OFFLINE_DELAY_SECONDS=0.005).test_client()
    thread = new_thread(client)
    response = run(client, thread["id"], "enqueue")
    assert response.status_code == 202
    assert wait_run(client, response.get_json()["id"])["status"] == "success"


@pytest.mark.parametrize(
    ("strategy", "error", "kept"),
    [
        ("interrupt", "interrupted by a newer run", [("assistant", True)]),
        ("rollback", "rolled back for a newer run", []),
    ],
)
def test_a_run_takes_the_running_one_s_place(
    slow: FlaskClient, strategy: str, error: str, kept: list[tuple[str, bool]]
) -> None:
    """interrupt keeps the stopped run's partial reply, rollback removes it; both answer all."""
    thread = new_thread(slow, "first question")
    old = streaming(slow, thread["id"])
    say(slow, thread["id"], "second question")

    response = run(slow, thread["id"], strategy)

    assert response.status_code == 202
    new = wait_run(slow, response.get_json()["id"])
    stopped = slow.get(f"/api/runs/{old}").get_json()
    assert (stopped["status"], stopped["stop_requested"]) == ("cancelled", strategy)
    assert error in stopped["error"]
    assert new["status"] == "success"
    assert new["started_at"] >= stopped["finished_at"]
    stored = messages(slow, thread["id"])
    assert [(m["role"], m["partial"]) for m in stored] == [
        ("user", False),
        ("user", False),
        *kept,
        ("assistant", False),
    ]
    assert "second question" in stored[-1]["content"]
    assert all(m["processed"] for m in stored)
    agent = slow.get(f"/api/agents/{thread['agent_id']}").get_json()
    assert (agent["status"], agent["last_run_status"]) == ("idle", "success")


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
def test_a_queued_run_is_superseded_at_once(make_app: AppFactory, strategy: str) -> None:
    """With no worker free, the active run is still queued: it is cancelled before it starts."""
    client = make_app(RUN_WORKERS=1, **SLOW).test_client()
    busy = new_thread(client)
    blocker = streaming(client, busy["id"])
    thread = new_thread(client)
    waiting = run(client, thread["id"]).get_json()["id"]

    response = run(client, thread["id"], strategy)

    assert response.status_code == 202
    superseded = client.get(f"/api/runs/{waiting}").get_json()
    assert superseded["status"] == "cancelled" and strategy in superseded["error"]
    # What stopped it is recorded as for a running run (it was null before).
    assert superseded["stop_requested"] == strategy
    client.post(f"/api/runs/{blocker}/cancel")
    assert wait_run(client, response.get_json()["id"])["status"] == "success"
    assert [m["role"] for m in messages(client, thread["id"])] == ["user", "assistant"]


def test_several_interrupts_leave_only_the_newest_run(slow: FlaskClient) -> None:
    thread = new_thread(slow)
    old = streaming(slow, thread["id"])
    middle = run(slow, thread["id"], "interrupt").get_json()["id"]
    newest = run(slow, thread["id"], "rollback").get_json()["id"]

    assert wait_run(slow, newest)["status"] == "success"
    superseded = slow.get(f"/api/runs/{middle}").get_json()
    assert (superseded["status"], superseded["stop_requested"]) == ("cancelled", "rollback")
    stopped = slow.get(f"/api/runs/{old}").get_json()
    assert (stopped["status"], stopped["stop_requested"]) == ("cancelled", "rollback")
    assert [m["role"] for m in messages(slow, thread["id"])] == ["user", "assistant"]


def test_cancelling_a_run_starts_the_one_waiting_behind_it(slow: FlaskClient) -> None:
    thread = new_thread(slow)
    first = streaming(slow, thread["id"])
    second = run(slow, thread["id"], "enqueue").get_json()["id"]
    third = run(slow, thread["id"], "enqueue").get_json()["id"]

    assert slow.post(f"/api/runs/{second}/cancel").status_code == 200
    assert slow.post(f"/api/runs/{first}/cancel").status_code == 202

    assert wait_run(slow, first)["stop_requested"] == "cancel"
    assert wait_run(slow, third)["status"] == "success"
    assert slow.get(f"/api/runs/{second}").get_json()["status"] == "cancelled"


def test_a_stop_recorded_before_the_run_ends_decides_how_it_ends(fast_app: Flask) -> None:
    """The request commits first, though the run's stream has reached its end: it is rolled back."""
    client = fast_app.test_client()
    thread = new_thread(client, "question")
    with db.session_scope(fast_app) as session:
        # Owned by no live process, so no worker of this app takes it.
        session.add(Run(agent_id=thread["agent_id"], thread_id=thread["id"], trigger="api"))
    with db.session_scope(fast_app) as session:
        old_id = session.scalar(select(Run.id).where(Run.thread_id == thread["id"]))
        execution = lifecycle.begin_run(session, old_id)
    assert execution is not None
    with db.session_scope(fast_app) as session:
        new = domain.queue_thread_run(session, thread["id"], "api", "rollback")
        new_id = new.id
    assert client.get(f"/api/runs/{new_id}").get_json()["status"] == "queued"

    execution.parts = ["a complete answer"]
    with db.session_scope(fast_app) as session:
        lifecycle.finish_run(session, execution)

    old = client.get(f"/api/runs/{old_id}").get_json()
    assert (old["status"], old["stop_requested"]) == ("cancelled", "rollback")
    assert wait_run(client, new_id)["status"] == "success"
    assert [m["content"] for m in messages(client, thread["id"])][0] == "question"
    assert all("a complete answer" not in m["content"] for m in messages(client, thread["id"]))


def test_runs_waiting_behind_a_stopped_process_end_with_it(fast_app: Flask) -> None:
    client = fast_app.test_client()
    gone, alive = new_thread(client), new_thread(client)
    with db.session_scope(fast_app) as session:
        for thread, owner in ((gone, "gone-process"), (alive, "live-process")):
            ids = {"agent_id": thread["agent_id"], "thread_id": thread["id"], "trigger": "api"}
            session.add(Run(**ids, status="running", owner=owner))
            session.add(Run(**ids, status="queued", owner=None))
        orphan = new_thread(client)
        session.add(
            Run(agent_id=orphan["agent_id"], thread_id=orphan["id"], trigger="api", owner=None)
        )

    with db.session_scope(fast_app) as session:
        # A process shutting down ends its runs, the runs waiting behind
        # them, and waiting runs with nothing ahead of them.
        assert lifecycle.mark_interrupted(session, owner="gone-process") == 3

    def statuses(thread: dict[str, Any]) -> list[str]:
        runs = client.get(f"/api/runs?thread_id={thread['id']}").get_json()
        return [r["status"] for r in reversed(runs)]

    assert statuses(gone) == ["interrupted", "interrupted"]
    assert statuses(alive) == ["running", "queued"]
    assert statuses(orphan) == ["interrupted"]


def take(ws: WSClient, seen: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """Receive frames into ``seen`` up to the first of type ``kind``; return that one."""
    while True:
        seen.append(ws.recv(timeout=15))
        if seen[-1]["type"] == kind:
            return seen[-1]


def stream_frames_of(
    ws: WSClient, run_ids: set[int], seen: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Receive until each of ``run_ids`` has ended; return the stream frames, ``seen``'s first."""
    frames = list(seen or [])
    while not run_ids <= {f["run_id"] for f in frames if f["type"] == "stream_end"}:
        frames.append(ws.recv(timeout=15))
    return [f for f in frames if f["type"].startswith("stream_")]


def assert_one_stream_at_a_time(frames: list[dict[str, Any]]) -> None:
    """Each run's stream_start comes after the previous run's stream_end."""
    current = None
    for frame in frames:
        if frame["type"] == "stream_start":
            assert current is None, f"run {frame['run_id']} started while {current} streamed"
            current = frame["run_id"]
        else:
            assert frame["run_id"] == current
            if frame["type"] == "stream_end":
                current = None


@pytest.mark.parametrize("strategy", ["interrupt", "rollback", "enqueue"])
def test_websocket_watchers_see_one_stream_end_before_the_next_start(
    make_app: AppFactory, strategy: str
) -> None:
    app = make_app(**SLOW)
    client = app.test_client()
    thread = new_thread(client, message=None)
    with serve(app) as server:
        url = f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}"
        with WSClient(url) as ws:
            ws.recv_type("thread_history")
            ws.send({"type": "send_message", "thread_id": thread["id"], "content": "first"})
            seen: list[dict[str, Any]] = []
            first = take(ws, seen, "message_sent")["run_id"]
            take(ws, seen, "stream_chunk")
            ws.send(
                {
                    "type": "send_message",
                    "thread_id": thread["id"],
                    "content": "second",
                    "multitask_strategy": strategy,
                    "message_id": "m2",
                }
            )
            sent = take(ws, seen, "message_sent")
            assert sent["message_id"] == "m2" and sent["run_id"] not in (None, first)

            frames = stream_frames_of(ws, {first, sent["run_id"]}, seen)

    assert_one_stream_at_a_time(frames)
    ends = {f["run_id"]: f for f in frames if f["type"] == "stream_end"}
    expected = "success" if strategy == "enqueue" else "cancelled"
    assert ends[first]["status"] == expected
    assert ends[first]["discarded"] is (strategy == "rollback")
    assert ends[sent["run_id"]]["status"] == "success"
    assert ends[sent["run_id"]]["discarded"] is False


def test_send_message_with_reject_leaves_the_message_to_the_active_run(
    make_app: AppFactory,
) -> None:
    app = make_app(**SLOW)
    thread = new_thread(app.test_client(), message=None)
    with serve(app) as server, WSClient(f"{server.ws_url}/api/ws") as ws:
        ws.send({"type": "send_message", "thread_id": thread["id"], "content": "first"})
        first = ws.recv_type("message_sent")["run_id"]
        ws.send({"type": "send_message", "thread_id": thread["id"], "content": "second"})
        assert ws.recv_type("message_sent")["run_id"] is None  # not subscribed: no events
        ws.send(
            {
                "type": "send_message",
                "thread_id": thread["id"],
                "content": "third",
                "multitask_strategy": "sometime",
                "message_id": "bad",
            }
        )
        error = ws.recv_type("error")
        assert error["message_id"] == "bad"
        assert error["details"]["errors"][0]["loc"] == ["multitask_strategy"]
    client = app.test_client()
    assert wait_run(client, first)["status"] == "success"
    # The active run's follow-up answers the message it was left.
    wait_for(
        lambda: all(m["processed"] for m in messages(client, thread["id"])),
        "the second message to be answered",
        timeout=20,
    )
    # One run, if it began after the second message came; else its follow-up too.
    runs = client.get(f"/api/runs?thread_id={thread['id']}").get_json()
    assert {(r["status"], r["trigger"]) for r in runs} == {("success", "websocket")}
    stored = messages(client, thread["id"])
    assert [m["content"] for m in stored if m["role"] == "user"] == ["first", "second"]
    assert "second" in stored[-1]["content"] and stored[-1]["role"] == "assistant"


def test_interrupt_reaches_a_run_executing_in_another_worker(
    make_app: AppFactory, redis_url: str, redis_stream: str
) -> None:
    """Two workers sharing a database and Redis: the request lands on the one not running the run.

    The worker executing the old run stops it, and starts the new one itself;
    a watcher connected to the other worker sees the frames in order.
    """
    shared = {"EVENT_BACKEND": "redis", "REDIS_URL": redis_url, "EVENT_STREAM": redis_stream}
    owner, other = make_app(**SLOW, **shared), make_app(**SLOW, **shared)
    for worker in (owner, other):
        serving.start(worker)
    owner_client = owner.test_client()
    thread = new_thread(owner_client, "first question")
    with serve(other) as server:
        url = f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}"
        with WSClient(url) as ws:
            # The thread's message may still be on its way from the owner's
            # publisher thread through Redis, and land first.
            ws.recv_until(lambda f: f["type"] == "thread_history")
            old = streaming(owner_client, thread["id"])
            say(owner_client, thread["id"], "second question")

            response = requests.post(
                f"{server.url}/api/threads/{thread['id']}/run",
                json={"multitask_strategy": "rollback"},
                timeout=10,
            )

            assert response.status_code == 202, response.text
            new = response.json()["id"]
            frames = stream_frames_of(ws, {old, new})

    assert_one_stream_at_a_time(frames)
    ends = {f["run_id"]: f for f in frames if f["type"] == "stream_end"}
    assert (ends[old]["status"], ends[old]["discarded"]) == ("cancelled", True)
    finished = wait_run(owner_client, new)
    assert finished["status"] == "success"
    instance = owner_client.get("/api/health").get_json()["instance"]
    with db.session_scope(owner) as session:
        assert session.get(Run, new).owner == instance  # the worker that ended the old run
    stored = messages(owner_client, thread["id"])
    assert [(m["role"], m["partial"]) for m in stored] == [
        ("user", False),
        ("user", False),
        ("assistant", False),
    ]
