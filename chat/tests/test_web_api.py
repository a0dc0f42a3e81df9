"""The browser product's server rules: sessions, CSRF, conversations, shares (Django's test
client with CSRF checks on, as a browser meets them)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from chat.models import ApiKey, Conversation, Message, Share
from chat.services import account_create_with_key

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_rate_limits")]

XSS = '<img src=x onerror="alert(1)"><script>alert(2)</script>'


class Browser:
    """A test client that behaves like one browser tab: cookies, CSRF header from the cookie."""

    def __init__(self, ip: str = "10.0.0.1") -> None:
        self.client = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
        self.client.get("/")  # the page sets the csrftoken cookie

    @property
    def csrf(self) -> str:
        return self.client.cookies["csrftoken"].value

    def bootstrap(self) -> Any:
        return self.client.post("/api/session/bootstrap", HTTP_X_CSRFTOKEN=self.csrf)

    def send(self, method: str, path: str, body: Any = None, *, csrf: bool = True) -> Any:
        headers = {"HTTP_X_CSRFTOKEN": self.csrf} if csrf else {}
        call = getattr(self.client, method)
        if body is None:
            return call(path, **headers)
        return call(path, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def tab() -> Browser:
    browser = Browser()
    assert browser.bootstrap().status_code == 201
    return browser


def test_bootstrap_sets_a_safe_cookie_and_is_idempotent() -> None:
    browser = Browser()
    first = browser.bootstrap()
    assert first.status_code == 201 and first.json()["created"] is True
    assert first.json()["account"]["tier"] == "anonymous"
    cookie = first.cookies["gg_sess"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    assert int(cookie["max-age"]) >= 30 * 24 * 3600
    key = ApiKey.objects.get()
    assert key.kind == ApiKey.Kind.SESSION and cookie.value not in key.key_hash  # stored hashed
    again = browser.bootstrap()
    assert again.status_code == 200 and again.json()["created"] is False and "gg_sess" not in again.cookies
    assert ApiKey.objects.count() == 1


def test_bootstrap_over_https_marks_the_cookie_secure() -> None:
    client = Client(enforce_csrf_checks=False)
    response = client.post("/api/session/bootstrap", secure=True)
    assert response.cookies["gg_sess"]["secure"]


def test_bootstrap_is_rate_limited_per_address(settings: Any) -> None:
    settings.WEB = {**settings.WEB, "BOOTSTRAP_RATE": 3}
    statuses = [Client().post("/api/session/bootstrap", REMOTE_ADDR="10.9.9.9").status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert Client().post("/api/session/bootstrap", REMOTE_ADDR="10.9.9.8").status_code == 201


def test_cookie_requests_need_the_csrf_token(tab: Browser) -> None:
    refused = tab.send("post", "/api/conversations", {"title": "x"}, csrf=False)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    refused_v1 = tab.send(
        "post",
        "/v1/chat/completions",
        {"model": "ghostgpt", "messages": [{"role": "user", "content": "hi"}]},
        csrf=False,
    )
    assert refused_v1.status_code == 403 and refused_v1.json()["error"]["code"] == "csrf_failed"
    assert tab.send("post", "/api/conversations", {"title": "x"}).status_code == 201
    assert tab.send("get", "/api/conversations", csrf=False).status_code == 200  # safe methods pass


def test_key_requests_need_no_csrf_token() -> None:
    _, secret = account_create_with_key(name="sdk")
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/conversations", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {secret}"
    )
    assert response.status_code == 201


def test_sessions_cannot_manage_api_keys(tab: Browser) -> None:
    assert tab.send("get", "/api/v1/keys").status_code == 403
    assert tab.send("post", "/api/v1/keys", {"name": "steal"}).status_code == 403
    assert not ApiKey.objects.filter(kind=ApiKey.Kind.API).exists()


def test_without_a_session_the_chat_apis_say_what_to_do() -> None:
    response = Client().get("/api/conversations")
    assert response.status_code == 401 and "bootstrap" in response.json()["error"]["message"]
    stale = Client()
    stale.cookies["gg_sess"] = "ggs-not-a-session"
    assert stale.get("/api/conversations").status_code == 401
    assert stale.post("/api/fetch-url", {}, content_type="application/json").status_code == 400  # tools stay open


def test_conversations_crud_search_and_ownership(tab: Browser) -> None:
    made = tab.send("post", "/api/conversations", {"title": "Ghost ships"}).json()
    other = tab.send("post", "/api/conversations", {"title": "Weather"}).json()
    Message.objects.create(conversation_id=other["id"], role="user", content="Is the Flying Dutchman real?")
    titles = lambda q: [c["title"] for c in tab.send("get", f"/api/conversations?q={q}").json()["data"]]  # noqa: E731
    assert titles("ghost") == ["Ghost ships"]
    assert titles("dutchman") == ["Weather"]  # content matches too
    assert sorted(titles("")) == ["Ghost ships", "Weather"]
    renamed = tab.send("patch", f"/api/conversations/{made['id']}", {"title": "Ships"}).json()
    assert renamed["title"] == "Ships"
    stranger = Browser(ip="10.0.0.2")
    stranger.bootstrap()
    assert stranger.send("get", f"/api/conversations/{made['id']}").status_code == 404
    assert stranger.send("delete", f"/api/conversations/{made['id']}").status_code == 404
    assert tab.send("delete", f"/api/conversations/{made['id']}").status_code == 204
    assert tab.send("get", f"/api/conversations/{made['id']}").status_code == 404
    assert tab.send("get", "/api/conversations/not-a-uuid").status_code == 404


def test_bad_conversation_changes_are_400(tab: Browser) -> None:
    made = tab.send("post", "/api/conversations", {}).json()
    bad = tab.send("patch", f"/api/conversations/{made['id']}", {"title": 5})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "title"
    leaf = tab.send(
        "patch", f"/api/conversations/{made['id']}", {"current_leaf": "00000000-0000-0000-0000-000000000000"}
    )
    assert leaf.status_code == 400 and leaf.json()["error"]["param"] == "current_leaf"
    array = tab.send("patch", f"/api/conversations/{made['id']}", ["x"])
    assert array.status_code == 400


# --- shares ---------------------------------------------------------------------------


def blocks(*messages: tuple[str, str], name: str = "Chat about ghosts") -> list[dict[str, Any]]:
    return [
        {
            "conv": {"id": "c1", "name": name},
            "messages": [{"role": r, "content": c, "timestamp": 1795000000 + i} for i, (r, c) in enumerate(messages)],
        }
    ]


def test_share_round_trip_and_page(tab: Browser) -> None:
    body = blocks(("user", "Tell me about **ghosts**"), ("assistant", f"Boo! {XSS}\n\n```python\nprint(1)\n```"))
    created = tab.send("post", "/api/share", body)
    assert created.status_code == 201
    share_id = created.json()["id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", share_id)  # >= 128 random bits, URL-safe
    assert created.json()["url"].endswith(f"/share/{share_id}")
    visitor = Client()  # no cookies at all
    snapshot = visitor.get(f"/api/share/{share_id}").json()
    assert snapshot["blocks"] == body and snapshot["title"] == "Chat about ghosts"
    page = visitor.get(f"/share/{share_id}")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<meta property="og:title" content="Chat about ghosts">' in html
    assert '<meta name="twitter:description" content="Tell me about **ghosts**">' in html
    assert "<script>alert(2)</script>" not in html and "<img src=x" not in html  # escaped everywhere
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_shares_are_frozen_and_ids_unguessable(tab: Browser) -> None:
    conversation = tab.send("post", "/api/conversations", {"title": "live"}).json()
    body = [
        {
            "conv": {"id": conversation["id"], "name": "live"},
            "messages": [{"role": "user", "content": "first", "timestamp": 1}],
        }
    ]
    ids = {tab.send("post", "/api/share", body).json()["id"] for _ in range(5)}
    assert len(ids) == 5
    # The shared conversation goes on; its share must not.
    Message.objects.create(conversation_id=conversation["id"], role="user", content="added later")
    Conversation.objects.filter(pk=conversation["id"]).update(title="renamed later")
    for share_id in ids:
        assert Client().get(f"/api/share/{share_id}").json()["blocks"] == body
        page = Client().get(f"/share/{share_id}").content.decode()
        assert "added later" not in page and "renamed later" not in page


def test_share_deletion_by_its_creator_only(tab: Browser) -> None:
    share_id = tab.send("post", "/api/share", blocks(("user", "secret plans"))).json()["id"]
    assert Client().delete(f"/api/share/{share_id}").status_code == 401
    stranger = Browser(ip="10.0.0.3")
    stranger.bootstrap()
    assert stranger.send("delete", f"/api/share/{share_id}").status_code == 403
    assert tab.send("delete", f"/api/share/{share_id}", csrf=False).status_code == 403  # CSRF still applies
    assert tab.send("delete", f"/api/share/{share_id}").status_code == 204
    assert Client().get(f"/api/share/{share_id}").status_code == 404
    assert Client().get(f"/share/{share_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"conv": {}}, "body"),
        ([], "body"),
        (["x"], "[0]"),
        ([{"conv": {"name": "n"}, "messages": []}], "[0].conv.id"),
        ([{"conv": {"id": "1", "name": 5}, "messages": []}], "[0].conv.name"),
        ([{"conv": {"id": "1"}, "messages": "hi"}], "[0].messages"),
        ([{"conv": {"id": "1"}, "messages": [{"role": "robot", "content": "x"}]}], "[0].messages[0].role"),
        ([{"conv": {"id": "1"}, "messages": [{"role": "user", "content": 5}]}], "[0].messages[0].content"),
        (
            [{"conv": {"id": "1"}, "messages": [{"role": "user", "content": "x", "timestamp": {}}]}],
            "[0].messages[0].timestamp",
        ),
    ],
)
def test_malformed_shares_are_400_naming_the_field(tab: Browser, body: Any, param: str) -> None:
    response = tab.send("post", "/api/share", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param and param in response.json()["error"]["message"]
    assert not Share.objects.exists()


def test_oversized_shares_are_413(tab: Browser, settings: Any) -> None:
    settings.WEB = {**settings.WEB, "SHARE_MAX_BYTES": 4096}
    response = tab.send("post", "/api/share", blocks(("user", "x" * 5000)))
    assert response.status_code == 413 and response.json()["error"]["code"] == "share_too_large"
    assert tab.send("post", "/api/share", blocks(("user", "x" * 1000))).status_code == 201


def test_continue_this_chat_copies_the_snapshot(tab: Browser) -> None:
    share_id = tab.send("post", "/api/share", blocks(("user", "hello"), ("assistant", "hi there"))).json()["id"]
    visitor = Browser(ip="10.0.0.4")
    visitor.bootstrap()
    made = visitor.send("post", f"/api/share/{share_id}/continue")
    assert made.status_code == 201
    conversation = visitor.send("get", f"/api/conversations/{made.json()['conversation_id']}").json()
    assert [(m["role"], m["content"]) for m in conversation["messages"]] == [
        ("user", "hello"),
        ("assistant", "hi there"),
    ]
    assert conversation["current_leaf"] == conversation["messages"][-1]["id"]
    assert Conversation.objects.filter(account__keys__kind="session").count() == 1  # the visitor's, not the author's


def test_sessions_get_their_own_tool_limit(tab: Browser, settings: Any) -> None:
    settings.TOOLS = {**settings.TOOLS, "RATE_SESSION": 2, "RATE_ANONYMOUS": 1}
    statuses = [tab.send("post", "/api/fetch-url", {"url": "ftp://x"}).status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_tool_jobs_belong_to_their_creator(tab: Browser, settings: Any) -> None:
    from tools.models import Job

    job = Job.objects.create(tool="fetch-url", params={}, account=ApiKey.objects.get().account)
    assert tab.send("get", f"/api/jobs/{job.pk}").status_code == 200
    assert Client().get(f"/api/jobs/{job.pk}").status_code == 404
    anonymous = Job.objects.create(tool="fetch-url", params={})
    assert Client().get(f"/api/jobs/{anonymous.pk}").status_code == 200


def test_docs_page_and_manifest() -> None:
    page = Client().get("/docs", HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200 and "http://testserver/v1" in page.content.decode()
    manifest = Client().get("/api.json").json()
    assert manifest["base_url"] == "http://testserver/v1" and manifest["models"][0]["id"] == "ghostgpt"
    assert {"/v1/chat/completions", "/api/share"} <= {e["path"] for e in manifest["endpoints"]}


def test_api_hosts_serve_the_docs_at_the_root(settings: Any) -> None:
    settings.WEB = {**settings.WEB, "API_HOSTS": ["api.example.com"]}
    settings.ALLOWED_HOSTS = ["*"]
    assert "GhostGPT API" in Client().get("/", HTTP_HOST="api.example.com").content.decode()
    assert 'id="composer"' in Client().get("/", HTTP_HOST="chat.example.com").content.decode()
    settings.WEB = {**settings.WEB, "API_HOSTS": [], "WEB_HOSTS": ["chat.example.com"]}
    assert 'id="composer"' in Client().get("/", HTTP_HOST="chat.example.com:8000").content.decode()
    assert "GhostGPT API" in Client().get("/", HTTP_HOST="api.example.com").content.decode()


def test_the_seed_curl_creates_an_anonymous_share() -> None:
    # Exactly the documented curl: only Content-Type, no session, no key, no CSRF token.
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR="10.7.7.7")
    body = blocks(("user", "hello"), ("assistant", "hi there"))
    created = client.post("/api/share", json.dumps(body), content_type="application/json")
    assert created.status_code == 201, created.content
    assert set(created.json()) == {"id", "url"}
    assert Client().get(f"/api/share/{created.json()['id']}").json()["blocks"] == body
    share = Share.objects.get()
    assert share.account_id is None and share.creator_bucket == "10.7.7.7"
    assert Client().delete(f"/api/share/{share.pk}").status_code == 401  # nobody owns it, nobody revokes it


def test_share_creation_is_rate_limited_and_storage_capped(settings: Any) -> None:
    settings.WEB = {**settings.WEB, "SHARE_RATE_ANONYMOUS": 3, "SHARE_STORAGE_BYTES": 2000}
    body = json.dumps(blocks(("user", "x")))
    statuses = [
        Client(REMOTE_ADDR="10.8.8.8").post("/api/share", body, content_type="application/json").status_code
        for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    assert Client(REMOTE_ADDR="10.8.8.9").post("/api/share", body, content_type="application/json").status_code == 201
    owner = Browser(ip="10.8.8.10")
    owner.bootstrap()
    assert owner.send("post", "/api/share", blocks(("user", "y" * 1500))).status_code == 201
    full = owner.send("post", "/api/share", blocks(("user", "y" * 1500)))
    assert full.status_code == 413 and full.json()["error"]["code"] == "share_quota_exceeded"


def test_conversation_creation_is_rate_limited(tab: Browser, settings: Any) -> None:
    settings.WEB = {**settings.WEB, "CONVERSATION_RATE": 2}
    statuses = [tab.send("post", "/api/conversations", {"title": "x"}).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]


def test_search_reads_only_the_callers_messages(tab: Browser) -> None:
    other = Browser(ip="10.0.0.9")
    other.bootstrap()
    theirs = other.send("post", "/api/conversations", {"title": "theirs"}).json()
    Message.objects.create(conversation_id=theirs["id"], role="user", content="needle in their haystack")
    mine = tab.send("post", "/api/conversations", {"title": "mine"}).json()
    Message.objects.create(conversation_id=mine["id"], role="user", content="a needle of mine")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        found = tab.send("get", "/api/conversations?q=needle").json()["data"]
    assert [c["id"] for c in found] == [mine["id"]]
    search = next(q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"].upper())
    assert search.count("account_id") >= 2  # the message scan itself is scoped to the account


def test_an_expired_session_is_no_session(tab: Browser) -> None:
    from datetime import timedelta

    from django.utils import timezone

    key = ApiKey.objects.get(kind=ApiKey.Kind.SESSION)
    assert key.expires_at is not None  # sessions expire with their cookie
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tab.send("get", "/api/conversations").status_code == 401


def test_conversation_creation_is_rate_limited_on_every_path(tab: Browser, settings: Any) -> None:
    settings.WEB = {**settings.WEB, "CONVERSATION_RATE": 2}
    assert tab.send("post", "/api/conversations", {"title": "x"}).status_code == 201
    shared = tab.send("post", "/api/share", blocks(("user", "hi")))
    assert tab.send("post", f"/api/share/{shared.json()['id']}/continue").status_code == 201
    # The third conversation, whichever way it would be made, is refused before anything else.
    # (A first turn and /api/ask on a live server: test_web_quotas_live.py.)
    for path, body in (("/api/conversations", {"title": "y"}), (f"/api/share/{shared.json()['id']}/continue", None)):
        refused = tab.send("post", path, body)
        assert refused.status_code == 429, (path, refused.content)
    assert Conversation.objects.count() == 2


def test_a_turn_loads_only_the_path_to_its_leaf(tab: Browser) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.web import services

    conversation = Conversation.objects.create(account_id=ApiKey.objects.get().account_id)
    parent = None
    for n in range(6):  # the path: six turns
        user = Message.objects.create(conversation=conversation, parent=parent, role="user", content=f"q{n}")
        parent = Message.objects.create(conversation=conversation, parent=user, role="assistant", content=f"a{n}")
    for _ in range(300):  # 300 other branches beside it
        Message.objects.create(conversation=conversation, parent=None, role="user", content="x" * 100)
    assistant = Message.objects.create(conversation=conversation, parent=parent, role="assistant", content="")
    with CaptureQueriesContext(connection) as queries:
        history = services.prompt_messages(conversation=conversation, assistant=assistant)
    assert [m["content"] for m in history] == [c for n in range(6) for c in (f"q{n}", f"a{n}")]
    loaded = sum(1 for q in queries.captured_queries if "chat_message" in q["sql"])
    assert loaded == 1 and "RECURSIVE" in queries.captured_queries[-1]["sql"].upper()
