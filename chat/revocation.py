"""A key that stops being usable (deleted — directly, by its account's deletion, from the
Django admin — or disabled by its owner or the operator) loses its live connections at
once, in every process: its dial-in agents' WebSockets are closed over the channel layer,
and its streams see a flag in the shared cache within REVOCATION_POLL_SECONDS.

Signals, not service calls, so that every way a row is deleted or switched off counts.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat.models import Account, ApiKey

logger = logging.getLogger(__name__)
REVOKED_SECONDS = 7 * 24 * 3600  # longer than any stream lives
REVOCATION_POLL_SECONDS = 1.0


def revoked_flag(key_id: int) -> str:
    return f"gg-revoked:{key_id}"


def revoked_group(key_id: int) -> str:
    return f"key-revoked.{key_id}"


async def key_is_revoked(key_id: int) -> bool:
    return bool(await cache.aget(revoked_flag(key_id)))


def _announce(key_id: int) -> None:
    try:
        cache.set(revoked_flag(key_id), True, REVOKED_SECONDS)
        async_to_sync(get_channel_layer().group_send)(revoked_group(key_id), {"type": "key.revoked"})
    except Exception:  # the row change stands; connections then end at their next check
        logger.exception("announcing the revocation of key %s failed", key_id)


def _forget(key_id: int) -> None:
    try:
        cache.delete(revoked_flag(key_id))
    except Exception:
        logger.exception("clearing the revocation flag of key %s failed", key_id)


@receiver(post_delete, sender=ApiKey, dispatch_uid="ghostgpt-key-deleted")
def key_deleted(sender: type, instance: ApiKey, **kwargs: object) -> None:
    key_id = instance.pk
    transaction.on_commit(lambda: _announce(key_id))


@receiver(post_save, sender=ApiKey, dispatch_uid="ghostgpt-key-switched")
def key_switched(sender: type, instance: ApiKey, created: bool, **kwargs: object) -> None:
    key_id = instance.pk
    if created:  # a fresh database behind the same cache may hand out an old id again
        transaction.on_commit(lambda: _forget(key_id))
        return
    if not instance.is_active or instance.disabled_by_operator:
        transaction.on_commit(lambda: _announce(key_id))
    else:
        transaction.on_commit(lambda: _forget(key_id))


@receiver(post_save, sender=Account, dispatch_uid="ghostgpt-account-switched")
def account_switched(
    sender: type, instance: Account, created: bool, update_fields: frozenset[str] | None = None, **kwargs: object
) -> None:
    """A disabled account's keys lose their connections as if each had been disabled; when
    it is enabled again, its keys that are themselves usable are cleared. Saves that name
    the fields they change and leave out `is_active` cost nothing here."""
    if created or (update_fields is not None and "is_active" not in update_fields):
        return
    keys = list(instance.keys.values_list("pk", "is_active", "disabled_by_operator"))
    for key_id, active, disabled in keys:
        if not instance.is_active:
            transaction.on_commit(lambda key_id=key_id: _announce(key_id))
        elif active and not disabled:
            transaction.on_commit(lambda key_id=key_id: _forget(key_id))
