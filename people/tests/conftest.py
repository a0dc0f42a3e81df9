from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def fresh_limits() -> Iterator[None]:
    """allauth's rate limits live in the cache: each test starts with none spent."""
    cache.clear()
    yield
    cache.clear()
