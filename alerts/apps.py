from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alerts: what happened to an account's money, budgets and keys, by email and by signed
    webhooks (Standard Webhooks)."""

    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from . import receivers  # noqa: F401
