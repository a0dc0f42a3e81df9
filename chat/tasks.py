"""Periodic upkeep run by `make worker`'s beat."""

from __future__ import annotations

from celery import shared_task

from .services import stored_responses_purge


@shared_task(name="chat.reconcile_reservations")
def reconcile_reservations() -> int:
    """Reservations whose process was lost are closed (chat.billing.reconcile)."""
    from .billing.reconcile import reconcile_now

    return reconcile_now()


@shared_task(name="chat.purge_expired_responses")
def purge_expired_responses() -> int:
    """Stored Responses API responses past GHOSTGPT_RESPONSES_TTL_DAYS go."""
    return stored_responses_purge()


@shared_task(name="chat.purge_response_cache")
def purge_response_cache() -> int:
    """The response cache's expired database entries go (Redis expires its own)."""
    from .services import cached_responses_purge

    return cached_responses_purge()


@shared_task(name="chat.purge_request_text")
def purge_request_text() -> int:
    """Request logs older than GHOSTGPT_REQUEST_LOG_DAYS lose their text."""
    from .services import request_text_purge

    return request_text_purge()
