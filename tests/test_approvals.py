"""Runs that wait for a person's yes on their tool calls: park, decide, time out, end.

The tool loop is what parks a run in production; here a fixture stores a run
as the loop leaves it mid-round (running, its reply's tool calls stored,
some ``awaiting_approval``) and parks it through ``approvals.park``, the
function the loop calls. What a resumed run then does with its calls is the
loop's; these tests follow the run up to a worker taking it again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import BEYOND_BIGINT
from tests.helpers import Clock
from tests.helpers import assert_problem
from tests.helpers import reap_dead_owners
from tests.helpers import wait_for
from tests.test_runs import FAST
from tests.test_runs import get_run
from tests.test_runs import messages
from tests.test_runs import new_thread
from tests.wsclient import WSClient
from zerg import conversations
from zerg import db
from zerg.models import Run
from zerg.models import ThreadMessage
from zerg.models import ToolCall
from zerg.models import utcnow
from zerg.realtime import events
from zerg.realtime.events import EventType
from zerg.runs import approvals
from zerg.runs import lifecycle
from zerg.runs.pool import Runner
from zerg.runs.pool import get_runner
from zerg.runs.scheduler import expire_approvals
from zerg.runs.states import ACTIVE
from zerg.schemas import ThreadMessageCreate


@dataclass
class Waiting:
    """A run parked on its tool calls: its ids, and its calls' ids by the model's call id."""

    thread_id: int
    run_id: int
    calls: dict[str, int]


class Recorder:
    """The events an app's bus delivers, for checking what was announced."""

    def __init__(self) -> None:
        self.seen: list[events.Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: events.Event) -> None:
        with self._lock:
            self.seen.append(event)

    def of(self, kind: EventType, run_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [
                event.data
                for event in self.seen
                if event.type is kind and event.data.get("run_id") == run_id
            ]

    def statuses(self, run_id: int) -> list[str]:
        with self._lock:
            return [
                event.data["status"]
                for event in self.seen
                if event.type is EventType.RUN_UPDATED and event.data["id"] == run_id
            ]


@contextmanager
def recording(app: Flask) -> Iterator[Recorder]:
    recorder = Recorder()
    unsubscribe = events.get_bus(app).subscribe(recorder)
    try:
        yield recorder
    finally:
        unsubscribe()


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    return make_app(**FAST, TOOL_APPROVAL_TIMEOUT_SECONDS=60)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def park_run(
    app: Flask,
    client: FlaskClient,
    *,
    thread_id: int | None = None,
    approval: tuple[bool, ...] = (True, False),
    deadline: timedelta | None = timedelta(minutes=1),
) -> Waiting:
    """Store a run as the tool loop leaves it mid-round, and park it as the loop does.

    ``approval`` says, call by call, whether the call needs a person's yes;
    the others wait ``pending`` to run with the round.
    """
    if thread_id is None:
        thread_id = new_thread(client)["id"]
    with db.session_scope(app) as session:
        thread = conversations.load_thread(session, thread_id)
        run = Run(
            agent_id=thread.agent_id,
            thread_id=thread_id,
            trigger="api",
            status="running",
            owner=get_runner(app).instance_id,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        ids = [f"call_{run.id}_{position}" for position in range(len(approval))]
        asked = [
            {"id": ident, "type": "function", "function": {"name": "clock", "arguments": "{}"}}
            for ident in ids
        ]
        reply = ThreadMessageCreate(role="assistant", content="", tool_calls=asked)
        conversations.add_message(session, thread_id, reply, processed=True, run_id=run.id)
        calls = []
        for position, (ident, needs) in enumerate(zip(ids, approval, strict=True)):
            call = ToolCall(
                run_id=run.id,
                tool_call_id=ident,
                round=1,
                position=position,
                name="current_time",
                function="clock",
                source="builtin",
                arguments="{}",
                status="awaiting_approval" if needs else "pending",
                requires_approval=needs,
                approval_deadline=utcnow() + deadline if needs and deadline else None,
            )
            session.add(call)
            calls.append(call)
        session.flush()
        assert approvals.park(session, run.id)
        return Waiting(thread_id, run.id, {call.tool_call_id: call.id for call in calls})


def decide(client: FlaskClient, waiting: Waiting, call: int, verb: str, **kwargs: Any) -> Any:
    return client.post(f"/api/runs/{waiting.run_id}/tool-calls/{call}/{verb}", **kwargs)


def call_row(app: Flask, call_id: int) -> ToolCall:
    with db.session_scope(app, write=False) as session:
        call = session.get(ToolCall, call_id)
        assert call is not None
        return call


def wait_ended(client: FlaskClient, run_id: int) -> dict[str, Any]:
    wait_for(lambda: get_run(client, run_id)["status"] not in ACTIVE, f"run {run_id} to end")
    return get_run(client, run_id)


def assert_history_valid(client: FlaskClient, thread_id: int) -> None:
    """Every tool call an assistant message asked for has its tool message, and no other."""
    history = messages(client, thread_id)
    asked = [
        call["id"]
        for message in history
        if message["role"] == "assistant" and message["tool_calls"]
        for call in message["tool_calls"]
    ]
    answered = [message["tool_call_id"] for message in history if message["role"] == "tool"]
    assert sorted(asked) == sorted(answered)


def first(waiting: Waiting) -> int:
    return next(iter(waiting.calls.values()))


def test_a_parked_run_waits_without_an_owner_and_announces_its_calls(
    app: Flask, client: FlaskClient
) -> None:
    with recording(app) as seen:
        waiting = park_run(app, client, approval=(True, True, False))
    run = get_run(client, waiting.run_id)
    assert run["status"] == "awaiting_approval"
    with db.session_scope(app, write=False) as session:
        stored = session.get(Run, waiting.run_id)
        assert stored is not None and stored.owner is None
    required = seen.of(EventType.TOOL_CALL_APPROVAL_REQUIRED, waiting.run_id)
    assert [frame["call_id"] for frame in required] == list(waiting.calls.values())[:2]
    assert {frame["thread_id"] for frame in required} == {waiting.thread_id}
    assert all(frame["approval_deadline"] and frame["name"] == "current_time" for frame in required)
    assert seen.statuses(waiting.run_id) == ["awaiting_approval"]
    # Listed as the status filter says.
    listed = client.get("/api/runs", query_string={"status": "awaiting_approval"}).get_json()
    assert [row["id"] for row in listed] == [waiting.run_id]


def test_park_gives_a_call_without_deadline_one(app: Flask, client: FlaskClient) -> None:
    before = utcnow()
    waiting = park_run(app, client, approval=(True,), deadline=None)
    deadline = call_row(app, first(waiting)).approval_deadline
    assert deadline is not None
    assert before + timedelta(seconds=60) <= deadline <= utcnow() + timedelta(seconds=60)


def test_park_leaves_a_run_that_was_stopped_meanwhile(app: Flask, client: FlaskClient) -> None:
    thread = new_thread(client)
    with db.session_scope(app) as session:
        run = Run(
            agent_id=thread["agent_id"],
            thread_id=thread["id"],
            trigger="api",
            status="running",
            owner="elsewhere",
            stop_requested="cancel",
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        session.add(
            ToolCall(
                run_id=run.id,
                tool_call_id="c",
                round=1,
                position=0,
                name="current_time",
                function="clock",
                source="builtin",
                status="awaiting_approval",
            )
        )
        session.flush()
        assert not approvals.park(session, run.id)
        run.stop_requested = None
        run.status = "cancelled"
        session.flush()
        assert not approvals.park(session, run.id)
        assert not approvals.park(session, 10**9)


def test_approving_and_rejecting_resume_the_run_once_every_call_is_decided(
    app: Flask, client: FlaskClient
) -> None:
    with recording(app) as seen:
        waiting = park_run(app, client, approval=(True, True))
        approve_id, reject_id = waiting.calls.values()
        approved = decide(client, waiting, approve_id, "approve", json={"by": "ada"})
        assert approved.status_code == 200
        body = approved.get_json()
        assert (body["id"], body["status"], body["decided_by"]) == (approve_id, "pending", "ada")
        assert body["decision_reason"] is None and body["decided_at"] is not None
        # One call still waits: so does the run.
        assert get_run(client, waiting.run_id)["status"] == "awaiting_approval"

        rejected = decide(client, waiting, reject_id, "reject", json={"reason": "too risky"})
        assert rejected.status_code == 200
        body = rejected.get_json()
        assert (body["status"], body["decided_by"]) == ("rejected", "api")
        assert body["error"] == "rejected by a person: too risky"
        # Queued again and handed to a worker, which begins it.
        wait_ended(client, waiting.run_id)
    statuses = seen.statuses(waiting.run_id)
    assert statuses[:3] == ["awaiting_approval", "queued", "running"]
    failed = seen.of(EventType.TOOL_CALL_FAILED, waiting.run_id)
    assert [(frame["call_id"], frame["status"]) for frame in failed[:1]] == [
        (reject_id, "rejected")
    ]
    assert failed[0]["decision_reason"] == "too risky"


def test_a_decision_is_idempotent_and_cannot_be_turned_around(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True, True))
    one, two = waiting.calls.values()
    first_answer = decide(client, waiting, one, "reject", json={"reason": "no"})
    again = decide(client, waiting, one, "reject", json={"reason": "still no"})
    assert again.status_code == 200
    assert again.get_json() == first_answer.get_json()
    problem = assert_problem(decide(client, waiting, one, "approve"), 409)
    assert "already rejected" in problem["detail"]

    # With an Idempotency-Key: the retry is the first answer, replayed.
    headers = {"Idempotency-Key": "approve-two"}
    answer = decide(client, waiting, two, "approve", headers=headers)
    assert answer.status_code == 200
    wait_ended(client, waiting.run_id)
    replayed = decide(client, waiting, two, "approve", headers=headers)
    assert replayed.status_code == 200
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_data() == answer.get_data()
    # Deciding it the same way after the run went on still answers 200.
    assert decide(client, waiting, two, "approve").status_code == 200


def test_decisions_on_missing_or_undecidable_calls_are_refused(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True, False))
    needs, runs_freely = waiting.calls.values()
    other = park_run(app, client, approval=(True,))
    assert_problem(client.post(f"/api/runs/999999/tool-calls/{needs}/approve"), 404)
    assert_problem(decide(client, waiting, 999999, "approve"), 404)
    assert_problem(decide(client, waiting, BEYOND_BIGINT, "approve"), 404)
    assert_problem(client.post(f"/api/runs/{BEYOND_BIGINT}/tool-calls/{needs}/reject"), 404)
    # A call of another run is not this run's.
    assert_problem(decide(client, waiting, first(other), "reject"), 404)
    problem = assert_problem(decide(client, waiting, runs_freely, "approve"), 409)
    assert "does not await approval" in problem["detail"]

    bad = decide(client, waiting, needs, "approve", json={"reason": "ok", "extra": 1})
    assert_problem(bad, 422, ["body", "extra"], "extra_forbidden")
    empty_name = decide(client, waiting, needs, "reject", json={"by": " "})
    assert_problem(empty_name, 422, ["body", "by"], "string_too_short")
    assert_problem(
        decide(client, waiting, needs, "reject", json={"reason": 5}),
        422,
        ["body", "reason"],
        "string_type",
    )
    assert_problem(
        decide(client, waiting, needs, "approve", data="{", content_type="application/json"), 400
    )
    assert_problem(
        decide(client, waiting, needs, "approve", data="x", content_type="text/plain"), 415
    )
    # Nothing was decided by any of them.
    assert call_row(app, needs).status == "awaiting_approval"

    # Once the run has ended, an undecided call can no longer be approved.
    assert client.post(f"/api/runs/{waiting.run_id}/cancel").status_code == 200
    problem = assert_problem(decide(client, waiting, needs, "approve"), 409)
    assert "already rejected" in problem["detail"]


def test_a_call_nobody_decides_on_is_rejected_at_its_deadline(
    make_app: AppFactory,
) -> None:
    clock = Clock(utcnow())
    app = make_app(**FAST, TOOL_APPROVAL_TIMEOUT_SECONDS=60, SCHEDULER_CLOCK=clock)
    client = app.test_client()
    waiting = park_run(app, client, approval=(True, True), deadline=None)
    one, two = waiting.calls.values()
    assert decide(client, waiting, one, "approve").status_code == 200
    # Parking gave the call its deadline, a minute after it was parked.
    deadline = call_row(app, two).approval_deadline
    assert deadline is not None
    assert timedelta(seconds=59) < deadline - clock.now < timedelta(seconds=70)

    clock.now = deadline - timedelta(seconds=1)
    assert expire_approvals(app) == 0
    assert get_run(client, waiting.run_id)["status"] == "awaiting_approval"

    clock.now = deadline + timedelta(seconds=1)
    with recording(app) as seen:
        assert expire_approvals(app) == 1
        wait_ended(client, waiting.run_id)
    expired = call_row(app, two)
    assert (expired.status, expired.decided_by) == ("rejected", approvals.TIMEOUT)
    assert expired.decision_reason == (
        "no decision within 60 seconds (TOOL_APPROVAL_TIMEOUT_SECONDS)"
    )
    assert expired.error == f"rejected: {expired.decision_reason}"
    # The approval given in time stands.
    assert call_row(app, one).decided_by == "api"
    assert seen.statuses(waiting.run_id)[:2] == ["queued", "running"]
    # A late person's rejection agrees with it; an approval is refused.
    assert decide(client, waiting, two, "reject").status_code == 200
    assert_problem(decide(client, waiting, two, "approve"), 409)


def test_cancelling_a_waiting_run_ends_it_at_once_with_every_call_answered(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True, False))
    needs, runs_freely = waiting.calls.values()
    # A message sent while the run waits is kept for its follow-up.
    sent = client.post(
        f"/api/threads/{waiting.thread_id}/messages",
        json={"content": "and then?", "run": {}},
    )
    assert sent.status_code == 201 and sent.get_json()["run"] is None
    with recording(app) as seen:
        response = client.post(f"/api/runs/{waiting.run_id}/cancel")
    assert response.status_code == 200
    run = response.get_json()
    assert (run["status"], run["stop_requested"]) == ("cancelled", "cancel")
    assert run["error"] == "cancelled while awaiting approval"
    rejected, cancelled = call_row(app, needs), call_row(app, runs_freely)
    assert (rejected.status, rejected.decided_by) == ("rejected", approvals.STOPPED)
    assert cancelled.status == "cancelled"
    assert_history_valid(client, waiting.thread_id)
    tools = [m for m in messages(client, waiting.thread_id) if m["role"] == "tool"]
    assert [m["content"] for m in tools] == [
        "rejected: cancelled while awaiting approval",
        "cancelled: cancelled while awaiting approval",
    ]
    ends = seen.of(EventType.STREAM_END, waiting.run_id)
    assert [(end["status"], end["discarded"]) for end in ends] == [("cancelled", False)]
    failed = seen.of(EventType.TOOL_CALL_FAILED, waiting.run_id)
    assert {frame["call_id"] for frame in failed} == {needs, runs_freely}
    # The thread is free: the message sent meanwhile gets its follow-up run.
    wait_for(lambda: len(follow_ups(client, waiting)) == 1, "the follow-up run")
    assert wait_ended(client, follow_ups(client, waiting)[0])["status"] == "success"
    # And a second cancel finds it over.
    assert_problem(client.post(f"/api/runs/{waiting.run_id}/cancel"), 409)


