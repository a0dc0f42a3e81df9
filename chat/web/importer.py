"""Importing chats from elsewhere: GhostGPT's own export (docs/export.md: the ZIP or one
conversation's JSON), ChatGPT's `conversations.json`, Open WebUI's chat export and
LibreChat's conversation export. Each source becomes conversations whose messages keep
their tree (edits and regenerations stay branches) and the branch that was on screen.

JSON arrays are read item by item (ijson), so one conversation at a time is in memory. The
whole import is one transaction: a malformed file changes nothing, and the error names the
path of the first bad field (`[3].mapping.n1.message.author.role`). What a source refers to
but does not contain (ChatGPT's uploaded files and images) is listed on its message as a
missing attachment.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import ijson
from django.db import transaction
from django.utils import timezone

from chat.models import Conversation, Message
from projects.models import Project

ROLES = {"user": Message.Role.USER, "assistant": Message.Role.ASSISTANT}
TITLE_MAX = 200
ENTRY_MAX_BYTES = 64 * 1024 * 1024  # one conversation of a GhostGPT ZIP, unpacked


class ImportRefused(Exception):
    """The file is not one this reads; `path` names the first bad field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.message = str(self)


@dataclass
class Turn:
    key: str
    parent: str | None
    role: str
    content: str
    model: str = ""
    created: datetime | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Chat:
    title: str
    turns: list[Turn]
    current: str | None = None
    model: str = ""
    system_prompt: str = ""
    created: datetime | None = None
    updated: datetime | None = None
    project: str | None = None  # the source's project id (GhostGPT's export: projects.json)
    pinned: bool = False
    source: str | None = None  # the source's conversation id (GhostGPT's export: its documents name it)


@dataclass
class ProjectSpec:
    key: str
    name: str
    instructions: str = ""
    archived: bool = False
    created: datetime | None = None


