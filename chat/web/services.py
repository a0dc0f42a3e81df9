"""Writes for the browser product: conversations, turns, shares."""

from __future__ import annotations

import json
import secrets
import uuid
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Greatest
from django.utils import timezone

from chat.api.errors import ApiError
from chat.api.fields import string
from chat.models import Account, Conversation, Message, Share
from documents.models import Document
from projects.models import Project

from .selectors import branch_to

TITLE_LENGTH = 80
ATTACHMENT_KINDS = {"pdf", "image", "audio", "web", "url", "text", "document"}
MAX_ATTACHMENTS = 10
MAX_ATTACHMENT_TEXT = 400_000
MAX_CONTENT = 200_000
SHARE_ROLES = {"system", "user", "assistant"}


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def conversation_create(
    *,
    account: Account | int,
    owner_id: int | None = None,
    title: str = "",
    model: str = "",
    project: Project | None = None,
) -> Conversation:
    account_id = account if isinstance(account, int) else account.pk
    return Conversation.objects.create(
        account_id=account_id, owner_id=owner_id, title=title[:200], model=model[:200], project=project
    )


def project_for(*, account_id: int, owner_id: int | None, project_id: Any) -> Project | None:
    """The owner's project a chat goes into (`project_id` None: none); 400 when it is not
    theirs, or archived."""
    if project_id is None:
        return None
    try:
        pk = uuid.UUID(str(project_id))
    except ValueError:
        raise _bad("'project_id' must be a project id or null.", "project_id") from None
    project = Project.objects.filter(pk=pk, account_id=account_id, owner_id=owner_id).first()
    if project is None:
        raise _bad("'project_id' is not one of your projects.", "project_id")
    if project.archived_at is not None:
        raise _bad("That project is archived: restore it first.", "project_id")
    return project


@transaction.atomic
def conversation_update(
    *, conversation: Conversation, changes: dict[str, Any], key_id: int | None = None
) -> Conversation:
    """Rename, choose a model or system prompt, switch branch (`current_leaf`), move into or
    out of a project (`project_id`: its files are then embedded by the project's model, in a
    job billed to `key_id`), pin or unpin (`pinned`)."""
    fields = []
    if "project_id" in changes:
        project = project_for(
            account_id=conversation.account_id, owner_id=conversation.owner_id, project_id=changes["project_id"]
        )
        moved = project != conversation.project
        conversation.project = project
        fields.append("project")
        if moved:  # its job starts once this commits (a job that cannot be queued undoes the move)
            from documents.services import documents_follow

            documents_follow(conversation=conversation, key_id=key_id)
    if "pinned" in changes:
        pinned = changes["pinned"]
        if not isinstance(pinned, bool):
            raise _bad("'pinned' must be true or false.", "pinned")
        if pinned != (conversation.pinned_at is not None):
            conversation.pinned_at = timezone.now() if pinned else None
            fields.append("pinned_at")
    for name in ("title", "model", "system_prompt"):
        if name in changes:
            value = changes[name]
            if not isinstance(value, str):
                raise _bad(f"'{name}' must be a string.", name)
            if name == "system_prompt" and value and not settings.WEB["ALLOW_SYSTEM_PROMPT"]:
                raise ApiError(403, "This server does not allow custom system prompts.", param=name, code="forbidden")
            setattr(conversation, name, value[: 20_000 if name == "system_prompt" else 200])
            fields.append(name)
    if "current_leaf" in changes:
        leaf = changes["current_leaf"]
        if not conversation.messages.filter(pk=_uuid_or_400(leaf, "current_leaf")).exists():
            raise _bad("'current_leaf' is not a message of this conversation.", "current_leaf")
        conversation.current_leaf = uuid.UUID(str(leaf))
        fields.append("current_leaf")  # type: ignore[arg-type]
    if fields:
        conversation.save(update_fields=[*fields, "updated_at"])
    return conversation