def follow_ups(client: FlaskClient, waiting: Waiting) -> list[int]:
    runs = client.get("/api/runs", query_string={"thread_id": waiting.thread_id}).get_json()
    return [run["id"] for run in runs if run["id"] != waiting.run_id]


def say_with(client: FlaskClient, thread_id: int, strategy: str) -> Any:
    return client.post(
        f"/api/threads/{thread_id}/messages",
        json={"content": "instead", "run": {"multitask_strategy": strategy}},
    )


def test_interrupt_ends_a_waiting_run_keeping_what_it_wrote(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client)
    response = say_with(client, waiting.thread_id, "interrupt")
    assert response.status_code == 201
    newer = response.get_json()["run"]
    old = get_run(client, waiting.run_id)
    assert (old["status"], old["stop_requested"]) == ("cancelled", "interrupt")
    assert "interrupted by a newer run" in old["error"]
    assert_history_valid(client, waiting.thread_id)
    assert any(m["tool_calls"] for m in messages(client, waiting.thread_id))
    # The newer run did not wait for anything.
    assert wait_ended(client, newer["id"])["status"] == "success"
    assert_history_valid(client, waiting.thread_id)


def test_rollback_removes_what_a_waiting_run_wrote(app: Flask, client: FlaskClient) -> None:
    waiting = park_run(app, client)
    with recording(app) as seen:
        response = say_with(client, waiting.thread_id, "rollback")
        assert response.status_code == 201
        newer = response.get_json()["run"]
        assert wait_ended(client, newer["id"])["status"] == "success"
    old = get_run(client, waiting.run_id)
    assert (old["status"], old["stop_requested"]) == ("cancelled", "rollback")
    history = messages(client, waiting.thread_id)
    assert not any(m["tool_calls"] or m["role"] == "tool" for m in history)
    assert [call_row(app, call).status for call in waiting.calls.values()] == [
        "rejected",
        "cancelled",
    ]
    ends = seen.of(EventType.STREAM_END, waiting.run_id)
    assert [(end["status"], end["discarded"]) for end in ends] == [("cancelled", True)]
    with db.session_scope(app, write=False) as session:
        written = select(ThreadMessage).where(ThreadMessage.run_id == waiting.run_id)
        assert session.scalars(written).all() == []


