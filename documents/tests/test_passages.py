"""Passages fit the embedding model's window, measured in its own word pieces."""

from __future__ import annotations

from chat.backends.embeddings import MAX_TOKENS
from documents.passages import PASSAGE_TOKENS, Section, sentences, split, word_pieces

SENTENCE = "The lighthouse keeper of Karsk Point logged {n} ships passing in the autumn fog of {year}."


def test_a_long_section_becomes_passages_that_the_model_reads_whole() -> None:
    text = " ".join(SENTENCE.format(n=n, year=1800 + n) for n in range(200))
    passages = split([Section(text, page=3, heading="Logbook")])
    assert len(passages) > 5
    assert all(p.tokens <= PASSAGE_TOKENS == MAX_TOKENS - 2 for p in passages)
    assert all(word_pieces(p.text) == p.tokens for p in passages)
    assert all(p.page == 3 and p.heading == "Logbook" for p in passages)
    # Every sentence is in a passage, whole, in order.
    joined = " ".join(p.text for p in passages)
    assert all(SENTENCE.format(n=n, year=1800 + n) in joined for n in range(200))
    # Passages are packed: each but the last is more than half full.
    assert all(p.tokens > PASSAGE_TOKENS // 2 for p in passages[:-1])


def test_a_passage_never_spans_two_pages() -> None:
    pages = [Section("First page. It is short.", page=1), Section("Second page. Also short.", page=2)]
    passages = split(pages)
    assert [(p.page, p.text) for p in passages] == [(1, "First page. It is short."), (2, "Second page. Also short.")]


def test_a_sentence_longer_than_a_passage_is_cut_between_words() -> None:
    words = " ".join(f"word{n}" for n in range(600))  # far more than 254 word pieces, no full stop
    passages = split([Section(words)])
    assert len(passages) >= 3 and all(p.tokens <= PASSAGE_TOKENS for p in passages)
    assert " ".join(p.text for p in passages).split() == words.split()  # nothing lost, no word split


def test_a_short_last_sentence_opens_the_next_passage_too() -> None:
    long = "Alpha " * 150 + "ends here."
    text = f"{long} The short bridge. {long}"
    passages = split([Section(text)], limit=200)
    assert len(passages) == 2
    assert passages[0].text.endswith("ends here. The short bridge.")  # it ended the first passage
    assert passages[1].text.startswith("The short bridge. Alpha")  # and opens the second


def test_sentences_and_paragraphs() -> None:
    assert sentences("One. Two!  Three?\n\nFour\nstill four. 5 items.") == [
        "One.",
        "Two!",
        "Three?",
        "Four still four.",
        "5 items.",
    ]
    assert sentences("   \n\n  ") == []
