"""Both providers through their public API; the OpenAI one over real HTTP.

The only fake is the OpenAI-compatible stand-in server, so the SDK's request
building, retries, timeouts and stream parsing all run as in production.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import openai
import pytest

from tests.conftest import AppFactory
from tests.conftest import MakeProvider
from tests.helpers import collect_until_error
from tests.openai_standin import OpenAIStandIn
from tests.openai_standin import Reply
from zerg.providers import get_providers
from zerg.providers.base import StreamItem
from zerg.providers.base import Usage
from zerg.providers.offline import OfflineProvider
from zerg.providers.openai import OpenAIProvider

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": "say something nice"},
]


def split(items: list[StreamItem]) -> tuple[list[str], list[Usage]]:
    texts = [item for item in items if isinstance(item, str)]
    usages = [item for item in items if isinstance(item, Usage)]
    assert len(texts) + len(usages) == len(items)
    return texts, usages


# --- offline ----------------------------------------------------------------------


def test_offline_lists_its_one_model() -> None:
    (model,) = OfflineProvider().models()
    assert (model.id, model.provider) == ("offline", "offline")
    assert OfflineProvider.name == "offline"


def test_offline_streams_several_deltas_then_usage() -> None:
    items = list(OfflineProvider(delay=0.001).stream("offline", MESSAGES))

    texts, usages = split(items)
    assert len(texts) > 3
    assert all(texts)
    assert items[-1] == usages[0] and len(usages) == 1
    reply = "".join(texts)
    assert "offline model" in reply
    assert reply.endswith("You said: say something nice")
    usage = usages[0]
    assert usage.prompt_tokens == 9
    assert usage.completion_tokens == len(texts)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_offline_is_deterministic() -> None:
    provider = OfflineProvider(delay=0.001)
    first = list(provider.stream("offline", MESSAGES))
    second = list(OfflineProvider(delay=0.001).stream("offline", MESSAGES))
    assert first == second


def test_offline_without_a_user_message_still_answers() -> None:
    texts, _ = split(list(OfflineProvider(delay=0.001).stream("offline", [])))
    assert "".join(texts).endswith("You said: nothing yet")


# --- openai against the stand-in ---------------------------------------------------


def test_openai_lists_the_configured_models(make_provider: MakeProvider) -> None:
    provider = make_provider()
    assert provider.name == "openai"
    assert [(m.id, m.display_name, m.provider) for m in provider.models()] == [
        ("standin-small", "standin-small", "openai"),
        ("standin-large", "standin-large", "openai"),
    ]


def test_openai_streams_the_scripted_deltas_and_usage(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(
        Reply(
            pieces=("Once", " upon", " a", " time."),
            usage={"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
        )
    )

    items = list(make_provider().stream("standin-small", MESSAGES))

    assert items == ["Once", " upon", " a", " time.", Usage(11, 4, 15)]


def test_openai_sends_the_messages_model_and_stream_options(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    list(make_provider().stream("standin-large", MESSAGES))

    (request,) = standin.requests
    assert request.path == "/v1/chat/completions"
    assert request.model == "standin-large"
    assert request.messages == MESSAGES
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    # Local servers need no key; the SDK still sends a placeholder.
    assert request.headers["Authorization"] == "Bearer not-needed"


def test_openai_default_reply_echoes_the_last_user_message(make_provider: MakeProvider) -> None:
    texts, usages = split(list(make_provider().stream("standin-small", MESSAGES)))
    assert "".join(texts) == "say something nice"
    assert len(texts) == 3
    assert usages == [Usage(prompt_tokens=9, completion_tokens=3, total_tokens=12)]


def test_openai_skips_role_finish_empty_and_usage_chunks(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    # The stand-in sends a role-only chunk (content None), a finish chunk with
    # an empty delta and a usage chunk with no choices; "" pieces add chunks
    # whose content is empty. None of them may surface as a delta.
    standin.script(Reply(pieces=("", "Hel", "", "lo", "")))

    items = list(make_provider().stream("standin-small", MESSAGES))

    texts, usages = split(items)
    assert texts == ["Hel", "lo"]
    assert len(usages) == 1 and items[-1] == usages[0]


def test_openai_uses_the_api_key_and_never_reveals_it(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    key = "sk-test-very-secret-123"
    standin.script(Reply(status=401, message=f"Incorrect API key provided: {key}."))

    _, error = collect_until_error(make_provider(api_key=key).stream("standin-small", MESSAGES))

    assert standin.requests[0].headers["Authorization"] == f"Bearer {key}"
    assert "401" in str(error)
    assert key not in str(error)
    assert "Incorrect API key provided" in str(error)


def test_openai_server_error_is_a_provider_error(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(Reply(status=500, message="the GPU caught fire"))

    items, error = collect_until_error(make_provider().stream("standin-small", MESSAGES))

    assert items == []
    assert str(error) == "model service returned 500: the GPU caught fire"
    assert len(standin.requests) == 1


def test_openai_rate_limit_without_retries_fails_quickly(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(Reply(status=429, retry_after=0.05))
    started = time.monotonic()

    _, error = collect_until_error(make_provider(max_retries=0).stream("standin-small", MESSAGES))

    assert time.monotonic() - started < 2
    assert str(error).startswith("model service returned 429: Rate limit reached")
    assert len(standin.requests) == 1


def test_openai_retries_rate_limits_then_succeeds(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(
        Reply(status=429, retry_after=0.05),
        Reply(status=429, retry_after=0.05),
        Reply(pieces=("finally", " through")),
    )

    texts, usages = split(list(make_provider(max_retries=2).stream("standin-small", MESSAGES)))

    assert "".join(texts) == "finally through"
    assert len(usages) == 1
    requests = standin.requests
    assert len(requests) == 3
    assert all(r.messages == MESSAGES for r in requests)
    assert standin.pending == 0


def test_openai_gives_up_after_max_retries(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(*[Reply(status=500, retry_after=0.01)] * 3, Reply(pieces=("never",)))

    _, error = collect_until_error(make_provider(max_retries=2).stream("standin-small", MESSAGES))

    assert "500" in str(error)
    assert len(standin.requests) == 3
    assert standin.pending == 1


def test_openai_slow_token_times_out(standin: OpenAIStandIn, make_provider: MakeProvider) -> None:
    standin.script(Reply(pieces=("quick", " then", " stuck"), delay=3))
    started = time.monotonic()

    items, error = collect_until_error(make_provider(timeout=0.5).stream("standin-small", MESSAGES))

    assert time.monotonic() - started < 2.5
    assert items == ["quick"]
    assert str(error) == "model service timed out after 0.5 s"


def test_openai_slow_first_answer_times_out_with_retries_off(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(Reply(pieces=("late",), wait=3))
    started = time.monotonic()

    _, error = collect_until_error(make_provider(timeout=0.5).stream("standin-small", MESSAGES))

    assert time.monotonic() - started < 2.5
    assert "timed out" in str(error)


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("disconnect", "model service broke off the reply: "),
        ("truncate", "model service ended the reply before finishing it"),
        ("error", "model service reported an error: overloaded mid-reply"),
        ("garbage", "model service sent an event that is not JSON: "),
    ],
)
def test_openai_failure_mid_stream_comes_after_the_first_deltas(
    standin: OpenAIStandIn, make_provider: MakeProvider, failure: str, message: str
) -> None:
    standin.script(
        Reply(
            pieces=("one", " two", " three", " four"),
            fail_after=2,
            failure=failure,  # type: ignore[arg-type]
            message="overloaded mid-reply",
        )
    )

    items, error = collect_until_error(make_provider().stream("standin-small", MESSAGES))

    assert items == ["one", " two"]
    assert str(error).startswith(message)
    assert not standin.requests[0].done.is_set()


def test_openai_closing_the_stream_early_disconnects_from_the_server(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    standin.script(Reply(pieces=[f"w{i} " for i in range(200)], delay=0.05))
    stream = make_provider().stream("standin-small", MESSAGES)

    assert [next(stream), next(stream)] == ["w0 ", "w1 "]
    stream.close()

    (request,) = standin.requests
    assert request.disconnected.wait(timeout=3)
    assert not request.done.is_set()


def test_openai_unreachable_server_is_a_provider_error(make_provider: MakeProvider) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = make_provider(base_url=f"http://127.0.0.1:{port}/v1", timeout=2.0)

    _, error = collect_until_error(provider.stream("standin-small", MESSAGES))

    assert str(error).startswith("model service unreachable: ")


def test_openai_provider_can_be_used_from_several_threads(
    standin: OpenAIStandIn, make_provider: MakeProvider
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    provider = make_provider()

    def ask(n: int) -> str:
        messages = [{"role": "user", "content": f"number {n}"}]
        return "".join(i for i in provider.stream("standin-small", messages) if isinstance(i, str))

    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(ask, range(8)))

    assert replies == [f"number {n}" for n in range(8)]
    assert len(standin.requests) == 8


# --- the stand-in itself, through the plain SDK -------------------------------------


def test_standin_answers_without_streaming_and_lists_models(standin: OpenAIStandIn) -> None:
    standin.script(Reply(pieces=("all", " at", " once")))
    with openai.OpenAI(api_key="x", base_url=standin.base_url, max_retries=0, timeout=5) as client:
        completion = client.chat.completions.create(model="standin-small", messages=MESSAGES)  # type: ignore[arg-type]
        models = [m.id for m in client.models.list()]

    assert completion.choices[0].message.content == "all at once"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert models == ["standin-small", "standin-large"]
    assert len(standin.requests) == 1


def test_standin_wait_for_requests_times_out(standin: OpenAIStandIn) -> None:
    with pytest.raises(AssertionError, match="saw 0 requests, expected 1"):
        standin.wait_for_requests(1, timeout=0.1)


# --- through the app ------------------------------------------------------------------


@pytest.fixture
def openai_app(make_app: AppFactory, standin: OpenAIStandIn) -> Any:
    return make_app(
        LLM_PROVIDER="openai,offline",
        OPENAI_BASE_URL=standin.base_url,
        OPENAI_MODELS="standin-small,standin-large",
        OPENAI_TIMEOUT_SECONDS=5,
        OPENAI_MAX_RETRIES=0,
    )


def test_app_lists_openai_and_offline_models(openai_app: Any) -> None:
    response = openai_app.test_client().get("/api/models")

    assert response.status_code == 200
    assert response.get_json() == [
        {"id": "standin-small", "display_name": "standin-small", "provider": "openai"},
        {"id": "standin-large", "display_name": "standin-large", "provider": "openai"},
        {"id": "offline", "display_name": "Offline model (no network)", "provider": "offline"},
    ]


def test_app_accepts_agents_on_openai_models_only(openai_app: Any) -> None:
    client = openai_app.test_client()

    created = client.post("/api/agents", json={"name": "A", "model": "standin-small"})
    refused = client.post("/api/agents", json={"name": "B", "model": "gpt-nope"})
    default = client.post("/api/agents", json={"name": "C"})

    assert created.status_code == 201
    assert created.get_json()["model"] == "standin-small"
    assert refused.status_code == 422
    assert refused.get_json()["errors"][0]["type"] == "unknown_model"
    assert default.status_code == 201
    assert default.get_json()["model"] == "standin-small"


def test_app_provider_streams_from_the_configured_server(
    openai_app: Any, standin: OpenAIStandIn
) -> None:
    standin.script(Reply(pieces=("from", " the", " app")))
    providers = get_providers(openai_app)
    provider = providers.provider_for("standin-small")
    assert isinstance(provider, OpenAIProvider)
    assert providers.provider_for("offline") is not None

    try:
        texts, _ = split(list(provider.stream("standin-small", MESSAGES)))
    finally:
        provider.close()

    assert "".join(texts) == "from the app"
    assert standin.requests[0].model == "standin-small"
