"""fetch-url and PDF extract through their HTTP endpoints (Celery eager, as `make run` runs)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tools.models import Job, Upload

from .fixtures import LoopbackServer, bomb_pdf, html, redirect_route, text_pdf, upload_files

pytestmark = pytest.mark.django_db(transaction=True)

ARTICLE = """<html><head><title>Ghost ships</title></head><body><nav>Home | Shop | Login</nav>
<article><h1>Ghost ships</h1><p>Sailors have told stories about ghost ships for centuries; the Flying Dutchman
is the most famous of them, a ship doomed never to make port.</p><p>Most modern sightings are explained by the
Fata Morgana, a mirage that lifts distant ships above the horizon.</p></article><footer>Cookie banner</footer>
</body></html>"""


def slow_article(_: object) -> tuple[int, dict[str, str], bytes]:
    time.sleep(2.5)
    return 200, {"Content-Type": "text/html"}, ARTICLE.encode()


@pytest.fixture(scope="module")
def site() -> Iterator[LoopbackServer]:
    server = LoopbackServer(
        {
            "/article": html(ARTICLE),
            "/plain": lambda _: (200, {"Content-Type": "text/plain; charset=utf-8"}, "Just text, ünïcode.".encode()),
            "/doc.pdf": lambda _: (200, {"Content-Type": "application/pdf"}, text_pdf(["Page one text"])),
            "/data.json": lambda _: (200, {"Content-Type": "application/json"}, b"{}"),
            "/huge": lambda _: (200, {"Content-Type": "text/plain"}, b"x" * 300_000),
            "/gone": lambda _: (404, {"Content-Type": "text/html"}, b"missing"),
            "/redirect": redirect_route,
            "/slow": slow_article,
        }
    )
    yield server
    server.close()


@pytest.fixture
def allow_site(settings: Any, site: LoopbackServer, tmp_path: Any) -> LoopbackServer:
    settings.TOOLS = {
        **settings.TOOLS,
        "FETCH_ALLOW": [f"127.0.0.1:{site.port}"],
        "FETCH_MAX_BYTES": 200_000,
        "RATE_ANONYMOUS": 1000,
    }
    return site


def fetch(url: str, **extra: Any) -> Any:
    return Client().post("/api/fetch-url", {"url": url}, content_type="application/json", **extra)


def test_fetch_url_extracts_the_main_text(allow_site: LoopbackServer) -> None:
    body = fetch(f"{allow_site.url}/redirect?to=/article").json()
    assert body["title"] == "Ghost ships"
    assert "Flying Dutchman" in body["text"] and "Fata Morgana" in body["text"]
    assert "Cookie banner" not in body["text"] and "Login" not in body["text"]
    assert body["final_url"] == f"{allow_site.url}/article" and body["status"] == 200
    assert set(body) == {"url", "final_url", "status", "content_type", "title", "text", "fetched_at"}


def test_fetch_url_plain_text_and_pdf(allow_site: LoopbackServer) -> None:
    assert fetch(f"{allow_site.url}/plain").json()["text"] == "Just text, ünïcode."
    pdf = fetch(f"{allow_site.url}/doc.pdf").json()
    assert "Page one text" in pdf["text"] and pdf["content_type"] == "application/pdf"


def test_readability_fallback_finds_the_article() -> None:
    from tools.fetch_url import readability_text

    text = readability_text(ARTICLE)
    assert "Flying Dutchman" in text and "Cookie banner" not in text
    assert readability_text("") == ""


@pytest.mark.parametrize(
    "path, status, code",
    [("/data.json", 415, "unsupported_content_type"), ("/huge", 413, "too_large"), ("/gone", 502, "upstream_status")],
)
def test_fetch_url_errors(allow_site: LoopbackServer, path: str, status: int, code: str) -> None:
    response = fetch(allow_site.url + path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


@pytest.mark.parametrize("body", [{}, {"url": ""}, {"url": 5}, {"url": "javascript:alert(1)"}, {"url": "x" * 3000}])
def test_fetch_url_bad_input(body: dict[str, Any]) -> None:
    response = Client().post("/api/fetch-url", body, content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_anonymous_callers_are_rate_limited(settings: Any) -> None:
    settings.TOOLS = {**settings.TOOLS, "RATE_ANONYMOUS": 2}
    codes = [fetch("http://10.0.0.1/").status_code for _ in range(3)]
    assert codes == [400, 400, 429]


def upload(data: bytes, name: str = "doc.pdf", **extra: Any) -> Any:
    return Client().post("/api/pdf/extract", {"file": SimpleUploadedFile(name, data, "application/pdf")}, **extra)


def test_pdf_pages_text_and_metadata(allow_site: LoopbackServer, tmp_path: Any) -> None:
    before = upload_files()
    body = upload(text_pdf(["First page says hello", "", "Third page says goodbye"], title="Report")).json()
    assert body["pages"] == 3
    assert body["pages_text"][0].strip() == "First page says hello" and body["pages_text"][1] == ""
    assert "--- Page 3 ---\nThird page says goodbye" in body["text"]
    assert body["metadata"]["title"] == "Report"
    assert not Upload.objects.exists() and upload_files() <= before, "uploads are removed after the job"


def test_a_finished_job_is_never_seen_with_its_upload_still_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer is sent once the job reads as done; its upload must be gone by then (a
    slow removal after the result was visible left uploads behind the answer: CI)."""
    from tools import services

    drop = services._drop_upload

    def slow_drop(job_id: Any) -> None:
        time.sleep(0.5)
        drop(job_id)

    monkeypatch.setattr(services, "_drop_upload", slow_drop)
    assert upload(text_pdf(["hello"])).status_code == 200
    assert not Upload.objects.exists()