def test_a_waiting_run_keeps_its_thread_busy_and_its_queue_waiting(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True,))
    client.post(f"/api/threads/{waiting.thread_id}/messages", json={"content": "more"})
    refused = client.post(f"/api/threads/{waiting.thread_id}/run")
    assert "already has an active run" in assert_problem(refused, 409)["detail"]
    queued = client.post(
        f"/api/threads/{waiting.thread_id}/run", json={"multitask_strategy": "enqueue"}
    )
    assert queued.status_code == 202
    behind = queued.get_json()["id"]
    assert get_run(client, behind)["status"] == "queued"
    # Decided, the waiting run resumes first; the run behind it follows.
    assert decide(client, waiting, first(waiting), "approve").status_code == 200
    wait_ended(client, waiting.run_id)
    assert wait_ended(client, behind)["status"] == "success"
    assert get_run(client, behind)["started_at"] >= get_run(client, waiting.run_id)["finished_at"]


def test_recovery_leaves_a_waiting_run_and_the_runs_behind_it_alone(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True,))
    client.post(f"/api/threads/{waiting.thread_id}/messages", json={"content": "more"})
    behind = client.post(
        f"/api/threads/{waiting.thread_id}/run", json={"multitask_strategy": "enqueue"}
    ).get_json()["id"]
    # The reaper, a restart's recovery, a shutdown, and the sweep.
    assert reap_dead_owners(app) == 0
    with db.session_scope(app) as session:
        me = get_runner(app).instance_id
        assert lifecycle.mark_interrupted(session, owner=me) == 0
        assert not lifecycle.has_lost_runs(session)
        assert lifecycle.sweep_lost(session) == 0
    assert get_run(client, waiting.run_id)["status"] == "awaiting_approval"
    assert get_run(client, behind)["status"] == "queued"
    # Still decidable, and the thread moves on.
    assert decide(client, waiting, first(waiting), "reject").status_code == 200
    assert wait_ended(client, behind)["status"] == "success"