# --- reading what a field holds -------------------------------------------------------------


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImportRefused(path, "expected an object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ImportRefused(path, "expected a list")
    return value


def _text(value: Any, path: str, *, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise ImportRefused(path, "expected a string")
    return value


def _time(value: Any, path: str) -> datetime | None:
    """Seconds since 1970 (ChatGPT, Open WebUI: maybe milliseconds) or an ISO 8601 string."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ImportRefused(path, "expected a time")
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds (or finer)
            seconds /= 1000 if seconds < 1e14 else 1e9
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ImportRefused(path, "a time out of range") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ImportRefused(path, f"not a time: {value[:40]!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ImportRefused(path, "expected a time")


# --- the sources ---------------------------------------------------------------------------


def ghostgpt_chat(document: Any, path: str) -> Chat:
    data = _object(document, path)
    turns = []
    for i, item in enumerate(_list(data.get("messages"), f"{path}.messages")):
        where = f"{path}.messages[{i}]"
        message = _object(item, where)
        role = _text(message.get("role"), f"{where}.role")
        if role not in ROLES:
            raise ImportRefused(f"{where}.role", "expected 'user' or 'assistant'")
        attachments = _list(message.get("attachments") or [], f"{where}.attachments")
        turns.append(
            Turn(
                key=_text(message.get("id"), f"{where}.id"),
                parent=_text(message.get("parent_id"), f"{where}.parent_id") or None,
                role=role,
                content=_text(message.get("content"), f"{where}.content"),
                model=_text(message.get("model"), f"{where}.model"),
                created=_time(message.get("created_at"), f"{where}.created_at"),
                attachments=[_object(a, f"{where}.attachments[{n}]") for n, a in enumerate(attachments)],
            )
        )
    return Chat(
        title=_text(data.get("title"), f"{path}.title"),
        turns=turns,
        current=_text(data.get("current_leaf"), f"{path}.current_leaf") or None,
        model=_text(data.get("model"), f"{path}.model"),
        system_prompt=_text(data.get("system_prompt"), f"{path}.system_prompt"),
        created=_time(data.get("created_at"), f"{path}.created_at"),
        updated=_time(data.get("updated_at"), f"{path}.updated_at"),
        project=_text(data.get("project_id"), f"{path}.project_id") or None,
        pinned=data.get("pinned") is True,
        source=str(data.get("id") or "") or None,
    )


def ghostgpt_projects(document: Any, path: str) -> list[ProjectSpec]:
    data = _object(document, path)
    specs = []
    for i, item in enumerate(_list(data.get("projects"), f"{path}.projects")):
        where = f"{path}.projects[{i}]"
        project = _object(item, where)
        name = _text(project.get("name"), f"{where}.name").strip()
        if not name:
            raise ImportRefused(f"{where}.name", "a project needs a name")
        specs.append(
            ProjectSpec(
                key=_text(project.get("id"), f"{where}.id"),
                name=name[:TITLE_MAX],
                instructions=_text(project.get("instructions"), f"{where}.instructions"),
                archived=project.get("archived") is True,
                created=_time(project.get("created_at"), f"{where}.created_at"),
            )
        )
    return specs


def chatgpt_chat(document: Any, path: str) -> Chat:
    """One item of ChatGPT's conversations.json: a `mapping` of nodes (id, message or null,
    parent, children) and the `current_node` on screen. System and tool messages are left
    out (their children hang from the nearest message kept); files and images it names are
    listed as missing attachments."""
    data = _object(document, path)
    mapping = _object(data.get("mapping"), f"{path}.mapping")
    kept: dict[str, Turn] = {}
    parents: dict[str, str | None] = {}
    for node_id, item in mapping.items():
        where = f"{path}.mapping.{node_id}"
        node = _object(item, where)
        parents[node_id] = _text(node.get("parent"), f"{where}.parent") or None
        if node.get("message") is None:
            continue
        message = _object(node["message"], f"{where}.message")
        role = _text(
            _object(message.get("author"), f"{where}.message.author").get("role"), f"{where}.message.author.role"
        )
        if role not in ROLES:
            continue
        content = _object(message.get("content"), f"{where}.message.content")
        texts, missing = [], []
        for n, part in enumerate(_list(content.get("parts") or [], f"{where}.message.content.parts")):
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                name = part.get("asset_pointer") or part.get("name") or part.get("content_type") or "attachment"
                missing.append({"kind": "file", "name": str(name), "missing": True})
            else:
                raise ImportRefused(f"{where}.message.content.parts[{n}]", "expected a string or an object")
        if "text" in content and not texts:  # code, execution output…
            texts.append(_text(content.get("text"), f"{where}.message.content.text"))
        metadata = _object(message.get("metadata") or {}, f"{where}.message.metadata")
        for n, attachment in enumerate(
            _list(metadata.get("attachments") or [], f"{where}.message.metadata.attachments")
        ):
            name = _object(attachment, f"{where}.message.metadata.attachments[{n}]").get("name") or "attachment"
            missing.append({"kind": "file", "name": str(name), "missing": True})
        text = "".join(texts)
        if not text and not missing:
            continue  # an empty turn (a hidden system prompt, a tool call's shell)
        model = metadata.get("model_slug")
        kept[node_id] = Turn(
            key=node_id,
            parent=None,
            role=role,
            content=text,
            model=str(model or ""),
            created=_time(message.get("create_time"), f"{where}.message.create_time"),
            attachments=missing,
        )
    for node_id, turn in kept.items():  # the nearest kept ancestor (bounded: no cycles)
        parent, hops = parents.get(node_id), 0
        while parent is not None and parent not in kept and hops < len(parents):
            parent, hops = parents.get(parent), hops + 1
        turn.parent = parent if parent in kept else None
    current = _text(data.get("current_node"), f"{path}.current_node") or None
    hops = 0
    while current is not None and current not in kept and hops < len(parents):
        current, hops = parents.get(current), hops + 1
    return Chat(
        title=_text(data.get("title"), f"{path}.title"),
        turns=list(kept.values()),
        current=current if current in kept else None,
        created=_time(data.get("create_time"), f"{path}.create_time"),
        updated=_time(data.get("update_time"), f"{path}.update_time"),
    )


def open_webui_chat(document: Any, path: str) -> Chat:
    """One item of Open WebUI's chat export: `chat.history.messages` by id (parentId,
    role, content, model, timestamp) and `chat.history.currentId`."""
    data = _object(document, path)
    chat = _object(data.get("chat"), f"{path}.chat")
    history = _object(chat.get("history"), f"{path}.chat.history")
    messages = _object(history.get("messages"), f"{path}.chat.history.messages")
    turns = []
    for message_id, item in messages.items():
        where = f"{path}.chat.history.messages.{message_id}"
        message = _object(item, where)
        role = _text(message.get("role"), f"{where}.role")
        if role not in ROLES:
            continue
        turns.append(
            Turn(
                key=message_id,
                parent=_text(message.get("parentId"), f"{where}.parentId") or None,
                role=role,
                content=_text(message.get("content"), f"{where}.content"),
                model=_text(message.get("model"), f"{where}.model"),
                created=_time(message.get("timestamp"), f"{where}.timestamp"),
            )
        )
    return Chat(
        title=_text(data.get("title") or chat.get("title"), f"{path}.title"),
        turns=turns,
        current=_text(history.get("currentId"), f"{path}.chat.history.currentId") or None,
        created=_time(data.get("created_at"), f"{path}.created_at"),
        updated=_time(data.get("updated_at"), f"{path}.updated_at"),
    )


LIBRECHAT_ROOT = "00000000-0000-0000-0000-000000000000"


def librechat_chat(document: Any, path: str) -> Chat:
    """LibreChat's conversation export: `messages` (messageId, parentMessageId — the zero
    UUID for the first — isCreatedByUser, text or content parts, model, createdAt)."""
    data = _object(document, path)
    turns = []
    for i, item in enumerate(_list(data.get("messages"), f"{path}.messages")):
        where = f"{path}.messages[{i}]"
        message = _object(item, where)
        text = message.get("text")
        if not text and isinstance(message.get("content"), list):
            text = "".join(str(part.get("text") or "") for part in message["content"] if isinstance(part, dict))
        parent = _text(message.get("parentMessageId"), f"{where}.parentMessageId") or None
        turns.append(
            Turn(
                key=_text(message.get("messageId"), f"{where}.messageId"),
                parent=None if parent == LIBRECHAT_ROOT else parent,
                role="user" if message.get("isCreatedByUser") else "assistant",
                content=_text(text, f"{where}.text"),
                model=_text(message.get("model"), f"{where}.model"),
                created=_time(message.get("createdAt"), f"{where}.createdAt"),
            )
        )
    return Chat(
        title=_text(data.get("title"), f"{path}.title"),
        turns=turns,
        current=turns[-1].key if turns else None,
        created=_time(data.get("createdAt"), f"{path}.createdAt"),
        updated=_time(data.get("updatedAt"), f"{path}.updatedAt"),
    )


def readable(head: bytes) -> bool:
    """Whether a file's first bytes are a ZIP's or JSON's: all the sources are one of them."""
    return head.startswith(b"PK") or head.lstrip()[:1] in (b"[", b"{")


