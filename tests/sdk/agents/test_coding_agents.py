"""Coding agents run for real (npm packages pinned in `node/`, installed by scripts/test):
OpenAI's Codex CLI (`codex exec`, a custom model provider whose base URL is the gateway,
Responses wire API) and Claude Code (`claude -p`, `ANTHROPIC_BASE_URL` at the gateway),
each on backends of every wire format.
The mock backend asks each to write a file in a temp dir through its own tool; the test
checks the file, that the tool's result went back to the model, and the ledger."""

import json
import os
import pathlib
import subprocess

import pytest

from conftest import CLIENT_KEY

BIN = pathlib.Path(__file__).resolve().parent / "node" / "node_modules" / ".bin"


def run(argv, cwd, env, timeout=180, check=True):
    assert (BIN / argv[0]).exists(), f"{argv[0]} is not installed: scripts/test installs tests/sdk/agents/node"
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"{argv[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(home, **extra):
    """The environment of a user with nothing configured: no real keys leak in."""
    keep = {k: os.environ[k] for k in ("PATH", "LANG", "TMPDIR") if k in os.environ}
    return dict(keep, HOME=str(home), **extra)


CODEX_SCRIPT = [{"tool": "exec_command", "args": {"cmd": "printf 'hello from codex\\n' > note.txt && cat note.txt"}},
                {"text": "Wrote note.txt."}]


def codex(backend, workdir, model, *settings):
    """`codex exec` with a model provider whose base URL is the gateway, Codex's own
    defaults otherwise (its sub-agent `namespace` tool and hosted `web_search` included),
    plus `settings`. Returns (project dir, the finished process)."""
    project = pathlib.Path(workdir, "project")
    home = pathlib.Path(workdir, "home")
    project.mkdir()
    (home / ".codex").mkdir(parents=True)
    provider = "model_providers.bazaar"
    args = ["codex", "exec", "--skip-git-repo-check", "--ephemeral", "--ignore-user-config",
            "--dangerously-bypass-approvals-and-sandbox", "--color", "never", "-m", model,
            "-c", "model_provider=bazaar",
            "-c", f'{provider}.name="bazaar"',
            "-c", f'{provider}.base_url="{backend.url}"',
            "-c", f'{provider}.env_key="BAZAAR_KEY"',
            "-c", f'{provider}.wire_api="responses"',
            *settings,
            "Write 'hello from codex' to note.txt."]
    env = clean_env(home, CODEX_HOME=str(home / ".codex"), BAZAAR_KEY=CLIENT_KEY)
    return project, run(args, project, env, check=False)


# A backend serving Responses runs Codex as it comes; the others cannot run the hosted
# `web_search` tool, which Codex then needs turned off (see docs/agents.md).
@pytest.mark.script(CODEX_SCRIPT)
@pytest.mark.parametrize("model,settings", [("agent-native", []),
                                            ("agent-chat", ["-c", 'web_search="disabled"']),
                                            ("agent-claude", ["-c", 'web_search="disabled"'])])
def test_codex_exec_writes_a_file_through_the_gateway(backend, workdir, model, settings):
    project, done = codex(backend, workdir, model, *settings)
    assert done.returncode == 0, f"codex exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert (project / "note.txt").read_text() == "hello from codex\n"
    assert "Wrote note.txt." in done.stdout
    sent = backend.mock.requests()
    # Its sub-agent tools arrive grouped in a namespace tool (forwarded) or flattened.
    tools = json.dumps(sent[0]["body"]["tools"])
    assert "close_agent" in tools, tools
    if model == "agent-native":
        assert '"namespace"' in tools and '"web_search"' in tools, tools
    # The command's output went back to the model as the tool's result.
    assert "hello from codex" in json.dumps(sent[-1]["body"]), sent[-1]
    rows = backend.wait_calls("responses", 2)
    assert all(r["status"] == 200 and r["model"] == model for r in rows), rows


@pytest.mark.script(CODEX_SCRIPT)
def test_codex_with_web_search_on_a_chat_backend_is_told_which_tool(backend, workdir):
    project, done = codex(backend, workdir, "agent-chat")
    assert done.returncode != 0
    assert "tools[" in done.stderr and "web_search" in done.stderr, done.stderr
    assert not (project / "note.txt").exists()
    assert backend.mock.requests() == []
    rows = backend.wait_calls("responses", 1)
    assert all(r["status"] == 400 for r in rows), rows


CLAUDE_SCRIPT = [{"tool": "Write", "args": {"file_path": "{workdir}/project/note.txt", "content": "hello from claude\n"}},
                 {"text": "Wrote note.txt."}]


# On an Anthropic backend the body goes through as sent; on an OpenAI-compatible one it is
# translated, Claude Code's beta fields (`context_management`, `output_config`) included.
@pytest.mark.script(CLAUDE_SCRIPT)
@pytest.mark.parametrize("model", ["agent-claude", "agent-chat"])
def test_claude_code_writes_a_file_through_the_gateway(backend, workdir, model):
    project = pathlib.Path(workdir, "project")
    home = pathlib.Path(workdir, "home")
    project.mkdir()
    home.mkdir()
    env = clean_env(home, ANTHROPIC_BASE_URL=backend.base, ANTHROPIC_API_KEY=CLIENT_KEY,
                    ANTHROPIC_DEFAULT_HAIKU_MODEL=model, ANTHROPIC_SMALL_FAST_MODEL=model,
                    DISABLE_AUTOUPDATER="1", DISABLE_TELEMETRY="1", CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    done = run(["claude", "-p", "Write 'hello from claude' to note.txt.", "--model", model,
                "--allowedTools", "Write", "--output-format", "json"], project, env)
    result = json.loads(done.stdout)
    assert result["is_error"] is False, result
    assert result["result"] == "Wrote note.txt."
    assert (project / "note.txt").read_text() == "hello from claude\n"
    last = backend.mock.requests()[-1]
    if model == "agent-chat":
        assert last["path"].endswith("/chat/completions"), last["path"]
        assert [m for m in last["body"]["messages"] if m["role"] == "tool"], last
    else:
        assert "tool_result" in json.dumps(last["body"])
    rows = backend.wait_calls("messages", 2)
    assert all(r["status"] == 200 and r["model"] == model for r in rows), rows
