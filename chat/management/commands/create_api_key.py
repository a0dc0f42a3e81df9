from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from chat.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The key is printed alone on the last line and never shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="A label to recognise the key by.")

    def handle(self, *args: object, **options: object) -> None:
        key, secret = api_key_create(name=str(options["name"]))
        self.stderr.write(f"Created API key '{key.name}' ({key.prefix}…). Store it now: it cannot be shown again.")
        self.stdout.write(secret)
