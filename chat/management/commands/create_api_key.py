from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.services import UnknownTier, account_create_with_key


class Command(BaseCommand):
    help = "Create an account with one API key. The key is printed alone on the last line and never shown again."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="A label for the account and the key.")
        parser.add_argument("--tier", help="Rate-limit tier (default: GHOSTGPT_DEFAULT_TIER, 'regular').")

    def handle(self, *args: object, **options: object) -> None:
        try:
            key, secret = account_create_with_key(name=str(options["name"]), tier=options["tier"])  # type: ignore[arg-type]
        except UnknownTier as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"Created API key '{key.name}' ({key.prefix}…) for account #{key.account_id}, tier "
            f"{key.account.tier.name}. Store it now: it cannot be shown again."
        )
        self.stdout.write(secret)
