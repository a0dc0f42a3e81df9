"""Unmodified third-party clients of the Responses API against a live GhostGPT, routed to a
fake upstream on 127.0.0.1 (recorded api.openai.com chunks; the "agent" mode calls the
shell tool it is offered once, then answers with the result):

- Codex CLI (npm `@openai/codex`, its Linux binary) in `codex exec` mode with a custom
  provider (`wire_api = "responses"`): it runs the command the model asks for, and the
  turn completes;
- the OpenAI Agents SDK (`openai-agents`): an agent with a function tool runs to completion;
- openai-node: `responses.create`, a raw stream, and the `responses.stream` helper with
  `previous_response_id`.

`make test` installs the npm clients (clients/package-lock.json); under CI a missing one
fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import require_service
from .fake_upstream import AGENT_COMMAND, FakeUpstream, recorded_text
from .live import ROOT, LiveServer

CLIENTS = ROOT / "clients"
CODEX = CLIENTS / "node_modules" / ".bin" / "codex"


@pytest.fixture(scope="module")
def server(fake: FakeUpstream) -> Iterator[LiveServer]:
    routes = {
        "upstreams": {
            "ok": {"base_url": f"{fake.url}/ok/v1", "api_key": "sk-up"},
            "agent": {"base_url": f"{fake.url}/agent/v1", "api_key": "sk-up"},
        },
        "models": {
            "gpt-4o": {"deployments": [{"upstream": "ok"}]},
            "coder": {"context_length": 128000, "deployments": [{"upstream": "agent"}]},
        },
    }
    live = LiveServer(routes=routes)
    yield live
    live.stop()


def test_codex_cli_runs_the_command_the_model_asks_for(server: LiveServer, fake: FakeUpstream, tmp_path: Path) -> None:
    if not CODEX.exists():
        require_service("Codex CLI", f"{CODEX} is missing (make test installs clients/ with npm)")
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        'model = "coder"\nmodel_provider = "ghostgpt"\n\n[model_providers.ghostgpt]\nname = "GhostGPT"\n'
        f'base_url = "{server.base_url}/v1"\nenv_key = "GHOSTGPT_API_KEY"\nwire_api = "responses"\n'
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "GHOSTGPT_API_KEY": server.api_key,
    }
    before = len(fake.requests)
    result = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "Leave a proof."],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (work / "proof.txt").read_text() == "ghost-was-here\n", "Codex ran the command"
    assert "Done:" in result.stdout and "ghost-was-here" in result.stdout  # the turn completed
    turns = [r for r in fake.requests[before:] if r["mode"] == "agent"]
    assert len(turns) == 2 and turns[1]["body"]["messages"][-1]["role"] == "tool"
    assert "ghost-was-here" in turns[1]["body"]["messages"][-1]["content"]
    assert AGENT_COMMAND in json.dumps(turns[1]["body"]["messages"][-2]["tool_calls"])


def test_the_agents_sdk_runs_an_agent_with_a_function_tool(server: LiveServer) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from openai import AsyncOpenAI

    set_tracing_disabled(True)  # traces would go to api.openai.com
    ran: list[str] = []

    @function_tool
    def run_command(command: str) -> str:
        """Run a shell command and return what it printed."""
        ran.append(command)
        return f"printed: {command.split('echo ')[-1].split(' ')[0]}"

    client = AsyncOpenAI(base_url=server.base_url + "/v1", api_key=server.api_key, max_retries=0)
    agent = Agent(
        name="Helper",
        instructions="Use the tool when asked to run something.",
        tools=[run_command],
        model=OpenAIResponsesModel(model="coder", openai_client=client),
    )
    result = Runner.run_sync(agent, "Run the proof command.")
    assert ran == [AGENT_COMMAND]
    assert result.final_output == "Done: printed: ghost-was-here"


def test_openai_node_creates_streams_and_continues(server: LiveServer) -> None:
    node = shutil.which("node")
    if node is None or not (CLIENTS / "node_modules" / "openai").exists():
        require_service("openai-node", "node or clients/node_modules/openai is missing (make test installs it)")
    result = subprocess.run(
        [node, str(CLIENTS / "responses.mjs"), server.base_url + "/v1", server.api_key, "gpt-4o"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert out["status"] == "completed" and out["output_text"] == recorded_text()
    assert out["kinds"][:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert out["kinds"][-1] == "response.completed" and out["streamed"] == recorded_text()
    assert out["final_status"] == "completed" and out["previous"] == out["id"]
