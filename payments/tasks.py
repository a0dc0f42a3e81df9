from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="payments.sweep")
def sweep() -> int:
    """Payments still pending: ask their providers (lost notifications), credit or expire."""
    return services.payments_sweep()
