"""`manage.py serve`: GhostGPT under uvicorn (ghostgpt.server), with a graceful stop.

SIGTERM (or SIGINT) drains instead of cutting every stream in flight (chat.lifecycle): the
listening socket closes at once (new connections go to the other processes behind the
proxy), running generations get GHOSTGPT_DRAIN_SECONDS to finish, then whatever still runs
ends with an error event, and the process exits. A second signal stops at once. `make run`
and `make up` serve through this command.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger("ghostgpt.serve")


def settle_the_heap() -> None:
    """Move everything the process holds after startup (Django, its apps, the libraries,
    the settings) out of the garbage collector's reach: a full collection then walks only
    what was made since, not the whole heap. Without it, a gen-2 collection paused the event
    loop ~70 ms every few seconds under load (bench/tail.py, the p99 at 16 connections).
    The youngest generation's threshold goes up too, so the short-lived objects of a request
    die young instead of being promoted (GHOSTGPT_GC_THRESHOLD; gc.set_threshold's)."""
    gc.collect()
    gc.freeze()
    threshold = settings.GHOSTGPT["GC_THRESHOLD"]
    if threshold:
        gc.set_threshold(*threshold)


class Command(BaseCommand):
    help = "Serve GhostGPT (uvicorn); SIGTERM drains running generations before exiting."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--backlog", type=int, default=int(os.environ.get("BACKLOG", "1024")))

    def handle(self, *args: Any, host: str, port: int, backlog: int, **options: Any) -> None:
        from chat.metrics import serve_as_one_of_the_node
        from ghostgpt.asgi import application
        from ghostgpt.server import DrainingServer, server_config

        serve_as_one_of_the_node()
        settle_the_heap()
        if settings.ROLE != "model":  # a model server holds no money
            from chat.billing.reconcile import start_reconciler

            start_reconciler()
        server = DrainingServer(
            server_config(application, host=host, port=port, backlog=backlog),
            drain_seconds=settings.GHOSTGPT["DRAIN_SECONDS"],
        )
        logger.info("serving on http://%s:%s (pid %s)", host, port, os.getpid())
        try:
            server.run()
        except SystemExit as stopped:  # uvicorn exits 1 when it cannot listen (it logged why)
            if not stopped.code:
                raise
        if not server.started:
            # The model may still be loading in a thread, and tearing the interpreter down
            # under llama.cpp aborts the process (SIGABRT): exit plainly, with status 1.
            self.stderr.write(f"could not listen on {host}:{port}")
            self.stderr.flush()
            logging.shutdown()
            os._exit(1)
