from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat.billing.pricing import price_of, price_parts
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
    help = (
        "Set a model's price in currency units per million tokens (0 and 0 = free), with the "
        "parts its provider bills apart: cached input, cache writes, reasoning (each costs its "
        "whole's rate unless given), images and audio seconds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--prompt", required=True, type=_money, help="per 1M input tokens")
        parser.add_argument("--completion", required=True, type=_money, help="per 1M output tokens")
        parser.add_argument("--cached-prompt", type=_money, help="per 1M input tokens read from the prompt cache")
        parser.add_argument("--cache-write", type=_money, help="per 1M input tokens written to the prompt cache")
        parser.add_argument("--reasoning", type=_money, help="per 1M reasoning tokens (default: the output rate)")
        parser.add_argument("--per-image", type=_money, default=Decimal(0), help="per image generated")
        parser.add_argument("--per-audio-second", type=_money, default=Decimal(0), help="per second transcribed")

    def handle(self, *args: object, **options: Any) -> None:
        price = model_price_set(
            model=str(options["model"]),
            prompt_per_million=options["prompt"],
            completion_per_million=options["completion"],
            cached_prompt_per_million=options["cached_prompt"],
            cache_write_per_million=options["cache_write"],
            reasoning_per_million=options["reasoning"],
            per_image=options["per_image"],
            per_audio_second=options["per_audio_second"],
        )
        parts = price_parts(price_of(price), str)
        self.stdout.write(f"{price.model}: " + ", ".join(f"{name} {value}" for name, value in parts.items()))
