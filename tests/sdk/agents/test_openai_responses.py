"""The official `openai` Python SDK's Responses client against the gateway: create,
stream, a function-tool round trip, `previous_response_id` and the input items list, on a backend that is
translated (OpenAI-compatible chat) and one that serves Responses itself. Every reply and
stream event is validated against OpenAI's OpenAPI spec; every call is in the ledger."""

import json

import openai
import pytest

from conftest import CLIENT_KEY, OTHER_KEY, validate

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
WEATHER = [{"tool": "get_weather", "args": {"city": "Paris"}}, {"text": "It is sunny in Paris."}]


def client(gateway, key=CLIENT_KEY):
    return openai.OpenAI(base_url=gateway.url, api_key=key, max_retries=0)


@pytest.mark.script(WEATHER)
@pytest.mark.parametrize("model", ["agent-chat", "agent-native"])
def test_create_and_stream_are_valid_responses(backend, model):
    c = client(backend)
    raw = c.responses.with_raw_response.create(model=model, input="Say hello", instructions="Be brief.")
    assert raw.headers["x-bazaar-backend"].endswith(f"/{model}")
    body = json.loads(raw.text)
    validate("Response", body)
    # The billed cost rides in `usage` (null: these test models have no price).
    assert "cost" in body["usage"] and body["usage"]["cost"] is None
    reply = raw.parse()
    assert reply.status == "completed"
    assert reply.output_text == "OK."
    assert reply.usage.total_tokens > 0

    with c.responses.stream(model=model, input="Say hello") as stream:
        names = []
        for event in stream:
            validate("ResponseStreamEvent", event.model_dump(mode="json", exclude_unset=True))
            names.append(event.type)
        final = stream.get_final_response()
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert "response.output_text.delta" in names
    assert "cost" in final.usage.model_extra, final.usage
    assert final.output_text == "OK."
    backend.wait_calls("responses", 2)


@pytest.mark.script(WEATHER)
@pytest.mark.parametrize("model", ["agent-chat", "agent-native", "agent-claude"])
def test_a_function_tool_round_trip_with_previous_response_id(backend, model):
    c = client(backend)
    first = c.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS)
    validate("Response", first.model_dump(mode="json", exclude_unset=True))
    calls = [i for i in first.output if i.type == "function_call"]
    assert [(x.name, json.loads(x.arguments)) for x in calls] == [("get_weather", {"city": "Paris"})]
    # The tool's result, continuing the stored conversation.
    second = c.responses.create(
        model=model, tools=TOOLS, previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 24C"}],
    )
    assert second.output_text == "It is sunny in Paris."
    if model != "agent-native":
        # A backend serving Responses gets the whole conversation instead and answers as it does.
        assert second.previous_response_id == first.id
    # The whole conversation reached the backend, in its own wire format.
    last = backend.mock.requests()[-1]["body"]
    assert "sunny, 24C" in json.dumps(last)
    assert "What is the weather in Paris?" in json.dumps(last)
    # The items the second response was generated from, as OpenAI lists them, a page of
    # two at a time (the SDK follows `after`).
    raw = c.responses.input_items.with_raw_response.list(second.id, order="asc", limit=2)
    page = json.loads(raw.text)
    validate("ResponseItemList", page)
    assert page["has_more"] is True and len(page["data"]) == 2
    items = list(c.responses.input_items.list(second.id, order="asc", limit=2))
    assert [i.type for i in items] == ["message", "function_call", "function_call_output"], items
    assert items[1].call_id == calls[0].call_id and items[2].output == "sunny, 24C"
    # Streamed too, with the function call's argument events.
    with c.responses.stream(model=model, input="Weather in Paris?", tools=TOOLS) as stream:
        names = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in names
    assert final.output[-1].type == "function_call"
    rows = backend.wait_calls("responses", 3)
    assert all(r["status"] == 200 and r["tokens"]["output"] > 0 for r in rows), rows


@pytest.mark.script(WEATHER)
def test_stored_responses_belong_to_their_key(backend):
    c = client(backend)
    first = c.responses.create(model="agent-chat", input="Remember me")
    assert c.responses.retrieve(first.id).id == first.id
    other = client(backend, OTHER_KEY)
    with pytest.raises(openai.NotFoundError) as e:
        other.responses.create(model="agent-chat", input="Who?", previous_response_id=first.id)
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    c.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as e:
        c.responses.create(model="agent-chat", input="Search", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"
    # Refusals are ledger rows too (the 404 is the other key's).
    rows = backend.wait_calls("responses", 2)
    assert [r["status"] for r in rows] == [200, 400]
