"""Splitting a document's text into passages the embedding model reads whole.

all-MiniLM-L6-v2 reads 256 word pieces ([CLS] and [SEP] among them) and silently drops the
rest, so a passage is measured with the model's own WordPiece tokenizer, never by characters
or words: at most PASSAGE_TOKENS pieces, packed from whole sentences, never across a page
(a citation names one page) or a section. A sentence longer than a passage is cut between
words. The last sentence of a passage opens the next one too when it is short, so a fact
split across the boundary is whole in one of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from chat.backends.embeddings import MAX_TOKENS, _tokenizer_path

PASSAGE_TOKENS = MAX_TOKENS - 2  # the model's window less [CLS] and [SEP]
OVERLAP_TOKENS = PASSAGE_TOKENS // 4  # the longest sentence carried into the next passage

_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-ZА-ЯЁ0-9])")
_PARAGRAPHS = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Section:
    """A piece of a document's text and where it is: a page (PDF) and/or a heading."""

    text: str
    page: int | None = None
    heading: str = ""


@dataclass(frozen=True)
class Passage:
    text: str
    page: int | None
    heading: str
    tokens: int  # word pieces, without [CLS] and [SEP]


@functools.cache
def _tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(_tokenizer_path())
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def word_pieces(text: str) -> int:
    """How many word pieces the embedding model reads for `text` ([CLS] and [SEP] not counted)."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def sentences(text: str) -> list[str]:
    out: list[str] = []
    for paragraph in _PARAGRAPHS.split(text):
        flat = " ".join(paragraph.split())
        if flat:
            out.extend(s for s in _SENTENCE_END.split(flat) if s)
    return out


def split(
    sections: Iterable[Section], *, limit: int = PASSAGE_TOKENS, count: Callable[[str], int] = word_pieces
) -> list[Passage]:
    """The sections' text as passages of at most `limit` word pieces each, in order."""
    passages: list[Passage] = []
    for section in sections:
        passages.extend(_split_section(section, limit, count))
    return passages


def _split_section(section: Section, limit: int, count: Callable[[str], int]) -> list[Passage]:
    pieces: list[tuple[str, int]] = []
    for sentence in sentences(section.text):
        size = count(sentence)
        if size <= limit:
            pieces.append((sentence, size))
        else:
            pieces.extend(_cut(sentence, limit, count))
    out: list[Passage] = []
    current: list[tuple[str, int]] = []

    def flush() -> None:
        text = " ".join(s for s, _ in current)
        out.append(Passage(text=text, page=section.page, heading=section.heading, tokens=count(text)))

    for piece in pieces:
        candidate = [*current, piece]
        if current and count(" ".join(s for s, _ in candidate)) > limit:
            flush()
            last = current[-1]
            current = [last, piece] if last[1] <= OVERLAP_TOKENS and last[1] + piece[1] <= limit else [piece]
            if len(current) == 2 and count(" ".join(s for s, _ in current)) > limit:
                current = [piece]
        else:
            current = candidate
    if current:
        flush()
    return out


def _cut(sentence: str, limit: int, count: Callable[[str], int]) -> list[tuple[str, int]]:
    """A sentence longer than a passage, cut between words into pieces of at most `limit`."""
    words = sentence.split()
    out: list[tuple[str, int]] = []
    start = 0
    while start < len(words):
        low, high = start + 1, len(words)  # the longest run of words from `start` that fits
        while low < high:
            middle = (low + high + 1) // 2
            if count(" ".join(words[start:middle])) <= limit:
                low = middle
            else:
                high = middle - 1
        text = " ".join(words[start:low])
        out.append((text, count(text)))  # a single word longer than the limit stays whole: the model cuts it
        start = low
    return out
