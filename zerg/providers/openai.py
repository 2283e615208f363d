"""The OpenAI provider: Chat Completions over the official SDK, or any compatible server.

A configurable base URL lets the same code talk to OpenAI or to a local
OpenAI-compatible server (Ollama, vLLM, llama.cpp). Whatever goes wrong on the
way — refused connection, timeout, error status, a stream that breaks off — is
turned into one :class:`ProviderError` with a short message fit to store on a
run, so callers never need to know the SDK's or httpx's exception types.

Tool calls stream as Chat Completions streams them, pieces of
``choices[0].delta.tool_calls`` keyed by ``index``, and are passed on as
:class:`ToolCallDelta` pieces for :class:`ToolCallAssembler`. Some compatible
servers (Gemini's, older Ollama, several proxies) leave ``index`` out; a
piece without one starts a new call when it names a function (and does not
repeat the latest call's id) and adds to the latest call otherwise, which is
how those servers stream: a whole call per piece, or one call at a time.
"""

from __future__ import annotations

from collections.abc import Generator
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import cast

import httpx
import openai
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic_core import from_json

from zerg.providers.base import ChatMessages
from zerg.providers.base import ChatOptions
from zerg.providers.base import ModelInfo
from zerg.providers.base import ProviderError
from zerg.providers.base import StreamItem
from zerg.providers.base import ToolCallDelta
from zerg.providers.base import Usage

# Error text from a server is shown to users; keep it to one readable line.
_MAX_DETAIL = 300


def _shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


class OpenAIProvider:
    """Streams chat replies from an OpenAI-compatible Chat Completions endpoint.

    The SDK client is built once and shared by every run: it is thread-safe and
    keeps a connection pool, and it applies ``timeout`` to every network wait
    (connecting, and each read of the stream, so a model that stalls between
    tokens fails instead of hanging a worker) and retries refused or failed
    requests ``max_retries`` times before any reply text has been produced.
    """

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        models: tuple[str, ...],
        timeout: float,
        max_retries: int,
    ) -> None:
        self._model_ids = tuple(models)
        self._api_key = api_key
        self.timeout = timeout
        # Local servers need no key, but the SDK refuses to start without one.
        self._client = OpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
        # The SDK imports its API resources on first use, which took ~1 s of
        # a worker's only thread under gevent: every request and socket of
        # the process waited on the first run. Load them while starting.
        _ = self._client.chat.completions

    def models(self) -> list[ModelInfo]:
        """List the configured models; the server is not asked, so start-up needs no network."""
        return [ModelInfo(id=m, display_name=m, provider=self.name) for m in self._model_ids]

    def close(self) -> None:
        """Release the client's pooled connections."""
        self._client.close()

    def stream(
        self, model: str, messages: ChatMessages, options: ChatOptions | None = None
    ) -> Generator[StreamItem, None, None]:
        """Yield the reply's text deltas and tool-call pieces as they arrive, then its usage.

        ``options`` adds ``tools`` (when it offers any), ``temperature`` and
        ``max_tokens`` (when set) to the request; what is unset is left out so
        the server's defaults apply. A tool-call piece whose shape is wrong
        raises :class:`ProviderError` rather than hand the run a broken call.

        Raises :class:`ProviderError` when the request fails or the stream ends
        without the server saying the reply is finished. Closing the generator
        closes the HTTP response, so the server stops generating; it is typed
        as a generator so that callers may ``close()`` it.

        The SDK sends the request (its retries, its errors for a refused one);
        the events are read here, as plain JSON: turning each into the SDK's
        typed chunk cost more than everything else a streamed piece costs
        (bench/capacity.py, 500 replies at once).
        """
        request = _request_options(options)
        payload = cast("list[ChatCompletionMessageParam]", [_message(m) for m in messages])
        started = False
        try:
            with self._client.chat.completions.with_streaming_response.create(
                model=model,
                messages=payload,
                stream=True,
                stream_options={"include_usage": True},
                **request,
            ) as response:
                started = True
                finished = False
                usage: Usage | None = None
                # Made on the first tool-call piece: a text reply never pays for it.
                calls: _ToolCallPieces | None = None
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        break
                    chunk = _chunk(data)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if content := delta.get("content"):
                            yield content
                        if pieces := delta.get("tool_calls"):
                            if calls is None:
                                calls = _ToolCallPieces()
                            yield from calls.read(pieces)
                        if choice.get("finish_reason") is not None:
                            finished = True
                    if reported := chunk.get("usage"):
                        usage = Usage(
                            prompt_tokens=reported.get("prompt_tokens"),
                            completion_tokens=reported.get("completion_tokens"),
                            total_tokens=reported.get("total_tokens"),
                        )
                if not finished:
                    # A server that closes the body cleanly mid-reply would
                    # otherwise pass a truncated answer off as complete.
                    raise ProviderError("model service ended the reply before finishing it")
                if usage is not None:
                    yield usage
        except (openai.OpenAIError, httpx.HTTPError) as error:
            raise ProviderError(self._describe(error, started=started)) from error

    def _describe(self, error: Exception, *, started: bool) -> str:
        """Say what failed in one line, without the API key."""
        return self._redact(self._message(error, started=started))

    def _message(self, error: Exception, *, started: bool) -> str:
        if isinstance(error, openai.APITimeoutError | httpx.TimeoutException):
            return f"model service timed out after {self.timeout:g} s"
        if isinstance(error, openai.APIStatusError):
            return f"model service returned {error.status_code}: {_status_detail(error)}"
        if isinstance(error, openai.APIConnectionError):
            cause = error.__cause__
            detail = str(cause) if cause is not None and str(cause) else error.message
            return f"model service unreachable: {_shorten(detail)}"
        if isinstance(error, httpx.HTTPError):
            # httpx errors surface unwrapped while the SDK reads the stream.
            what = "broke off the reply" if started else "failed"
            detail = str(error) or type(error).__name__
            return f"model service {what}: {_shorten(detail)}"
        if isinstance(error, openai.APIError):
            return f"model service reported an error: {_shorten(error.message)}"
        return f"model service failed: {_shorten(str(error) or type(error).__name__)}"

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


