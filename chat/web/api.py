"""JSON APIs of the browser product: conversations and shares (DRF, synchronous)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.accounts.drf import ApiKeyAuthentication, HasKeyOrSession
from chat.api.errors import ApiError, count_or_429
from chat.billing.ratelimit import Limits
from chat.jsonbytes import dumps
from chat.models import Conversation
from chat.network import client_key

from . import export, services
from .selectors import (
    EVERYWHERE,
    conversation_get_for_account,
    conversation_list,
    message_excerpts,
    message_get_for_conversation,
    share_get,
)
from .serializers import conversation_body, message_body

LIST_LIMIT = 500


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
    return data


def share_url(request: Request, share_id: str) -> str:
    base = settings.WEB["PUBLIC_BASE_URL"] or request.build_absolute_uri("/").rstrip("/")
    return f"{base}/share/{share_id}"


class WebApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasKeyOrSession]

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> None:
        if request.auth is None:
            raise exceptions.NotAuthenticated(HasKeyOrSession.message)
        super().permission_denied(request, message, code)


class ConversationListApi(WebApi):
    def get(self, request: Request) -> Response:
        """`?q=` searches titles and messages (each result with the `match` to jump to);
        `?project=<id>` lists one project's chats, `?project=none` those in none."""
        query = str(request.query_params.get("q", "")).strip()[:200]
        where = request.query_params.get("project")
        project = EVERYWHERE if where in (None, "") else None if where == "none" else where
        rows = list(
            conversation_list(account_id=request.user.pk, owner_id=request.auth.user_id, query=query, project=project)[
                :LIST_LIMIT
            ]
        )
        data = [conversation_body(c) for c in rows]
        if query:
            excerpts = message_excerpts(message_ids=[c.match_id for c in rows], query=query)
            for body, row in zip(data, rows, strict=True):
                match = str(row.match_id) if row.match_id else None
                body["match"] = {"message_id": match, "excerpt": excerpts.get(match, "")} if match else None
        return Response({"object": "list", "data": data})

    def post(self, request: Request) -> Response:
        data = json_object(request.data or {})
        limit_creation(request, "conversation", owner_rate="CONVERSATION_RATE")
        project = services.project_for(
            account_id=request.user.pk, owner_id=request.auth.user_id, project_id=data.get("project_id")
        )
        conversation = services.conversation_create(
            account=request.user, owner_id=request.auth.user_id, title=str(data.get("title", "")), project=project
        )
        if "system_prompt" in data or "model" in data:
            services.conversation_update(conversation=conversation, changes=data)
        return Response(conversation_body(conversation), status=201)


class ConversationDetailApi(WebApi):
    def _get(self, request: Request, conversation_id: str) -> Conversation:
        return conversation_get_for_account(
            account_id=request.user.pk, owner_id=request.auth.user_id, conversation_id=conversation_id
        )

    def get(self, request: Request, conversation_id: str) -> Response:
        conversation = self._get(request, conversation_id)
        messages = [message_body(m) for m in conversation.messages.order_by("created_at")]
        return Response({**conversation_body(conversation), "messages": messages})

    def patch(self, request: Request, conversation_id: str) -> Response:
        conversation = self._get(request, conversation_id)
        changes = json_object(request.data)
        updated = services.conversation_update(conversation=conversation, changes=changes, key_id=request.auth.pk)
        return Response(conversation_body(updated))

    def delete(self, request: Request, conversation_id: str) -> Response:
        services.conversation_delete(conversation=self._get(request, conversation_id))
        return Response(status=204)


