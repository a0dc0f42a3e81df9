from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    """Self-serve top-ups through payment providers (Stripe, YooKassa), exactly once."""

    name = "payments"
    verbose_name = "Payments"
