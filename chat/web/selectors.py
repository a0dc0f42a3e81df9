"""Reads for the browser product. Every user-owned row is fetched with its owner here."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.http import Http404

from chat.models import Conversation, Message, Share

MAX_DEPTH = 100_000  # a guard: a branch is never this deep (a parent loop would be endless)


def uuid_or_404(value: Any) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise Http404 from None


# Whose chats: an account's, and within it one person's (owner_id; None for an anonymous or
# operator-made account's), so an organization's members never see each other's.


def conversation_get_for_account(*, account_id: int, owner_id: int | None, conversation_id: Any) -> Conversation:
    conversation = Conversation.objects.filter(
        pk=uuid_or_404(conversation_id), account_id=account_id, owner_id=owner_id
    ).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


async def aconversation_get_for_account(*, account_id: int, owner_id: int | None, conversation_id: Any) -> Conversation:
    conversation = await Conversation.objects.filter(
        pk=uuid_or_404(conversation_id), account_id=account_id, owner_id=owner_id
    ).afirst()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def _messages_of(*, account_id: int, owner_id: int | None, message_id: Any) -> QuerySet[Message]:
    return Message.objects.filter(
        pk=uuid_or_404(message_id), conversation__account_id=account_id, conversation__owner_id=owner_id
    )


async def amessage_get_for_account(*, account_id: int, owner_id: int | None, message_id: Any) -> Message:
    message = await _messages_of(account_id=account_id, owner_id=owner_id, message_id=message_id).afirst()
    if message is None:
        raise Http404("No such message.")
    return message


def message_get_for_account(*, account_id: int, owner_id: int | None, message_id: Any) -> Message:
    message = _messages_of(account_id=account_id, owner_id=owner_id, message_id=message_id).first()
    if message is None:
        raise Http404("No such message.")
    return message


def message_get_for_conversation(*, conversation: Conversation, message_id: Any) -> Message:
    message = conversation.messages.filter(pk=uuid_or_404(message_id)).first()
    if message is None:
        raise Http404("No such message.")
    return message


EVERYWHERE = object()  # conversation_list's `project` default: in any project or none


def conversation_list(
    *, account_id: int, owner_id: int | None, query: str = "", project: Any = EVERYWHERE
) -> QuerySet[Conversation]:
    """Newest first; in one project (`project`: its id), in none (None), or anywhere.
    `query` matches titles and message text (case-insensitive); each match carries
    `match_id`, its first message that holds the text (None when only the title does)."""
    conversations = Conversation.objects.filter(account_id=account_id, owner_id=owner_id)
    if project is None:
        conversations = conversations.filter(project__isnull=True)
    elif project is not EVERYWHERE:
        conversations = conversations.filter(project_id=uuid_or_404(project))
    if query:
        # Only these conversations' messages: the join keeps the scan to them.
        in_messages = Message.objects.filter(
            conversation__account_id=account_id, conversation__owner_id=owner_id, content__icontains=query
        ).values("conversation_id")
        first = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query).order_by("created_at")
        conversations = conversations.filter(Q(title__icontains=query) | Q(pk__in=in_messages)).annotate(
            match_id=Subquery(first.values("pk")[:1])
        )
    return conversations.order_by("-updated_at")


def message_excerpts(*, message_ids: list[Any], query: str, width: int = 120) -> dict[str, str]:
    """Each message's text around the first place it holds `query` (a search result's line)."""
    excerpts = {}
    needle = query.casefold()
    for pk, content in Message.objects.filter(pk__in=[m for m in message_ids if m]).values_list("pk", "content"):
        at = max(0, content.casefold().find(needle))
        start = max(0, at - width // 3)
        text = " ".join(content[start : start + width].split())
        excerpts[str(pk)] = ("…" if start else "") + text + ("…" if start + width < len(content) else "")
    return excerpts


def branch_to(*, conversation: Conversation, leaf_id: uuid.UUID | None) -> list[Message]:
    """Root-to-leaf list of the branch ending at `leaf_id`, read in one recursive query: a
    turn loads its own path, never the other branches of a long conversation."""
    if leaf_id is None:
        return []
    pk, conversation_pk = Message._meta.pk, Conversation._meta.pk
    assert pk is not None and conversation_pk is not None
    quote = connection.ops.quote_name
    table, key, parent = quote(Message._meta.db_table), quote("id"), quote("parent_id")
    columns = ", ".join(f"m.{quote(f.column)}" for f in Message._meta.concrete_fields)
    sql = (
        f"WITH RECURSIVE branch(id, depth) AS ("
        f"SELECT m.{key}, 0 FROM {table} m WHERE m.{key} = %s AND m.{quote('conversation_id')} = %s "
        f"UNION ALL SELECT m.{parent}, b.depth + 1 FROM {table} m JOIN branch b ON m.{key} = b.id "
        f"WHERE m.{parent} IS NOT NULL AND b.depth < %s"
        f") SELECT {columns} FROM {table} m JOIN branch b ON m.{key} = b.id ORDER BY b.depth DESC"
    )
    params = [
        pk.get_db_prep_value(leaf_id, connection),
        conversation_pk.get_db_prep_value(conversation.pk, connection),
        MAX_DEPTH,
    ]
    return list(Message.objects.raw(sql, params))


def share_get(*, share_id: str) -> Share:
    share = Share.objects.filter(pk=share_id).first() if len(share_id) <= 32 else None
    if share is None:
        raise Http404("No such share.")
    return share
