from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.billing import ratelimit
from chat.tests.conftest import client, live, postgres_url, redis_url

# The shared fixtures (services, the live server, the SDK client), for tools' tests too.
__all__ = ["client", "live", "postgres_url", "redis_url"]


@pytest.fixture(autouse=True)
def fresh_rate_limits() -> Iterator[None]:
    """Each test starts with empty in-process rate-limit counters."""
    ratelimit._limiter = None
    yield
    ratelimit._limiter = None
