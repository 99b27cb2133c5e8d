"""The OpenAI Agents SDK (`openai-agents`) running a two-tool agent through the gateway:
`Runner.run` on its Responses model (on a translated chat backend, on a backend serving
Responses itself and on an Anthropic one) and on its Chat Completions model. The mock
backend asks for both tools in turn; the agent runs them and finishes with the mock's
answer; every model call is in the ledger."""

import asyncio
import json

import pytest
from agents import (Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, RunConfig, Runner,
                    function_tool, set_tracing_disabled)
from openai import AsyncOpenAI

from conftest import CLIENT_KEY

SCRIPT = [{"tool": "get_temperature", "args": {"city": "Paris"}},
          {"tool": "to_fahrenheit", "args": {"celsius": 24}},
          {"text": "It is 75F in Paris."}]

set_tracing_disabled(True)


def agent(model, ran):
    @function_tool
    def get_temperature(city: str) -> str:
        """The temperature in a city, in Celsius."""
        ran.append(("get_temperature", city))
        return "24"

    @function_tool
    def to_fahrenheit(celsius: float) -> str:
        """Converts Celsius to Fahrenheit."""
        ran.append(("to_fahrenheit", celsius))
        return str(round(celsius * 9 / 5 + 32))

    return Agent(name="weather", instructions="Answer with the tools.", model=model,
                 tools=[get_temperature, to_fahrenheit])


async def run(model, ran):
    result = await Runner.run(agent(model, ran), "How warm is Paris in Fahrenheit?",
                              run_config=RunConfig(tracing_disabled=True), max_turns=6)
    return result.final_output


@pytest.mark.script(SCRIPT)
@pytest.mark.parametrize("model", ["agent-chat", "agent-native", "agent-claude"])
def test_a_two_tool_agent_on_the_responses_model(backend, model):
    client = AsyncOpenAI(base_url=backend.url, api_key=CLIENT_KEY, max_retries=0)
    ran = []
    out = asyncio.run(run(OpenAIResponsesModel(model=model, openai_client=client), ran))
    assert out == "It is 75F in Paris."
    assert ran == [("get_temperature", "Paris"), ("to_fahrenheit", 24)]
    # Both tool results reached the backend in its own wire format.
    assert "75" in json.dumps(backend.mock.requests()[-1]["body"])
    rows = backend.wait_calls("responses", 3)
    assert [r["status"] for r in rows] == [200, 200, 200], rows
    assert all(r["model"] == model for r in rows), rows


@pytest.mark.script(SCRIPT)
def test_a_two_tool_agent_on_the_chat_completions_model(backend):
    client = AsyncOpenAI(base_url=backend.url, api_key=CLIENT_KEY, max_retries=0)
    ran = []
    out = asyncio.run(run(OpenAIChatCompletionsModel(model="agent-chat", openai_client=client), ran))
    assert out == "It is 75F in Paris."
    assert ran == [("get_temperature", "Paris"), ("to_fahrenheit", 24)]
    rows = backend.wait_calls("chat", 3)
    assert [r["status"] for r in rows] == [200, 200, 200], rows