def resumed_elsewhere(app: Flask, waiting: Waiting, owner: str | None) -> None:
    """Leave a run as a decision made in another process leaves it: queued, that one's."""
    with db.session_scope(app) as session:
        run = session.get(Run, waiting.run_id)
        call = session.get(ToolCall, first(waiting))
        assert run is not None and call is not None
        run.status, run.owner = "queued", owner
        call.status, call.decided_at, call.decided_by = "pending", utcnow(), "ada"


def test_a_resumed_run_whose_process_died_is_adopted_not_ended(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True,))
    resumed_elsewhere(app, waiting, "presumed-dead")
    with recording(app) as seen:
        assert reap_dead_owners(app) == 0
        wait_ended(client, waiting.run_id)
    # This process took it, and one of its workers began it again.
    assert seen.statuses(waiting.run_id)[:1] == ["running"]


def test_a_resumed_run_outlives_a_shutdown_for_the_next_process(
    app: Flask, client: FlaskClient
) -> None:
    waiting = park_run(app, client, approval=(True,))
    resumed_elsewhere(app, waiting, "stopping")
    with db.session_scope(app) as session:
        assert lifecycle.mark_interrupted(session, owner="stopping") == 0
    with db.session_scope(app, write=False) as session:
        run = session.get(Run, waiting.run_id)
        assert run is not None and (run.status, run.owner) == ("queued", None)
    # The next process to recover runs (a restart's start, the reaper) takes it.
    with recording(app) as seen:
        assert reap_dead_owners(app) == 0
        wait_ended(client, waiting.run_id)
    assert seen.statuses(waiting.run_id)[:1] == ["running"]