def turn_bytes(content: str, attachments: list[dict[str, Any]] | None) -> int:
    """What a user turn keeps: its typed text and its attachments (as stored), in bytes."""
    size = len((content or "").encode("utf-8"))
    for item in attachments or []:
        size += len(json.dumps(item, ensure_ascii=False).encode("utf-8"))
    return size


def storage_take(*, account_id: int, size: int) -> None:
    """Count `size` more bytes against the account's storage quota, under its row lock (the
    caller's transaction): 413 storage_quota_exceeded, and nothing counted, when past it."""
    account = Account.objects.select_for_update().select_related("tier").get(pk=account_id)
    quota = account.tier.storage_bytes
    quota = quota if quota is not None else int(settings.WEB["STORAGE_BYTES"])
    if account.storage_used + size > quota:
        raise ApiError(
            413,
            f"Your chats keep {account.storage_used} of your {quota} bytes and this turn needs {size} more: "
            "delete some conversations first.",
            code="storage_quota_exceeded",
        )
    Account.objects.filter(pk=account_id).update(storage_used=F("storage_used") + size)


@transaction.atomic
def conversations_delete(*, conversations: QuerySet[Conversation]) -> int:
    """These conversations and their messages; their bytes go back to each account's quota.
    Returns how many conversations went."""
    freed: dict[int, int] = defaultdict(int)
    rows = Message.objects.filter(conversation__in=conversations, role=Message.Role.USER)
    for account_id, content, attachments in rows.values_list(
        "conversation__account_id", "content", "attachments"
    ).iterator():
        freed[account_id] += turn_bytes(content, attachments)
    from documents.services import documents_delete  # the files attached in them (their storage too)

    documents_delete(documents=Document.objects.filter(conversation__in=conversations))
    _, deleted = conversations.delete()
    for account_id, size in freed.items():
        Account.objects.filter(pk=account_id).update(storage_used=Greatest(F("storage_used") - size, 0))
    return deleted.get(Conversation._meta.label, 0)


def conversation_delete(*, conversation: Conversation) -> None:
    conversations_delete(conversations=Conversation.objects.filter(pk=conversation.pk))


