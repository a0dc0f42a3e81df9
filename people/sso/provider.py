"""The OpenID Connect provider GhostGPT signs people in with: allauth's, held to the whole of
OpenID Connect Core §3.1.3.7 (allauth 65 skips two checks for tokens from the token endpoint).

- Every authorization request carries a fresh `nonce`, kept in allauth's stashed state (the
  session) beside PKCE's verifier; the id_token must echo it.
- The id_token's signature is always checked against the provider's JWKS, with the key its
  `kid` names and that key's own asymmetric algorithm (never the token header's choice: no
  `none`, no HMAC keyed with a public key).
- issuer, audience (and `azp` when several), expiry and issue time are checked; a token
  without an id_token is refused.

It replaces allauth's `openid_connect` app (same id, same URLs, same settings).
"""

from __future__ import annotations

import secrets
from typing import Any

from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider
from django.http import HttpRequest

from .views import GhostOpenIDConnectAdapter


class GhostOpenIDConnectProvider(OpenIDConnectProvider):
    oauth2_adapter_class = GhostOpenIDConnectAdapter

    def redirect(self, request: HttpRequest, process: Any, next_url: Any = None, data: Any = None, **kwargs: Any):
        nonce = secrets.token_urlsafe(32)
        auth_params = kwargs.pop("auth_params", None)
        if auth_params is None:
            auth_params = self.get_auth_params()
        auth_params = {**auth_params, "nonce": nonce}
        # `nonce` goes into the stashed state (stash_redirect_state's **kwargs) and the request.
        return super().redirect(request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs)


provider_classes = [GhostOpenIDConnectProvider]
