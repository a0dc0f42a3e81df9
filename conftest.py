"""What every test module shares: transactional database tests restore the database they
found (serialized rollback) — all of them, whatever their marker says.

A transactional test that flushes without restoring lets Django's post_migrate re-create the
content types under new ids; the next test that does restore then inserts the old ids beside
them and fails on content types' unique (app_label, model). Restoring everywhere keeps the
seeded rows (tiers, content types) for whichever test comes next, in any order.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None or not (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
            continue
        if marker.kwargs.get("serialized_rollback"):
            continue
        kwargs = {**marker.kwargs, "transaction": True, "serialized_rollback": True}
        item.add_marker(pytest.mark.django_db(**kwargs), append=False)


@pytest.fixture
def fresh_rate_limits() -> Iterator[None]:
    """A limiter made afresh for the test (the process's one keeps its counters and settings)."""
    from chat.billing import ratelimit

    ratelimit._limiter = None
    yield
    ratelimit._limiter = None