def chats(
    file: IO[bytes], projects: list[ProjectSpec] | None = None, documents: list[Any] | None = None
) -> Iterator[Chat]:
    """The chats in a file of any of the sources, one at a time; a GhostGPT ZIP's projects
    and documents are put in `projects` and `documents` before its first chat."""
    head = file.read(64)
    file.seek(0)
    if head.startswith(b"PK"):
        yield from _ghostgpt_zip(
            file, projects if projects is not None else [], documents if documents is not None else []
        )
        return
    start = head.lstrip()[:1]
    if start == b"[":
        try:
            for i, item in enumerate(ijson.items(file, "item", use_float=True)):
                yield _array_item(item, f"[{i}]")
        except ijson.JSONError as exc:
            raise ImportRefused("", f"not JSON ({exc})") from None
        return
    if start != b"{":
        raise ImportRefused("", "not an export this server reads: a ZIP or JSON is expected")
    try:
        document = next(ijson.items(file, "", use_float=True))
    except (ijson.JSONError, StopIteration) as exc:
        raise ImportRefused("", f"not JSON ({exc})") from None
    if isinstance(document, dict) and document.get("format") == "ghostgpt.export":
        yield ghostgpt_chat(document, "")
    elif isinstance(document, dict) and "conversationId" in document:
        yield librechat_chat(document, "")
    elif isinstance(document, dict) and "mapping" in document:
        yield chatgpt_chat(document, "")
    else:
        raise ImportRefused("", "not an export this server reads (GhostGPT, ChatGPT, Open WebUI, LibreChat)")


