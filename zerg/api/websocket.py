"""The websocket endpoint ``/api/ws`` and its protocol.

flask-sock keeps the request open for the whole connection, so this handler
never uses the request's session: each client message that touches the
database opens one short ``session_scope`` of its own. Replies and events go
through the connection's send queue (see ``zerg.realtime.hub``); this thread only reads.

Before the upgrade, a handshake is admitted (at most ``WS_MAX_CONNECTIONS``
per process, else 503) and offered no permessage-deflate: simple-websocket
accepts it whenever a client asks, as browsers do, and its zlib state made a
subscribed socket cost about four times the memory, plus one compression per
client for every event fanned out. zerg's frames are small JSON.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import g
from flask import request
from flask_sock import Sock
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError

from zerg import agents
from zerg import conversations
from zerg import idempotency
from zerg.api.problems import BUSY_RETRY_AFTER_SECONDS
from zerg.auth import request_token
from zerg.db import session_scope
from zerg.domain_errors import Busy
from zerg.domain_errors import DomainError
from zerg.domain_errors import KeyInUse
from zerg.domain_errors import KeyRefused
from zerg.domain_errors import KeyReused
from zerg.domain_errors import NotFound
from zerg.errors import APIError
from zerg.errors import validation_errors
from zerg.realtime import events
from zerg.realtime.connection import Connection
from zerg.realtime.hub import Hub
from zerg.realtime.hub import get_hub
from zerg.runs import domain as runs
from zerg.runs.pool import get_runner
from zerg.schemas import MAX_TEXT
from zerg.schemas import AgentOut
from zerg.schemas import Id
from zerg.schemas import Storable
from zerg.schemas import StrategyField
from zerg.schemas import ThreadMessageCreate
from zerg.schemas import ThreadMessageOut
from zerg.schemas import dump_row

HISTORY_LIMIT = 100
ENDPOINT = "api.ws.websocket"
# The handshake's query: ``ticket`` too, because browsers cannot set headers on it.
QUERY_PARAMETERS = frozenset({"initial_topics", "last_event_id", "ticket"})
# When a refused handshake may try again: sockets free up as clients leave.
FULL_RETRY_AFTER_SECONDS = 5

log = logging.getLogger(__name__)

bp = Blueprint("ws", __name__)
sock = Sock()


class ProtocolError(Exception):
    """A client request that cannot be served; it becomes an ``error`` frame."""

    def __init__(self, error: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.details = details


def refusal(exc: DomainError, **about: Any) -> ProtocolError:
    """Say a domain error as an ``error`` frame: the websocket's one mapping of them.

    ``about`` names the frame's fields the error concerns (``topic``,
    ``thread_id``, ``idempotency_key``) and becomes the frame's ``details``.
    A refused key names the frame's ``idempotency_key`` field, not the HTTP
    header, and carries the status an HTTP request with that key would get.
    """
    if isinstance(exc, KeyInUse):
        return ProtocolError(
            "A request with this idempotency_key is still being processed; "
            "retry once it has finished to get its response.",
            {**about, "status": 409},
        )
    if isinstance(exc, KeyReused):
        return ProtocolError(
            "This idempotency_key was used for a different request (other fields); "
            "use a new key for a new request.",
            {**about, "status": 422},
        )
    if isinstance(exc, Busy):
        return ProtocolError(
            f"{exc}.", {**about, "status": 503, "retry_after": BUSY_RETRY_AFTER_SECONDS}
        )
    return ProtocolError(str(exc), about or None)


class Frame(Storable):
    """A client frame: typed fields are strict, unknown ones are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class PingFrame(Frame):
    timestamp: int | float | str | None = None


Topic = Annotated[str, Field(min_length=1, max_length=100)]


class TopicsFrame(Frame):
    topics: list[Topic] = Field(min_length=1, max_length=100)


class SubscribeThreadFrame(Frame):
    thread_id: Id


class SendMessageFrame(Frame):
    thread_id: Id
    content: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    metadata: dict[str, Any] | None = None
    multitask_strategy: StrategyField = "reject"
    # Like the HTTP Idempotency-Key: a resent frame gets the first message_sent again.
    idempotency_key: (
        Annotated[str, Field(min_length=1, max_length=idempotency.MAX_KEY_LENGTH)] | None
    ) = None


@dataclass
class Client:
    """What a protocol handler needs: the app, the hub and this client's connection."""

    app: Flask
    hub: Hub
    connection: Connection
    # The scope of this client's idempotency keys: its token's, as for HTTP.
    scope: str = idempotency.ANONYMOUS_SCOPE

    def reply(self, frame: dict[str, Any]) -> None:
        self.connection.send(frame)

    def error(self, message_id: Any, error: str, details: dict[str, Any] | None = None) -> None:
        self.reply({"type": "error", "message_id": message_id, "error": error, "details": details})


