"""The production topology, brought up by `make up` exactly as an operator does (the
production env template filled in, supervisord, Debian's nginx, two web processes, a model
server, a Celery worker and beat, PostgreSQL and Redis), and driven through nginx — or one
web process directly, to force a request, the generation it watches, the agent serving it
and the worker running its tool job into different processes. Every process has its own
data directory: they share the database and Redis, never a filesystem."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from openai import OpenAI

from tools.tests.fixtures import text_pdf

from .conftest import require_service
from .fake_upstream import FakeUpstream, recorded_chunks
from .live import ROOT, books, funded_account, wait_for
from .topology import AGENT_MODEL, LONG, Topology


def sdk(base: str, key: str) -> OpenAI:
    return OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=120)


def test_make_up_serves_every_process_through_nginx(topology: Topology) -> None:
    status = topology.ctl("status")
    for program in ("web-1", "web-2", "model-1", "worker", "beat", "nginx"):
        assert re.search(rf"^{program}\s+RUNNING", status, re.M), status
    ready = httpx.get(topology.url + "/health/ready", timeout=10).json()
    assert ready["status"] == "ready" and ready["checks"]["broker"] == "ok", ready
    client = sdk(topology.url, topology.api_key)
    answer = client.chat.completions.create(
        model="ghostgpt", messages=[{"role": "user", "content": "Say hi"}], max_tokens=8, seed=1
    )
    assert answer.choices[0].message.content and answer.usage.completion_tokens <= 8
    vectors = client.embeddings.create(model="all-MiniLM-L6-v2", input=["ghost", "ship"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 384
    # The web processes hold no model: `ghostgpt` is served by the model server.
    for base in topology.web:
        health = httpx.get(base + "/health?details=1", timeout=5).json()
        deployments = [row["deployment"] for row in health["models"]["ghostgpt"]["deployments"]]
        assert deployments == ["model-1/ghostgpt"], health
    model = topology.metrics(f"http://127.0.0.1:{topology.base_port + 100}")
    assert any(name == "ghostgpt_tokens_total" and value > 0 for (name, _), value in model.items())
    # nginx is the proxy: X-Forwarded-For reaches the app (metrics from afar need the token).
    afar = {"X-Forwarded-For": "203.0.113.9"}
    assert httpx.get(topology.url + "/metrics", headers=afar).status_code == 403
    token = {**afar, "Authorization": f"Bearer {topology.metrics_token}"}
    assert httpx.get(topology.url + "/metrics", headers=token).status_code == 200
    assert httpx.get(topology.url + "/health/live").headers.get("server", "").startswith("nginx")


def _chats_counted(topology: Topology, base: str) -> float:
    return sum(
        value
        for (name, labels), value in topology.metrics(base).items()
        if name == "ghostgpt_requests_total" and ("model", "fake") in labels and ("status", "200") in labels
    )


def test_one_scrape_through_nginx_counts_every_web_process(topology: Topology) -> None:
    # Each request lands on either web process; whichever answers the scrape speaks for the node.
    before = _chats_counted(topology, topology.url)
    client = sdk(topology.url, topology.api_key)
    for _ in range(12):
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    served = [_chats_counted(topology, base) for base in topology.web]
    assert all(count >= before + 12 for count in served), (before, served)
    for _ in range(4):  # any scrape, through either process, says the same
        assert _chats_counted(topology, topology.url) == before + 12
    # The live gauges sum the node's live processes (nothing streams now).
    gauges = [v for (name, _), v in topology.metrics(topology.url).items() if name == "ghostgpt_live_streams"]
    assert gauges == [0.0], gauges
    # A Prometheus scrape config beside the other deploy files: one target per node and tier.
    scrape = yaml.safe_load((topology.folder / "up" / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in scrape["scrape_configs"]}
    assert targets == {
        "ghostgpt-web": [f"127.0.0.1:{topology.port}"],
        "ghostgpt-model": [f"127.0.0.1:{topology.base_port + 100}"],
    }
    # The ops console's model page shows the node's totals, not one process's.
    csrf = httpx.get(topology.url + "/console/ops", timeout=10).cookies["csrftoken"]
    operator = httpx.post(
        topology.url + "/console/api/ops/session",
        json={"admin_key": topology.admin_key},
        headers={"Cookie": f"csrftoken={csrf}", "X-CSRFToken": csrf, "Origin": topology.url},
        timeout=10,
    )
    assert operator.status_code == 201, operator.text
    cookie = "; ".join(f"{name}={value}" for name, value in {"csrftoken": csrf, **operator.cookies}.items())
    for _ in range(4):
        rows = httpx.get(topology.url + "/console/api/ops/models", headers={"Cookie": cookie}, timeout=10).json()
        fake_row = next(row for row in rows["data"] if row["model"] == "fake")
        assert fake_row["requests"] >= before + 12, fake_row


def test_rate_limits_are_exact_across_both_web_processes(topology: Topology) -> None:
    key = httpx.post(
        topology.url + "/api/v1/keys",
        json={"name": "rpm-12", "rpm": 12},
        headers={"Authorization": f"Bearer {topology.api_key}"},
    ).json()["key"]
    if time.time() % 60 > 50:  # the minute's window could turn during the burst: start in the next one
        time.sleep(61 - time.time() % 60)

    async def fire() -> list[list[int]]:
        # 18 at each web process at once (straight to each, so both surely take part): together
        # they pass the key's 12 a minute only if they share one counter.
        limits = httpx.Limits(max_connections=36, max_keepalive_connections=0)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits) as client:
            body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}

            async def burst(base: str) -> list[int]:
                calls = [client.post(base + "/v1/chat/completions", json=body) for _ in range(18)]
                return [r.status_code for r in await asyncio.gather(*calls)]

            return list(await asyncio.gather(*(burst(base) for base in topology.web)))

    statuses = asyncio.run(fire())
    assert len(statuses) == 2 and all(len(each) == 18 for each in statuses)
    assert Counter(statuses[0] + statuses[1]) == Counter({200: 12, 429: 24}), statuses


def test_the_wallet_is_exact_across_both_web_processes(topology: Topology) -> None:
    completion = next(c["usage"] for c in recorded_chunks() if c.get("usage"))["completion_tokens"]
    topology.manage("set_price", "paid", "--prompt", "0", "--completion", "1000000")  # 1 per completion token
    user_id, token = funded_account(topology.url, topology.admin_key, "wallet-100", Decimal(completion * 100))
    body = {"model": "paid", "messages": [{"role": "user", "content": "hi"}], "max_tokens": completion}

    async def fire() -> list[int]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=120, limits=limits
        ) as client:
            calls = [client.post(topology.url + "/v1/chat/completions", json=body) for _ in range(200)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert Counter(asyncio.run(fire())) == Counter({200: 100, 402: 100})
    balance, ledger, kinds = books(topology.database.url, user_id)
    assert balance == 0 and ledger == balance
    assert kinds == Counter({"topup": 1, "reserve": 100, "settle": 100})


def test_a_share_and_a_tool_job_cross_processes(topology: Topology) -> None:
    first, second = topology.web
    blocks = [{"conv": {"id": "c1", "name": "Across"}, "messages": [{"role": "user", "content": "Ghost ships?"}]}]
    share = httpx.post(first + "/api/share", json=blocks, headers={"Authorization": f"Bearer {topology.api_key}"})
    assert share.status_code == 201, share.text
    read = httpx.get(second + f"/api/share/{share.json()['id']}")
    assert read.status_code == 200 and "Ghost ships?" in read.text, read.text
    assert httpx.get(second + f"/share/{share.json()['id']}").status_code == 200

    pdf = text_pdf([f"Page {n}: the ghost ship sails." for n in range(1, 41)])
    accepted = httpx.post(
        first + "/api/pdf/extract",
        files={"file": ("ships.pdf", pdf, "application/pdf")},
        headers={"Prefer": "respond-async", "Authorization": f"Bearer {topology.api_key}"},
    )
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    job = wait_for(
        lambda: (j := _job(topology, second, location))["status"] in ("succeeded", "failed") and j,
        "the worker to run the job",
        within=120,
    )
    assert job["status"] == "succeeded", job
    assert job["result"]["pages"] == 40 and "Page 40: the ghost ship sails." in job["result"]["text"]
    worker_files = list((topology.folder / "up" / "nodes" / "worker").rglob("*"))
    assert not any(path.suffix == ".pdf" for path in worker_files), "the upload came through the database"
    with psycopg.connect(topology.database.url) as conn:
        assert conn.execute("select count(*) from tools_upload").fetchone()[0] == 0


def _indexed(base: str, headers: dict[str, str], document_id: str) -> dict[str, Any]:
    """The document once the worker has indexed it (or failed to), read through `base`."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: (
            (d := httpx.get(f"{base}/api/documents/{document_id}", headers=headers, timeout=10).json())["status"]
            in ("ready", "failed")
            and d
        ),
        f"the worker to index document {document_id}",
        within=180,
    )


