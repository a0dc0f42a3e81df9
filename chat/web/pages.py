"""Server-rendered pages: the chat, public shares, the API docs; and the files they load."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from django.views.static import serve

from chat.api.auth import presented_session
from chat.backends import registry
from chat.selectors import session_key_get

from .manifest import ENDPOINTS, ERRORS, TOOLS, base_url, limits, manifest
from .selectors import share_get

STATIC_DIR = Path(settings.BASE_DIR) / "static"
DESCRIPTION_LENGTH = 200


def _on_api_host(request: HttpRequest) -> bool:
    """An API host serves the docs at `/`: one listed in GHOSTGPT_API_HOSTS, or, when only
    GHOSTGPT_WEB_HOSTS is set, any host not listed there."""
    host = request.get_host()

    def listed(hosts: list[str]) -> bool:
        return host in hosts or host.split(":")[0] in hosts

    api_hosts, web_hosts = settings.WEB["API_HOSTS"], settings.WEB["WEB_HOSTS"]
    if api_hosts:
        return listed(api_hosts)
    return bool(web_hosts) and not listed(web_hosts)


def _has_session(request: HttpRequest) -> bool:
    """Whether the page's `gg_sess` is the right one: a signed-in person's own key for this
    session, else an anonymous session (the page bootstraps otherwise)."""
    key = session_key_get(secret=presented_session(request))
    if key is None:
        return False
    user = getattr(request, "person", None)
    if user is not None and user.is_authenticated:
        return key.user_id == user.pk and key.web_session == (request.session.session_key or "-")
    return key.user_id is None


def _wallets(request: HttpRequest) -> list[dict[str, object]]:
    """A signed-in person's wallets (their own, their organizations'), the one this
    session's chat pays from marked `current` — for the sidebar's switch."""
    user = getattr(request, "person", None)
    if user is None or not user.is_authenticated:
        return []
    from people.selectors import wallets_for

    key = session_key_get(secret=presented_session(request))
    wallets = wallets_for(user=user)
    paying = key.account_id if key is not None and key.user_id == user.pk else wallets[0]["account_id"]
    return [{**wallet, "current": wallet["account_id"] == paying} for wallet in wallets]


@require_GET
@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    """The chat on the web host(s); the API docs on an API host."""
    if _on_api_host(request):
        return docs(request)
    context = {
        "has_session": _has_session(request),
        "wallets": _wallets(request),
        "models": [info.id for info, _ in registry.chat_models()],
        "default_model": settings.GHOSTGPT["MODEL_ID"],
        "allow_system_prompt": settings.WEB["ALLOW_SYSTEM_PROMPT"],
        "limits": limits(),
    }
    return render(request, "chat.html", context)


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    russian = request.LANGUAGE_CODE == "ru"  # type: ignore[attr-defined]
    pick = 4 if russian else 3
    context = {
        "base": base_url(request),
        "model": settings.GHOSTGPT["MODEL_ID"],
        "endpoints": [(e[0], e[1], e[2], e[pick]) for e in ENDPOINTS],
        "tools": [(t[0], t[1], t[2], t[pick]) for t in TOOLS],
        "errors": [(e[0], e[1], e[3 if russian else 2]) for e in ERRORS],
        "manifest": manifest(request),
    }
    return render(request, "docs.html", context)


@require_GET
def api_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(manifest(request), json_dumps_params={"ensure_ascii": False, "indent": 2})


def _first_lines(snapshot: list[dict[str, object]]) -> str:
    for block in snapshot:
        for message in block.get("messages", []):  # type: ignore[attr-defined]
            text = " ".join(str(message.get("content", "")).split())
            if text:
                return text if len(text) <= DESCRIPTION_LENGTH else text[: DESCRIPTION_LENGTH - 1] + "…"
    return ""


@require_GET
@ensure_csrf_cookie
def share_page(request: HttpRequest, share_id: str) -> HttpResponse:
    try:
        share = share_get(share_id=share_id)
    except Http404:
        return render(
            request, "not_found.html", {"what": _("This shared chat does not exist or was deleted.")}, status=404
        )
    context = {
        "share": share,
        "title": share.title or _("Shared chat"),
        "description": _first_lines(share.snapshot),
        "url": f"{base_url(request)}/share/{share.pk}",
        "message_count": sum(len(b.get("messages", [])) for b in share.snapshot),
        "has_session": _has_session(request),
    }
    response = render(request, "share.html", context)
    response["X-Robots-Tag"] = "noindex"  # unlisted: reachable by link only
    return response


def vendor(request: HttpRequest, path: str) -> HttpResponse:
    """Libraries from npm (`make vendor`), long-cached."""
    response = serve(request, path, document_root=STATIC_DIR / "vendor")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def own_static(request: HttpRequest, path: str) -> HttpResponse:
    """The product's own files, then the apps' (allauth's WebAuthn and form scripts)."""
    if (STATIC_DIR / path).is_file():
        return serve(request, path, document_root=STATIC_DIR)
    found = finders.find(path)
    if not found or not isinstance(found, str):
        raise Http404(path)
    return serve(request, Path(found).name, document_root=Path(found).parent)


def doc_viewer(request: HttpRequest) -> HttpResponse:
    return FileResponse((STATIC_DIR / "js" / "gg-doc-viewer.js").open("rb"), content_type="text/javascript")
