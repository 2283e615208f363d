"""Fuzzing: schemathesis against every HTTP operation, random frames against the websocket.

The HTTP part loads the app's own OpenAPI document in-process (WSGI, no
server) and sends each operation generated requests, valid and invalid, on a
fresh database seeded so that id 1 names an agent, a thread and a run, with
every check schemathesis has (``--checks all``): zero 5xx, every answer one the
document lists in the shape it gives, invalid input refused and valid input
accepted. A stateful pass chains real ids through the document's links
(create, then use). The websocket part sends random and
malformed frames over a real socket and requires the connection to keep
answering, and nothing to be left behind once it closes.

CI runs a short, deterministic pass (25 examples per operation, 400 frames);
``bench/fuzz_long.py`` runs the same tests with many more, through the
environment: ``ZERG_FUZZ_EXAMPLES``, ``ZERG_FUZZ_FRAMES``, ``ZERG_FUZZ_SEED``
(the frames' generator) and ``ZERG_FUZZ_RANDOM=1`` (new HTTP examples each run).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import socket
import string
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import AppFactory
from tests.conftest import LiveServer
from tests.conftest import serve
from tests.helpers import wait_for
from tests.wsclient import WSClient
from zerg import create_app
from zerg import db
from zerg.api.openapi import build_spec
from zerg.api.websocket import HANDLERS
from zerg.auth import OPEN_PATHS
from zerg.realtime.hub import get_hub

# Slow by nature; `.ci/run` runs them on one database only.
pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("ZERG_FUZZ_EXAMPLES", "25"))
FRAMES = int(os.environ.get("ZERG_FUZZ_FRAMES", "400"))
SEED = int(os.environ.get("ZERG_FUZZ_SEED", "20240601"))
# CI replays the same examples every run; a long run by hand explores new ones.
DERANDOMIZE = os.environ.get("ZERG_FUZZ_RANDOM", "0") != "1"
ROOT = Path(__file__).resolve().parents[1]
HOOKS = "tests.schemathesis_hooks"


def seed_database(app: Flask) -> None:
    """Give id 1 to an agent, a thread with an unanswered message, and a finished run."""
    client = app.test_client()
    agent = {"name": "fuzzed", "task_instructions": "Say hello."}
    assert client.post("/api/agents", json=agent).status_code == 201
    assert client.post("/api/threads", json={"agent_id": 1}).status_code == 201
    assert client.post("/api/agents/1/messages", json={"content": "hi"}).status_code == 201
    assert client.post("/api/threads/1/messages", json={"content": "hi"}).status_code == 201
    assert client.post("/api/threads/1/run").status_code == 202
    wait_for(lambda: client.get("/api/runs/1").get_json()["status"] == "success", "run 1")
    assert client.post("/api/threads/1/messages", json={"content": "again"}).status_code == 201


def reference_spec(**overrides: Any) -> dict[str, Any]:
    """The document of an app configured like the fuzzed ones, built without a database.

    schemathesis needs the schema when the module is collected, before any
    fixture exists (and its fixture-based loader does not work with pytest 9:
    it sets ``Item._nodeid``, which pytest 9 removed), so the schema comes from
    here and every test checks that its own app serves exactly this document.
    """
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(
            {
                "ENVIRONMENT": "testing",
                "DATABASE_URL": f"sqlite:///{folder}/never-opened.sqlite",
                "AUTO_CREATE_TABLES": False,
                "SCHEDULER_ENABLED": False,
                "API_TOKEN": None,
                **overrides,
            }
        )
        try:
            return build_spec(app)
        finally:
            db.get_database(app).engine.dispose()


SPEC = reference_spec()
# What refusing invalid input may look like here: schemathesis's default list
# lacks 413, which is how a body over MAX_CONTENT_LENGTH is rightly refused.
REFUSALS = ["400", "401", "404", "405", "409", "413", "422"]
# Not server errors: listing an MCP server's tools answers, as documented,
# 502 for a server that fails and 504 for one that does not answer, and the
# fuzzed servers point at made-up URLs.
NOT_SERVER_ERRORS = ["2xx", "3xx", "4xx", "502", "504"]
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "negative_data_rejection": {"expected-statuses": REFUSALS},
            "not_a_server_error": {"expected-statuses": NOT_SERVER_ERRORS},
        }
    }
)
api = schemathesis.openapi.from_dict(copy.deepcopy(SPEC), config=CONFIG)
TOKEN = "fuzz-token"
SECURED_SPEC = reference_spec(API_TOKEN=TOKEN)
secured_api = schemathesis.openapi.from_dict(copy.deepcopy(SECURED_SPEC), config=CONFIG)


@pytest.fixture
def fuzz_app(make_app: AppFactory) -> Flask:
    """A fresh app on a temporary database, seeded, serving the document fuzzed here."""
    # The fuzzed MCP servers' made-up URLs fail fast rather than at the default deadlines.
    app = make_app(
        OFFLINE_DELAY_SECONDS=0.001, MCP_CONNECT_TIMEOUT_SECONDS=1, MCP_LIST_TIMEOUT_SECONDS=1
    )
    assert app.test_client().get("/api/openapi.json").get_json() == SPEC
    seed_database(app)
    return app


@api.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_survives_fuzzing(case: Any, fuzz_app: Flask) -> None:
    """Every check schemathesis has: no 5xx, only documented statuses and shapes, invalid
    input refused, valid input accepted, unsupported methods and missing auth refused.

    But one: an Idempotency-Key that an earlier example used with another body is
    rightly refused (422), however valid this request is on its own.
    """
    response = case.call(app=fuzz_app)
    excused = [positive_data_acceptance] if reused_key(response) else []
    case.validate_response(response, excluded_checks=excused)


def reused_key(response: Any) -> bool:
    """Tell whether a response refuses an Idempotency-Key used before for another request."""
    if response.status_code != 422:
        return False
    errors = json.loads(response.content).get("errors", [])
    return any(error["type"] == "idempotency_key_reused" for error in errors)


def test_stateful_sequences_chain_real_ids_through_the_links(
    fuzz_app: Flask, tmp_path: Path
) -> None:
    """Follow the document's links (create, then use the id) with every check on each step.

    As a user would: schemathesis's own command against the app over real HTTP.
    In-process, Hypothesis replays scenarios against a server whose state has
    moved on and calls its own strategy flaky (it did, one run in two). Its
    Idempotency-Key values are made unique per request (tests/schemathesis_hooks.py).
    """
    refusals = ", ".join(f'"{status}"' for status in REFUSALS)
    config = tmp_path / "schemathesis.toml"
    upstream = ", ".join(f'"{status}"' for status in NOT_SERVER_ERRORS)
    config.write_text(
        f"[checks.negative_data_rejection]\nexpected-statuses = [{refusals}]\n"
        f"[checks.not_a_server_error]\nexpected-statuses = [{upstream}]\n"
    )
    command = [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config)]
    with serve(fuzz_app) as server:
        done = subprocess.run(
            [
                *command,
                "run",
                f"{server.url}/api/openapi.json",
                "--checks=all",
                "--phases=stateful",
                f"--max-examples={EXAMPLES}",
                f"--seed={SEED}",
                "--no-color",
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": HOOKS},
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "✅ Stateful" in done.stdout and " passed" in done.stdout


@pytest.fixture
def secured_app(make_app: AppFactory) -> Flask:
    app = make_app(API_TOKEN=TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert app.test_client().get("/api/openapi.json", headers=headers).get_json() == SECURED_SPEC
    return app


@secured_api.parametrize()
@settings(
    max_examples=5,
    derandomize=DERANDOMIZE,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_with_a_token_every_operation_refuses_strangers_as_documented(
    case: Any, secured_app: Flask
) -> None:
    """Without the token (schemathesis sends none, or a made-up one): 401s, as documented.

    CORS preflights (OPTIONS) and health stay open, as ``zerg.auth`` intends.
    """
    response = case.call_and_validate(app=secured_app)
    if case.method.upper() != "OPTIONS" and case.path not in OPEN_PATHS:
        assert response.status_code == 401, (case.method, case.path, case.headers)


# --- the websocket ---------------------------------------------------------

# A valid frame of every client message type; each field of each is fuzzed in turn.
VALID_FRAMES: dict[str, dict[str, Any]] = {
    "ping": {"type": "ping", "timestamp": 1, "message_id": "m"},
    "subscribe": {"type": "subscribe", "topics": ["agents", "thread:1"], "message_id": "m"},
    "unsubscribe": {"type": "unsubscribe", "topics": ["agents"], "message_id": "m"},
    "subscribe_thread": {"type": "subscribe_thread", "thread_id": 1, "message_id": "m"},
    "send_message": {
        "type": "send_message",
        "thread_id": 1,
        "content": "hi",
        "metadata": {"k": "v"},
        "multitask_strategy": "reject",
        "idempotency_key": "fuzzed-key",
        "message_id": "m",
    },
}
TEXT = string.printable + "\x00\x01\x7f\u00e9\u2028\u200b\ud7ff\ue000\uffff\U0001f600\U0010ffff"
# Nesting depths around the places parsers give up (Python's recursion limit is 1000).
DEPTHS = (10, 100, 200, 500, 900, 999, 1000, 1001, 5000, 100_000)


def json_type(value: Any) -> str:
    return type(value).__name__


def random_text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice(TEXT) for _ in range(size))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value, edge cases overweighted: big numbers, NaN, odd text, nesting."""
    kinds = ["null", "bool", "int", "float", "text"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, -1, 1, 2, 2**31 - 1, 2**31, 2**63, -(2**70), 10**400])
    if kind == "float":
        return rng.choice([0.0, -0.0, 1.5, 1e308, -1e-308, float("nan"), float("inf")])
    if kind == "text":
        return random_text(rng, rng.choice([0, 1, 5, 100, 3000]))
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {random_text(rng, 4): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def wrong_type_value(rng: random.Random, valid: Any) -> Any:
    """A random value of a JSON type other than the valid one's."""
    while True:
        value = random_value(rng)
        if json_type(value) != json_type(valid):
            return value


def nested(depth: int, rng: random.Random) -> str:
    """JSON text nested ``depth`` deep, sometimes wrapped in a frame that is otherwise valid."""
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    inner = '{"a":' * depth + "1" + "}" * depth
    kind = rng.choice(sorted(VALID_FRAMES))
    frame = json.dumps(VALID_FRAMES[kind])
    field = rng.choice(["metadata", "timestamp", "topics", "thread_id", "message_id"])
    return frame[:-1] + f', "{field}": {inner}}}'


def malformed_frames(rng: random.Random, count: int, max_size: int) -> Iterator[str | bytes]:
    """``count`` frames, each a different kind of trouble, none over ``max_size`` bytes."""
    makers: list[Callable[[], str | bytes]] = [
        # Any JSON value at all: scalars and arrays are not frames, objects lack a type.
        lambda: json.dumps(random_value(rng)),
        # A known type with random fields.
        lambda: json.dumps(random_fields(rng)),
        # A valid frame with one field of the wrong type (type and message_id included).
        lambda: json.dumps(mutated(rng)),
        # A valid frame with one field missing.
        lambda: json.dumps(truncated_frame(rng)),
        # Text that is not JSON, or is JSON cut short.
        lambda: rng.choice(
            ["", " ", "{", "}", "[", "nul", "NaN", "\ufeff{}", '{"type": "ping"', "\x00"]
        ),
        lambda: json.dumps(VALID_FRAMES[rng.choice(sorted(VALID_FRAMES))])[: rng.randint(1, 30)],
        lambda: random_text(rng, rng.randint(1, 200)),
        # Binary frames, invalid UTF-8 included.
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))),
        lambda: b"\xff\xfe\xc0\x80" + json.dumps(VALID_FRAMES["ping"]).encode(),
        # Huge: a string just under the size limit, a long list of topics.
        lambda: json.dumps({**VALID_FRAMES["send_message"], "content": "x" * (max_size - 200)}),
        lambda: json.dumps({**VALID_FRAMES["subscribe"], "topics": ["agents"] * 20_000}),
        lambda: json.dumps({**VALID_FRAMES["ping"], "timestamp": "t" * (max_size - 100)}),
        # Deeply nested JSON, bare or inside an otherwise valid frame.
        lambda: nested(rng.choice(DEPTHS), rng),
    ]
    for index in range(count):
        frame = makers[index % len(makers)]()
        data = frame.encode("utf-8", "surrogatepass") if isinstance(frame, str) else frame
        if len(data) > max_size:
            frame = frame[: max_size // 8]
        yield frame


def random_fields(rng: random.Random) -> dict[str, Any]:
    """A known type with random values under real field names and made-up ones."""
    names = sorted({name for frame in VALID_FRAMES.values() for name in frame} - {"type"})
    fields = {random_text(rng, 6): random_value(rng, 1) for _ in range(rng.randint(0, 3))}
    fields |= {name: random_value(rng) for name in rng.sample(names, rng.randint(1, 3))}
    return {"type": rng.choice(sorted(VALID_FRAMES)), **fields}


# One value of each JSON type, each awkward in its own way.
SAMPLES: dict[str, Any] = {
    "NoneType": None,
    "bool": True,
    "int": 2**63,
    "float": float("nan"),
    "str": "\x00",
    "list": ["ping", {}],
    "dict": {"ping": []},
}


def wrong_type_frames() -> Iterator[str]:
    """Every field (``type`` and ``message_id`` too) of every message, with every wrong type."""
    for valid in VALID_FRAMES.values():
        for field, value in valid.items():
            for kind, sample in SAMPLES.items():
                if kind != json_type(value):
                    yield json.dumps({**valid, field: sample})


def mutated(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(sorted(VALID_FRAMES))
    frame = dict(VALID_FRAMES[kind])
    field = rng.choice(sorted(frame))
    frame[field] = wrong_type_value(rng, frame[field])
    return frame


def truncated_frame(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(sorted(VALID_FRAMES))
    frame = dict(VALID_FRAMES[kind])
    del frame[rng.choice(sorted(frame))]
    return frame


def handler_threads() -> set[str]:
    """The server's request threads and the hub's writers: what one connection holds."""
    names = ("zerg-ws-writer-", "process_request_thread")
    return {t.name for t in threading.enumerate() if any(n in t.name for n in names)}


def assert_alive(client: WSClient, message_id: str) -> list[dict[str, Any]]:
    """Ping, and read until the pong: every frame on the way must be a typed JSON object."""
    client.send({"type": "ping", "message_id": message_id})
    seen = []
    while True:
        frame = client.recv(timeout=30)
        assert isinstance(frame, dict) and isinstance(frame.get("type"), str), frame
        assert frame.get("error") != "internal error", frame
        if frame["type"] == "pong" and frame["message_id"] == message_id:
            return seen
        seen.append(frame)


def test_every_message_type_and_field_is_fuzzed() -> None:
    """A message type or field added to the protocol is fuzzed too, or this fails."""
    assert set(VALID_FRAMES) == set(HANDLERS)
    for kind, (schema, _) in HANDLERS.items():
        assert set(schema.model_fields) <= set(VALID_FRAMES[kind]), kind


@pytest.fixture
def seeded_server(app: Flask, live_server: LiveServer) -> LiveServer:
    """The live server, with agent 1 and thread 1, so that valid frames do real work."""
    client = app.test_client()
    assert client.post("/api/agents", json={"name": "fuzzed"}).status_code == 201
    assert client.post("/api/threads", json={"agent_id": 1}).status_code == 201
    return live_server


def test_random_and_malformed_frames_never_break_the_connection(
    seeded_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every field of every message with every wrong JSON type, then FRAMES random frames.

    After every batch the connection must still answer a ping (and reassemble
    a fragmented message); no frame may be an "internal error" and nothing may
    be logged as an error; once closed, the hub and the threads are as before.
    """
    app = seeded_server.app
    rng = random.Random(SEED)
    max_size = app.config["WS_MAX_MESSAGE_SIZE"]
    frames = [*wrong_type_frames(), *malformed_frames(rng, FRAMES, max_size)]
    before = handler_threads()
    errors = 0
    with WSClient(f"{seeded_server.ws_url}/api/ws") as client:
        batch = 50
        for start in range(0, len(frames), batch):
            for frame in frames[start : start + batch]:
                client.send(frame)
            # A message split over several websocket fragments is still one frame.
            client.ws.send(iter(['{"type": "pi', 'ng", "message_', 'id": "fragmented"}']))
            seen = assert_alive(client, f"alive-{start}")
            assert any(f.get("message_id") == "fragmented" for f in seen), "fragments lost"
            errors += sum(frame["type"] == "error" for frame in seen)
        assert errors >= len(frames) // 2, "most of these frames should have been refused"
    wait_for(lambda: get_hub(app).stats() == {"connections": 0, "subscriptions": 0, "topics": 0})
    wait_for(lambda: handler_threads() <= before, "the connection's threads to end")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("ending", ["oversized", "invalid-utf8-text", "dropped-mid-frame"])
def test_frames_that_end_the_connection_leave_nothing_behind(
    seeded_server: LiveServer, ending: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Some frames must end a connection; the handler still cleans up after itself."""
    app = seeded_server.app
    before = handler_threads()
    client = WSClient(f"{seeded_server.ws_url}/api/ws?initial_topics=agents,thread:1")
    assert client.recv()["type"] in ("subscribed", "thread_history")
    wait_for(lambda: get_hub(app).stats()["subscriptions"] == 2)
    # The pong comes after every frame queued before it: the writer is idle
    # when the ending frame arrives. simple-websocket's reader sends its close
    # frame with no lock against the writer, and under load a thread_history
    # still being written interleaved with it and the client saw 1006.
    client.send({"type": "ping", "message_id": "settled"})
    client.recv_until(lambda frame: frame.get("message_id") == "settled")
    if ending == "oversized":
        client.send("x" * (app.config["WS_MAX_MESSAGE_SIZE"] + 1))
        assert client.wait_closed() == 1009  # message too big
    elif ending == "invalid-utf8-text":
        client.ws.send(b'{"type": "ping", "x": "\xff\xfe"}', text=True)
        assert client.wait_closed() == 1007  # invalid frame payload data
    else:
        # Half a frame header, then the TCP connection goes away without a close frame.
        client.ws.socket.sendall(b"\x81\xfe")
        client.ws.socket.shutdown(socket.SHUT_RDWR)
        client.ws.socket.close()
    client.close()
    wait_for(lambda: get_hub(app).stats() == {"connections": 0, "subscriptions": 0, "topics": 0})
    wait_for(lambda: handler_threads() <= before)
    # Only the server's logs count: the test's own client (the websockets
    # library) may log the socket it just cut from under its reader thread.
    server_errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and not r.name.startswith("websockets")
    ]
    assert not server_errors, caplog.text
    # The server itself is unharmed.
    with WSClient(f"{seeded_server.ws_url}/api/ws") as again:
        again.ping()
