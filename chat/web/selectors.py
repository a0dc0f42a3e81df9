"""Reads for the browser product. Every user-owned row is fetched with its owner here."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from chat.models import Conversation, Message, Share


def _uuid(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


def conversation_get_for_account(*, account_id: int, conversation_id: Any) -> Conversation:
    conversation = Conversation.objects.filter(pk=_uuid(conversation_id), account_id=account_id).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


async def aconversation_get_for_account(*, account_id: int, conversation_id: Any) -> Conversation:
    conversation = await Conversation.objects.filter(pk=_uuid(conversation_id), account_id=account_id).afirst()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


async def amessage_get_for_account(*, account_id: int, message_id: Any) -> Message:
    message = await Message.objects.filter(pk=_uuid(message_id), conversation__account_id=account_id).afirst()
    if message is None:
        raise Http404("No such message.")
    return message


def message_get_for_conversation(*, conversation: Conversation, message_id: Any) -> Message:
    message = conversation.messages.filter(pk=_uuid(message_id)).first()
    if message is None:
        raise Http404("No such message.")
    return message


def conversation_list(*, account_id: int, query: str = "") -> QuerySet[Conversation]:
    """Newest first; `query` matches titles and message text (case-insensitive)."""
    conversations = Conversation.objects.filter(account_id=account_id)
    if query:
        # Only this account's messages: the join on conversation__account keeps the scan to them.
        in_messages = Message.objects.filter(conversation__account_id=account_id, content__icontains=query).values(
            "conversation_id"
        )
        conversations = conversations.filter(Q(title__icontains=query) | Q(pk__in=in_messages))
    return conversations.order_by("-updated_at")


def message_path(*, messages: dict[uuid.UUID, Message], leaf_id: uuid.UUID | None) -> list[Message]:
    """Root-to-leaf list of the branch ending at `leaf_id`."""
    path: list[Message] = []
    seen: set[uuid.UUID] = set()
    current = messages.get(leaf_id) if leaf_id else None
    while current is not None and current.pk not in seen:
        seen.add(current.pk)
        path.append(current)
        current = messages.get(current.parent_id) if current.parent_id else None
    return path[::-1]


def share_get(*, share_id: str) -> Share:
    share = Share.objects.filter(pk=share_id).first() if len(share_id) <= 32 else None
    if share is None:
        raise Http404("No such share.")
    return share