def parse_topic(topic: str) -> tuple[str, int | None]:
    """Split ``thread:7`` into ``("thread", 7)``; ``agents`` has no id."""
    if topic == "agents":
        return "agents", None
    kind, _, ident = topic.partition(":")
    if kind in ("agent", "thread") and ident.isdigit() and int(ident) > 0:
        return kind, int(ident)
    raise ProtocolError(
        f"unknown topic {topic!r}",
        {"topic": topic, "expected": ["agents", "agent:{id}", "thread:{id}"]},
    )


def subscribe_topic(client: Client, topic: str, message_id: Any) -> None:
    """Subscribe to one topic and send what the old front end expects back.

    The subscription is made before the current state is read, so an event
    that lands in between is delivered (perhaps twice) rather than lost.
    """
    kind, ident = parse_topic(topic)
    client.hub.subscribe(client.connection, topic)
    if ident is None:  # "agents", the one topic without an id
        client.reply({"type": "subscribed", "topics": [topic], "message_id": message_id})
        return
    try:
        with session_scope(client.app, write=False) as session:
            if kind == "agent":
                agent = dump_row(AgentOut, agents.get_agent(session, ident))
                reply = {"type": "agent_state", "message_id": message_id, "data": agent}
            else:
                history = conversations.newest_messages(session, ident, HISTORY_LIMIT)
                reply = {
                    "type": "thread_history",
                    "thread_id": ident,
                    "messages": [dump_row(ThreadMessageOut, row) for row in history],
                    "message_id": message_id,
                }
    except NotFound as exc:
        client.hub.unsubscribe(client.connection, topic)
        raise refusal(exc, topic=topic) from None
    client.reply(reply)


def subscribe_many(client: Client, topics: list[str], message_id: Any) -> None:
    """Subscribe topic by topic, answering each in request order."""
    for topic in topics:
        try:
            subscribe_topic(client, topic, message_id)
        except ProtocolError as exc:
            client.error(message_id, exc.error, exc.details)


def replay_missed(client: Client, last_event_id: str) -> None:
    """Send a reconnecting client the events of its topics that it missed.

    If the bus no longer holds everything since ``last_event_id``, the client
    is told to reload its state instead of being handed a history with a gap.
    """
    if not events.valid_id(last_event_id):
        client.connection.resume([], "0")
        client.error(
            None,
            "last_event_id is not an event_id this server sent (they look like "
            "1733130000000-42); reload the state",
            {"last_event_id": last_event_id},
        )
        return
    missed = events.get_bus(client.app).since(last_event_id)
    if missed is None:
        client.connection.resume([], last_event_id)
        client.error(
            None,
            "the events since last_event_id are no longer available; reload the state",
            {"last_event_id": last_event_id},
        )
        return
    watched = client.connection.topics
    mine = [event for event in missed if watched.intersection(event.topics)]
    client.connection.resume(mine, last_event_id)


def on_ping(client: Client, frame: PingFrame, message_id: Any) -> None:
    client.reply(
        {
            "type": "pong",
            "message_id": message_id,
            "timestamp": frame.timestamp,
            "instance": get_runner(client.app).instance_id,
        }
    )


def on_subscribe(client: Client, frame: TopicsFrame, message_id: Any) -> None:
    subscribe_many(client, frame.topics, message_id)


def on_subscribe_thread(client: Client, frame: SubscribeThreadFrame, message_id: Any) -> None:
    subscribe_topic(client, f"thread:{frame.thread_id}", message_id)


def on_unsubscribe(client: Client, frame: TopicsFrame, message_id: Any) -> None:
    for topic in frame.topics:
        client.hub.unsubscribe(client.connection, topic)
    client.reply({"type": "unsubscribe_success", "topics": frame.topics, "message_id": message_id})


def on_send_message(client: Client, frame: SendMessageFrame, message_id: Any) -> None:
    """Store a user message, with its metadata, and start a run to answer it.

    The sender gets ``message_sent`` echoing its ``message_id``, with the
    stored message and the run queued. If a run of the thread is active, the
    frame's ``multitask_strategy`` decides: with ``reject`` (the default)
    ``run_id`` is null, the message waits and that run's follow-up answers
    it; the others queue a run as ``POST /api/threads/{id}/run`` does. The
    thread's watchers (the sender too, if subscribed) get ``thread_message``
    and then the streamed reply.
    """
    message = ThreadMessageCreate(role="user", content=frame.content, metadata=frame.metadata)
    claim = frame_claim(client, frame)
    try:
        with (
            get_runner(client.app).admission(),
            session_scope(client.app) as session,
            idempotency.once(session, claim) as keep,
        ):
            sent = runs.send_message(
                session, frame.thread_id, message, "websocket", frame.multitask_strategy
            )
            reply = {
                "type": "message_sent",
                "thread_id": frame.thread_id,
                "message": sent.message,
                "run_id": sent.run.id if sent.run is not None else None,
            }
            keep(idempotency.Stored(200, "application/json", json.dumps(reply)))
    except KeyRefused as exc:
        raise refusal(exc, idempotency_key=frame.idempotency_key) from None
    except DomainError as exc:
        raise refusal(exc, thread_id=frame.thread_id) from None
    except idempotency.Replayed as replayed:
        reply = {**json.loads(replayed.stored.body), "replayed": True}
    client.reply({**reply, "message_id": message_id})


