"""The OpenID Connect login and callback views, with the id_token checked in full
(people.sso.provider says what allauth leaves out)."""

from __future__ import annotations

import hmac
from typing import Any

import jwt
import requests
from allauth.account.internal.decorators import login_not_required
from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.internal.jwtkit import verify_jti
from allauth.socialaccount.models import SocialApp, SocialToken
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect.views import OpenIDConnectOAuth2Adapter
from django.http import Http404, HttpRequest, HttpResponse

# Signature algorithms an id_token may use: asymmetric only (RFC 7518), the JWK's own.
ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
LEEWAY_SECONDS = 60


class GhostOpenIDConnectAdapter(OpenIDConnectOAuth2Adapter):
    expected_nonce: str | None = None

    def complete_login(self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any) -> Any:
        id_token = kwargs["response"].get("id_token")
        if not id_token:
            raise OAuth2Error("The provider sent no id_token.")
        claims = self._verified_id_token(app, id_token)
        data: dict[str, Any] = {"id_token": claims}
        if app.settings.get("fetch_userinfo", True) and self.openid_config.get("userinfo_endpoint"):
            userinfo = self._fetch_user_info(token.token)
            if str(userinfo.get("sub")) != str(claims["sub"]):  # Core §5.3.4
                raise OAuth2Error("The userinfo is about someone else.")
            data["userinfo"] = userinfo
        return self.get_provider().sociallogin_from_response(request, data)

    def _signing_key(self, id_token: str) -> tuple[Any, str]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise OAuth2Error("The id_token is not a JWT.") from exc
        kid = header.get("kid")
        with get_adapter().get_requests_session() as session:
            response = session.get(self.openid_config["jwks_uri"], timeout=10)
            response.raise_for_status()
            keys = response.json().get("keys", [])
        candidates = [key for key in keys if key.get("use", "sig") == "sig" and (kid is None or key.get("kid") == kid)]
        if len(candidates) != 1:
            raise OAuth2Error("No single key in the provider's JWKS matches the id_token.")
        jwk = candidates[0]
        algorithm = jwk.get("alg") or header.get("alg")
        if algorithm not in ASYMMETRIC or header.get("alg") != algorithm:
            raise OAuth2Error("The id_token's algorithm is not its key's.")
        try:
            return jwt.PyJWK(jwk, algorithm).key, algorithm
        except jwt.PyJWTError as exc:
            raise OAuth2Error("The provider's key cannot be read.") from exc

    def _verified_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        key, algorithm = self._signing_key(id_token)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key,
                algorithms=[algorithm],
                audience=app.client_id,
                issuer=self.openid_config["issuer"],
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise OAuth2Error(f"Invalid id_token: {exc}") from exc
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != app.client_id:
            raise OAuth2Error("The id_token was issued to another party.")
        expected = self.expected_nonce
        if not expected or not hmac.compare_digest(str(claims.get("nonce", "")), expected):
            raise OAuth2Error("The id_token's nonce is not this sign-in's.")
        verify_jti(claims)
        return claims


class GhostCallbackView(OAuth2CallbackView):
    def _get_state(self, request: HttpRequest, provider: Any) -> Any:
        """allauth's stashed state, whose nonce the adapter checks the id_token against."""
        state, response = super()._get_state(request, provider)
        if state is not None:
            self.adapter.expected_nonce = state.get("nonce")  # type: ignore[attr-defined]
        return state, response


def _run(view: type[OAuth2LoginView] | type[GhostCallbackView], request: HttpRequest, provider_id: str) -> HttpResponse:
    """allauth's view for the app `provider_id` (404 when none); the provider unreachable or
    answering errors (discovery, keys, tokens) is allauth's error page, not a 500."""
    adapter = GhostOpenIDConnectAdapter(request, provider_id)
    try:
        return view.adapter_view(adapter)(request)  # type: ignore[no-any-return]
    except SocialApp.DoesNotExist:
        raise Http404 from None
    except (requests.RequestException, ValueError, KeyError) as exc:
        return render_authentication_error(request, adapter.get_provider(), exception=exc)


@login_not_required
def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    return _run(OAuth2LoginView, request, provider_id)


@login_not_required
def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    return _run(GhostCallbackView, request, provider_id)