def test_pdf_with_an_empty_user_password_opens(allow_site: LoopbackServer) -> None:
    assert "hello" in upload(text_pdf(["hello"], password="")).json()["text"]


@pytest.mark.parametrize(
    "data, status, code",
    [
        (text_pdf(["secret"], password="hunter2"), 422, "pdf_encrypted"),
        (text_pdf(["cut short"])[:300], 422, "pdf_unreadable"),
        (b"%PDF-1.7\n" + b"garbage " * 100, 422, "pdf_unreadable"),
        (b"GIF89a not a pdf at all", 415, "not_a_pdf"),
        (bomb_pdf(), 422, "pdf_unreadable"),
    ],
    ids=["encrypted", "truncated", "corrupt", "not-a-pdf", "decompression-bomb"],
)
def test_pdf_errors(allow_site: LoopbackServer, data: bytes, status: int, code: str) -> None:
    response = upload(data)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


def test_pdf_limits(allow_site: LoopbackServer, settings: Any) -> None:
    assert Client().post("/api/pdf/extract", {}).json()["error"]["code"] == "missing_file"
    settings.TOOLS = {**settings.TOOLS, "PDF_MAX_PAGES": 2}
    assert upload(text_pdf(["a", "b", "c"])).status_code == 413
    settings.TOOLS = {**settings.TOOLS, "PDF_MAX_BYTES": 1024}
    assert upload(text_pdf(["x" * 10] * 50)).json()["error"]["code"] == "too_large"


def wait_for_job(location: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = Client().get(location).json()
        if status["status"] in ("succeeded", "failed"):
            return status  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the job never finished")


@pytest.mark.parametrize("ask", [{"HTTP_PREFER": "respond-async"}, {"QUERY_STRING": "async=1"}])
def test_respond_async_is_202_with_location_in_embedded_mode(allow_site: LoopbackServer, ask: dict[str, str]) -> None:
    # Before: under `make run` (eager Celery) the job ran inside the request: 200, never 202.
    response = upload(text_pdf(["async please"]), **ask)
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert response["Location"] == f"/api/jobs/{job.pk}" and response.json()["status"] in ("queued", "running")
    assert "async please" in wait_for_job(response["Location"])["result"]["text"]


def test_job_status_reports_the_result_and_progress(allow_site: LoopbackServer) -> None:
    response = upload(text_pdf(["async please"]))
    assert response.status_code == 200
    job = Job.objects.get()
    status = Client().get(f"/api/jobs/{job.pk}").json()
    assert status["status"] == "succeeded" and status["progress"] == 100
    assert "async please" in status["result"]["text"]
    assert Client().get("/api/jobs/00000000-0000-0000-0000-000000000000").status_code == 404


def test_jobs_in_the_web_process_stop_at_the_soft_time_limit(allow_site: LoopbackServer, settings: Any) -> None:
    # Before: in embedded mode (no Celery worker) nothing enforced CELERY_TASK_SOFT_TIME_LIMIT,
    # so a slow job held one of the web process's tool threads for as long as it liked.
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 0  # already past at the first page
    response = upload(text_pdf(["one", "two", "three", "four"]), HTTP_PREFER="respond-async")
    status = wait_for_job(response["Location"])
    assert status["status"] == "failed", status
    assert status["error"]["code"] == "job_timeout" and status["error"]["status"] == 504


def test_a_job_past_the_hard_limit_is_failed_and_its_late_result_discarded(
    allow_site: LoopbackServer, settings: Any
) -> None:
    settings.CELERY_TASK_TIME_LIMIT = 1  # the fetch below takes 2.5 s
    response = fetch(f"{allow_site.url}/slow", HTTP_PREFER="respond-async")
    assert response.status_code == 202
    time.sleep(1.5)
    status = Client().get(response["Location"]).json()
    assert status["status"] == "failed" and status["error"]["code"] == "job_timeout", status
    time.sleep(2.0)  # the thread finishes the fetch meanwhile
    job = Job.objects.get()
    assert job.status == Job.Status.FAILED and job.result is None, "a late result must not overwrite the timeout"


def test_a_key_over_its_budget_or_in_debt_is_refused_tools_as_it_is_models(allow_site: LoopbackServer) -> None:
    from decimal import Decimal

    from django.utils import timezone

    from chat.billing.budgets import period_key_of, period_keys
    from chat.billing.wallet import wallet_adjust, wallet_top_up
    from chat.models import Budget
    from chat.services import account_create_with_key, budget_set

    key, token = account_create_with_key(name="tools-budget")
    wallet_top_up(account_id=key.account_id, amount=Decimal(5), idempotency_key="tools-budget")
    url = f"http://127.0.0.1:{allow_site.port}/article"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert fetch(url, **auth).status_code == 200
    budget = budget_set(account=key.account, scope="key", amount=Decimal("0.01"), period="day", key=key)
    assert budget is not None
    # Today's period spent in full (as requests would have spent it).
    today = period_key_of("day", period_keys(timezone.now(), "UTC"))
    Budget.objects.filter(pk=budget.pk).update(spent=Decimal("0.01"), period_key=today)
    refused = fetch(url, **auth)
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "budget_exceeded"
    assert "this key's daily budget" in refused.json()["error"]["message"]
    budget_set(account=key.account, scope="key", amount=None, key=key)
    assert fetch(url, **auth).status_code == 200
    wallet_adjust(account_id=key.account_id, kind="reversal", amount=Decimal(-10), idempotency_key="refund")
    in_debt = fetch(url, **auth)
    assert in_debt.status_code == 402 and in_debt.json()["error"]["code"] == "insufficient_balance"
    assert fetch(url).status_code == 200  # anonymous callers pay nothing and owe nothing
