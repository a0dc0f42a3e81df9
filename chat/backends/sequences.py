"""What one sequence of the embedded model's context holds, and how a prompt is read into it.

The rules here keep a seeded request's text independent of what ran before or beside it:

- A prompt is read in pieces of two tokens or more (or whole, if it is one token): llama.cpp
  evaluates a lone token of a sequence on its matrix-vector path, whose attention differs
  in the last bits from the path a chunk takes, so a prompt read with a one-token piece
  would give other logits than the same prompt read whole. Pieces of two or more give
  exactly the logits of the whole (checked bit for bit).
- The cells of a sequence stay as its prompt cache; a new prompt reuses the longest shared
  prefix and reads the rest (at least two tokens, the last for its logits). A seeded request
  reuses only cells that were read as prompt: a generated token's cells were decoded one at
  a time and differ in the last bits from the same token read as prompt.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

from .llama_runtime import LlamaRuntime, Sampler
from .stops import StopScanner


@dataclass(eq=False)
class Generation:
    """One choice of a request, decoding in a sequence: its sampler (its own random stream,
    penalty window and grammar state), token budget, stop scanner and UTF-8 decoder."""

    index: int
    sampler: Sampler
    budget: int
    stops: StopScanner
    utf8: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    produced: int = 0
    unsent: int = 0


@dataclass(eq=False)
class SequenceCache:
    """`cached`: the tokens whose cells the sequence holds; `exact`: how many of them, from
    the start, were read as prompt; `pending`: the tokens to evaluate next (the rest of a
    prompt, or the last sampled token); `reading`: the pending tokens are a prompt's."""

    sequence: int
    cached: list[int] = field(default_factory=list)
    exact: int = 0
    pending: list[int] = field(default_factory=list)
    reading: bool = False

    def shared_prefix(self, prompt: list[int]) -> int:
        length = 0
        for cached, token in zip(self.cached, prompt, strict=False):
            if cached != token:
                break
            length += 1
        return length

    def begin(self, runtime: LlamaRuntime, prompt: list[int], *, seeded: bool) -> None:
        """Keep the reusable prefix of `prompt`, drop the other cells, queue the rest."""
        keep = max(min(self.shared_prefix(prompt), len(prompt) - 2), 0)
        if seeded:
            keep = min(keep, self.exact)
        runtime.forget(self.sequence, keep)
        del self.cached[keep:]
        self.exact = min(self.exact, keep)
        self.pending, self.reading = prompt[keep:], True

    def chunk(self, room: int) -> int:
        """How many pending prompt tokens to read now, given `room`: never one token alone,
        nor a piece that leaves one behind (unless the prompt is one token)."""
        pending = len(self.pending)
        take = max(min(room, pending), min(2, pending))
        return take + 1 if pending - take == 1 else take

    def evaluated(self, count: int) -> None:
        """The first `count` pending tokens are in the cells now."""
        if self.reading and self.exact == len(self.cached):
            self.exact += count
        self.cached.extend(self.pending[:count])
        del self.pending[:count]

    def clear(self, runtime: LlamaRuntime) -> None:
        """Drop every cell (after a failed batch nothing is known about them)."""
        runtime.forget(self.sequence)
        self.cached.clear()
        self.exact = 0
        self.pending, self.reading = [], False
