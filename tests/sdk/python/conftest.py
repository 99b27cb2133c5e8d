"""Fixtures: a simulated upstream (`bazaar sim`) and the real gateway binary in front of
it, each a separate process on a free loopback port, with the gateway's logs captured."""

import os
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from harness import BIN, ROOT, free_port, validate, wait_ready  # noqa: E402,F401

CLIENT_KEY = "bzr-sdk-client-key-5f2a"
PROVIDER_KEY = "sk-provider-secret-9d1c"
WRONG_PROVIDER_KEY = "sk-provider-wrong-77e0"


def start_sim(*args):
    proc = subprocess.Popen([BIN, "sim", "--listen", "127.0.0.1:0", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on "), line
    return proc, line.removeprefix("listening on ")


class Gateway:
    def __init__(self, base_url, proc, log_path):
        self.base_url = base_url
        self.proc = proc
        self.log_path = log_path

    def logs(self):
        return pathlib.Path(self.log_path).read_text()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    sim, sim_addr = start_sim("--require-key", PROVIDER_KEY)
    # pytest's directory: the last three runs' are kept for a look, older ones removed.
    tmp = tmp_path_factory.mktemp("bazaar-sdk")
    port = free_port()
    config = pathlib.Path(tmp, "bazaar.toml")
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"

[providers.sim]
base_url = "http://{sim_addr}/v1"
api_key = "env:SIM_PROVIDER_KEY"
tier = "open-hosted"
models = ["gpt-4o-mini", "text-embedding-3-small", "gpt-3.5-turbo-instruct"]

[providers.locked]
base_url = "http://{sim_addr}/v1"
api_key = "env:SIM_WRONG_KEY"
tier = "open-hosted"
models = ["locked-model"]

[[keys]]
name = "sdk"
key = "env:SDK_CLIENT_KEY"
""")
    log_path = pathlib.Path(tmp, "gateway.log")
    env = dict(os.environ, SIM_PROVIDER_KEY=PROVIDER_KEY, SIM_WRONG_KEY=WRONG_PROVIDER_KEY, SDK_CLIENT_KEY=CLIENT_KEY, BAZAAR_LOG="debug")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([BIN, "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, log_path)
        yield Gateway(f"http://127.0.0.1:{port}/v1", proc, log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        sim.terminate()
        sim.wait(timeout=10)


@pytest.fixture()
def client(gateway):
    from openai import OpenAI

    return OpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0)
