from __future__ import annotations

import asyncio
import logging
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.agents.runner import Agent, BackendSource, UpstreamSource


class Command(BaseCommand):
    help = (
        "Run a dial-in agent: connect out to a GhostGPT server with an agent token and serve its jobs "
        "from an OpenAI-compatible upstream (--upstream) or the embedded model (--embedded)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--server", required=True, help="GhostGPT's URL, e.g. https://gpt.example.com")
        parser.add_argument("--token-env", default="GHOSTGPT_AGENT_TOKEN", help="Variable holding the agent token.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--upstream", help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
        source.add_argument("--embedded", action="store_true", help="Serve jobs with the embedded model.")
        parser.add_argument("--upstream-key-env", default="", help="Variable holding the upstream's API key.")
        parser.add_argument("--model", help="The upstream's model id (default: the one each job names).")
        parser.add_argument("--name", default=os.uname().nodename, help="How /api/connections shows this agent.")
        parser.add_argument("--parallel", type=int, default=1, help="Jobs this agent takes at once.")

    def handle(self, *args: object, **options: object) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        token = os.environ.get(str(options["token_env"]), "")
        if not token:
            raise CommandError(f"Set {options['token_env']} to an agent token (manage.py create_agent_token).")
        if options["upstream"]:
            key_env = str(options["upstream_key_env"] or "")
            source: object = UpstreamSource(
                str(options["upstream"]),
                os.environ.get(key_env, "") if key_env else "",
                options["model"],  # type: ignore[arg-type]
            )
            models = [str(options["model"])] if options["model"] else []
        else:
            import time

            from chat.backends.registry import routes

            backend = routes()[settings.GHOSTGPT["MODEL_ID"]]
            while (state := backend.readiness())[0] == "loading":  # take jobs once the model is in
                time.sleep(0.2)
            if state[0] == "failed":
                raise CommandError(f"The embedded model failed to load: {state[1]}")
            source = BackendSource(backend)
            models = [settings.GHOSTGPT["MODEL_ID"]]
        agent = Agent(
            str(options["server"]),
            token,
            source,
            name=str(options["name"]),
            models=models,
            parallel=int(options["parallel"]),  # type: ignore[call-overload]
        )
        asyncio.run(agent.run_forever())
