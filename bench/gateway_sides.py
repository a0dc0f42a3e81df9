"""The servers bench/gateway.py measures GhostGPT against: LiteLLM's proxy (installed into
bench/.venv-litellm on first use, pinned) and the bare-Django floor (bench/floor_app.py)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Weather?"}], "max_tokens": 64}
LITELLM = "litellm[proxy]==1.106.0"  # the newest whose pins install from the registry here
LITELLM_VENV = ROOT / "bench" / ".venv-litellm"
LITELLM_KEY = "sk-bench-litellm-master-0123456789abcdef"


def litellm_proxy(upstream: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        print(f"installing {LITELLM} into {LITELLM_VENV} (once)...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", LITELLM]
        subprocess.run(pip, check=True)
    config = workdir / "litellm.yaml"
    config.write_text(
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": "gpt-4o",
                        "litellm_params": {"model": "openai/gpt-4o", "api_base": upstream, "api_key": "sk-bench"},
                    }
                ],
                "litellm_settings": {"telemetry": False},
                # Auth on, as on our side (with no database LiteLLM checks the master key in memory).
                "general_settings": {"master_key": LITELLM_KEY},
            }
        )
    )
    from chat.tests.live import free_port

    port = free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "True",
    }
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen(
        [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        cwd=workdir,
        env=env,
        stdout=(workdir / "litellm.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("LiteLLM exited:\n" + (workdir / "litellm.log").read_text()[-3000:])
        try:
            if httpx.get(base + "/health/liveliness", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("LiteLLM did not start:\n" + (workdir / "litellm.log").read_text()[-3000:])


def floor_server(
    upstream: str, command: Callable[[int, str], list[str]] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """bench/floor_app.py on a free port under `command(port, app)` (default: uvicorn with
    GhostGPT's loop and HTTP parser)."""
    from chat.tests.live import free_port, uvicorn_command

    port = free_port()
    process = subprocess.Popen(
        (command or uvicorn_command)(port, "bench.floor_app:application"),
        cwd=ROOT,
        env={**os.environ, "FLOOR_UPSTREAM": upstream},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.post(f"{base}/v1/chat/completions", json=BODY, timeout=5).status_code == 200:
                return process, base
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the floor app did not start")


def paying_key(server: object, admin_key: str, name: str) -> str:
    """Billing with money on a GhostGPT LiveServer: gpt-4o priced as OpenAI lists it and a
    funded account's key, so every request reserves before the upstream and settles after
    it, as a paying key does."""
    from decimal import Decimal

    from chat.tests.live import funded_account, manage

    manage(server, "set_price", "gpt-4o", "--prompt", "2.5", "--completion", "10")  # type: ignore[arg-type]
    _, token = funded_account(server.base_url, admin_key, name, Decimal(1_000_000))  # type: ignore[attr-defined]
    return token
