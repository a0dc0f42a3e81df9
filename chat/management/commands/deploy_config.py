"""`manage.py deploy_config --run-dir DIR`: what `make up` starts the topology with.

Writes, from the environment and this app's own settings (so nginx's limits are the app's):
- `supervisord.conf` from deploy/supervisord.conf.template: WEB_PROCESSES web processes on
  ports UP_BASE_PORT, UP_BASE_PORT+1, …; MODEL_PROCESSES model servers on UP_BASE_PORT+100, …;
  a Celery worker, Celery beat and nginx;
- `nginx.conf` from deploy/nginx.conf.template: nginx on UP_HOST:UP_PORT in front of the web
  processes;
- `prometheus.yml`: a scrape config with one target per tier of this node, and the
  `metrics/web` and `metrics/model` folders (PROMETHEUS_MULTIPROC_DIR), emptied;
- `routes.yaml`: the web tier's routing file: `ghostgpt` and the embeddings model on the model
  servers, weighted evenly, plus the models of the operator's own routing file
  (UP_ROUTES_FILE: OpenAI, Anthropic, vLLM… — chat/backends/routing.py);
- `model-tier-key` and `secret-key`: made once, unless GHOSTGPT_MODEL_TIER_KEY and
  DJANGO_SECRET_KEY are set (every process of one deployment must share both).
With `--create-database`, DATABASE_URL's PostgreSQL database is created when missing.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import string
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.network import trusted_proxies

DEPLOY = Path(settings.BASE_DIR) / "deploy"
PROGRAM = """[program:{name}]
command={command}
environment={environment}
autorestart=true
startsecs=2
stopsignal=TERM
stopwaitsecs={stop_seconds}
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={run_dir}/logs/{name}.log
"""
MULTIPART_ROOM = 1024 * 1024  # the multipart envelope around an upload


class Template(string.Template):
    """Only `${UPPER_CASE}` is a placeholder: nginx's own `$host`, `$http_upgrade`… stay."""

    pattern = r"\$(?:(?P<escaped>(?!))|\{(?P<braced>[A-Z_]+)\}|(?P<named>(?!))|(?P<invalid>(?!)))"  # type: ignore[assignment]


def trusted_networks() -> list[str]:
    """GHOSTGPT_TRUSTED_PROXIES as nginx `geo` entries, parsed as the app parses them."""
    try:
        return [str(network) for network in trusted_proxies()]
    except ValueError as exc:
        raise CommandError(f"GHOSTGPT_TRUSTED_PROXIES: {exc}") from None


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip() or str(default)
    try:
        number = int(value)
    except ValueError:
        raise CommandError(f"{name} must be a whole number, got {value!r}") from None
    if number < 1:
        raise CommandError(f"{name} must be at least 1")
    return number


