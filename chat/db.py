"""Database calls from the async hot path, on a few long-lived threads.

Django's stock handler runs an async request's `sync_to_async` calls on a thread made for
that request (asgiref's ThreadSensitiveContext), and database connections belong to
threads: every /v1 request opened a fresh connection (SQLite: a connect plus its PRAGMAs;
PostgreSQL: a pool checkout and reset). GhostGPT's handler (ghostgpt/handler.py) sends an
async view's thread-sensitive calls to asgiref's one shared thread instead, where they
would queue behind each other. Self-contained calls — one function doing its own query or
transaction — run here instead, on `DB_THREADS` persistent threads whose connections
live on. Before each call a connection that saw an error (or outlived CONN_MAX_AGE) is
checked and replaced, as Django does between requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections

DB_THREADS = 4
T = TypeVar("T")
_executor = ThreadPoolExecutor(max_workers=DB_THREADS, thread_name_prefix="ghostgpt-db")


def _call(function: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    close_old_connections()
    return function(*args, **kwargs)


async def run(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`function(*args, **kwargs)` on a database thread, in a copy of the caller's context
    (it must not rely on anything thread-local from the request other than its own
    connection). A plain executor call: asgiref's `sync_to_async` (context restore, task
    bookkeeping) cost more than the thread hop itself."""
    call = functools.partial(contextvars.copy_context().run, _call, function, args, kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor, call)
