"""The official `anthropic` Python SDK against the gateway's `/v1/messages`, unchanged but
for base_url and key, with two backends behind it: an OpenAI-compatible one (`bazaar sim`,
whose replies the gateway translates) and an Anthropic one (a mock replaying the recorded
Messages fixtures in tests/fixtures/anthropic, whose replies pass through untranslated)."""

import json
import os
import pathlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anthropic
import pytest

from conftest import BIN, ROOT, free_port, start_sim, wait_ready

FIXTURES = ROOT / "tests" / "fixtures" / "anthropic"
CLIENT_KEY = "bzr-anthropic-sdk-key-3c9e"
ANTHROPIC_KEY = "sk-ant-provider-secret-41d7"


class MockAnthropic(BaseHTTPRequestHandler):
    """`POST /v1/messages` from fixtures; upstream model `claude-429` / `claude-529` fail."""

    received = []

    def log_message(self, *args):
        pass

    def reply(self, status, file, headers=()):
        body = (FIXTURES / file).read_bytes()
        self.send_response(status)
        self.send_header("content-type", "text/event-stream" if file.endswith(".sse") else "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        MockAnthropic.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.headers.get("x-api-key") != ANTHROPIC_KEY:
            return self.reply(401, "error_401.json")
        if body["model"] == "claude-429":
            return self.reply(429, "error_429.json", [("retry-after", "2")])
        if body["model"] == "claude-529":
            return self.reply(529, "error_529.json")
        stream, tools, thinking = body.get("stream"), body.get("tools"), body.get("thinking")
        if stream:
            file = "stream_thinking.sse" if thinking else "stream_tool_use.sse" if tools else "stream_text.sse"
        else:
            file = "reply_thinking.json" if thinking else "reply_tool_use.json" if tools else "reply_text.json"
        self.reply(200, file)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    sim, sim_addr = start_sim()
    mock = ThreadingHTTPServer(("127.0.0.1", 0), MockAnthropic)
    threading.Thread(target=mock.serve_forever, daemon=True).start()
    # pytest's directory: the last three runs' are kept for a look, older ones removed.
    tmp = tmp_path_factory.mktemp("bazaar-anthropic-sdk")
    port = free_port()
    config = pathlib.Path(tmp, "bazaar.toml")
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"

[providers.sim]
base_url = "http://{sim_addr}/v1"
tier = "open-hosted"
api_key = "sk-sim"
catalog = false
models = ["gpt-4o-mini"]

[providers.claude]
kind = "anthropic"
base_url = "http://127.0.0.1:{mock.server_port}/v1"
api_key = "env:MOCK_ANTHROPIC_KEY"
catalog = false

[[models]]
id = "claude-mock"
provider = "claude"
upstream = "claude-up"
input_price = 3
cached_input_price = 0.3
cache_write_price = 3.75
output_price = 15

[[models]]
id = "claude-ratelimited"
provider = "claude"
upstream = "claude-429"

[[models]]
id = "claude-overloaded"
provider = "claude"
upstream = "claude-529"

[[keys]]
name = "sdk"
key = "env:SDK_CLIENT_KEY"
""")
    log_path = pathlib.Path(tmp, "gateway.log")
    env = dict(os.environ, MOCK_ANTHROPIC_KEY=ANTHROPIC_KEY, SDK_CLIENT_KEY=CLIENT_KEY, BAZAAR_LOG="debug")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([BIN, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log_path)
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        mock.shutdown()
        sim.terminate()
        sim.wait(timeout=10)


@pytest.fixture()
def client(gateway):
    return anthropic.Anthropic(base_url=gateway[0], api_key=CLIENT_KEY, max_retries=0)


HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = [{"name": "get_weather", "description": "Weather", "input_schema": {
    "type": "object", "properties": {"location": {"type": "string"}, "unit": {"type": "string"}}}}]


def test_openai_backend_create(client):
    raw = client.messages.with_raw_response.create(model="gpt-4o-mini", max_tokens=64, messages=HELLO)
    assert raw.headers["x-bazaar-backend"] == "sim/gpt-4o-mini"
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Hello")
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    # The simulated backend has no price: the cost is unknown, never 0.
    assert raw.headers["x-bazaar-cost-usd"] == "unknown"
    assert message.usage.cost is None


def test_openai_backend_stream(client):
    with client.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Hello")
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_openai_backend_tool_use_both_ways(client):
    message = client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=HELLO, tools=WEATHER)
    assert message.stop_reason == "tool_use"
    tool = next(b for b in message.content if b.type == "tool_use")
    assert tool.name == "get_weather"
    assert tool.input == {"location": "Paris", "unit": "celsius"}

    with client.messages.stream(model="gpt-4o-mini", max_tokens=64, messages=HELLO, tools=WEATHER) as stream:
        final = stream.get_final_message()
    tool = next(b for b in final.content if b.type == "tool_use")
    assert tool.input == {"location": "Paris", "unit": "celsius"}

    follow_up = HELLO + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool.id, "name": tool.name, "input": tool.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "18C"}]},
    ]
    message = client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=follow_up, tools=WEATHER)
    assert message.stop_reason in ("tool_use", "end_turn")


def test_anthropic_backend_passes_through(client):
    MockAnthropic.received.clear()
    raw = client.messages.with_raw_response.create(
        model="claude-mock", max_tokens=64, top_k=5,
        system=[{"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral"}}],
        messages=HELLO, extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert raw.headers["x-bazaar-backend"] == "claude/claude-up"
    message = raw.parse()
    assert message.content[0].text == "Hello! This is a recorded reply."
    assert message.usage.cache_read_input_tokens == 1800
    assert message.usage.cache_creation_input_tokens == 200
    # 12 input at $3, 1,800 cache reads at $0.30, 200 cache writes at $3.75, 9 output at
    # $15 per million: the cost is in the header and, as an extra field the SDK keeps, in usage.
    assert raw.headers["x-bazaar-cost-usd"] == "0.001461000"
    assert message.usage.cost == pytest.approx(0.001461, abs=1e-12)
    sent = MockAnthropic.received[-1]
    assert sent["body"]["model"] == "claude-up"
    assert sent["body"]["top_k"] == 5
    assert sent["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert CLIENT_KEY not in json.dumps(sent["headers"])


def test_anthropic_backend_stream_tools_and_thinking(client):
    with client.messages.stream(model="claude-mock", max_tokens=64, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
    assert text == "Hello! This is a recorded stream."

    # message_delta carries the cost: 25 input, 400 cache reads, 100 cache writes, 11 output.
    with client.messages.stream(model="claude-mock", max_tokens=64, messages=HELLO) as stream:
        deltas = [event for event in stream if event.type == "message_delta"]
        final = stream.get_final_message()
    assert deltas[-1].usage.output_tokens == 11
    assert deltas[-1].usage.cost == pytest.approx(0.000735, abs=1e-12)
    assert final.usage.input_tokens == 25 and final.usage.output_tokens == 11

    with client.messages.stream(model="claude-mock", max_tokens=64, messages=HELLO, tools=WEATHER) as stream:
        final = stream.get_final_message()
    tools = [b for b in final.content if b.type == "tool_use"]
    assert [t.name for t in tools] == ["get_weather", "get_time"]
    assert tools[0].input == {"location": "Paris", "unit": "celsius"}
    assert final.usage.output_tokens == 89

    with client.messages.stream(model="claude-mock", max_tokens=2048, messages=HELLO,
                                thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].thinking == "Six times seven is 42."
    assert final.content[0].signature.startswith("EqQB")
    assert final.content[1].text == "42"


def test_errors_are_the_sdks_own_exceptions(gateway, client):
    wrong = anthropic.Anthropic(base_url=gateway[0], api_key="bzr-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        wrong.messages.create(model="claude-mock", max_tokens=8, messages=HELLO)
    assert e.value.body["error"]["type"] == "authentication_error"

    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="no-such-model", max_tokens=8, messages=HELLO)

    with pytest.raises(anthropic.RateLimitError) as e:
        client.messages.create(model="claude-ratelimited", max_tokens=8, messages=HELLO)
    assert e.value.response.headers["retry-after"] == "2"

    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model="claude-overloaded", max_tokens=8, messages=HELLO)
    assert e.value.status_code == 503
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_no_secret_reaches_the_logs(gateway, client):
    client.messages.create(model="claude-mock", max_tokens=8, messages=HELLO)
    logs = pathlib.Path(gateway[1]).read_text()
    assert ANTHROPIC_KEY not in logs
    assert CLIENT_KEY not in logs