class Command(BaseCommand):
    help = "Write supervisord.conf, nginx.conf, routes.yaml and the shared secrets for `make up` into --run-dir."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--run-dir", required=True)
        parser.add_argument("--create-database", action="store_true")

    def handle(self, *args: Any, run_dir: str, create_database: bool, **options: Any) -> None:
        folder = Path(run_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        base_port = _int("UP_BASE_PORT", 9000)
        web = [base_port + n for n in range(_int("WEB_PROCESSES", 2))]
        models = [base_port + 100 + n for n in range(_int("MODEL_PROCESSES", 1))]
        (folder / "logs").mkdir(exist_ok=True)
        self.metrics_folders(folder)
        (folder / "prometheus.yml").write_text(yaml.safe_dump(self.prometheus(folder, models), sort_keys=False))
        (folder / "nginx.conf").write_text(self.nginx(folder, web))
        (folder / "supervisord.conf").write_text(self.supervisord(folder, web, models))
        self.secret(folder, "model-tier-key", settings.MODEL_TIER_KEY)
        self.secret(folder, "secret-key", os.environ.get("DJANGO_SECRET_KEY", ""))
        (folder / "routes.yaml").write_text(yaml.safe_dump(self.routes(models), sort_keys=False))
        # What `make up` waits for besides the front door: each model server's /health (200 once
        # its models are loaded; the web tier counts routed models as ready from the start).
        (folder / "model-servers").write_text("".join(f"http://127.0.0.1:{port}\n" for port in models))
        if create_database:
            self.create_database()
        self.stdout.write(
            f"{folder}: supervisord.conf, nginx.conf, routes.yaml ({len(web)} web, {len(models)} model processes)"
        )

    def metrics_folders(self, folder: Path) -> None:
        """PROMETHEUS_MULTIPROC_DIR for each tier of this node, emptied before the processes
        start (prometheus_client requires it): the web processes, worker and beat share
        `metrics/web`, so any web process's /metrics — the one nginx picks — counts the whole
        node; the model servers share `metrics/model` (their own requests are the web tier's
        again, so the two are scraped as two targets, never summed into one)."""
        for tier in ("web", "model"):
            path = folder / "metrics" / tier
            if path.exists():
                shutil.rmtree(path)
            path.mkdir(parents=True)

    def prometheus(self, folder: Path, models: list[int]) -> dict[str, Any]:
        """A Prometheus scrape config for this node: one target per tier (nginx's front door
        for the web tier, the first model server for the model tier), never one per process
        (each process answers for all of its tier: per-process targets would count
        everything N times). Another node's file adds its own two targets."""
        host = os.environ.get("UP_HOST", "127.0.0.1")
        jobs = [("ghostgpt-web", f"{host}:{_int('UP_PORT', 8000)}"), ("ghostgpt-model", f"127.0.0.1:{models[0]}")]
        token = settings.GHOSTGPT["METRICS_TOKEN"]
        if token:
            (folder / "metrics-token").write_text(token)
            (folder / "metrics-token").chmod(0o600)
        configs = []
        for name, target in jobs:
            job: dict[str, Any] = {"job_name": name, "metrics_path": "/metrics"}
            if token:
                job["authorization"] = {"type": "Bearer", "credentials_file": str(folder / "metrics-token")}
            job["static_configs"] = [{"targets": [target], "labels": {"node": os.uname().nodename}}]
            configs.append(job)
        return {"global": {"scrape_interval": "15s"}, "scrape_configs": configs}

    def supervisord(self, folder: Path, web: list[int], models: list[int]) -> str:
        python = shlex.quote(sys.executable)
        celery = shlex.quote(str(Path(sys.executable).with_name("celery")))
        drain = settings.GHOSTGPT["DRAIN_SECONDS"]
        programs = []

        def program(name: str, command: str, stop_seconds: float, **environment: str) -> None:
            tier = "model" if name.startswith("model-") else "web"
            environment = {
                "GHOSTGPT_DATA_DIR": str(folder / "nodes" / name),
                "PROMETHEUS_MULTIPROC_DIR": str(folder / "metrics" / tier),
                **environment,
            }
            (folder / "nodes" / name).mkdir(parents=True, exist_ok=True)
            pairs = ",".join(f'{key}="{value}"' for key, value in environment.items())
            programs.append(
                PROGRAM.format(
                    name=name,
                    command=command,
                    environment=pairs,
                    stop_seconds=int(stop_seconds),
                    run_dir=folder,
                )
            )

        tiers = (
            ("web", web, {"GHOSTGPT_ROUTES_FILE": str(folder / "routes.yaml")}),
            # The web tier already put the persona in; agents and routes are the web tier's.
            ("model", models, {"GHOSTGPT_SYSTEM_PROMPT": "", "GHOSTGPT_ROUTES_FILE": "", "GHOSTGPT_AGENT_MODEL": ""}),
        )
        for role, ports, environment in tiers:
            for n, port in enumerate(ports, start=1):
                serve = f"{python} manage.py serve --port {port}"
                program(f"{role}-{n}", serve, drain + 10, GHOSTGPT_ROLE=role, **environment)
        worker = os.environ.get("WORKER_CONCURRENCY", "2")
        memory = os.environ.get("WORKER_MAX_MEMORY_KB", "1500000")
        program(
            "worker",
            f"{celery} -A ghostgpt worker --loglevel=INFO --concurrency={int(worker)} "
            f"--max-memory-per-child={int(memory)} --prefetch-multiplier=1",
            30,  # a job cut by the stop is run again (acks_late): waiting out a 10-minute job is not needed
            # A project's routed embeddings model embeds its files on the worker (documents/).
            GHOSTGPT_ROUTES_FILE=str(folder / "routes.yaml"),
        )
        program("beat", f"{celery} -A ghostgpt beat --loglevel=INFO --schedule={folder}/celerybeat-schedule", 10)
        program("nginx", f'/usr/sbin/nginx -c {folder}/nginx.conf -g "daemon off;"', 10)
        values = {"RUN_DIR": str(folder), "APP_DIR": str(settings.BASE_DIR), "PROGRAMS": "\n".join(programs)}
        return self.render("supervisord.conf.template", values)

    def render(self, name: str, values: dict[str, str]) -> str:
        template = DEPLOY / name
        try:
            return Template(template.read_text()).substitute(values)
        except (KeyError, ValueError) as exc:
            raise CommandError(f"{template}: {exc}") from None

    def nginx(self, folder: Path, web: list[int]) -> str:
        tools = settings.TOOLS
        values = {
            "RUN_DIR": str(folder),
            "HOST": os.environ.get("UP_HOST", "127.0.0.1"),
            "PORT": str(_int("UP_PORT", 8000)),
            "NGINX_WORKERS": str(_int("NGINX_WORKERS", os.cpu_count() or 1)),
            "NGINX_CONNECTIONS": str(_int("NGINX_CONNECTIONS", 16384)),
            "WEB_SERVERS": "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in web),
            "TRUSTED_PEERS": "\n".join(f"        {network} 1;" for network in trusted_networks()),
            "BODY_MAX_BYTES": str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE),
            "UPLOAD_MAX_BYTES": str(
                max(
                    tools["PDF_MAX_BYTES"],
                    tools["TRANSCRIBE_MAX_BYTES"],
                    tools["IMPORT_MAX_BYTES"],
                    settings.DOCUMENTS["MAX_BYTES"],
                )
                + MULTIPART_ROOM
            ),
        }
        return self.render("nginx.conf.template", values)

    def secret(self, folder: Path, name: str, given: str) -> None:
        """`name` in the run directory: the given secret, or one made the first time."""
        path = folder / name
        if given:
            path.write_text(given)
        elif not path.exists():
            path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)

    def routes(self, models: list[int]) -> dict[str, Any]:
        """Every model-tier process is one deployment of each model, equally weighted; the
        gateway's own routing spreads requests and fails over between them."""
        config = settings.GHOSTGPT
        upstreams = {
            f"model-{n + 1}": {
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key_env": "GHOSTGPT_MODEL_TIER_KEY",
                "first_token_timeout": 120,
            }
            for n, port in enumerate(models)
        }
        deployments = [{"upstream": name, "priority": 0, "weight": 1} for name in upstreams]
        routed: dict[str, Any] = {
            config["MODEL_ID"]: {
                "local": True,  # this deployment's own model processes (the chat's picker says so)
                "context_length": config["N_CTX"],
                "unsupported_tools": config["UNSUPPORTED_TOOLS"],
                "tools": False,  # the embedded model calls no functions: the web tier applies the policy
                "deployments": [dict(d, model=config["MODEL_ID"]) for d in deployments],
            }
        }
        if config["EMBEDDING_MODEL"]:
            routed[config["EMBEDDING_MODEL"]] = {
                "embeddings": True,
                "local": True,
                "deployments": [dict(d, model=config["EMBEDDING_MODEL"]) for d in deployments],
            }
        table: dict[str, Any] = {"upstreams": upstreams, "models": routed}
        own = os.environ.get("UP_ROUTES_FILE", "").strip()
        if own:  # the operator's upstreams and models beside the model tier's
            extra = yaml.safe_load(Path(own).read_text(encoding="utf-8")) or {}
            for section in ("upstreams", "models"):
                clash = set(extra.get(section) or {}) & set(table[section])
                if clash:
                    raise CommandError(f"{own}: {section} {sorted(clash)} are the model tier's names")
                table[section].update(extra.get(section) or {})
        return table

    def create_database(self) -> None:
        url = os.environ.get("DATABASE_URL", "")
        if not url.startswith(("postgres://", "postgresql://")):
            return
        import psycopg

        parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
        name = parts.path.lstrip("/")
        if not name:
            raise CommandError("DATABASE_URL names no database")
        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
                self.stdout.write(f"created database {name}")
