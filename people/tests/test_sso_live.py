"""Single sign-on against real providers on loopback.

The round trip runs in Debian's Chromium against panva's certified `oidc-provider` (npm,
clients/oidc_provider.mjs): GhostGPT's sign-in page → the provider's login and consent →
back, signed in, the groups claim mapped to a tier, and no CSP violation on the way (the
form that leaves for the provider needs `form-action` to admit it). A provider sending an
unverified address that an existing person holds does not sign anyone in as them; a forged
`state` is refused.

What a certified provider never does — an id_token with another sign-in's nonce, signed by a
key not in its JWKS, or unsigned — comes from a hostile provider served by this module (the
documented discovery, JWKS, authorize and token shapes; RS256 by PyJWT): each is refused with
allauth's error page and nobody signed in, while the same provider behaving well signs in.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chat.tests.browser.conftest import Tab, browser, playwright  # noqa: F401  (fixtures)
from chat.tests.live import LiveServer, free_port, manage

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_SCRIPT = ROOT / "clients" / "oidc_provider.mjs"
CLIENT_ID, CLIENT_SECRET = "ghostgpt", "provider-secret-for-tests"
ACCOUNTS = {
    "lea": {"email": "lea@corp.example", "email_verified": True, "name": "Lea", "groups": ["staff", "gg-unlimited"]},
    "sam": {"email": "sam@corp.example", "email_verified": False, "name": "Not Sam"},
}
PASSWORD = "a long passphrase 7"


def _sso_env(issuer: str) -> dict[str, str]:
    return {
        "GHOSTGPT_OIDC_ISSUER": issuer,
        "GHOSTGPT_OIDC_CLIENT_ID": CLIENT_ID,
        "GHOSTGPT_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "GHOSTGPT_OIDC_EXTRA_SCOPES": "groups",
        "GHOSTGPT_OIDC_TIER_MAP": "gg-unlimited=unlimited",
        "GHOSTGPT_OIDC_ORGANIZATION": "corp",
        "GHOSTGPT_OIDC_ORGANIZATION_DOMAINS": "corp.example",
        "GHOSTGPT_OIDC_ROLE_MAP": "staff=admin",
        "GHOSTGPT_EMAIL_VERIFICATION": "mandatory",
    }


def _callback(port: int) -> str:
    return f"http://127.0.0.1:{port}/accounts/oidc/sso/login/callback/"


@pytest.fixture(scope="module")
def provider_and_site() -> Iterator[tuple[str, LiveServer]]:
    port = free_port()
    client = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [_callback(port)]}
    node = subprocess.Popen(
        ["node", str(PROVIDER_SCRIPT)],
        cwd=ROOT / "clients",
        env={**os.environ, "OIDC_CLIENT": json.dumps(client), "OIDC_ACCOUNTS": json.dumps(ACCOUNTS)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert node.stdout is not None
        issuer = json.loads(node.stdout.readline())["issuer"]
        site = LiveServer(port=port, env=_sso_env(issuer))
        try:
            yield issuer, site
        finally:
            site.stop()
    finally:
        node.terminate()
        node.wait(timeout=10)


def _person(page: Any) -> Any:
    return page.evaluate("fetch('/console/api/session').then(r => r.json()).then(b => b.person || null)")


def _via_provider(page: Any, login: str) -> None:
    page.goto("/accounts/login/")
    page.click("a[href*='/accounts/oidc/sso/login/']")
    page.click("main form button[type=submit]")  # "Continue": a POST that leaves for the provider
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "anything")
    page.click("button[type=submit]")
    page.click("button:has-text('Continue')")  # the provider's consent


def test_round_trip_maps_groups_to_a_tier_and_a_role(browser: Any, provider_and_site: tuple[str, LiveServer]) -> None:  # noqa: F811
    _, site = provider_and_site
    manage(
        site,
        "shell",
        "-c",
        "from chat.models import Account, Tier; from people.models import Organization; "
        "Organization.objects.create(slug='corp', "
        "account=Account.objects.create(name='Corp', tier=Tier.objects.get(name='free')))",
    )
    tab = Tab(browser, site.base_url)
    page = tab.open("/")
    _via_provider(page, "lea")
    page.wait_for_url(f"{site.base_url}/")
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#person") == "lea@corp.example"
    overview = page.evaluate("fetch('/console/api/overview').then(r => r.json())")
    assert overview["tier"] == "unlimited"  # "gg-unlimited" in the groups claim
    page.goto("/accounts/organizations/corp/")  # the provider is bound to Corp; "staff" = admin
    assert page.inner_text("#my-role") == "Admin"
    tab.close()
    # No CSP refusal of the form that went to the provider (the provider's own development
    # pages fail to load a web font: no internet here).
    assert [error for error in tab.errors if "ERR_NAME_NOT_RESOLVED" not in error] == []


def test_an_unverified_provider_address_takes_over_nobody(
    browser: Any,  # noqa: F811
    provider_and_site: tuple[str, LiveServer],
) -> None:
    _, site = provider_and_site
    manage(
        site,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from allauth.account.models import EmailAddress; "
        f"u = get_user_model().objects.create_user('sam', 'sam@corp.example', {PASSWORD!r}); "
        "EmailAddress.objects.create(user=u, email='sam@corp.example', verified=True, primary=True)",
    )
    tab = Tab(browser, site.base_url)
    page = tab.open("/")
    _via_provider(page, "sam")
    page.wait_for_url("**/accounts/confirm-email/")  # told to confirm the address: never signed in as Sam
    assert _person(page) is None
    linked = manage(
        site,
        "shell",
        "-c",
        "from allauth.socialaccount.models import SocialAccount; "
        "print(list(SocialAccount.objects.filter(uid='sam').values_list('user__username', flat=True)))",
    )
    assert "'sam'" not in linked  # the provider's "sam" is not joined to the existing Sam
    tab.close()


def _start(client: httpx.Client, site: LiveServer) -> httpx.Response:
    """The sign-in page's "Continue" (a POST with its CSRF token): the redirect to the provider."""
    client.get("/accounts/login/")
    started = client.post(
        "/accounts/oidc/sso/login/",
        data={"csrfmiddlewaretoken": client.cookies["csrftoken"]},
        headers={"Referer": site.base_url + "/accounts/login/"},
    )
    assert started.status_code == 302, started.text
    return started


