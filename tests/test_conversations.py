"""One way into a thread: REST, the websocket and a run all add messages the same way."""

from __future__ import annotations

import threading
from typing import Any

import requests

from tests.conftest import AppFactory
from tests.conftest import serve
from tests.helpers import http_agent_and_thread
from tests.helpers import parse_utc
from tests.helpers import wait_for
from tests.wsclient import WSClient
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.schemas import ThreadMessageOut


def test_rest_websocket_and_run_messages_share_row_bump_and_event(make_app: AppFactory) -> None:
    app = make_app(OFFLINE_DELAY_SECONDS=0.05)
    announced: list[Event] = []
    events.get_bus(app).subscribe(
        lambda event: (
            announced.append(event) if event.type is EventType.THREAD_MESSAGE_CREATED else None
        )
    )
    with serve(app) as server:
        base = f"{server.url}/api"
        _agent, thread = http_agent_and_thread(server.url)

        def thread_updated_at() -> str:
            body: dict[str, Any] = requests.get(f"{base}/threads/{thread['id']}", timeout=10).json()
            return str(body["updated_at"])

        rest = requests.post(
            f"{base}/threads/{thread['id']}/messages", json={"content": "over REST"}, timeout=10
        ).json()
        assert thread_updated_at() == rest["timestamp"]

        with WSClient(f"{server.ws_url}/api/ws?initial_topics=thread:{thread['id']}") as ws:
            ws.recv_type("thread_history")
            ws.send({"type": "send_message", "thread_id": thread["id"], "content": "over ws"})
            frames = [ws.recv() for _ in range(3)]
            sent = next(f for f in frames if f["type"] == "thread_message")["message"]
            # The reply streams for about a second; the thread shows the websocket's bump first.
            assert thread_updated_at() == sent["timestamp"]
            frame = ws.recv(timeout=10)
            while frame["type"] != "thread_message":
                frame = ws.recv(timeout=10)
            reply = frame["message"]
        wait_for(
            lambda: requests.get(f"{base}/runs", timeout=10).json()[0]["status"] == "success",
            "the run to succeed",
        )
        assert thread_updated_at() == reply["timestamp"]
        stored = requests.get(f"{base}/threads/{thread['id']}/messages", timeout=10).json()

    assert [m["content"] for m in stored[:2]] == ["over REST", "over ws"]
    assert stored[2]["role"] == "assistant" and "over ws" in stored[2]["content"]
    # The run marked the two user messages answered; otherwise each is as it was announced.
    assert [(m["processed"], m["partial"]) for m in (rest, sent, reply)] == [
        (False, False),
        (False, False),
        (True, False),
    ]
    assert [{**m, "processed": True} for m in (rest, sent, reply)] == stored
    assert [event.data for event in announced] == [rest, sent, reply]
    fields = list(ThreadMessageOut.model_fields)
    assert all(list(event.data) == fields for event in announced)
    assert parse_utc(stored[0]["timestamp"]) < parse_utc(stored[2]["timestamp"])


def test_concurrent_messages_are_announced_in_the_order_a_reload_lists_them(
    make_app: AppFactory,
) -> None:
    """Stamped after the thread is locked: event order, id order and timestamp order agree."""
    app = make_app()
    announced: list[int] = []
    events.get_bus(app).subscribe(
        lambda event: (
            announced.append(event.data["id"])
            if event.type is EventType.THREAD_MESSAGE_CREATED
            else None
        )
    )
    with serve(app) as server:
        _agent, thread = http_agent_and_thread(server.url)
        url = f"{server.url}/api/threads/{thread['id']}/messages"

        def post_many(writer: int) -> None:
            with requests.Session() as http:
                for index in range(15):
                    body = {"content": f"writer {writer} message {index}"}
                    assert http.post(url, json=body, timeout=30).status_code == 201

        writers = [threading.Thread(target=post_many, args=(n,)) for n in range(8)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        listed = requests.get(f"{url}?limit=500", timeout=10).json()

    assert len(listed) == 120
    assert [message["id"] for message in listed] == announced
    assert announced == sorted(announced)
