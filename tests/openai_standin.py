"""A real, local OpenAI-compatible server for tests, scripted reply by reply.

The OpenAI provider is tested over real HTTP against this server instead of
patching the SDK, so the SDK's own request building, retries, timeouts and SSE
parsing are exercised exactly as in production. Each chat completion request
takes the next scripted :class:`Reply` (or, when none is left, echoes the last
message: a tool's result, or else the last user message) and is recorded, so a
test can check what was sent (messages, ``tools``, ``temperature``...) and how
many attempts were made::

    with OpenAIStandIn() as standin:
        standin.script(Reply(status=429, retry_after=0.01), Reply(pieces=("Hi", "!")))
        ...  # point OPENAI_BASE_URL at standin.base_url
        assert [r.messages for r in standin.requests] == [...]

A reply may call tools (:class:`ScriptedCall`), streamed as OpenAI streams
them: per call, a first piece with its ``index``, ``id``, ``type`` and
``function.name`` and empty ``arguments``, then the arguments in fragments,
call after call (indexes 0, 1, ...), and ``finish_reason: "tool_calls"``.
"""

from __future__ import annotations

import json
import math
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from types import TracebackType
from typing import Any
from typing import Literal

from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

Failure = Literal["disconnect", "truncate", "error", "garbage", "malformed"]

_DEFAULT_ERRORS = {
    400: ("invalid_request_error", "Bad request (stand-in)"),
    401: ("invalid_request_error", "Incorrect API key provided (stand-in)"),
    404: ("invalid_request_error", "Not found (stand-in)"),
    429: ("rate_limit_exceeded", "Rate limit reached (stand-in)"),
}


@dataclass(frozen=True)
class ScriptedCall:
    """A tool call a scripted reply makes.

    ``arguments`` (a JSON text, or any text to test bad ones) is streamed in
    fragments of ``fragment`` characters, which split strings and numbers
    mid-way as a real model's tokens do. ``id`` defaults to
    ``call_standin_<index>``.
    """

    name: str
    arguments: str = "{}"
    id: str | None = None
    fragment: int = 8


@dataclass(frozen=True)
class Reply:
    """How the stand-in answers one chat completion request.

    ``pieces``: the text deltas to stream, one chunk each (an empty string
    sends a chunk with empty content); ``None`` echoes the last message (see
    above). ``tool_calls``: the calls to stream after the text.
    ``raw_tool_calls``: values sent as is as ``delta.tool_calls``, one chunk
    each, after those (for shapes no scripted call makes, malformed ones too).
    ``delay``: seconds between pieces, for slow tokens. ``wait``: seconds to
    stall before answering at all (before the response headers).
    ``status``: answer with this HTTP error instead, an OpenAI-style error body
    carrying ``message``; ``retry_after`` (seconds) adds ``Retry-After`` and
    ``retry-after-ms`` headers. ``fail_after``: stream only this many pieces
    (text deltas and tool-call chunks count alike),
    then fail as ``failure`` says: ``"disconnect"`` drops the connection,
    ``"truncate"`` ends the body cleanly without a finish chunk or ``[DONE]``,
    ``"error"`` sends an SSE ``{"error": ...}`` event as OpenAI does,
    ``"garbage"`` sends an event that is not JSON, ``"malformed"`` a chunk
    whose ``choices`` are not objects (no client expects that).
    ``usage``: the usage to report instead of the stand-in's word counts.
    """

    pieces: Sequence[str] | None = None
    tool_calls: Sequence[ScriptedCall] = ()
    raw_tool_calls: Sequence[Any] = ()
    delay: float = 0.0
    wait: float = 0.0
    status: int = 200
    message: str | None = None
    retry_after: float | None = None
    fail_after: int | None = None
    failure: Failure = "disconnect"
    usage: dict[str, int] | None = None


@dataclass
class RecordedRequest:
    """One chat completion request the stand-in received, and what became of it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    # Set once the whole reply (through ``[DONE]``) has been written.
    done: threading.Event = field(default_factory=threading.Event)
    # Set when the client went away before the reply ended.
    disconnected: threading.Event = field(default_factory=threading.Event)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None


def echo_pieces(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to exactly the text."""
    return re.findall(r"\S+\s*|\s+", text)


def _words(messages: Iterable[Any]) -> int:
    return sum(len(str(m.get("content") or "").split()) for m in messages if isinstance(m, dict))


def _sse(payload: Any) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {text}\n\n".encode()