def test_a_forged_state_is_refused(provider_and_site: tuple[str, LiveServer]) -> None:
    _, site = provider_and_site
    with httpx.Client(base_url=site.base_url) as client:
        started = _start(client, site)
        assert parse_qs(urlsplit(started.headers["location"]).query)["nonce"][0]
        back = client.get("/accounts/oidc/sso/login/callback/", params={"code": "stolen", "state": "forged"})
        assert back.status_code == 401 and "Third-Party Login Failure" in back.text, back.text[:2000]
        assert client.get("/console/api/session").json().get("person") is None


# --- A hostile provider ----------------------------------------------------------------------------


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Hostile:
    """An OpenID provider that answers in the documented shapes and signs what `mode` says."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.mode = "good"
        self.nonces: dict[str, str] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        key = {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": _b64(numbers.n), "e": _b64(numbers.e)}
        return {"keys": [key]}

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "kim",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": "another-sign-in" if self.mode == "wrong-nonce" else nonce,
            "email": "kim@corp.example",
            "email_verified": True,
        }
        if self.mode == "unsigned":
            return jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
        key = self.other if self.mode == "other-key" else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    base = hostile.issuer
                    self._json(
                        {
                            "issuer": base,
                            "authorization_endpoint": f"{base}/auth",
                            "token_endpoint": f"{base}/token",
                            "userinfo_endpoint": f"{base}/me",
                            "jwks_uri": f"{base}/jwks",
                            "response_types_supported": ["code"],
                            "subject_types_supported": ["public"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "token_endpoint_auth_methods_supported": ["client_secret_post"],
                        }
                    )
                elif url.path == "/jwks":
                    self._json(hostile.jwks())
                elif url.path == "/me":
                    self._json({"sub": "kim", "email": "kim@corp.example", "email_verified": True})
                elif url.path == "/auth":
                    code = secrets.token_urlsafe(16)
                    hostile.nonces[code] = query.get("nonce", "")
                    self.send_response(302)
                    back = urlencode({"code": code, "state": query["state"]})
                    self.send_header("Location", f"{query['redirect_uri']}?{back}")
                    self.end_headers()
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                nonce = hostile.nonces.pop(form.get("code", ""), None)
                if nonce is None:
                    self.send_error(400)
                    return
                self._json(
                    {
                        "access_token": secrets.token_urlsafe(16),
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": hostile.id_token(nonce),
                    }
                )

        return Handler


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[Hostile, LiveServer]]:
    provider = Hostile()
    site = LiveServer(env=_sso_env(provider.issuer))
    yield provider, site
    site.stop()
    provider.server.shutdown()


def _sign_in_through(site: LiveServer) -> tuple[httpx.Response, Any]:
    with httpx.Client(base_url=site.base_url) as client:
        started = _start(client, site)
        authorize = httpx.get(started.headers["location"])  # the provider sends the browser back
        back = client.get(authorize.headers["location"], follow_redirects=True)
        return back, client.get("/console/api/session").json().get("person")


@pytest.mark.parametrize("mode", ["wrong-nonce", "other-key", "unsigned"])
def test_a_hostile_id_token_signs_nobody_in(hostile: tuple[Hostile, LiveServer], mode: str) -> None:
    provider, site = hostile
    provider.mode = mode
    back, person = _sign_in_through(site)
    assert back.status_code == 401 and "Third-Party Login Failure" in back.text, back.text[:2000]
    assert person is None
    assert re.search(r"Traceback", back.text) is None


def test_the_same_provider_behaving_well_signs_in(hostile: tuple[Hostile, LiveServer]) -> None:
    """The hostile cases fail for what they break, not for the double: done right, it works."""
    provider, site = hostile
    provider.mode = "good"
    _, person = _sign_in_through(site)
    assert person is not None and person["email"] == "kim@corp.example"