def test_a_document_is_indexed_by_the_worker_in_pgvector_and_read_by_a_turn(
    topology: Topology, fake: FakeUpstream
) -> None:
    """Uploaded through one web process, indexed by the Celery worker (its own copy of the
    embedding model) into PostgreSQL's pgvector column, read by a turn served by the other."""
    first, second = topology.web
    headers = {"Authorization": f"Bearer {topology.api_key}"}
    pdf = text_pdf(["The harbour bell rings at noon.", "Herring is landed on the north quay every Tuesday."])
    accepted = httpx.post(
        first + "/api/documents", files={"file": ("quay.pdf", pdf, "application/pdf")}, headers=headers, timeout=30
    )
    assert accepted.status_code == 202, accepted.text
    document = accepted.json()
    ready = _indexed(second, headers, document["id"])
    assert ready["status"] == "ready" and ready["pages"] == 2, ready
    with psycopg.connect(topology.database.url) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM documents_passage WHERE document_id = %s AND embedding IS NOT NULL", [document["id"]]
        ).fetchone()
        assert stored == (2,)

    turn = {
        "content": "When is herring landed?",
        "model": "fake",
        "attachments": [{"kind": "document", "name": "quay.pdf", "document_id": document["id"]}],
    }
    sent = len(fake.requests)
    with httpx.stream(
        "POST",
        topology.url + "/api/conversations/new/messages",
        json=turn,
        headers={**headers, "Accept": "text/event-stream"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    done = events[-1]
    assert done["status"] == "complete" and done["retrieval"]["mode"] == "whole", done
    assert done["retrieval"]["sources"][1] == {"n": 2, "document_id": document["id"], "name": "quay.pdf", "page": 2}
    prompt = fake.requests[sent]["body"]["messages"][-1]["content"]
    assert "[2] quay.pdf, page 2:\nHerring is landed on the north quay every Tuesday." in prompt


def test_a_project_s_routed_embeddings_model_embeds_its_file_on_the_worker(
    topology: Topology, fake: FakeUpstream
) -> None:
    """The worker reads the operator's routes too: a project whose files a routed model
    embeds has them embedded by it (into pgvector's column for routed vectors) on the worker."""
    first, second = topology.web
    headers = {"Authorization": f"Bearer {topology.api_key}"}
    project = httpx.post(
        first + "/api/projects", json={"name": "Quay", "embedding_model": "fake-embed"}, headers=headers, timeout=30
    )
    assert project.status_code == 201, project.text
    sent = len(fake.requests)
    accepted = httpx.post(
        first + "/api/documents",
        files={"file": ("quay.txt", b"Herring is landed on the north quay every Tuesday.", "text/plain")},
        data={"project_id": project.json()["id"]},
        headers=headers,
        timeout=30,
    )
    assert accepted.status_code == 202, accepted.text
    document = accepted.json()
    ready = _indexed(second, headers, document["id"])
    assert ready["status"] == "ready" and ready["embedding_model"] == "fake-embed", ready
    assert any(r["path"].endswith("/embeddings") for r in fake.requests[sent:]), "the upstream embedded it"
    with psycopg.connect(topology.database.url) as conn:
        stored = conn.execute(
            "SELECT vector_dims(embedding_routed) FROM documents_passage WHERE document_id = %s", [document["id"]]
        ).fetchall()
    assert stored == [(8,)], stored  # the fake's 8-dimension vectors


def _job(topology: Topology, base: str, location: str) -> dict[str, Any]:
    response = httpx.get(base + location, headers={"Authorization": f"Bearer {topology.api_key}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_an_agent_on_one_process_serves_a_request_from_the_other(topology: Topology, fake: FakeUpstream) -> None:
    first, second = topology.web
    token = topology.manage("create_agent_token", "--name", "across").strip().splitlines()[-1]
    env = {**topology.env, "GHOSTGPT_AGENT_TOKEN": token, "GHOSTGPT_DATA_DIR": str(topology.folder / "agent")}
    agent = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_agent",
            "--server",
            first,
            "--upstream",
            f"{fake.url}/ok/v1",
            "--model",
            "gpt-4o",
            "--name",
            "across",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        headers = {"Authorization": f"Bearer {topology.api_key}"}
        wait_for(
            lambda: any(
                row["name"] == "across"
                for row in httpx.get(second + "/api/connections", headers=headers, timeout=10).json()["data"]
            ),
            "the agent to show on the other process",
        )
        answer = sdk(second, topology.api_key).chat.completions.create(
            model=AGENT_MODEL, messages=[{"role": "user", "content": "Weather?"}], max_tokens=64
        )
        assert answer.choices[0].message.content == "".join(
            (c["choices"][0]["delta"].get("content") or "") for c in recorded_chunks() if c["choices"]
        )
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)


def test_a_browser_generation_moves_between_processes(topology: Topology) -> None:
    from .browser.conftest import CHROMIUM, FLAGS, wait_until

    if not Path(CHROMIUM).exists():
        require_service("Debian's chromium", f"{CHROMIUM} is missing (make test installs it as root)")
    from playwright.sync_api import sync_playwright

    first, second = topology.web
    answer = "() => document.querySelector('article.assistant .bubble')?.textContent.length || 0"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_context().new_page()
            page.goto(first + "/")
            page.wait_for_selector("body[data-ready=true]")
            page.click("#settings-toggle")
            page.fill("#opt-seed", "1")
            page.fill("#opt-max_tokens", "3000")
            page.fill("#input", LONG)
            page.keyboard.press("Enter")  # the generation runs in process A
            wait_until(page, f"({answer})() > 100", timeout=90_000)
            conversation = page.evaluate("new URLSearchParams(location.search).get('c')")

            page.goto(second + f"/?c={conversation}")  # re-attached through process B
            page.wait_for_selector("body[data-ready=true]")
            page.wait_for_selector("article.assistant.streaming", timeout=15_000)
            before = page.evaluate(answer)
            wait_until(page, f"({answer})() > {before + 60}", timeout=30_000)
            page.keyboard.press("Escape")  # stopped through process B
            page.wait_for_selector("article.assistant:not(.streaming) .status", timeout=15_000)
            assert page.inner_text("article.assistant .status") == "Stopped"
            shown = page.inner_text("article.assistant .bubble")
            saved = page.evaluate(f"fetch('/api/conversations/{conversation}').then(r => r.json())")
            reply = next(m for m in saved["messages"] if m["role"] == "assistant")
            assert reply["status"] == "stopped" and reply["content"].strip() == shown.strip()
        finally:
            browser.close()


def _stream(base: str, key: str, model: str, max_tokens: int = 4096) -> tuple[list[str], BaseException | None, float]:
    """Read an SSE stream to its end: (data lines, the error that ended it if any, seconds)."""
    started, lines, error = time.monotonic(), [], None
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    try:
        with httpx.stream(
            "POST", base + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    lines.append(line[6:])
    except httpx.HTTPError as exc:
        error = exc
    return lines, error, time.monotonic() - started


def _live_streams(topology: Topology, base: str) -> float:
    """Streams this one process relays from the `stall` upstream now (its own counter: the
    live-streams gauge of its /metrics sums the node's processes)."""
    return float(httpx.get(base + "/health?details=1", timeout=10).json()["models"]["stall"]["running"])


def test_killing_a_web_process_mid_stream_ends_its_streams_and_the_other_serves(topology: Topology) -> None:
    import threading

    outcome: list[Any] = []
    reader = threading.Thread(target=lambda: outcome.append(_stream(topology.url, topology.api_key, "stall")))
    reader.start()
    serving = wait_for(
        lambda: next((n for n, base in enumerate(topology.web, 1) if _live_streams(topology, base) > 0), None),
        "the stream to start",
    )
    os.killpg(topology.pid(f"web-{serving}"), signal.SIGKILL)
    reader.join(timeout=15)
    assert not reader.is_alive(), "the client of a killed process hangs"
    lines, error, _ = outcome[0]
    assert error is not None or lines[-1] == "[DONE]", "an error or a clean end, never a silent cut"
    answers = [
        httpx.post(
            topology.url + "/v1/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50},
            headers={"Authorization": f"Bearer {topology.api_key}"},
            timeout=30,
        ).status_code
        for _ in range(10)
    ]
    assert answers == [200] * 10, "new requests go to the other process"
    topology.wait_running(f"web-{serving}")  # supervisord starts it again


def test_sigterm_drains_streams_then_ends_them_with_an_error_event(topology: Topology) -> None:
    import threading

    base = topology.web[1]
    results: dict[str, Any] = {}
    long = threading.Thread(target=lambda: results.update(long=_stream(base, topology.api_key, "stall")))
    long.start()
    wait_for(lambda: _live_streams(topology, base) > 0, "the long stream to start")
    signalled = time.monotonic()
    os.kill(topology.pid("web-2"), signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        httpx.get(base + "/health/live", timeout=2)
    long.join(timeout=20)
    lines, error, _ = results["long"]
    waited = time.monotonic() - signalled
    assert error is None and lines[-1] == "[DONE]", (error, lines[-3:])
    failure = json.loads(lines[-2])
    assert failure["error"]["code"] == "server_shutting_down", failure
    assert 2.5 <= waited <= 12, f"ended {waited:.1f}s after SIGTERM (GHOSTGPT_DRAIN_SECONDS=3)"
    content = [json.loads(line) for line in lines[:-2]]
    assert sum(1 for chunk in content if chunk["choices"] and chunk["choices"][0]["delta"].get("content")) > 5
    topology.wait_running("web-2")


def test_a_job_survives_its_worker_being_killed(topology: Topology) -> None:
    big = text_pdf([f"Page {n} of a long report about ghosts." for n in range(1500)])
    accepted = httpx.post(
        topology.url + "/api/pdf/extract",
        files={"file": ("big.pdf", big, "application/pdf")},
        headers={"Prefer": "respond-async", "Authorization": f"Bearer {topology.api_key}"},
    )
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    wait_for(lambda: _job(topology, topology.url, location)["status"] == "running", "the job to start", within=60)
    os.killpg(topology.pid("worker"), signal.SIGKILL)  # the worker and its pool
    job = wait_for(
        lambda: (j := _job(topology, topology.url, location))["status"] in ("succeeded", "failed") and j,
        "the restarted worker to finish the job",
        within=180,
    )
    assert job["status"] == "succeeded" and job["attempts"] >= 2, job
    assert job["result"]["pages"] == 1500
