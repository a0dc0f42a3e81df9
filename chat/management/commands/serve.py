"""`manage.py serve`: Daphne serving GhostGPT, with a graceful stop.

Daphne's own command line stops at once on SIGTERM: every stream in flight is cut. Here
SIGTERM (or SIGINT) drains instead (chat.lifecycle): the listening socket closes at once
(new connections go to the other processes behind the proxy), running generations get
GHOSTGPT_DRAIN_SECONDS to finish, then whatever still runs ends with an error event, and
the process exits. A second signal stops at once.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat import lifecycle

logger = logging.getLogger("ghostgpt.serve")
POLL_SECONDS = 0.1
FLUSH_SECONDS = 1.0  # after the error events are sent, before the process exits


class Command(BaseCommand):
    help = "Serve GhostGPT (Daphne); SIGTERM drains running generations before exiting."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--backlog", type=int, default=int(os.environ.get("BACKLOG", "1024")))

    def handle(self, *args: Any, host: str, port: int, backlog: int, **options: Any) -> None:
        from daphne.server import Server  # installs Twisted's asyncio reactor: first

        from ghostgpt.asgi import application

        class DrainingServer(Server):  # type: ignore[misc]
            ports: list[Any]
            failed: bool

            def listen_success(self, listening_port: Any) -> None:
                self.ports.append(listening_port)
                super().listen_success(listening_port)

            def listen_error(self, failure: Any) -> None:
                self.failed = True  # a supervisor must see a failure, not a clean exit
                super().listen_error(failure)

        server = DrainingServer(
            application=application,
            endpoints=[f"tcp:port={port}:interface={host}:backlog={backlog}"],
            signal_handlers=False,
            websocket_timeout=86400,
            application_close_timeout=10,
        )
        server.ports = []
        server.failed = False
        drain = Drain(server, settings.GHOSTGPT["DRAIN_SECONDS"])
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, drain.signalled)
        logger.info("serving on http://%s:%s (pid %s)", host, port, os.getpid())
        server.run()
        if server.failed:
            raise CommandError(f"could not listen on {host}:{port}")


class Drain:
    def __init__(self, server: Any, seconds: float) -> None:
        self.server = server
        self.seconds = seconds
        self.deadline = 0.0

    def signalled(self, signum: int, frame: Any) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(self.begin if not lifecycle.draining() else self.stop)

    def begin(self) -> None:
        lifecycle.begin_drain()
        for listening_port in self.server.ports:
            listening_port.stopListening()
        self.deadline = time.monotonic() + self.seconds
        logger.info("draining: %d generations running, up to %ss", lifecycle.running(), self.seconds)
        self.check()

    def check(self) -> None:
        from twisted.internet import reactor

        if lifecycle.running() == 0:
            self.stop()
        elif time.monotonic() >= self.deadline:
            logger.warning("drain time over: ending %d generations", lifecycle.running())
            lifecycle.end_generations()
            reactor.callLater(FLUSH_SECONDS, self.stop)  # type: ignore[arg-type]
        else:
            reactor.callLater(POLL_SECONDS, self.check)  # type: ignore[arg-type]

    def stop(self) -> None:
        logger.info("stopped")
        self.server.stop()
