from __future__ import annotations

from celery import shared_task

from . import services
from .models import Delivery


@shared_task(name="alerts.deliver", bind=True, max_retries=services.MAX_ATTEMPTS)
def deliver(self: object, delivery_id: int) -> str:
    """One webhook delivery; a failure retries with exponential backoff (the log counts the
    attempts) until it is delivered or MAX_ATTEMPTS have failed."""
    delivery = Delivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != Delivery.Status.PENDING:
        return "gone"
    if services.deliver_once(delivery):
        return "delivered"
    if delivery.status == Delivery.Status.FAILED:
        return "failed"
    raise self.retry(countdown=services.backoff_seconds(delivery.attempts))  # type: ignore[attr-defined]


@shared_task(name="alerts.thresholds")
def thresholds() -> int:
    return services.thresholds_sweep()
