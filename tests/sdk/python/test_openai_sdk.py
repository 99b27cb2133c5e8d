"""The official `openai` Python SDK against the gateway, unchanged but for base_url and
key; every raw response body and stream chunk is validated against the OpenAI spec."""

import base64
import json
import struct

import httpx
import openai
import pytest

from conftest import CLIENT_KEY, PROVIDER_KEY, WRONG_PROVIDER_KEY, validate

MESSAGES = [{"role": "user", "content": "Say hello"}]


def test_chat_plain_with_passthrough_fields(client):
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        seed=7,
        logprobs=False,
        user="user-1",
        metadata={"team": "sdk"},
        n=2,
        response_format={"type": "json_object"},
    )
    assert raw.headers["x-bazaar-backend"] == "sim/gpt-4o-mini"
    assert raw.headers.get("x-request-id")
    body = json.loads(raw.text)
    validate("CreateChatCompletionResponse", body)
    reply = raw.parse()
    assert len(reply.choices) == 2
    assert reply.choices[0].message.content.startswith("Hello")
    assert reply.usage.total_tokens > 0


def test_chat_json_schema_and_images(client):
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ]}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    )
    assert reply.choices[0].finish_reason == "stop"


def test_chat_stream_chunks_are_valid_and_usage_hidden_unless_asked(client):
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks
    for c in chunks:
        validate("CreateChatCompletionStreamResponse", c.model_dump(mode="json", exclude_unset=True))
        assert c.usage is None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello")

    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].choices == []


def test_stream_raw_sse_validates(gateway):
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                      json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.headers["content-type"] == "text/event-stream"
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        validate("CreateChatCompletionStreamResponse", json.loads(e))


def test_streamed_tool_call_deltas_reassemble(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools, stream=True)
    name, args = None, ""
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = call.function.name or name
            args += call.function.arguments or ""
    assert name == "get_weather"
    assert json.loads(args)["location"] == "Paris"

    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, tools=tools)
    assert reply.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_embeddings_float_and_base64(client):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    validate("CreateEmbeddingResponse", json.loads(raw.text))
    assert len(raw.parse().data) == 2
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input="a", encoding_format="base64")
    body = json.loads(raw.text)
    packed = base64.b64decode(body["data"][0]["embedding"])
    vector = struct.unpack(f"<{len(packed) // 4}f", packed)
    assert len(vector) == 8
    # The spec types `embedding` as a float array only; base64 replies are validated decoded.
    body["data"][0]["embedding"] = list(vector)
    validate("CreateEmbeddingResponse", body)
    # The SDK's default (it asks for base64 and decodes it itself).
    assert len(client.embeddings.create(model="text-embedding-3-small", input="a").data[0].embedding) == 8


def test_legacy_completions(client):
    raw = client.completions.with_raw_response.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=5)
    validate("CreateCompletionResponse", json.loads(raw.text))
    chunks = list(client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices).strip()


def test_models(client):
    raw = client.models.with_raw_response.list()
    validate("ListModelsResponse", json.loads(raw.text))
    assert {m.id for m in raw.parse()} >= {"gpt-4o-mini", "text-embedding-3-small", "auto", "cheap", "fast"}
    kinds = {m["id"]: m["bazaar"]["kind"] for m in json.loads(raw.text)["data"]}
    assert kinds["auto"] == "route" and kinds["gpt-4o-mini"] == "model"


def test_error_classes(gateway, client):
    bad_key = openai.OpenAI(base_url=gateway.base_url, api_key="bzr-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad_key.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    validate("ErrorResponse", e.value.response.json())
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    validate("ErrorResponse", e.value.response.json())
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens="lots")
    assert e.value.response.json()["error"]["param"] == "max_tokens"
    # The provider rejects the gateway's (wrong) key: the client sees a 502, not a 401.
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="locked-model", messages=MESSAGES)
    assert e.value.status_code == 502
    validate("ErrorResponse", e.value.response.json())


def test_no_secret_in_logs_or_errors(gateway, client):
    for call in [
        lambda: client.chat.completions.create(model="locked-model", messages=MESSAGES),
        lambda: openai.OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY + "x", max_retries=0).models.list(),
        lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature="hot"),
    ]:
        try:
            call()
        except openai.APIStatusError as e:
            text = e.response.text
            for secret in (PROVIDER_KEY, WRONG_PROVIDER_KEY, CLIENT_KEY):
                assert secret not in text
    logs = gateway.logs()
    assert "Request failed" in logs or "Upstream attempt failed" in logs
    for secret in (PROVIDER_KEY, WRONG_PROVIDER_KEY, CLIENT_KEY, WRONG_PROVIDER_KEY[:14]):
        assert secret not in logs, f"a secret leaked into the logs: {secret[:6]}…"
