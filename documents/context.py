"""What a chat turn reads from its documents — on every turn, not only the first.

The documents in context are the project's files and the files attached on the turn's
branch. When all their text fits the chosen model's context (with room for the answer and
the conversation), it goes whole; otherwise the best passages for the question — asked in
the context of the conversation: the question alone and together with the previous one,
by meaning (vectors) and by words (full text), fused by reciprocal rank — as many as fit.
Either way the model gets numbered sources to cite as [1], [2], and the answer records
what went in (`Message.retrieval`), which the page shows under it: never a silent cut.

A question is embedded by each model that embedded the documents in context (the shipped
one; a project's routed model, billed to whoever asks) and compared with those documents'
passages only. Where a routed model cannot embed it (the balance, the upstream), those
documents are searched by their words alone and the line under the answer says so.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from chat.api.auth import Principal
from chat.api.errors import ApiError
from chat.models import Conversation, Message

from . import store
from .embedding import embed_routed, embed_texts
from .models import Document, Passage
from .passages import sentences
from .retrieval import fuse
from .selectors import documents_in_context

DEPTH = 50  # how deep each ranking goes before fusion
BYTES_PER_TOKEN = 3  # a conservative estimate for the chat model's tokens (real ones: 3.5–5 on English)
SOURCE_OVERHEAD = 16  # tokens of a source's label ("[3] report.pdf, page 12:")
INSTRUCTIONS = (
    "Sources from the user's documents follow, numbered. Answer from them where they help and cite "
    "each claim's source by its number in square brackets, like [1] or [2]. If they do not hold the "
    "answer, say so."
)


def estimate(text: str) -> int:
    return math.ceil(len(text.encode()) / BYTES_PER_TOKEN)


@dataclass
class Source:
    document: Document
    page: int | None
    heading: str
    texts: list[str]
    passages: list[int] = field(default_factory=list)

    def label(self, number: int) -> str:
        where = f", page {self.page}" if self.page else (f", “{self.heading}”" if self.heading else "")
        return f"[{number}] {self.document.name}{where}:"

    def body(self) -> dict[str, Any]:
        return {"document_id": str(self.document.pk), "name": self.document.name, "page": self.page}

    def text(self, number: int) -> str:
        return self.label(number) + "\n" + "\n".join(self.texts)


@dataclass
class Plan:
    """What a turn sends from its documents, ready to go into the prompt."""

    documents: list[Document]
    budget: int
    query: str
    context: str  # the previous user turn's text, for the question in context

    @property
    def ids(self) -> list[str]:
        return [store.document_key(d.pk) for d in self.documents]

    def by_model(self) -> dict[tuple[str, int], list[str]]:
        """The documents' keys by the model (and vector length) that embedded them."""
        groups: dict[tuple[str, int], list[str]] = {}
        for document in self.documents:
            groups.setdefault((document.embedding_model, document.dimensions), []).append(
                store.document_key(document.pk)
            )
        return groups


@dataclass
class Questions:
    """The question's vectors for each group of documents, and why a group has none."""

    groups: list[tuple[list[str], int, Any]] = field(default_factory=list)  # (keys, length, vectors)
    words_only: list[dict[str, str]] = field(default_factory=list)  # {"model", "reason"}


def _attached(branch: list[Message]) -> list[Any]:
    return [
        item.get("document_id")
        for message in branch
        if message.role == Message.Role.USER
        for item in message.attachments or []
        if isinstance(item, dict) and item.get("kind") == "document"
    ]


def plan(
    *,
    conversation: Conversation,
    branch: list[Message],
    history: list[dict[str, Any]],
    context_length: int,
    max_tokens: int | None,
) -> Plan | None:
    """(Sync.) The documents this turn reads and the tokens they may take; None without any."""
    documents = [
        d
        for d in documents_in_context(conversation=conversation, attached=_attached(branch))
        if d.status == Document.Status.READY
    ]
    if not documents:
        return None
    asked = [m.content for m in branch if m.role == Message.Role.USER]
    used = sum(estimate(str(m.get("content") or "")) + 8 for m in history)
    reserve = max_tokens or settings.DOCUMENTS["ANSWER_TOKENS"]
    budget = context_length - reserve - used - estimate(INSTRUCTIONS) - 32
    return Plan(documents, max(budget, 0), asked[-1] if asked else "", asked[-2] if len(asked) > 1 else "")


def _follows(first: Passage, then: Passage) -> bool:
    return first.document_id == then.document_id and first.ordinal + 1 == then.ordinal


def _sources(passages: list[Passage], documents: dict[Any, Document]) -> list[Source]:
    """Passages grouped by document and page (or section), in the order given. A passage
    that follows the one before it opens with that one's last sentence when it was short
    (documents.passages): read together, it is said once."""
    grouped: OrderedDict[tuple[Any, Any, str], Source] = OrderedDict()
    previous: Passage | None = None
    for passage in passages:
        key = (passage.document_id, passage.page, passage.heading if passage.page is None else "")
        if key not in grouped:
            grouped[key] = Source(documents[passage.document_id], passage.page, passage.heading, [])
        text = passage.text
        if previous is not None and grouped[key].texts and _follows(previous, passage):
            carried = sentences(previous.text)[-1:]
            if carried and text.startswith(carried[0]):
                text = text[len(carried[0]) :].lstrip()
        if text:
            grouped[key].texts.append(text)
        grouped[key].passages.append(passage.pk)
        previous = passage
    return list(grouped.values())


