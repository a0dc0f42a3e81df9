"""A real GhostGPT server for tests: its own data dir and database, `manage.py serve` on a
free port.

It is started the way an operator starts one (`migrate`, `create_api_key`, `serve`), so
tests talk to exactly what `make run` serves. With DATABASE_URL pointing at PostgreSQL,
each server gets a fresh database that is dropped afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_base_port() -> int:
    """A base port with base, base+1 and base+100 free (two web processes, one model server)."""
    for _ in range(50):
        base = free_port()
        if base + 100 > 65000:
            continue
        try:
            for port in (base, base + 1, base + 100):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free port range")


def serve_command(port: int, application: str) -> list[str]:
    """`manage.py serve` (uvicorn, ghostgpt.server) on 127.0.0.1:`port`, as `make run` starts
    it; it serves GhostGPT's own application only."""
    if application != "ghostgpt.asgi:application":
        raise ValueError(f"manage.py serve serves GhostGPT, not {application}")
    return [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port), "--backlog", "1024"]


def uvicorn_command(port: int, application: str) -> list[str]:
    """uvicorn's command line with the loop, parser and WebSocket protocol ghostgpt.server
    uses, for any application (bench/floor_app.py, the servers bench/asgi.py compares)."""
    return [
        *(str(Path(sys.executable).parent / "uvicorn"), application, "--host", "127.0.0.1", "--port", str(port)),
        *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--lifespan", "off"),
        *("--backlog", "1024", "--no-access-log", "--log-level", "warning"),
    ]


def daphne_command(port: int, application: str) -> list[str]:
    """Daphne on 127.0.0.1:`port` serving `application` (bench/asgi.py compares servers)."""
    return [
        sys.executable,
        "-m",
        "daphne",
        "--access-log",
        os.devnull,
        "-e",
        f"tcp:port={port}:interface=127.0.0.1:backlog=1024",
        application,
    ]


