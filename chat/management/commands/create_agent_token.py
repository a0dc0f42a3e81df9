from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from chat.agents.services import agent_token_create


class Command(BaseCommand):
    help = "Create a token for a dial-in agent (run_agent). Printed alone on the last line, never shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="A label for the agent.")

    def handle(self, *args: object, **options: object) -> None:
        key, secret = agent_token_create(name=str(options["name"]))
        self.stderr.write(
            f"Created agent token '{key.name}' ({key.prefix}…). It connects agents; it cannot call the API."
        )
        self.stdout.write(secret)
