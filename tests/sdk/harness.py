"""What the Python SDK suites (`python/`, `agents/`) share: where the gateway binary is,
OpenAI's component schemas, a free loopback port, waiting for the gateway to be ready.
Each suite's conftest puts this folder on `sys.path` and imports from here."""

import json
import os
import pathlib
import socket
import time
import urllib.request

import jsonschema

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("BAZAAR_BIN", str(ROOT / "target" / "debug" / "bazaar"))
SCHEMAS = json.loads((ROOT / "tests" / "sdk" / "openai-schemas.json").read_text())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def validate(schema_name, instance):
    """Validates a JSON value against a component schema of the official OpenAI spec."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": SCHEMAS["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


def wait_ready(url, proc, log_path, tries=400):
    """Waits (50 ms a try) until `url` answers 200; fails at once if `proc` exits."""
    for _ in range(tries):
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {pathlib.Path(log_path).read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("gateway never became ready")