def _request_options(options: ChatOptions | None) -> dict[str, Any]:
    """The request's optional fields: only those the agent set."""
    if options is None:
        return {}
    request: dict[str, Any] = {}
    if options.tools:
        request["tools"] = list(options.tools)
    if options.temperature is not None:
        request["temperature"] = options.temperature
    if options.max_tokens is not None:
        request["max_tokens"] = options.max_tokens
    return request


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One history message as sent: role and content, and the tool fields it has."""
    sent = {"role": message["role"], "content": message.get("content")}
    for key in ("tool_calls", "tool_call_id", "name"):
        # An empty tool_calls list is refused by OpenAI; absent and empty mean the same.
        if value := message.get(key):
            sent[key] = value
    return sent


class _ToolCallPieces:
    """Turns one reply's ``delta.tool_calls`` pieces into checked :class:`ToolCallDelta` items.

    The first delta of each call carries its name (and id); later ones carry
    argument fragments only, even from servers that repeat the id and name on
    every piece, so that a consumer can tell a call's start from its name.
    """

    def __init__(self) -> None:
        # index -> (id, name) of each call started so far.
        self._started: dict[int, tuple[str | None, str]] = {}
        self._latest: int | None = None

    def read(self, pieces: Any) -> Iterator[ToolCallDelta]:
        if not isinstance(pieces, list):
            raise _malformed("tool_calls is not a list", pieces)
        for piece in pieces:
            yield self._delta(piece)

    def _delta(self, piece: Any) -> ToolCallDelta:
        if not isinstance(piece, dict):
            raise _malformed("a tool call piece is not an object", piece)
        function = piece.get("function") or {}
        if not isinstance(function, dict):
            raise _malformed("a tool call's function is not an object", piece)
        call_id, name = piece.get("id"), function.get("name")
        arguments = function.get("arguments") or ""
        if not all(isinstance(v, str | None) for v in (call_id, name)) or not isinstance(
            arguments, str
        ):
            raise _malformed("a tool call's id, name or arguments is not a string", piece)
        index = piece.get("index")
        if index is None:
            index = self._implied_index(call_id, name)
        elif type(index) is not int or index < 0:
            raise _malformed("a tool call's index is not a whole number", piece)
        self._latest = index
        started = self._started.get(index)
        if started is None:
            if not name:
                raise _malformed(f"tool call {index} starts without a function name", piece)
            self._started[index] = (call_id, name)
            return ToolCallDelta(index, call_id or None, name, arguments)
        known_id, known_name = started
        return ToolCallDelta(
            index,
            None if call_id == known_id else call_id or None,
            None if name == known_name else name or None,
            arguments,
        )

    def _implied_index(self, call_id: str | None, name: str | None) -> int:
        """Where a piece without ``index`` belongs.

        With the latest call, unless it names a function without repeating
        that call's id: then it starts the next call.
        """
        latest = self._latest
        if latest is None or (name and call_id != self._started[latest][0]):
            return max(self._started, default=-1) + 1
        return latest


def _malformed(problem: str, piece: Any) -> ProviderError:
    return ProviderError(
        f"model service sent a malformed tool call: {problem}: {_shorten(str(piece))}"
    )


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """Yield the data of each server-sent event: its ``data:`` lines, joined."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data:
        yield "\n".join(data)


def _chunk(data: str) -> dict[str, Any]:
    """Read one chunk of the reply; an error the server streams instead is a ProviderError."""
    try:
        chunk = from_json(data)
    except ValueError:
        raise ProviderError(
            f"model service sent an event that is not JSON: {_shorten(data)}"
        ) from None
    if not isinstance(chunk, dict):
        raise ProviderError(f"model service sent an event that is not an object: {_shorten(data)}")
    error = chunk.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        raise ProviderError(f"model service reported an error: {_shorten(str(message or error))}")
    return chunk


def _status_detail(error: openai.APIStatusError) -> str:
    """The server's own error message, not the SDK's dump of the whole body."""
    body: Any = error.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            return _shorten(message)
    if isinstance(body, str) and body.strip():
        return _shorten(body)
    return error.response.reason_phrase or "no details"
