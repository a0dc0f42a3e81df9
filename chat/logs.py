"""The request id on every log line: the middleware sets it in a context variable, which
asyncio tasks and asgiref's thread hops carry along; the logging filter reads it."""

from __future__ import annotations

import contextvars
import logging

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("ghostgpt_request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True
