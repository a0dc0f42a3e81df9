"""What emits alerts on its own: keys made and disabled, upstream circuits opening and closing
(payments emit theirs in payments.services; thresholds come from the sweep)."""

from __future__ import annotations

import threading
from typing import Any

from django.db import close_old_connections
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from chat.models import ApiKey
from chat.signals import circuit_changed

from . import services


@receiver(pre_save, sender=ApiKey, dispatch_uid="alerts-key-before")
def key_before(sender: type, instance: ApiKey, **kwargs: Any) -> None:
    if instance.pk is not None and instance.kind == ApiKey.Kind.API:
        instance._alert_was_active = ApiKey.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()  # type: ignore[attr-defined]


@receiver(post_save, sender=ApiKey, dispatch_uid="alerts-key-saved")
def key_saved(sender: type, instance: ApiKey, created: bool, **kwargs: Any) -> None:
    if instance.kind != ApiKey.Kind.API:
        return
    body = {"key": {"id": instance.pk, "name": instance.name, "prefix": instance.prefix}}
    if created:
        services.emit(instance.account_id, "key.created", body)
    elif getattr(instance, "_alert_was_active", False) and not instance.is_active:
        services.emit(instance.account_id, "key.disabled", body)


@receiver(circuit_changed, dispatch_uid="alerts-circuit")
def circuit(sender: type, deployment: str, opened: bool, **kwargs: Any) -> None:
    """Sent on the event loop: the database work happens on a thread of its own."""

    def work() -> None:
        try:
            services.circuit_changed(deployment=deployment, opened=opened)
        except Exception:  # an alert must never take the gateway down
            services.logger.exception("the circuit alert for %s failed", deployment)
        finally:
            close_old_connections()

    threading.Thread(target=work, name="ghostgpt-circuit-alert", daemon=True).start()