def whole(chosen: Plan) -> list[Source] | None:
    """(Sync.) Every document's text as sources, page by page — None when it does not fit."""
    total = sum(d.text_bytes for d in chosen.documents)
    pages = sum(max(d.pages, 1) for d in chosen.documents)
    if math.ceil(total / BYTES_PER_TOKEN) + pages * SOURCE_OVERHEAD > chosen.budget:
        return None
    passages = list(
        Passage.objects.filter(document__in=chosen.documents).order_by("document__created_at", "document_id", "ordinal")
    )
    return _sources(passages, {d.pk: d for d in chosen.documents})


def best(chosen: Plan, questions: Questions) -> list[Source]:
    """(Sync.) The best passages for the question, as many as fit the budget. `questions`:
    for each group of documents, the question's embedding and the question's with the
    previous turn's, by the group's model."""
    rankings = [
        store.nearest(vector, keys, DEPTH, dimensions=dimensions)
        for keys, dimensions, vectors in questions.groups
        for vector in vectors
    ]
    rankings.append(store.matching(chosen.query, chosen.ids, DEPTH))
    ranked = [pk for pk, _ in fuse(rankings)]
    rows = Passage.objects.in_bulk(ranked[: DEPTH * 2])
    picked: list[Passage] = []
    left = chosen.budget
    for pk in ranked:
        passage = rows.get(pk)
        if passage is None:
            continue
        cost = estimate(passage.text) + SOURCE_OVERHEAD
        if cost > left:
            continue
        picked.append(passage)
        left -= cost
        if len(picked) >= settings.DOCUMENTS["CONTEXT_PASSAGES"]:
            break
    return _sources(picked, {d.pk: d for d in chosen.documents})


def record(
    chosen: Plan, sources: list[Source], *, mode: str, words_only: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """What went in, as the answer keeps it (`Message.retrieval`) and the page shows it."""
    pages_total = sum(max(d.pages, 1) for d in chosen.documents)
    pages_sent = len({(s.document.pk, s.page, s.heading) for s in sources}) if mode == "passages" else pages_total
    return {
        "mode": mode,
        "files": len({s.document.pk for s in sources}),
        "files_total": len(chosen.documents),
        "passages": sum(len(s.texts) for s in sources),
        "pages_total": pages_total,
        "pages_sent": pages_sent,
        "sources": [{"n": n, **source.body()} for n, source in enumerate(sources, start=1)],
        "passage_ids": [source.passages for source in sources],
        # Documents whose model could not embed the question: searched by their words alone.
        "words_only": words_only or [],
    }


def sources_text(sources: list[Source]) -> str:
    """The numbered sources as the model reads them."""
    return "\n\n".join([INSTRUCTIONS, *(source.text(n) for n, source in enumerate(sources, start=1))])


def sent_sources(message: Message) -> str:
    """(Sync.) What an answer was given from its documents, rebuilt from the passages it
    recorded ("" when it read none; a passage deleted since is left out)."""
    record = message.retrieval or {}
    ids = record.get("passage_ids") or []
    rows = Passage.objects.in_bulk([pk for group in ids for pk in group])
    documents = {d.pk: d for d in Document.objects.filter(pk__in={p.document_id for p in rows.values()})}
    sources = []
    for group in ids:
        passages = [rows[pk] for pk in group if pk in rows]
        sources += _sources(passages, documents) if passages else []
    return sources_text(sources) if sources else ""


def prompt_with(history: list[dict[str, Any]], sources: list[Source]) -> list[dict[str, Any]]:
    """The turn's messages with the numbered sources after the user's question."""
    if not sources or not history or history[-1].get("role") != "user":
        return history
    text = sources_text(sources)
    last = dict(history[-1])
    content = last.get("content")
    if isinstance(content, list):
        last["content"] = [*content, {"type": "text", "text": text}]
    else:
        last["content"] = f"{content}\n\n{text}" if content else text
    return [*history[:-1], last]


async def embed_questions(chosen: Plan, principal: Principal) -> Questions:
    """The question (and the question with the previous one) embedded by each model that
    embedded the documents; a routed model that cannot (402, its upstream down) leaves its
    documents to the word search, with a note saying so."""
    texts = [chosen.query] + ([f"{chosen.context}\n{chosen.query}"] if chosen.context else [])
    questions = Questions()
    for (model, dimensions), keys in chosen.by_model().items():
        if not model:
            vectors = await sync_to_async(embed_texts, thread_sensitive=False)(texts)
        else:
            try:
                vectors = await embed_routed(model, principal, texts, purpose="question")
            except ApiError as exc:
                questions.words_only.append({"model": model, "reason": exc.message})
                continue
        questions.groups.append((keys, dimensions, vectors))
    return questions


async def for_turn(
    *,
    principal: Principal,
    conversation: Conversation,
    assistant: Message,
    branch: list[Message],
    history: list[dict[str, Any]],
    context_length: int,
    max_tokens: int | None,
) -> list[dict[str, Any]]:
    """`history` with what the turn reads from its documents; the answer records what went in."""
    chosen = await sync_to_async(plan)(
        conversation=conversation, branch=branch, history=history, context_length=context_length, max_tokens=max_tokens
    )
    if chosen is None:
        return history
    sources, mode, words_only = await sync_to_async(whole)(chosen), "whole", []
    if sources is None:
        questions = await embed_questions(chosen, principal)
        sources, mode, words_only = await sync_to_async(best)(chosen, questions), "passages", questions.words_only
    assistant.retrieval = record(chosen, sources, mode=mode, words_only=words_only)
    await Message.objects.filter(pk=assistant.pk).aupdate(retrieval=assistant.retrieval)
    return prompt_with(history, sources)
