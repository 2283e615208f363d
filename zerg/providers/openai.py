"""The OpenAI provider: Chat Completions over the official SDK, or any compatible server.

A configurable base URL lets the same code talk to OpenAI or to a local
OpenAI-compatible server (Ollama, vLLM, llama.cpp). Whatever goes wrong on the
way — refused connection, timeout, error status, a stream that breaks off — is
turned into one :class:`ProviderError` with a short message fit to store on a
run, so callers never need to know the SDK's or httpx's exception types.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from typing import cast

import httpx
import openai
from openai import OpenAI
from openai import Stream
from openai.types.chat import ChatCompletionChunk
from openai.types.chat import ChatCompletionMessageParam

from zerg.providers.base import ChatMessages
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

    def models(self) -> list[ModelInfo]:
        """List the configured models; the server is not asked, so start-up needs no network."""
        return [ModelInfo(id=m, display_name=m, provider=self.name) for m in self._model_ids]

    def close(self) -> None:
        """Release the client's pooled connections."""
        self._client.close()

    def stream(self, model: str, messages: ChatMessages) -> Generator[StreamItem, None, None]:
        """Yield the reply's text deltas as they arrive, then its usage if reported.

        Raises :class:`ProviderError` when the request fails or the stream ends
        without the server saying the reply is finished. Closing the generator
        closes the HTTP response, so the server stops generating; it is typed
        as a generator so that callers may ``close()`` it.
        """
        payload = cast(
            "list[ChatCompletionMessageParam]",
            [{"role": m["role"], "content": m["content"]} for m in messages],
        )
        response: Stream[ChatCompletionChunk] | None = None
        try:
            response = self._client.chat.completions.create(
                model=model,
                messages=payload,
                stream=True,
                stream_options={"include_usage": True},
            )
            finished = False
            usage: Usage | None = None
            for chunk in response:
                # The usage chunk has no choices; role-only and finish chunks
                # carry no (or empty) content.
                for choice in getattr(chunk, "choices", None) or ():
                    content = choice.delta.content if choice.delta is not None else None
                    if content:
                        yield content
                    if choice.finish_reason is not None:
                        finished = True
                reported = getattr(chunk, "usage", None)
                if reported is not None:
                    usage = Usage(
                        prompt_tokens=reported.prompt_tokens,
                        completion_tokens=reported.completion_tokens,
                        total_tokens=reported.total_tokens,
                    )
            if not finished:
                # A server that closes the body cleanly mid-reply would
                # otherwise pass a truncated answer off as complete.
                raise ProviderError("model service ended the reply before finishing it")
            if usage is not None:
                yield usage
        except (openai.OpenAIError, httpx.HTTPError) as error:
            raise ProviderError(self._describe(error, started=response is not None)) from error
        finally:
            if response is not None:
                response.close()

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