class LiveServer:
    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
        postgres_url: str | None = None,
        database_url: str | None = None,
        routes: dict[str, Any] | None = None,
        command: Callable[[int, str], list[str]] | None = None,
        root: Path | None = None,
        port: int | None = None,
    ) -> None:
        """`postgres_url`: make a fresh database on that server (default: on DATABASE_URL's,
        if it is PostgreSQL, else SQLite). `database_url`: share an existing database.
        `routes`: a routing table (chat/backends/routing.py), written to the server's own
        data directory as its GHOSTGPT_ROUTES_FILE. `command(port, application)`: the server
        to run (default: `manage.py serve`, as `make run`; bench/asgi.py passes others).
        `root`: the checkout whose code runs (default: this one; bench/gateway.py's
        `--baseline` runs another revision beside it). `port`: one the caller chose (free_port)
        because something must know the address before the server starts (an SSO provider)."""
        self.root = root or ROOT
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="ghostgpt-live-")
        if routes is not None:
            routes_file = Path(self._tmp.name) / "routes.json"
            routes_file.write_text(json.dumps(routes))
            env = {"GHOSTGPT_ROUTES_FILE": str(routes_file), **(env or {})}
        self._database = None if database_url else _Database.create(postgres_url or os.environ.get("DATABASE_URL", ""))
        database_url = database_url or (self._database.url if self._database else None)
        inherited = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # opt in per server
        self.env = {
            **inherited,
            "GHOSTGPT_DATA_DIR": self._tmp.name,
            "GHOSTGPT_ENV": "development",
            "GHOSTGPT_LOG_LEVEL": "WARNING",
            **({"DATABASE_URL": database_url} if database_url else {}),
            **(env or {}),
        }
        self.log_path = Path(self._tmp.name) / "server.log"
        self._manage("migrate", "--noinput")
        self.api_key = (
            self._manage("create_api_key", "--name", "live-tests", "--tier", "unlimited").strip().splitlines()[-1]
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            (command or serve_command)(self.port, "ghostgpt.asgi:application"),
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_listening()
        if wait_ready:
            self.wait_ready()

    def _manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                httpx.get(self.base_url + "/health", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start listening:\n{self.log()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if httpx.get(self.base_url + "/health", timeout=5).status_code == 200:
                return
            time.sleep(0.1)
        raise RuntimeError(f"model did not become ready:\n{self.log()}")

    def stats(self, model: str = "ghostgpt") -> dict[str, int]:
        return httpx.get(self.base_url + "/health?details=1", timeout=5).json()["models"][model]  # type: ignore[no-any-return]

    def wait_idle(self, within: float) -> dict[str, int]:
        """The model's counters once nothing runs or waits; fails after `within` seconds."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            stats = self.stats()
            if stats["running"] == 0 and stats["waiting"] == 0:
                return stats
            time.sleep(0.05)
        raise AssertionError(f"generation still running after {within}s: {self.stats()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
        if self._database:
            self._database.drop()
        self._tmp.cleanup()


class _Database:
    """A fresh PostgreSQL database for one live server (SQLite needs nothing: the data dir)."""

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = admin_url
        self.name = name
        parts = urlsplit(admin_url)
        self.url = urlunsplit(parts._replace(path="/" + name))

    @classmethod
    def create(cls, url: str) -> _Database | None:
        if not url.startswith(("postgres://", "postgresql://")):
            return None
        database = cls(url, f"ghostgpt_live_{secrets.token_hex(4)}")
        database._execute(f'CREATE DATABASE "{database.name}"')
        return database

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _execute(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    """The first truthy value of `condition()`, polled every 0.2 s; fails after `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def manage(server: LiveServer, *args: str) -> str:
    """`manage.py …` against a live server's database and settings; its stdout."""
    return server._manage(*args)


def operator_call(base_url: str, admin_key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A POST to the operator API (/admin/…)."""
    response = httpx.post(base_url + path, json=body, headers={"Authorization": f"Bearer {admin_key}"})
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def funded_account(base_url: str, admin_key: str, name: str, amount: Decimal) -> tuple[int, str]:
    """A new unlimited-tier account topped up with `amount`: (account id, its key)."""
    user = operator_call(base_url, admin_key, "/admin/users/add", {"name": name, "tier": "unlimited"})
    topup = {"user_id": user["user_id"], "amount": str(amount), "idempotency_key": name}
    operator_call(base_url, admin_key, "/admin/topup", topup)
    return user["user_id"], user["token"]


def server_books(server: LiveServer, account_id: int) -> tuple[Decimal, Decimal, Counter[str]]:
    """`books` of a live server's own database, PostgreSQL or SQLite."""
    url = server.env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        return books(url, account_id)
    from pysqlite3 import dbapi2 as sqlite3

    path = Path(server.env["GHOSTGPT_DATA_DIR"]) / "ghostgpt.sqlite3"
    with sqlite3.connect(path) as conn:
        balance = conn.execute("select balance from chat_account where id = ?", (account_id,)).fetchone()[0]
        amounts = conn.execute("select amount from chat_ledgerentry where account_id = ?", (account_id,)).fetchall()
        rows = conn.execute(
            "select kind, count(*) from chat_ledgerentry where account_id = ? group by kind", (account_id,)
        ).fetchall()
    total = sum((Decimal(str(amount)) for (amount,) in amounts), Decimal(0))
    return Decimal(str(balance)), total, Counter(dict(rows))


def server_rows(server: LiveServer, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of a query (written with %s placeholders) on a live server's database; a
    statement without rows (an UPDATE) is committed and gives []."""
    url = server.env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url) as conn:
            cursor = conn.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []
    from pysqlite3 import dbapi2 as sqlite3

    with sqlite3.connect(Path(server.env["GHOSTGPT_DATA_DIR"]) / "ghostgpt.sqlite3") as conn:
        return conn.execute(sql.replace("%s", "?"), params).fetchall()


def books(database_url: str, account_id: int) -> tuple[Decimal, Decimal, Counter[str]]:
    """(balance, sum of ledger amounts, entries per kind) straight from the database."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        balance = conn.execute("select balance from chat_account where id = %s", (account_id,)).fetchone()[0]  # type: ignore[index]
        total = conn.execute(
            "select coalesce(sum(amount), 0) from chat_ledgerentry where account_id = %s", (account_id,)
        ).fetchone()[0]  # type: ignore[index]
        rows = conn.execute(
            "select kind, count(*) from chat_ledgerentry where account_id = %s group by kind", (account_id,)
        ).fetchall()
    return balance, total, Counter(dict(rows))