def test_a_run_decided_before_its_parking_worker_returned_still_goes_again(app: Flask) -> None:
    """The pool takes a run submitted while its worker is still on its way out, after it."""
    entered = threading.Semaphore(0)
    release = threading.Event()
    executed: list[int] = []

    def work(run_id: int, switch: threading.Event) -> None:
        executed.append(run_id)
        entered.release()
        release.wait(10)

    runner = Runner(app, work)
    try:
        runner.submit(7)
        assert entered.acquire(timeout=10)
        runner.submit(7)
        assert executed == [7]
        release.set()
        assert entered.acquire(timeout=10)
        wait_for(lambda: runner.in_flight() == 0, "the second go to end")
        assert executed == [7, 7]
    finally:
        runner.shutdown()


def test_websocket_watchers_see_the_approval_asked_and_the_decision(app: Flask) -> None:
    client = app.test_client()
    thread = new_thread(client)
    with serve(app) as server:
        url = f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}"
        with WSClient(url) as ws:
            ws.recv_type("thread_history")
            waiting = park_run(app, client, thread_id=thread["id"], approval=(True,))
            asked = ws.recv_until(lambda f: f["type"] == "tool_call_approval_required")
            assert (asked["run_id"], asked["call_id"]) == (waiting.run_id, first(waiting))
            assert asked["tool_call_id"] == f"call_{waiting.run_id}_0"
            assert asked["approval_deadline"] and asked["event_id"]
            answer = requests.post(
                f"{server.url}/api/runs/{waiting.run_id}/tool-calls/{first(waiting)}/reject",
                json={"reason": "not now"},
                timeout=10,
            )
            assert answer.status_code == 200
            failed = ws.recv_until(lambda f: f["type"] == "tool_call_failed")
            assert (failed["status"], failed["error"]) == (
                "rejected",
                "rejected by a person: not now",
            )
            resumed = ws.recv_until(lambda f: f["type"] == "run_updated")
            assert (resumed["data"]["id"], resumed["data"]["status"]) == (waiting.run_id, "queued")