def _array_item(item: Any, path: str) -> Chat:
    data = _object(item, path)
    if "mapping" in data:
        return chatgpt_chat(data, path)
    if "chat" in data:
        return open_webui_chat(data, path)
    if "conversationId" in data:
        return librechat_chat(data, path)
    if data.get("format") == "ghostgpt.export":
        return ghostgpt_chat(data, path)
    raise ImportRefused(path, "not a conversation of a known export (no mapping, chat or messages)")


def _ghostgpt_zip(file: IO[bytes], projects: list[ProjectSpec], documents: list[Any]) -> Iterator[Chat]:
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise ImportRefused("", "a damaged ZIP") from None
    entries = {info.filename: info for info in archive.infolist()}
    if "projects.json" in entries:
        projects += ghostgpt_projects(_zip_json(archive, entries["projects.json"]), "projects.json")
    if "documents.json" in entries:
        from documents.importing import document_specs

        documents += document_specs(_zip_json(archive, entries["documents.json"]), "documents.json", archive, entries)
    for name, info in sorted(entries.items()):
        if name.startswith("conversations/") and name.endswith(".json"):
            yield ghostgpt_chat(_zip_json(archive, info), name)


def _zip_json(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    if info.file_size > ENTRY_MAX_BYTES:  # an entry is read whole: not a ZIP bomb
        raise ImportRefused(info.filename, f"larger than {ENTRY_MAX_BYTES} bytes unpacked")
    try:
        return json.loads(archive.read(info.filename))
    except (ValueError, zipfile.BadZipFile) as exc:
        raise ImportRefused(info.filename, f"not JSON ({exc})") from None


# --- saving --------------------------------------------------------------------------------


def import_chats(
    file: IO[bytes], *, account_id: int, owner_id: int | None, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Every chat of the file, in one transaction; returns what was imported."""
    size = max(_size(file), 1)
    conversations = messages = 0
    missing: list[str] = []
    specs: list[ProjectSpec] = []
    projects: dict[str, Project] = {}
    files: list[Any] = []  # the ZIP's documents (documents.importing.DocumentSpec)
    made: dict[str, Any] | None = None
    with transaction.atomic():
        for chat in chats(file, specs, files):
            if len(specs) > len(projects):  # the ZIP's projects.json, read before its first chat
                _save_projects(specs, projects, account_id=account_id, owner_id=owner_id)
            if files and made is None:  # its documents.json too: the files, to be indexed again
                made = _restore_documents(files, account_id=account_id, owner_id=owner_id, projects=projects)
            if made:
                from documents.importing import attachments_remap

                for turn in chat.turns:
                    turn.attachments = attachments_remap(turn.attachments, made)
            saved, missing_here, conversation = _save(
                chat, account_id=account_id, owner_id=owner_id, project=projects.get(chat.project or "")
            )
            if made and chat.source:
                from documents.importing import documents_place

                documents_place(files, made, source=chat.source, chat=conversation)
            conversations += 1
            messages += saved
            missing += missing_here
            if progress is not None:
                progress(min(99, int(file.tell() * 100 / size)))
        _save_projects(specs, projects, account_id=account_id, owner_id=owner_id)
        if files and made is None:
            made = _restore_documents(files, account_id=account_id, owner_id=owner_id, projects=projects)
    return {
        "conversations": conversations,
        "messages": messages,
        "projects": len(projects),
        "documents": len(made or {}),
        "missing_attachments": missing[:100],
    }


def _save_projects(
    specs: list[ProjectSpec], saved: dict[str, Project], *, account_id: int, owner_id: int | None
) -> None:
    """The export's projects not made yet, as new projects of the importer's (new ids)."""
    for spec in specs:
        if spec.key in saved:
            continue
        project = Project.objects.create(
            account_id=account_id,
            owner_id=owner_id,
            name=spec.name,
            instructions=spec.instructions,
            archived_at=timezone.now() if spec.archived else None,
        )
        if spec.created:
            Project.objects.filter(pk=project.pk).update(created_at=spec.created)
        saved[spec.key] = project


def _size(file: IO[bytes]) -> int:
    where = file.tell()
    file.seek(0, io.SEEK_END)
    size = file.tell()
    file.seek(where)
    return size


def _restore_documents(
    files: list[Any], *, account_id: int, owner_id: int | None, projects: dict[str, Project]
) -> dict[str, Any]:
    from documents.importing import documents_restore

    return documents_restore(files, account_id=account_id, owner_id=owner_id, projects=projects)


def _save(
    chat: Chat, *, account_id: int, owner_id: int | None, project: Project | None
) -> tuple[int, list[str], Conversation]:
    ids = {turn.key: uuid.uuid4() for turn in chat.turns}
    if len(ids) != len(chat.turns):
        seen: set[str] = set()
        twice = next(turn.key for turn in chat.turns if turn.key in seen or seen.add(turn.key))  # type: ignore[func-returns-value]
        raise ImportRefused(f"{chat.title or 'a conversation'}", f"two messages share the id {twice[:60]!r}")
    now = timezone.now()
    conversation = Conversation.objects.create(
        account_id=account_id,
        owner_id=owner_id,
        title=(chat.title or "Imported chat")[:TITLE_MAX],
        model=chat.model[:200],
        system_prompt=chat.system_prompt,
        project=project,
        pinned_at=now if chat.pinned else None,
    )
    rows = []
    for turn in _parents_first(chat.turns):
        parent = ids.get(turn.parent) if turn.parent else None
        rows.append(
            Message(
                id=ids[turn.key],
                conversation=conversation,
                parent_id=parent,
                role=ROLES[turn.role],
                content=turn.content,
                attachments=turn.attachments,
                model=turn.model[:200],
            )
        )
    created = Message.objects.bulk_create(rows, batch_size=500)
    stamps = {turn.key: turn.created for turn in chat.turns}
    keys = {value: key for key, value in ids.items()}
    for row in created:  # bulk_create stamps "now"; the source's own times, where it has them
        row.created_at = stamps.get(keys[row.id]) or now
    Message.objects.bulk_update(created, ["created_at"], batch_size=500)
    leaf = ids.get(chat.current) if chat.current else None
    if leaf is None and created:
        leaf = max(created, key=lambda row: row.created_at).id
    Conversation.objects.filter(pk=conversation.pk).update(
        current_leaf=leaf, created_at=chat.created or now, updated_at=chat.updated or chat.created or now
    )
    missing = [str(a.get("name")) for turn in chat.turns for a in turn.attachments if a.get("missing")]
    return len(created), missing, conversation


def _parents_first(turns: list[Turn]) -> list[Turn]:
    """Roots first, then each message after its parent; a parent the file does not hold
    makes a root; a cycle is broken where it is found."""
    by_key = {turn.key: turn for turn in turns}
    children: dict[str | None, list[Turn]] = {}
    for turn in turns:
        parent = turn.parent if turn.parent in by_key and turn.parent != turn.key else None
        turn.parent = parent
        children.setdefault(parent, []).append(turn)
    ordered, seen = [], set()
    stack = list(reversed(children.get(None, [])))
    while stack:
        turn = stack.pop()
        if turn.key in seen:
            continue
        seen.add(turn.key)
        ordered.append(turn)
        stack.extend(reversed(children.get(turn.key, [])))
    for turn in turns:  # in a cycle: no path from a root reaches it
        if turn.key not in seen:
            turn.parent = None
            seen.add(turn.key)
            ordered.append(turn)
    return ordered
