"""A Chat Completions agent client: LangChain's `ChatOpenAI` with a bound tool, in a tool
loop through the gateway's `/v1/chat/completions` until the model answers."""

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from conftest import CLIENT_KEY


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny, 24C in {city}"


@pytest.mark.script([{"tool": "get_weather", "args": {"city": "Paris"}}, {"text": "It is sunny in Paris."}])
@pytest.mark.parametrize("streaming", [False, True])
def test_chat_openai_runs_a_tool_loop(backend, streaming):
    llm = ChatOpenAI(model="agent-chat", base_url=backend.url, api_key=CLIENT_KEY, max_retries=0,
                     streaming=streaming, stream_usage=True).bind_tools([get_weather])
    messages = [HumanMessage("What is the weather in Paris?")]
    for _ in range(4):
        reply = llm.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            break
        for call in reply.tool_calls:
            messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    assert messages[-1].content == "It is sunny in Paris."
    assert [m.type for m in messages] == ["human", "ai", "tool", "ai"]
    assert messages[-1].usage_metadata["total_tokens"] > 0
    assert "sunny, 24C in Paris" in str(backend.mock.requests("/chat/completions")[-1]["body"])
    rows = backend.wait_calls("chat", 2)
    assert [r["status"] for r in rows] == [200, 200], rows