def frame_claim(client: Client, frame: SendMessageFrame) -> idempotency.Claim | None:
    """Read a frame's ``idempotency_key`` as an HTTP request's header is read.

    The fingerprint covers every field that shapes the work, whatever fields
    the frame grows, but the key itself (``type`` and ``message_id`` are not
    fields); ``ws:send_message`` stands in for the path.
    """
    if frame.idempotency_key is None:
        return None
    return idempotency.Claim(
        scope=client.scope,
        key=frame.idempotency_key,
        method="WS",
        path="ws:send_message",
        fingerprint=idempotency.fingerprint(frame.model_dump(exclude={"idempotency_key"})),
    )


Handler = Callable[[Client, Any, Any], None]
HANDLERS: dict[str, tuple[type[Frame], Handler]] = {
    "ping": (PingFrame, on_ping),
    "subscribe": (TopicsFrame, on_subscribe),
    "subscribe_thread": (SubscribeThreadFrame, on_subscribe_thread),
    "unsubscribe": (TopicsFrame, on_unsubscribe),
    "send_message": (SendMessageFrame, on_send_message),
}


def _finite_float(text: str) -> float:
    """Refuse numbers like 1e999 that Python reads as infinity: echoing them is not JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def handle_text(client: Client, text: str) -> None:
    """Handle one client frame; every failure becomes an ``error`` frame."""
    try:
        frame = json.loads(text, parse_float=_finite_float, parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:  # too deeply nested is malformed too
        client.error(None, "malformed JSON", {"reason": str(exc)})
        return
    if not isinstance(frame, dict):
        client.error(None, "a frame must be a JSON object")
        return
    message_id = frame.get("message_id")
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in HANDLERS:  # a list or dict is unhashable
        client.error(message_id, f"unknown message type {kind!r}", {"known": sorted(HANDLERS)})
        return
    schema, handler = HANDLERS[kind]
    try:
        handler(client, schema.model_validate(frame), message_id)
    except ValidationError as exc:
        client.error(message_id, f"invalid {kind} message", {"errors": validation_errors(exc)})
    except ProtocolError as exc:
        client.error(message_id, exc.error, exc.details)
    except DomainError as exc:
        refused = refusal(exc)
        client.error(message_id, refused.error, refused.details)
    except Exception:
        request_id = uuid.uuid4().hex
        log.exception("websocket handler failed, request id %s", request_id)
        client.error(message_id, "internal error", {"request_id": request_id})


@bp.before_request
def admit() -> None:
    """Take one of this process's websocket places, or refuse the handshake before the upgrade."""
    if not get_hub().admit():
        raise APIError(
            503,
            "This server holds as many websockets as it may (WS_MAX_CONNECTIONS); try again.",
            headers={"Retry-After": str(FULL_RETRY_AFTER_SECONDS)},
        )
    g.ws_admitted = True
    # Declines permessage-deflate (see the module's docstring): simple-websocket
    # negotiates from the headers it reads here.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@bp.teardown_request
def leave(_exc: BaseException | None = None) -> None:
    if g.pop("ws_admitted", False):
        get_hub().leave()


@sock.route("/ws", bp=bp)
def websocket(ws: Any) -> None:
    """Serve one client until it disconnects or is dropped."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    hub = get_hub(app)
    client = Client(app, hub, hub.connect(ws), idempotency.scope_for(request_token()))
    try:
        initial = request.args.get("initial_topics", "")
        topics = [topic.strip() for topic in initial.split(",") if topic.strip()]
        last_event_id = request.args.get("last_event_id")
        if last_event_id:
            client.connection.hold()
        if topics:
            subscribe_many(client, topics, None)
        if last_event_id:
            replay_missed(client, last_event_id)
        while True:
            # Blocks until a frame comes; when the connection ends, it raises
            # ConnectionClosed, which flask-sock expects (see hub.reader_thread).
            text = ws.receive()
            if isinstance(text, bytes):
                client.error(None, "binary frames are not supported; send JSON text")
            else:
                handle_text(client, text)
    finally:
        hub.disconnect(client.connection)