def _client_gone(sock: socket.socket | None) -> bool:
    """Whether the client closed its end; it sends nothing after the request body."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Handler(WSGIRequestHandler):
    # Bounds every socket read and write, so no handler thread outlives a test.
    timeout = 10
    protocol_version = "HTTP/1.1"


class OpenAIStandIn:
    """Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` on a free local port.

    Use it as a context manager; leaving the block stops every reply in
    progress, shuts the server down and joins its threads.
    """

    def __init__(self, models: Sequence[str] = ("standin-small", "standin-large")) -> None:
        self.models = tuple(models)
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._handlers: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting and inspection ---------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies; each chat completion request takes the next one."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies no request has taken yet."""
        with self._lock:
            return len(self._replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every chat completion request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Wait until at least ``count`` requests arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        while len(requests := self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"stand-in saw {len(requests)} requests, expected {count}")
            time.sleep(0.01)
        return requests

    # --- lifecycle --------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be set to."""
        return f"{self.url}/v1"

    def start(self) -> OpenAIStandIn:
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop replies in progress, then shut down and join every thread."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            handlers = list(self._handlers)
        for handler in handlers:
            handler.join(timeout=10)

    def __enter__(self) -> OpenAIStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the WSGI app ------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self._handlers.add(threading.current_thread())
        request = Request(environ)
        response = self._dispatch(request, environ.get("werkzeug.socket"))
        return response(environ, start_response)

    def _dispatch(self, request: Request, sock: socket.socket | None) -> Response:
        path = request.path.rstrip("/")
        if request.method == "GET" and path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "standin"}
                for m in self.models
            ]
            return _json({"object": "list", "data": data})
        if request.method == "POST" and path == "/v1/chat/completions":
            return self._chat(request, sock)
        return _error(404, f"Unknown request URL: {request.method} {request.path}")

    def _chat(self, request: Request, sock: socket.socket | None) -> Response:
        body = request.get_json(silent=True)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=dict(request.headers.items()),
            body=body,
        )
        with self._lock:
            self._requests.append(record)
            reply = self._replies.popleft() if self._replies else Reply()
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            record.done.set()
            return _error(400, "Request body must be JSON with a messages list")
        if reply.wait and not self._pause(reply.wait, sock, record):
            return _error(503, "stand-in stopped")
        if reply.status != 200:
            record.done.set()
            return self._status_reply(reply)

        messages: list[Any] = body["messages"]
        calls = reply.tool_calls or reply.raw_tool_calls
        if reply.pieces is not None:
            pieces = list(reply.pieces)
        else:
            # A reply that calls tools says nothing unless scripted to.
            pieces = [] if calls else echo_pieces(_echoed(messages))
        deltas = [{"content": piece} for piece in pieces] + _tool_call_deltas(reply)
        prompt_tokens = _words(messages)
        usage = reply.usage or {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(deltas),
            "total_tokens": prompt_tokens + len(deltas),
        }
        model = str(body.get("model", ""))
        finish_reason = "tool_calls" if calls else "stop"
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
            stream = self._stream(
                reply, deltas, finish_reason, model, usage if include_usage else None, record, sock
            )
            return Response(
                stream,
                mimetype="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                direct_passthrough=True,
            )
        if reply.delay and not self._pause(reply.delay * max(len(deltas) - 1, 0), sock, record):
            return _error(503, "stand-in stopped")
        record.done.set()
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
        if reply.tool_calls:
            message["tool_calls"] = [
                _whole_call(index, call) for index, call in enumerate(reply.tool_calls)
            ]
        return _json(
            {
                "id": f"chatcmpl-standin-{id(record):x}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
            }
        )

    def _status_reply(self, reply: Reply) -> Response:
        response = _error(reply.status, reply.message)
        if reply.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(reply.retry_after)))
            response.headers["retry-after-ms"] = str(int(reply.retry_after * 1000))
        return response

    def _stream(
        self,
        reply: Reply,
        deltas: list[dict[str, Any]],
        finish_reason: str,
        model: str,
        usage: dict[str, int] | None,
        record: RecordedRequest,
        sock: socket.socket | None,
    ) -> Iterator[bytes]:
        ident = f"chatcmpl-standin-{id(record):x}"
        created = int(time.time())

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return _sse(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": choices,
                    **extra,
                }
            )

        def delta(content: dict[str, Any], finish_reason: str | None = None) -> bytes:
            return chunk([{"index": 0, "delta": content, "finish_reason": finish_reason}])

        sent = deltas if reply.fail_after is None else deltas[: reply.fail_after]
        yield delta({"role": "assistant"})
        for index, piece in enumerate(sent):
            if index and reply.delay and not self._pause(reply.delay, sock, record):
                return
            yield delta(piece)
        if reply.fail_after is not None:
            if reply.failure == "disconnect" and sock is not None:
                # The client sees the body end mid-chunk, like a crashed server.
                sock.shutdown(socket.SHUT_RDWR)
            elif reply.failure == "error":
                message = reply.message or "The server had an error while processing your request"
                yield _sse({"error": {"message": message, "type": "server_error", "code": None}})
            elif reply.failure == "garbage":
                yield _sse("{this is not json")
            elif reply.failure == "malformed":
                yield _sse({"choices": ["not an object"]})
            return
        yield delta({}, finish_reason)
        if usage is not None:
            yield chunk([], usage=usage)
        yield _sse("[DONE]")
        record.done.set()

    def _pause(self, seconds: float, sock: socket.socket | None, record: RecordedRequest) -> bool:
        """Wait, but give up early if the stand-in stops or the client goes away."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._stopping.wait(min(left, 0.02)):
                return False
            if _client_gone(sock):
                record.disconnected.set()
                return False
        return True


def _echoed(messages: list[Any]) -> str:
    """What a reply nobody scripted says: the tool result it answers, or the user's words."""
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return str(messages[-1].get("content") or "")
    last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return str(last_user or "")


def _call_id(index: int, call: ScriptedCall) -> str:
    return call.id or f"call_standin_{index}"


def _tool_call_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The ``delta`` of each chunk that streams the reply's tool calls, in order."""
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(reply.tool_calls):
        first = {
            "index": index,
            "id": _call_id(index, call),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append({"tool_calls": [first]})
        step = max(call.fragment, 1)
        for start in range(0, len(call.arguments), step):
            fragment = call.arguments[start : start + step]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    deltas.extend({"tool_calls": raw} for raw in reply.raw_tool_calls)
    return deltas


def _whole_call(index: int, call: ScriptedCall) -> dict[str, Any]:
    """A tool call as a reply that is not streamed holds it."""
    return {
        "id": _call_id(index, call),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _error(status: int, message: str | None) -> Response:
    kind, default = _DEFAULT_ERRORS.get(
        status, ("server_error", "The server had an error while processing your request")
    )
    body = {"error": {"message": message or default, "type": kind, "param": None, "code": None}}
    return _json(body, status)