def _uuid_or_400(value: Any, param: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _bad(f"'{param}' must be a message id.", param) from None


def clean_attachments(raw: Any) -> list[dict[str, Any]]:
    if raw in (None, []):
        return []
    if not isinstance(raw, list) or len(raw) > MAX_ATTACHMENTS:
        raise _bad(f"'attachments' must be a list of at most {MAX_ATTACHMENTS} items.", "attachments")
    clean = []
    for i, item in enumerate(raw):
        where = f"attachments[{i}]"
        if not isinstance(item, dict) or string(item.get("kind")) not in ATTACHMENT_KINDS:
            raise _bad(f"'{where}.kind' must be one of {', '.join(sorted(ATTACHMENT_KINDS))}.", f"{where}.kind")
        text = item.get("text", "")
        if not isinstance(text, str) or len(text) > MAX_ATTACHMENT_TEXT:
            raise _bad(f"'{where}.text' must be a string of at most {MAX_ATTACHMENT_TEXT} characters.", where)
        entry = {"kind": item["kind"], "name": str(item.get("name", ""))[:200], "text": text}
        if item["kind"] == "image":
            data_url = item.get("data_url")
            if not isinstance(data_url, str) or not data_url.startswith("data:image/"):
                raise _bad(f"'{where}.data_url' must be a data:image/… URL.", f"{where}.data_url")
            entry["data_url"] = data_url
        if item["kind"] == "document":  # a file indexed on the server (documents/): read by retrieval
            try:
                entry["document_id"] = str(uuid.UUID(str(item.get("document_id"))))
            except ValueError:
                raise _bad(f"'{where}.document_id' must be a document id.", f"{where}.document_id") from None
            entry["format"] = str(item.get("format") or "")[:16]
        for extra in ("pages", "job_id", "sources", "url"):
            if extra in item:
                entry[extra] = item[extra]
        clean.append(entry)
    return clean


@transaction.atomic
def turn_create(
    *,
    conversation: Conversation | None,
    account_id: int,
    owner_id: int | None = None,
    content: Any,
    attachments: Any,
    parent_id: Any,
    model: str,
    system_prompt: Any = None,
    project_id: Any = None,
    key_id: int | None = None,
) -> tuple[Conversation, Message, Message]:
    """A user message (a new branch when `parent_id` already has children) and the empty
    assistant message its generation will fill; with no `conversation`, a new one — in
    `project_id` when given (all or nothing: bad input leaves no empty conversation behind)."""
    if not isinstance(content, str) or len(content) > MAX_CONTENT:
        raise _bad(f"'content' must be a string of at most {MAX_CONTENT} characters.", "content")
    clean = clean_attachments(attachments)
    if not content.strip() and not clean:
        raise _bad("Write a message or attach something.", "content")
    project = (
        project_for(account_id=account_id, owner_id=owner_id, project_id=project_id) if conversation is None else None
    )
    storage_take(account_id=account_id, size=turn_bytes(content, clean))
    if conversation is None:
        conversation = conversation_create(account=account_id, owner_id=owner_id, model=model, project=project)
        if system_prompt:
            conversation_update(conversation=conversation, changes={"system_prompt": system_prompt})
    parent = None
    if parent_id is not None:
        parent = conversation.messages.filter(pk=_uuid_or_400(parent_id, "parent_id")).first()
        if parent is None:
            raise _bad("'parent_id' must be a message of this conversation.", "parent_id")
    user = Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.USER, content=content, attachments=clean
    )
    documents = [uuid.UUID(item["document_id"]) for item in clean if item["kind"] == "document"]
    if documents:
        from documents.services import documents_attach

        documents_attach(conversation=conversation, document_ids=documents, key_id=key_id)
    assistant = _assistant_for(conversation, user, model)
    if not conversation.title:
        conversation.title = _title(content, clean)
        conversation.save(update_fields=["title", "updated_at"])
    return conversation, user, assistant


@transaction.atomic
def regeneration_create(*, conversation: Conversation, message_id: Any, model: str) -> Message:
    """A new assistant answer beside an existing one (same user message)."""
    original = conversation.messages.filter(pk=_uuid_or_400(message_id, "regenerate")).first()
    if original is None or original.role != Message.Role.ASSISTANT or original.parent is None:
        raise _bad("'regenerate' must be an assistant message of this conversation.", "regenerate")
    return _assistant_for(conversation, original.parent, model)


def _assistant_for(conversation: Conversation, user: Message, model: str) -> Message:
    assistant = Message.objects.create(
        conversation=conversation,
        parent=user,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        model=model,
    )
    conversation.current_leaf = assistant.pk
    conversation.model = model
    conversation.save(update_fields=["current_leaf", "model", "updated_at"])
    return assistant


def _title(content: str, attachments: list[dict[str, Any]]) -> str:
    text = " ".join(content.split()) or (attachments[0]["name"] if attachments else "")
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1].rstrip() + "…"


def model_text(message: Message) -> str:
    """The text the model receives for a user message: what was typed, then each
    attachment's text, clearly delimited. The page shows this as "what the model saw"."""
    parts = [message.content]
    for item in message.attachments or []:
        if item.get("text"):
            parts.append(
                f"--- {item['kind'].upper()}: {item.get('name') or 'attachment'} ---\n{item['text']}\n--- end ---"
            )
    return "\n\n".join(p for p in parts if p)


def prompt_messages(*, conversation: Conversation, assistant: Message) -> list[dict[str, Any]]:
    """The OpenAI `messages` for generating `assistant`: the branch above it."""
    return history_messages(
        conversation=conversation, branch=branch_to(conversation=conversation, leaf_id=assistant.parent_id)
    )


