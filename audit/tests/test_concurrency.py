"""Concurrent appends: committed by many connections at once, so a transactional test (it
restores the database afterwards, as every transactional test does: conftest.py)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit import services
from audit.context import Actor
from audit.models import AuditEvent
from audit.verify import verify

pytestmark = pytest.mark.django_db(transaction=True)
WHO = Actor("person", "user:7", "lea@example.com", 3)


def test_concurrent_writers_never_fork_the_chain() -> None:
    """Eight threads append at once (on PostgreSQL under the advisory lock, on SQLite under
    its write lock): every row has its own place and the chain verifies."""
    errors: list[BaseException] = []
    start = AuditEvent.objects.count()  # what the restored database holds (its migrations' events)

    def writer(n: int) -> None:
        try:
            for i in range(10):
                services.record("key.update", actor=WHO, target=f"w{n}-{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, start + 81))
    assert verify() == (start + 80, [])
