from __future__ import annotations

import pytest

from chat.backends.stops import StopScanner


def run(stops: tuple[str, ...], pieces: list[str]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out = []
    for piece in pieces:
        text, hit = scanner.feed(piece)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + scanner.flush(), False


@pytest.mark.parametrize(
    "stops, pieces, expected",
    [
        ((), ["a", "b"], ("ab", False)),
        (("END",), ["hello E", "N", "D world"], ("hello ", True)),
        (("END",), ["hello EN", "X"], ("hello ENX", False)),
        (("END",), ["hello EN"], ("hello EN", False)),
        (("\n\n", "###"), ["a\n", "b#", "##c"], ("a\nb", True)),
        (("ab", "b"), ["xab"], ("x", True)),
        (("",), ["text"], ("text", False)),
    ],
)
def test_stop_sequences_across_token_boundaries(
    stops: tuple[str, ...], pieces: list[str], expected: tuple[str, bool]
) -> None:
    assert run(stops, pieces) == expected


def test_text_that_cannot_start_a_stop_is_released_at_once() -> None:
    scanner = StopScanner(("STOP",))
    assert scanner.feed("hello ") == ("hello ", False)
    assert scanner.feed("ST") == ("", False)
    assert scanner.feed("ay") == ("STay", False)
