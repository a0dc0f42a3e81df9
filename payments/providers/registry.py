"""The configured providers, built once per process from settings.PAYMENTS."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from .base import Provider


@cache
def providers() -> dict[str, Provider]:
    config = settings.PAYMENTS
    found: dict[str, Provider] = {}
    if config["STRIPE"]["SECRET_KEY"]:
        from .stripe_checkout import StripeProvider

        found["stripe"] = StripeProvider(config["STRIPE"])
    if config["YOOKASSA"]["SHOP_ID"]:
        from .yookassa_redirect import YooKassaProvider

        found["yookassa"] = YooKassaProvider(config["YOOKASSA"])
    return found


def provider(name: str) -> Provider | None:
    return providers().get(name)
