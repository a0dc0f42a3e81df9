"""The Responses API's answer (chat.api.responses parses the request): backend events → a
`response` object, or OpenAI's stream events in the exact order Codex and the Agents SDK
rely on (see chat.api.responses)."""

from __future__ import annotations

import json
import time
from typing import Any

from chat.backends.base import Accepted, Event, TextDelta, ToolCallDelta, Usage
from chat.jsonbytes import dumps

from .encoders import Encoder
from .errors import ApiError
from .responses import new_id

STATUS_OF_FINISH = {"length": "incomplete", "content_filter": "incomplete"}
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"


class ResponsesEncoder(Encoder):
    """Backend events → a `response` object, or OpenAI's Responses stream events."""

    def __init__(self, *, echo: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.id = new_id("resp")
        self.echo = echo
        self.sequence = 0
        self.output: list[dict[str, Any]] = []  # output items, the last one maybe still open
        self._open: dict[str, Any] | None = None
        self._open_call: int | None = None
        self._prompt_tokens = 0
        self.status = "in_progress"
        self.failure: dict[str, Any] | None = None
        self.completed_at: int | None = None

    # The state machine, shared by the stream and the collected body: each step returns the
    # events it implies (the body ignores them).

    def _step(self, event: Event) -> list[tuple[str, dict[str, Any]]]:
        super().record(event)
        if isinstance(event, Accepted):
            self._prompt_tokens = event.prompt_tokens
            snapshot = self.response()
            return [("response.created", {"response": snapshot}), ("response.in_progress", {"response": snapshot})]
        if isinstance(event, TextDelta) and event.index == 0 and event.text:
            out = [] if self._open is not None and self._open["type"] == "message" else self._open_message()
            self._open["content"][0]["text"] += event.text  # type: ignore[index]
            return [
                *out,
                (
                    "response.output_text.delta",
                    {**self._where(), "content_index": 0, "delta": event.text, "logprobs": []},
                ),
            ]
        if isinstance(event, ToolCallDelta) and event.index == 0:
            out = [] if self._open_call == event.call else self._open_function_call(event)
            if not event.arguments:
                return out
            self._open["arguments"] += event.arguments  # type: ignore[index]
            return [*out, ("response.function_call_arguments.delta", {**self._where(), "delta": event.arguments})]
        if isinstance(event, Usage):
            out = self._close()
            if not self.output:  # an empty answer is still one (empty) message
                out += self._open_message() + self._close()
            reason = self.finish[0] or "stop"
            self.status = STATUS_OF_FINISH.get(reason, "completed")
            if self.status == "completed":
                self.completed_at = int(time.time())
            kind = "response.completed" if self.status == "completed" else "response.incomplete"
            return [*out, (kind, {"response": self.response()})]
        return []  # Finish: its reason goes out with the final event

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._open["id"], "output_index": len(self.output) - 1}  # type: ignore[index]

    def _open_message(self) -> list[tuple[str, dict[str, Any]]]:
        out = self._close()
        item = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant", "content": []}
        self.output.append(item)
        self._open, self._open_call = item, None
        added = ("response.output_item.added", {"output_index": len(self.output) - 1, "item": _copy(item)})
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        item["content"].append(part)  # type: ignore[attr-defined]
        part_added = ("response.content_part.added", {**self._where(), "content_index": 0, "part": _copy(part)})
        return [*out, added, part_added]

    def _open_function_call(self, event: ToolCallDelta) -> list[tuple[str, dict[str, Any]]]:
        out = self._close()
        item = {
            "id": new_id("fc"),
            "type": "function_call",
            "status": "in_progress",
            "call_id": event.id or new_id("call"),
            "name": event.name or "",
            "arguments": "",
        }
        self.output.append(item)
        self._open, self._open_call = item, event.call
        return [*out, ("response.output_item.added", {"output_index": len(self.output) - 1, "item": _copy(item)})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        item, self._open, self._open_call = self._open, None, None
        if item is None:
            return []
        where = {"item_id": item["id"], "output_index": self.output.index(item)}
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            text_done = {**where, "content_index": 0, "text": part["text"], "logprobs": []}
            return [
                ("response.output_text.done", text_done),
                ("response.content_part.done", {**where, "content_index": 0, "part": _copy(part)}),
                ("response.output_item.done", {"output_index": where["output_index"], "item": _copy(item)}),
            ]
        return [
            ("response.function_call_arguments.done", {**where, "name": item["name"], "arguments": item["arguments"]}),
            ("response.output_item.done", {"output_index": where["output_index"], "item": _copy(item)}),
        ]

    def _emit(self, steps: list[tuple[str, dict[str, Any]]]) -> bytes:
        out = []
        for kind, data in steps:
            out.append(_sse(kind, {"type": kind, "sequence_number": self.sequence, **data}))
            self.sequence += 1
        return b"".join(out)

    def encode(self, event: Event) -> bytes:
        return self._emit(self._step(event))

    def record(self, event: Event) -> None:
        self._step(event)

    def error(self, error: ApiError) -> bytes:
        """A failure after the stream started: the open item is closed as incomplete, then
        `response.failed` — never a cut connection."""
        steps = self._close()
        for item in self.output:
            if item["status"] != "completed":
                item["status"] = "incomplete"
        self.status = "failed"
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        self.failure = {"code": code, "message": error.message}
        return self._emit([*steps, ("response.failed", {"response": self.response()})])

    def end(self) -> bytes:
        return b""  # the Responses API sends no [DONE]

    def response(self) -> dict[str, Any]:
        done = self.status != "in_progress"
        text = "".join(part["text"] for item in self.output if item["type"] == "message" for part in item["content"])
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": self.status,
            "background": False,
            "completed_at": self.completed_at,
            "error": self.failure,
            "incomplete_details": (
                {"reason": INCOMPLETE_REASONS.get(self.finish[0] or "", "max_output_tokens")}
                if self.status == "incomplete"
                else None
            ),
            "model": self.model,
            "output": [_copy(item) for item in self.output] if done else [],
            "output_text": text,
            "reasoning": {"effort": None, "summary": None},
            "truncation": "disabled",
            **({"usage": self._usage()} if done and self.usage is not None else {}),
            **self.echo,
        }

    def _usage(self) -> dict[str, Any]:
        usage = self.usage or Usage(self._prompt_tokens, 0)
        return {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {
                "cached_tokens": usage.cached_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
            },
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
            **(self._costs(usage) if self._costs else {}),
        }

    def body(self) -> dict[str, Any]:
        return self.response()

    def final_response(self, failed: bool) -> dict[str, Any]:
        """The response as it ended, for storing (a body that failed before any event
        that said so is marked failed here)."""
        if failed and self.status == "in_progress":
            self.status = "failed"
            self.failure = {"code": "server_error", "message": "The response failed while it was generated."}
        return self.response()


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))
