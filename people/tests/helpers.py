"""Driving allauth's pages as a browser would: forms with their CSRF tokens, links from
the mail that was sent."""

from __future__ import annotations

import re
from typing import Any

from django.core import mail
from django.test import Client

PASSWORD = "a long passphrase 7"
LINK = re.compile(r"https?://[^\s]+")


def csrf_client() -> Client:
    """A client that, like a browser, must send the CSRF token the page gave it."""
    return Client(enforce_csrf_checks=True)


def token(client: Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert match, f"no CSRF token on {path}"
    return match.group(1).decode()


def submit(client: Client, path: str, data: dict[str, Any], *, page: str | None = None) -> Any:
    return client.post(path, {**data, "csrfmiddlewaretoken": token(client, page or path)})


def last_link(to: str) -> str:
    """The path of the link in the last mail sent to `to`."""
    sent = [m for m in mail.outbox if to in m.to]
    assert sent, f"no mail to {to}: {[m.to for m in mail.outbox]}"
    url = LINK.search(sent[-1].body)
    assert url, sent[-1].body
    return "/" + url.group(0).split("/", 3)[3]


def post(client: Client, path: str, data: dict[str, Any]) -> Any:
    """A form post with the token from the CSRF cookie (for pages a GET would change)."""
    return client.post(path, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def sign_up(client: Client, email: str, password: str = PASSWORD) -> Any:
    return submit(client, "/accounts/signup/", {"email": email, "password1": password, "password2": password})


def verify(client: Client, email: str) -> Any:
    path = last_link(email)
    return submit(client, path, {})


def sign_in(client: Client, email: str, password: str = PASSWORD) -> Any:
    return submit(client, "/accounts/login/", {"login": email, "password": password})


def signed_in(email: str) -> Client:
    """A new person, signed up, verified and signed in, in a browser-like client."""
    client = csrf_client()
    sign_up(client, email)
    verify(client, email)
    client.logout()
    sign_in(client, email)
    return client


def bootstrap(client: Client) -> dict[str, Any]:
    response = client.post("/api/session/bootstrap")
    assert response.status_code in (200, 201), response.content
    return response.json()  # type: ignore[no-any-return]


def api(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    csrf = client.cookies.get("csrftoken")
    headers = {"HTTP_X_CSRFTOKEN": csrf.value} if csrf else {}
    return getattr(client, method.lower())(path, body or {}, content_type="application/json", **headers)
