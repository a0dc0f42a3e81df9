from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.services import model_price_set


def _money(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise CommandError(f"{value!r} is not a number") from None
    if amount < 0 or not amount.is_finite():
        raise CommandError("prices must be zero or positive")
    return amount


class Command(BaseCommand):
    help = "Set a model's price in currency units per million tokens (0 and 0 = free)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--prompt", required=True, type=_money, help="price per 1M prompt tokens")
        parser.add_argument("--completion", required=True, type=_money, help="price per 1M completion tokens")

    def handle(self, *args: object, **options: object) -> None:
        price = model_price_set(
            model=str(options["model"]),
            prompt_per_million=options["prompt"],
            completion_per_million=options["completion"],
        )
        self.stdout.write(
            f"{price.model}: {price.prompt_per_million} per 1M prompt tokens, "
            f"{price.completion_per_million} per 1M completion tokens"
        )