def turn_preview(
    *, conversation: Conversation | None, body: dict[str, Any], account_id: int = 0, owner_id: int | None = None
) -> list[dict[str, Any]] | None:
    """The `messages` a turn (or a regeneration) would send, before any row is written;
    None for a malformed turn (its write says what is wrong). A new conversation's project
    is the owner's (`account_id`, `owner_id`)."""
    regenerate = body.get("regenerate")
    try:
        if regenerate:
            if conversation is None:
                return None
            original = conversation.messages.filter(pk=_uuid_or_400(regenerate, "regenerate")).first()
            if original is None or original.parent_id is None:
                return None
            return history_messages(
                conversation=conversation, branch=branch_to(conversation=conversation, leaf_id=original.parent_id)
            )
        content = body.get("content", "")
        if not isinstance(content, str) or len(content) > MAX_CONTENT:
            return None
        turn = Message(role=Message.Role.USER, content=content, attachments=clean_attachments(body.get("attachments")))
        parent_id = body.get("parent_id")
        leaf = _uuid_or_400(parent_id, "parent_id") if parent_id is not None and conversation is not None else None
        project = (
            project_for(account_id=account_id, owner_id=owner_id, project_id=body.get("project_id"))
            if conversation is None
            else None
        )
    except ApiError:
        return None
    draft = conversation or Conversation(system_prompt=str(body.get("system_prompt") or ""), project=project)
    branch = branch_to(conversation=conversation, leaf_id=leaf) if conversation is not None else []
    return history_messages(conversation=draft, branch=[*branch, turn])


def history_messages(*, conversation: Conversation, branch: list[Message]) -> list[dict[str, Any]]:
    """The OpenAI `messages` of a branch (root first), after one system message: the
    project's instructions, then the conversation's own system prompt."""
    history: list[dict[str, Any]] = []
    if settings.WEB["ALLOW_SYSTEM_PROMPT"]:
        project = conversation.project if conversation.project_id else None
        texts = [project.instructions if project else "", conversation.system_prompt]
        system = "\n\n".join(text for text in texts if text.strip())
        if system:
            history.append({"role": "system", "content": system})
    for message in branch:
        if message.role == Message.Role.ASSISTANT:
            if message.content:
                history.append({"role": "assistant", "content": message.content})
            continue
        images = [a for a in message.attachments or [] if a.get("kind") == "image"]
        text = model_text(message)
        if images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
            parts += [{"type": "image_url", "image_url": {"url": a["data_url"]}} for a in images]
            history.append({"role": "user", "content": parts})
        else:
            history.append({"role": "user", "content": text})
    return history


def message_mark_interrupted(*, message: Message) -> None:
    """A generation whose process died: keep the saved text, say what happened."""
    Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
        status=Message.Status.FAILED,
        error={"message": "The answer was interrupted (the server restarted).", "code": "interrupted"},
        updated_at=timezone.now(),
    )


# --- shares -----------------------------------------------------------------------------


def _check_blocks(blocks: Any) -> None:
    """The seed's body: [{"conv": {"id", "name"}, "messages": [{"role", "content", "timestamp"}]}]."""
    if not isinstance(blocks, list) or not blocks:
        raise _bad("The body must be a non-empty array of conversation blocks.", "body")
    for i, block in enumerate(blocks):
        where = f"[{i}]"
        if not isinstance(block, dict):
            raise _bad(f"'{where}' must be an object with 'conv' and 'messages'.", where)
        conv = block.get("conv")
        if not isinstance(conv, dict) or not isinstance(conv.get("id"), (str, int)) or isinstance(conv.get("id"), bool):
            raise _bad(f"'{where}.conv.id' must be a string or number.", f"{where}.conv.id")
        if not isinstance(conv.get("name", ""), str):
            raise _bad(f"'{where}.conv.name' must be a string.", f"{where}.conv.name")
        messages = block.get("messages")
        if not isinstance(messages, list):
            raise _bad(f"'{where}.messages' must be an array.", f"{where}.messages")
        for j, message in enumerate(messages):
            at = f"{where}.messages[{j}]"
            if not isinstance(message, dict):
                raise _bad(f"'{at}' must be an object.", at)
            if string(message.get("role")) not in SHARE_ROLES:
                raise _bad(f"'{at}.role' must be one of {', '.join(sorted(SHARE_ROLES))}.", f"{at}.role")
            if not isinstance(message.get("content"), str):
                raise _bad(f"'{at}.content' must be a string.", f"{at}.content")
            stamp = message.get("timestamp")
            if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, float, str))):
                raise _bad(f"'{at}.timestamp' must be a number or a string.", f"{at}.timestamp")


