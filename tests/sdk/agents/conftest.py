"""Fixtures for the real agent clients: a scripted mock backend (`mock_backend.py`, one
process speaking Chat Completions, Responses and Anthropic Messages) and the real
gateway binary in front of it, with one provider per wire format:

- `agent-chat`: an OpenAI-compatible host (Responses calls are translated to chat);
- `agent-native`: the `openai` preset, which serves Responses itself (passed through);
- `agent-claude`: an Anthropic backend.
"""

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from harness import BIN, free_port, validate, wait_ready  # noqa: E402,F401

CLIENT_KEY = "bzr-agents-client-key-3c7e"
OTHER_KEY = "bzr-agents-other-key-91d0"
PROVIDER_KEY = "sk-agents-provider-5b2f"


class Mock:
    def __init__(self, script, workdir):
        self.log = pathlib.Path(workdir, "requests.jsonl")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "mock_backend.py"), json.dumps(script), str(self.log)],
            stdout=subprocess.PIPE, text=True,
        )
        line = self.proc.stdout.readline().strip()
        assert line.startswith("listening on "), line
        self.addr = line.removeprefix("listening on ")

    def requests(self, suffix=""):
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [r for r in rows if r["path"].endswith(suffix)]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class Gateway:
    def __init__(self, mock, workdir):
        self.mock = mock
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/v1"
        config = pathlib.Path(workdir, "bazaar.toml")
        config.write_text(f"""
[server]
listen = "127.0.0.1:{self.port}"

[ledger]
url = "sqlite://{workdir}/ledger.sqlite"
flush_every = "50ms"

[providers.chatmock]
kind = "openai"
base_url = "http://{mock.addr}/v1"
api_key = "env:AGENTS_PROVIDER_KEY"
tier = "open-hosted"
catalog = false
models = ["agent-chat"]

[providers.openai]
preset = "openai"
base_url = "http://{mock.addr}/v1"
api_key = "env:AGENTS_PROVIDER_KEY"
catalog = false
models = ["agent-native"]

[providers.claude]
kind = "anthropic"
base_url = "http://{mock.addr}/v1"
api_key = "env:AGENTS_PROVIDER_KEY"
catalog = false
models = ["agent-claude"]

[[keys]]
name = "agents"
key = "env:AGENTS_CLIENT_KEY"

[[keys]]
name = "other"
key = "env:AGENTS_OTHER_KEY"
""")
        self.log_path = pathlib.Path(workdir, "gateway.log")
        env = dict(os.environ, AGENTS_PROVIDER_KEY=PROVIDER_KEY, AGENTS_CLIENT_KEY=CLIENT_KEY,
                   AGENTS_OTHER_KEY=OTHER_KEY, BAZAAR_LOG="debug")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([BIN, "serve", "--config", str(config)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        wait_ready(f"{self.base}/readyz", self.proc, self.log_path)

    def calls(self, endpoint):
        """This key's ledger rows for `endpoint`, oldest first."""
        req = urllib.request.Request(f"{self.url}/spend/calls?limit=1000",
                                     headers={"Authorization": f"Bearer {CLIENT_KEY}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            rows = json.loads(r.read())["calls"]
        return [c for c in reversed(rows) if c["endpoint"] == endpoint]

    def wait_calls(self, endpoint, at_least):
        """Waits (up to 10 s) for the ledger writer to flush `at_least` rows of `endpoint`."""
        rows = []
        for _ in range(200):
            rows = self.calls(endpoint)
            if len(rows) >= at_least:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"ledger has {len(rows)} {endpoint} rows, expected {at_least}: {rows}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture()
def workdir(tmp_path):
    """The test's own directory (config, ledger, logs): pytest's, which keeps the last
    three runs' for a look after a failure and removes older ones."""
    return str(tmp_path)


@pytest.fixture()
def backend(request, workdir):
    """A mock backend running the test's script (`@pytest.mark.script([...])`) and the
    gateway in front of it."""
    marker = request.node.get_closest_marker("script")
    script = marker.args[0] if marker else [{"text": "Done."}]
    # A step may name a file in the test's own directory (`{workdir}/note.txt`).
    script = json.loads(json.dumps(script).replace("{workdir}", workdir))
    mock = Mock(script, workdir)
    try:
        gateway = Gateway(mock, workdir)
    except Exception:
        mock.stop()
        raise
    try:
        yield gateway
    finally:
        gateway.stop()
        mock.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "script(steps): the mock backend's script for this test")