class ConversationExportApi(WebApi):
    """One chat as Markdown (`?format=md`: the branch on screen) or JSON (`json`, the
    default: every branch), as a download."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # `format` is this view's own parameter, not DRF's renderer override.
        return super().perform_content_negotiation(request, force=True)

    def get(self, request: Request, conversation_id: str) -> HttpResponse:
        conversation = conversation_get_for_account(
            account_id=request.user.pk, owner_id=request.auth.user_id, conversation_id=conversation_id
        )
        form = str(request.query_params.get("format", "json"))
        if form not in ("json", "md"):
            raise ApiError(400, "'format' is 'json' or 'md'.", param="format", code="invalid_format")
        if form == "md":
            response = HttpResponse(
                export.conversation_markdown(conversation), content_type="text/markdown; charset=utf-8"
            )
        else:
            document = {
                "format": export.FORMAT,
                "version": export.VERSION,
                **export.conversation_document(conversation),
            }
            response = HttpResponse(dumps(document), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{export.filename(conversation, form)}"'
        return response


class AccountExportApi(WebApi):
    """Everything the person owns here as one ZIP (docs/export.md), streamed as it is written."""

    def get(self, request: Request) -> StreamingHttpResponse:
        limit_creation(request, "export", owner_rate="EXPORT_RATE")
        chunks = export.account_zip(account_id=request.user.pk, owner_id=request.auth.user_id)
        response = StreamingHttpResponse(chunks, content_type="application/zip")
        stamp = timezone.now().strftime("%Y-%m-%d")
        response["Content-Disposition"] = f'attachment; filename="ghostgpt-export-{stamp}.zip"'
        return response


class MessageModelViewApi(WebApi):
    """ "What the model saw" for one user message."""

    def get(self, request: Request, conversation_id: str, message_id: str) -> Response:
        conversation = conversation_get_for_account(
            account_id=request.user.pk, owner_id=request.auth.user_id, conversation_id=conversation_id
        )
        message = message_get_for_conversation(conversation=conversation, message_id=message_id)
        return Response({"id": str(message.pk), "text": services.model_text(message)})


def owner_limits(what: str, account_id: int, rate: str) -> Limits:
    """How many `what` an account may make a window (settings.WEB[rate]); one counter for
    every path that makes them."""
    return Limits(f"{what}:account:{account_id}", settings.WEB[rate], None)


def limit_creation(request: Request, what: str, *, owner_rate: str, anonymous_rate: str | None = None) -> None:
    """429 when the owner (session or key) — or, anonymous, the client's address — made too
    many `what` this minute."""
    if request.user is not None:
        limits = owner_limits(what, request.user.pk, owner_rate)
    else:
        limits = Limits(f"{what}:ip:{client_key(request._request)}", settings.WEB[anonymous_rate or owner_rate], None)
    count_or_429(limits, f"new {what}s")


class ShareCreateApi(WebApi):
    """The seed's documented curl works as is: anonymous shares are rate limited per client
    address and belong to nobody; with a session or key the share is the owner's to revoke."""

    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response:
        size = len(request._request.body)
        limit = settings.WEB["SHARE_MAX_BYTES"]
        if size > limit:
            raise ApiError(413, f"A share may be at most {limit} bytes; this one is {size}.", code="share_too_large")
        limit_creation(request, "share", owner_rate="SHARE_RATE", anonymous_rate="SHARE_RATE_ANONYMOUS")
        share = services.share_create(
            account_id=request.user.pk if request.user is not None else None,
            blocks=request.data,
            creator_bucket=client_key(request._request),
        )
        return Response({"id": share.pk, "url": share_url(request, share.pk)}, status=201)


class ShareDetailApi(APIView):
    """Anyone with the id may read a share; only its creator may delete it."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [AllowAny]

    def get(self, request: Request, share_id: str) -> Response:
        share = share_get(share_id=share_id)
        return Response(
            {
                "id": share.pk,
                "url": share_url(request, share.pk),
                "title": share.title,
                "created_at": share.created_at.isoformat(),
                "blocks": share.snapshot,
            }
        )

    def delete(self, request: Request, share_id: str) -> Response:
        if request.user is None:
            raise ApiError(401, "Deleting a share needs its creator's session or key.", code="missing_api_key")
        services.share_delete(share=share_get(share_id=share_id), account_id=request.user.pk)
        return Response(status=204)


class ShareContinueApi(WebApi):
    """ "Continue this chat": copy the snapshot into the caller's own conversations."""

    def post(self, request: Request, share_id: str) -> Response:
        limit_creation(request, "conversation", owner_rate="CONVERSATION_RATE")
        conversation = services.conversation_from_share(
            share=share_get(share_id=share_id), account_id=request.user.pk, owner_id=request.auth.user_id
        )
        return Response({"conversation_id": str(conversation.pk), "url": f"/?c={conversation.pk}"}, status=201)