def share_create(*, account_id: int | None, blocks: Any, creator_bucket: str = "") -> Share:
    """The body's size limit is the view's (checked before the JSON is parsed); the owner's
    (or the anonymous address's) storage quota is checked here."""
    _check_blocks(blocks)
    snapshot = [
        {
            "conv": {"id": block["conv"]["id"], "name": block["conv"].get("name", "")},
            "messages": [
                {"role": m["role"], "content": m["content"], "timestamp": m.get("timestamp")} for m in block["messages"]
            ],
        }
        for block in blocks
    ]
    title = next((b["conv"]["name"] for b in snapshot if b["conv"]["name"]), "") or _first_text(snapshot)  # type: ignore[index]
    size = len(json.dumps(snapshot, ensure_ascii=False).encode())
    _check_share_quota(account_id=account_id, creator_bucket=creator_bucket, size=size)
    return Share.objects.create(
        id=secrets.token_urlsafe(16),  # 128 random bits, 22 URL-safe characters
        account_id=account_id,
        creator_bucket="" if account_id else creator_bucket,
        title=title[:200],
        snapshot=snapshot,
        size=size,
    )


def _check_share_quota(*, account_id: int | None, creator_bucket: str, size: int) -> None:
    if account_id:
        kept, quota = Share.objects.filter(account_id=account_id), settings.WEB["SHARE_STORAGE_BYTES"]
    else:
        kept = Share.objects.filter(account__isnull=True, creator_bucket=creator_bucket)
        quota = settings.WEB["SHARE_STORAGE_BYTES_ANONYMOUS"]
    used = kept.aggregate(total=Sum("size"))["total"] or 0
    if used + size > quota:
        raise ApiError(
            413,
            f"Your shares already take {used} of {quota} bytes; delete some before sharing more.",
            code="share_quota_exceeded",
        )


def _first_text(snapshot: list[dict[str, Any]]) -> str:
    for block in snapshot:
        for message in block["messages"]:
            if message["content"].strip():
                return _title(message["content"], [])
    return ""


def share_delete(*, share: Share, account_id: int) -> None:
    if share.account_id is None or share.account_id != account_id:
        raise ApiError(
            403, "Only the creator of a share can delete it.", error_type="permission_error", code="forbidden"
        )
    share.delete()


@transaction.atomic
def conversation_from_share(*, share: Share, account_id: int, owner_id: int | None = None) -> Conversation:
    """ "Continue this chat": the snapshot's messages become the visitor's own conversation."""
    copied = [item for block in share.snapshot for item in block["messages"] if item["role"] == "user"]
    storage_take(account_id=account_id, size=sum(turn_bytes(item["content"], None) for item in copied))
    conversation = conversation_create(account=account_id, owner_id=owner_id, title=share.title or "Shared chat")
    parent = None
    for block in share.snapshot:
        for item in block["messages"]:
            if item["role"] == "system":
                conversation.system_prompt = item["content"][:20_000]
                continue
            parent = Message.objects.create(
                conversation=conversation, parent=parent, role=item["role"], content=item["content"]
            )
    conversation.current_leaf = parent.pk if parent else None
    conversation.save(update_fields=["system_prompt", "current_leaf", "updated_at"])
    return conversation
