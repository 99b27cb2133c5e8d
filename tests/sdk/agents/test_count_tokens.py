"""`POST /v1/messages/count_tokens` through the official `anthropic` SDK: an Anthropic
backend's own count when the route resolves to one, the gateway's estimate otherwise,
told apart by `x-bazaar-token-count`."""

import anthropic

from conftest import CLIENT_KEY

MESSAGES = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]


def test_anthropic_backends_count_and_others_are_estimated(backend):
    client = anthropic.Anthropic(base_url=backend.base, api_key=CLIENT_KEY, max_retries=0)
    raw = client.messages.with_raw_response.count_tokens(model="agent-claude", messages=MESSAGES, system="Be brief.")
    assert raw.headers["x-bazaar-token-count"] == "provider"
    assert raw.parse().input_tokens == 42
    sent = backend.mock.requests("/messages/count_tokens")[-1]["body"]
    assert sent["model"] == "agent-claude" and "max_tokens" not in sent

    raw = client.messages.with_raw_response.count_tokens(model="agent-chat", messages=MESSAGES, system="Be brief.")
    assert raw.headers["x-bazaar-token-count"] == "estimated"
    assert 8 <= raw.parse().input_tokens <= 30
