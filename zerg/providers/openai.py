"""The OpenAI provider: Chat Completions over the official SDK, or any compatible server.

A configurable base URL lets the same code talk to OpenAI or to a local
OpenAI-compatible server (Ollama, vLLM, llama.cpp). Whatever goes wrong on the
way — refused connection, timeout, error status, a stream that breaks off — is
turned into one :class:`ProviderError` with a short message fit to store on a
run, so callers never need to know the SDK's or httpx's exception types.
"""

from __future__ import annotations

from collections.abc import Generator
from collections.abc import Iterator
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
        """Yield the reply's text deltas as they arrive, then its usage if reported.

        Raises :class:`ProviderError` when the request fails or the stream ends
        without the server saying the reply is finished. Closing the generator
        closes the HTTP response, so the server stops generating; it is typed
        as a generator so that callers may ``close()`` it.

        The SDK sends the request (its retries, its errors for a refused one);
        the events are read here, as plain JSON: turning each into the SDK's
        typed chunk cost more than everything else a streamed piece costs
        (bench/capacity.py, 500 replies at once).
        """
        payload = cast(
            "list[ChatCompletionMessageParam]",
            [{"role": m["role"], "content": m["content"]} for m in messages],
        )
        started = False
        try:
            with self._client.chat.completions.with_streaming_response.create(
                model=model,
                messages=payload,
                stream=True,
                stream_options={"include_usage": True},
            ) as response:
                started = True
                finished = False
                usage: Usage | None = None
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        break
                    chunk = _chunk(data)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if content := delta.get("content"):
                            yield content
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
