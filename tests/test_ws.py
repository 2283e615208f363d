"""The websocket endpoint over a real server with a real client."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask
from websockets.sync.client import connect as ws_connect
from wsproto import ConnectionType
from wsproto import WSConnection
from wsproto.events import AcceptConnection
from wsproto.events import Request
from wsproto.frame_protocol import FrameProtocol
from wsproto.frame_protocol import Opcode

from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import wait_for
from tests.helpers import ws_ticket
from tests.wsclient import WSClient
from zerg import db
from zerg.models import ThreadMessage
from zerg.realtime import events
from zerg.realtime.events import Event
from zerg.realtime.events import EventType
from zerg.realtime.hub import get_hub


class API:
    """Plain HTTP calls against the live server."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.base}/api{path}", timeout=30, **kwargs)

    def agent(self, **fields: Any) -> dict[str, Any]:
        response = self("POST", "/agents", json={"name": "watched", **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def thread(self, agent_id: int, **fields: Any) -> dict[str, Any]:
        response = self("POST", "/threads", json={"agent_id": agent_id, **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def message(self, thread_id: int, content: str) -> dict[str, Any]:
        response = self("POST", f"/threads/{thread_id}/messages", json={"content": content})
        assert response.status_code == 201, response.text
        return dict(response.json())


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[API]:
    client = API(live_server.url)
    yield client
    client.http.close()


@pytest.fixture
def connect(live_server: LiveServer) -> Iterator[Callable[..., WSClient]]:
    clients: list[WSClient] = []

    def open_client(query: str = "") -> WSClient:
        client = WSClient(f"{live_server.ws_url}/api/ws{query}")
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("zerg-ws-writer-")]


def test_ping_echoes_message_id_and_timestamp(connect: Callable[..., WSClient]) -> None:
    ws = connect()
    ws.send({"type": "ping", "message_id": "m-1", "timestamp": 1700000000123})
    pong = ws.recv()
    assert isinstance(pong.pop("instance"), str)
    assert pong == {"type": "pong", "message_id": "m-1", "timestamp": 1700000000123}


def test_agent_topic_sees_exactly_one_update_until_unsubscribed(
    api: API, connect: Callable[..., WSClient]
) -> None:
    agent = api.agent()
    ws = connect()
    ws.send({"type": "subscribe", "topics": [f"agent:{agent['id']}"], "message_id": "s"})
    state = ws.recv_type("agent_state")
    assert state["message_id"] == "s"
    assert state["data"] == agent

    api("PUT", f"/agents/{agent['id']}", json={"name": "renamed", "task_instructions": "go"})
    update = ws.recv_type("agent_updated")
    assert update["data"]["name"] == "renamed"
    assert update["data"]["task_instructions"] == "go"
    assert update["data"]["id"] == agent["id"]
    ws.expect_silence()

    # A refused change publishes nothing.
    assert api("PUT", f"/agents/{agent['id']}", json={"name": ""}).status_code == 422
    ws.expect_silence()

    ws.send({"type": "unsubscribe", "topics": [f"agent:{agent['id']}"], "message_id": "u"})
    assert ws.recv() == {
        "type": "unsubscribe_success",
        "topics": [f"agent:{agent['id']}"],
        "message_id": "u",
    }
    api("PUT", f"/agents/{agent['id']}", json={"name": "unseen"})
    ws.expect_silence()


def test_thread_topic_sends_history_then_messages_and_updates(
    api: API, connect: Callable[..., WSClient]
) -> None:
    agent = api.agent()
    thread = api.thread(agent["id"])
    first = api.message(thread["id"], "before subscribing")
    ws = connect()
    ws.send({"type": "subscribe_thread", "thread_id": thread["id"], "message_id": 3})
    history = ws.recv_type("thread_history")
    assert history == {
        "type": "thread_history",
        "thread_id": thread["id"],
        "messages": [first],
        "message_id": 3,
    }

    second = api.message(thread["id"], "after subscribing")
    frame = ws.recv()
    assert isinstance(frame.pop("event_id"), str)
    assert frame == {"type": "thread_message", "thread_id": thread["id"], "message": second}

    api("PATCH", f"/threads/{thread['id']}", json={"title": "Renamed"})
    assert ws.recv_type("thread_updated")["data"]["title"] == "Renamed"
    ws.expect_silence()

    ws.send({"type": "unsubscribe", "topics": [f"thread:{thread['id']}"]})
    ws.recv_type("unsubscribe_success")
    api.message(thread["id"], "unseen")
    ws.expect_silence()


def test_thread_history_is_the_newest_hundred_oldest_first(
    app: Flask, api: API, connect: Callable[..., WSClient]
) -> None:
    """A watcher opening a long thread sees where it is now (older pages come from REST)."""
    thread = api.thread(api.agent()["id"])
    with db.session_scope(app) as session:
        session.add_all(
            ThreadMessage(thread_id=thread["id"], role="user", content=f"m{i}") for i in range(105)
        )
    ws = connect(f"?initial_topics=thread:{thread['id']}")
    messages = ws.recv_type("thread_history")["messages"]
    assert [m["content"] for m in messages] == [f"m{i}" for i in range(5, 105)]


def test_agents_topic_sees_creations_and_deletions_only(
    api: API, connect: Callable[..., WSClient]
) -> None:
    ws = connect("?initial_topics=agents")
    assert ws.recv() == {"type": "subscribed", "topics": ["agents"], "message_id": None}
    agent = api.agent(name="newcomer")
    created = ws.recv_type("agent_created")
    assert created["data"] == agent
    api("PUT", f"/agents/{agent['id']}", json={"name": "changed"})
    ws.expect_silence()
    api("DELETE", f"/agents/{agent['id']}")
    deleted = ws.recv()
    assert isinstance(deleted.pop("event_id"), str)
    assert deleted == {
        "type": "agent_deleted",
        "data": {"id": agent["id"], "name": "changed"},
    }


def test_deleting_an_agent_tells_its_thread_watchers(
    api: API, connect: Callable[..., WSClient]
) -> None:
    agent = api.agent()
    thread = api.thread(agent["id"])
    ws = connect(f"?initial_topics=thread:{thread['id']}")
    ws.recv_type("thread_history")
    api("DELETE", f"/agents/{agent['id']}")
    assert ws.recv_type("thread_deleted")["data"]["id"] == thread["id"]


def test_one_event_reaches_a_client_once_even_through_two_topics(
    api: API, connect: Callable[..., WSClient]
) -> None:
    agent = api.agent()
    thread = api.thread(agent["id"])
    ws = connect(f"?initial_topics=agent:{agent['id']},thread:{thread['id']}")
    ws.recv_type("agent_state")
    ws.recv_type("thread_history")
    api("PUT", f"/threads/{thread['id']}", json={"active": False})
    assert ws.recv_type("thread_updated")["data"]["active"] is False
    ws.expect_silence()


def test_send_message_stores_and_broadcasts(
    api: API, connect: Callable[..., WSClient], rows: Callable[..., int]
) -> None:
    thread = api.thread(api.agent()["id"])
    sender = connect(f"?initial_topics=thread:{thread['id']}")
    watcher = connect(f"?initial_topics=thread:{thread['id']}")
    sender.recv_type("thread_history")
    watcher.recv_type("thread_history")

    sender.send(
        {
            "type": "send_message",
            "thread_id": thread["id"],
            "content": "hello over the socket",
            "metadata": {"client": "test"},
            "message_id": "send-1",
        }
    )

    for ws in (sender, watcher):
        frame = ws.recv_type("thread_message")
        assert frame["message"]["content"] == "hello over the socket"
        assert frame["message"]["role"] == "user"
        assert frame["message"]["processed"] is False
    # The sender's direct reply echoes its message_id, after the events of its commit.
    sent = next(frame for frame in iter(sender.recv, None) if frame["type"] == "message_sent")
    assert sent["message_id"] == "send-1"
    assert sent["thread_id"] == thread["id"]
    assert sent["message"]["content"] == "hello over the socket"
    assert sent["message"]["metadata"] == {"client": "test"}
    assert isinstance(sent["run_id"], int)
    stored = api("GET", f"/threads/{thread['id']}/messages").json()
    assert [m["content"] for m in stored] == ["hello over the socket"]
    assert stored[0] == sent["message"]
    assert rows(ThreadMessage) == 1
    # The metadata is kept, and comes back with the history too.
    later = connect(f"?initial_topics=thread:{thread['id']}")
    # The run's events may come first: the subscription precedes the read.
    replies = iter(later.recv, None)
    history = next(frame for frame in replies if frame["type"] == "thread_history")["messages"]
    assert history[0]["metadata"] == {"client": "test"}


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("{not json", "malformed JSON"),
        ('{"type": "ping", "message_id": 1e999}', "malformed JSON"),
        ('{"type": "ping", "message_id": NaN}', "malformed JSON"),
        ("[1, 2]", "a frame must be a JSON object"),
        ('"ping"', "a frame must be a JSON object"),
        (json.dumps({"type": "dance", "message_id": "x"}), "unknown message type 'dance'"),
        (json.dumps({"message_id": "x"}), "unknown message type None"),
        (json.dumps({"type": "subscribe", "message_id": "x"}), "invalid subscribe message"),
        (json.dumps({"type": "subscribe", "topics": [], "message_id": "x"}), "invalid subscribe"),
        (json.dumps({"type": "subscribe", "topics": "thread:1"}), "invalid subscribe message"),
        (json.dumps({"type": "subscribe", "topics": ["weather"]}), "unknown topic 'weather'"),
        (json.dumps({"type": "subscribe", "topics": ["thread:abc"]}), "unknown topic"),
        (json.dumps({"type": "subscribe", "topics": ["thread:0"]}), "unknown topic"),
        (json.dumps({"type": "subscribe", "topics": ["thread:999"]}), "Thread 999 not found"),
        (json.dumps({"type": "subscribe", "topics": ["agent:999"]}), "Agent 999 not found"),
        (json.dumps({"type": "subscribe_thread", "thread_id": "1"}), "invalid subscribe_thread"),
        (json.dumps({"type": "send_message", "thread_id": 999, "content": "x"}), "Thread 999"),
        (json.dumps({"type": "send_message", "thread_id": 1}), "invalid send_message message"),
        (json.dumps({"type": "send_message", "thread_id": 1, "content": ""}), "invalid send"),
        (
            json.dumps({"type": "send_message", "thread_id": 1, "content": "x", "metadata": [1]}),
            "invalid send_message message",
        ),
        (
            json.dumps({"type": "send_message", "thread_id": 1, "content": "x", "metadata": "m"}),
            "invalid send_message message",
        ),
        (json.dumps({"type": "unsubscribe"}), "invalid unsubscribe message"),
    ],
)
def test_bad_frames_get_an_error_and_the_connection_stays_usable(
    api: API,
    connect: Callable[..., WSClient],
    rows: Callable[..., int],
    frame: str,
    error: str,
) -> None:
    api.thread(api.agent()["id"])
    ws = connect()
    ws.send(frame)
    reply = ws.recv_type("error")
    assert error in reply["error"]
    assert set(reply) == {"type", "message_id", "error", "details"}
    if '"message_id": "x"' in frame:
        assert reply["message_id"] == "x"
    ws.ping()
    assert rows(ThreadMessage) == 0


def test_binary_frames_are_refused_politely(connect: Callable[..., WSClient]) -> None:
    ws = connect()
    ws.send(b"\x00\x01")
    assert "binary frames are not supported" in ws.recv_type("error")["error"]
    ws.ping()


def test_subscribe_answers_each_topic_in_request_order(
    api: API, connect: Callable[..., WSClient]
) -> None:
    agent = api.agent()
    thread = api.thread(agent["id"])
    ws = connect()
    topics = ["bogus", f"thread:{thread['id']}", "thread:404", "agents", f"agent:{agent['id']}"]
    ws.send({"type": "subscribe", "topics": topics, "message_id": "many"})
    kinds = [ws.recv()["type"] for _ in topics]
    assert kinds == ["error", "thread_history", "error", "subscribed", "agent_state"]


def test_oversized_frames_close_the_connection(
    make_app: AppFactory,
) -> None:
    app = make_app(WS_MAX_MESSAGE_SIZE=1024)
    with serve(app) as server:
        ws = WSClient(f"{server.ws_url}/api/ws")
        ws.send({"type": "ping", "padding": "x" * 4096})
        assert ws.wait_closed() == 1009
        wait_for(lambda: get_hub(app).stats()["connections"] == 0)


def test_plain_http_on_the_websocket_path_is_a_problem(api: API) -> None:
    response = api("GET", "/ws")
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "websocket" in response.json()["detail"].lower()


def test_token_is_required_on_the_handshake_when_configured(make_app: AppFactory) -> None:
    app = make_app(API_TOKEN="ws-secret")
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    with serve(app) as server:
        for query in ("", "?token=wrong", "?token=ws-secret", "?ticket=wrong"):
            response = requests.get(f"{server.url}/api/ws{query}", headers=upgrade, timeout=5)
            assert response.status_code == 401
            assert response.headers["Content-Type"] == "application/problem+json"
        with WSClient(f"{server.ws_url}/api/ws?ticket={ws_ticket(server.url, 'ws-secret')}") as ws:
            ws.ping()


def test_fifty_clients_get_a_burst_of_a_hundred_in_order(
    app: Flask, api: API, connect: Callable[..., WSClient]
) -> None:
    thread = api.thread(api.agent()["id"])
    clients = [connect(f"?initial_topics=thread:{thread['id']}") for _ in range(50)]
    for ws in clients:
        ws.recv_type("thread_history")

    sent = [api.message(thread["id"], f"burst {i}")["id"] for i in range(100)]

    for ws in clients:
        received = [ws.recv_type("thread_message")["message"]["id"] for _ in range(100)]
        assert received == sent
        ws.expect_silence(0.05)


def open_stalled_client(port: int, query: str) -> socket.socket:
    """Complete a websocket handshake on a tiny receive buffer, then never read again."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    protocol = WSConnection(ConnectionType.CLIENT)
    sock.sendall(protocol.send(Request(host="127.0.0.1", target=f"/api/ws{query}")))
    protocol.receive_data(sock.recv(4096))
    assert any(isinstance(event, AcceptConnection) for event in protocol.events())
    return sock


def test_a_client_that_stops_reading_is_dropped_and_the_rest_get_everything(
    make_app: AppFactory,
) -> None:
    app = make_app(WS_SEND_QUEUE_SIZE=32, WS_DROP_GRACE_SECONDS=0.5)
    hub = get_hub(app)
    with serve(app) as server:
        api = API(server.url)
        thread = api.thread(api.agent()["id"])
        topic = f"thread:{thread['id']}"
        readers = [WSClient(f"{server.ws_url}/api/ws?initial_topics={topic}") for _ in range(49)]
        for ws in readers:
            ws.recv_type("thread_history")
        stalled = open_stalled_client(server.server.server_port, f"?initial_topics={topic},agents")
        wait_for(lambda: hub.stats()["subscriptions"] == 51)

        # Only the stalled client watches "agents": flood it until its queue overflows.
        filler = {"id": 0, "name": "x" * 65536}
        for _ in range(200):
            events.publish(Event(EventType.AGENT_UPDATED, ("agents",), filler), app)
        wait_for(lambda: hub.stats()["subscriptions"] == 49)

        sent = [api.message(thread["id"], f"m{i}")["id"] for i in range(100)]
        for ws in readers:
            assert [ws.recv_type("thread_message")["message"]["id"] for _ in range(100)] == sent
        wait_for(lambda: hub.stats()["connections"] == 49)
        wait_for(lambda: len(writer_threads()) == 49)
        stalled.close()
        for ws in readers:
            ws.close()
        wait_for(lambda: hub.stats() == {"connections": 0, "subscriptions": 0, "topics": 0})


def test_disconnects_leave_no_subscription_or_thread_behind(
    app: Flask, api: API, connect: Callable[..., WSClient], live_server: LiveServer
) -> None:
    agent = api.agent()
    before = len(writer_threads())
    clients = [connect(f"?initial_topics=agents,agent:{agent['id']}") for _ in range(10)]
    for ws in clients:
        ws.recv_type("subscribed")
        ws.recv_type("agent_state")
    hub = get_hub(app)
    assert hub.stats() == {"connections": 10, "subscriptions": 20, "topics": 2}
    # Half leave cleanly, half just vanish (socket closed without a close frame).
    for ws in clients[:5]:
        ws.close()
    for ws in clients[5:]:
        ws.ws.socket.shutdown(socket.SHUT_RDWR)
    wait_for(lambda: hub.stats() == {"connections": 0, "subscriptions": 0, "topics": 0})
    wait_for(lambda: len(writer_threads()) == before)


def test_keepalive_pings_drop_a_client_that_never_answers(make_app: AppFactory) -> None:
    app = make_app(WS_PING_INTERVAL=0.3)
    hub = get_hub(app)
    with serve(app) as server:
        with WSClient(f"{server.ws_url}/api/ws") as answering:
            # A raw socket completes the handshake and then answers nothing, pings included.
            silent = open_stalled_client(server.server.server_port, "")
            wait_for(lambda: hub.stats()["connections"] == 2, "both clients")
            wait_for(lambda: hub.stats()["connections"] == 1, "the silent client to be dropped")
            # The client library answers pings, so it stays: it connected first, so it
            # has been pinged at least as often as the silent one by the time that is dropped.
            answering.ping()
            assert hub.stats()["connections"] == 1
            # What the silent one was sent: a ping, then why it was dropped, and the
            # socket was closed at once rather than after WS_DROP_GRACE_SECONDS.
            frames = read_until_closed(silent)
            assert frames[0].opcode == Opcode.PING
            assert "keepalive ping" in json.loads(frames[-2].payload)["error"]
            assert (frames[-1].opcode, frames[-1].payload) == (Opcode.CLOSE, (1008, "ping timeout"))
            silent.close()


def read_until_closed(sock: socket.socket) -> list[Any]:
    """Every frame a raw client socket receives until the server hangs up."""
    frames = FrameProtocol(client=True, extensions=[])
    sock.settimeout(10)
    while data := sock.recv(65536):
        frames.receive_bytes(data)
    return list(frames.received_frames())


UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def test_handshakes_past_the_limit_get_503_before_the_upgrade_and_http_goes_on(
    make_app: AppFactory,
) -> None:
    app = make_app(WS_MAX_CONNECTIONS=2)
    with serve(app) as server:
        first = WSClient(f"{server.ws_url}/api/ws")
        second = WSClient(f"{server.ws_url}/api/ws")
        refused = requests.get(f"{server.url}/api/ws", headers=UPGRADE, timeout=5)
        assert refused.status_code == 503
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert int(refused.headers["Retry-After"]) > 0
        assert "WS_MAX_CONNECTIONS" in refused.json()["detail"]
        assert requests.get(f"{server.url}/api/agents", timeout=5).status_code == 200
        first.ping()
        # A place frees up when a client leaves, and a refusal holds none.
        first.close()
        wait_for(lambda: get_hub(app).stats()["connections"] == 1, "the first client to leave")
        with WSClient(f"{server.ws_url}/api/ws") as third:
            third.ping()
        second.close()


def test_permessage_deflate_is_declined_when_a_client_asks_for_it(
    live_server: LiveServer,
) -> None:
    # The websockets client offers deflate by default, as browsers do.
    with ws_connect(f"{live_server.ws_url}/api/ws", open_timeout=10) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send(json.dumps({"type": "ping", "message_id": "plain"}))
        assert json.loads(ws.recv(timeout=5))["message_id"] == "plain"


def test_a_server_close_ends_the_handler_when_the_client_never_answers(
    make_app: AppFactory,
) -> None:
    """The handler blocks on receive without polling; the reader's end wakes it.

    Closed by us with a ping unanswered, simple-websocket's reader dies at the
    next ping (its close raises) without waking the handler by itself.
    """
    app = make_app(WS_PING_INTERVAL=0.3)
    hub = get_hub(app)
    with serve(app) as server:
        silent = open_stalled_client(server.server.server_port, "")
        wait_for(lambda: hub.stats()["connections"] == 1, "the client")
        silent.settimeout(10)
        assert silent.recv(2) == b"\x89\x00"  # a ping, left unanswered
        before = len(writer_threads())
        assert hub.close_all(1012, "restarting") == 1
        wait_for(lambda: hub.stats()["connections"] == 0, "the handler to end")
        wait_for(lambda: len(writer_threads()) == before - 1, "its writer to end")
        silent.close()
