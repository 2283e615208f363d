"""What the tool loop's tests share: a server that holds its answers, and runs with tools.

The model is the OpenAI stand-in over real HTTP, scripted to call tools; an
unscripted reply to tool results echoes them. Slow and stalling tools are
the built-in ``http_get`` fetching from :class:`HoldingServer`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response


class HoldingServer:
    """A local HTTP server whose ``/hold`` answers only once ``release`` is set.

    ``/dribble`` sends its headers, then a byte at a time until the server
    stops: a tool reading it never sees a network timeout, only its own
    deadline. ``/pair`` answers once two requests are in, proving they ran
    side by side. ``arrived`` counts the requests.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.pair = threading.Barrier(2, timeout=5)
        self.server = make_server("127.0.0.1", 0, self, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = Request(environ).path
        self.arrived.release()
        if path == "/dribble":
            return Response(self._dribble(), mimetype="text/plain")(environ, start_response)
        if path == "/pair":
            self.pair.wait()
        elif path == "/hold":
            self.release.wait(10)
        return Response(f"answer of {path}", mimetype="text/plain")(environ, start_response)

    def _dribble(self) -> Iterator[bytes]:
        while not self.stopping.wait(0.05):
            yield b"."

    def wait_arrived(self, count: int = 1) -> None:
        for _ in range(count):
            assert self.arrived.acquire(timeout=10), "the tool's request never came"

    def __enter__(self) -> HoldingServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def agent_with_tools(app: Flask, tools: list[str], **fields: Any) -> dict[str, Any]:
    """Create an agent on the stand-in's first model with ``tools``; return it."""
    body = {
        "name": "toolsmith",
        "model": app.config["OPENAI_MODELS"][0],
        "system_instructions": "Use tools.",
        "tools": tools,
    }
    response = app.test_client().post("/api/agents", json=body | fields)
    assert response.status_code == 201, response.get_json()
    agent: dict[str, Any] = response.get_json()
    return agent


def start(app: Flask, tools: list[str], content: str = "What time is it?") -> tuple[int, int]:
    """Give a new thread of a new agent a message and run it; return the thread's and run's ids."""
    client = app.test_client()
    agent = agent_with_tools(app, tools)
    thread = client.post("/api/threads", json={"agent_id": agent["id"]}).get_json()
    run = run_on(client, thread["id"], content)
    return thread["id"], run


def run_on(client: FlaskClient, thread_id: int, content: str, **body: Any) -> int:
    client.post(f"/api/threads/{thread_id}/messages", json={"content": content})
    response = client.post(f"/api/threads/{thread_id}/run", json=body)
    assert response.status_code == 202, response.get_json()
    run_id: int = response.get_json()["id"]
    return run_id


def calls_of(client: FlaskClient, run_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/runs/{run_id}/tool-calls")
    assert response.status_code == 200, response.get_json()
    calls: list[dict[str, Any]] = response.get_json()
    return calls


def messages_of(client: FlaskClient, thread_id: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.get(f"/api/threads/{thread_id}/messages").get_json()
    return messages


def assert_every_call_answered(messages: list[dict[str, Any]]) -> None:
    """Each assistant tool call is followed, before the next non-tool message, by its result."""
    for index, message in enumerate(messages):
        if message["role"] != "assistant" or not message["tool_calls"]:
            continue
        results = []
        for later in messages[index + 1 :]:
            if later["role"] != "tool":
                break
            results.append(later["tool_call_id"])
        assert sorted(results) == sorted(call["id"] for call in message["tool_calls"])
