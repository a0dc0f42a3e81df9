"""Wire shapes of the browser product's JSON (plain dicts: a public contract)."""

from __future__ import annotations

from typing import Any

from chat.models import Conversation, Message


def conversation_body(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.pk),
        "object": "conversation",
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "current_leaf": str(conversation.current_leaf) if conversation.current_leaf else None,
        "project_id": str(conversation.project_id) if conversation.project_id else None,
        "pinned": conversation.pinned_at is not None,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


def message_body(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.pk),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "content": message.content,
        "attachments": message.attachments,
        "status": message.status,
        "error": message.error,
        "model": message.model,
        "retrieval": message.retrieval,
        "created_at": message.created_at.isoformat(),
    }
