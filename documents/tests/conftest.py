from __future__ import annotations

from chat.tests.conftest import postgres_url, redis_url

# The shared fixtures (PostgreSQL with pgvector, Redis), for documents' tests too.
__all__ = ["postgres_url", "redis_url"]
