from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.billing import ratelimit
from chat.tests.conftest import postgres_url, redis_url

__all__ = ["postgres_url", "redis_url"]  # the shared service fixtures, for tools' tests too


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """Each test starts with empty in-process rate-limit counters."""
    ratelimit._limiter = None
    yield
    ratelimit._limiter = None
