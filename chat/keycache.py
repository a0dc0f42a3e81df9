"""Authenticated keys kept in the process for the /v1 hot path, exact on every change.

Looking a key up cost a request a round trip to a database thread (~0.4 ms of the ~3 ms
GhostGPT adds in front of a fast upstream, bench/gateway.py). A key found here is used
without that trip, but only while nothing that decides access has changed anywhere:

- every save or delete of a key, an account or a tier — from this process, another web
  process, a worker, `manage.py`, the admin — bumps a shared *stamp*: a file in the data
  directory (one machine, no Redis: `make run`) or a random token in Redis (REDIS_URL set: every
  process on every machine sees it);
- each request reads the stamp (a `stat()`, or one Redis GET on the event loop — no
  thread) and uses its cached key only if the stamp is the one it was cached under; any
  bump empties every process's cache, so a key disabled, deleted, narrowed or moved to
  another tier is refused or re-limited on its very next request;
- the stamp is bumped when the change is saved and again when it commits, so a lookup that
  raced the write cannot keep the old row;
- an entry also ages out after GHOSTGPT_KEY_CACHE_SECONDS (a change made behind Django's
  back, by SQL typed into the database, counts after at most that long); 0 turns the cache
  off.

Only keys that exist are cached (a wrong key always asks the database, and cannot fill the
cache); the cache holds at most MAX_ENTRIES keys.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from chat import db
from chat.billing.ratelimit import RedisLimiter, limiter
from chat.models import Account, ApiKey, Budget, Tier, hash_api_key
from chat.selectors import KeyAuth, api_key_auth_sync

logger = logging.getLogger(__name__)
MAX_ENTRIES = 10_000
STAMP_FILE = "keys.stamp"
STAMP_KEY = "ghostgpt:keys-stamp"
_entries: OrderedDict[str, tuple[KeyAuth, Any, float]] = OrderedDict()
_lock = threading.Lock()  # bumps come from any thread (signals); lookups from the loop


def _stamp_path() -> str:
    return os.path.join(settings.DATA_DIR, STAMP_FILE)


async def _current_stamp() -> Any:
    """The shared stamp now; None when it cannot be read (then nothing is cached)."""
    if settings.REDIS_URL:
        shared = limiter()
        if not isinstance(shared, RedisLimiter):
            return None
        try:
            stamp = await shared.client.get(STAMP_KEY)
            if stamp is None:  # never set, or Redis lost it: a value no cache can hold yet
                await shared.client.set(STAMP_KEY, uuid.uuid4().hex, nx=True)
            return stamp
        except Exception:  # Redis away: authenticate from the database, as without a cache
            logger.warning("the key cache's stamp could not be read from Redis", exc_info=True)
            return None
    try:
        return os.stat(_stamp_path()).st_mtime_ns
    except FileNotFoundError:
        bump()  # the first request of a fresh data directory: cached from the next one on
        return None
    except OSError:
        return None


def bump() -> None:
    """Invalidate every process's cached keys."""
    with _lock:
        _entries.clear()
    try:
        if settings.REDIS_URL:
            import redis

            with redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5) as client:
                client.set(STAMP_KEY, uuid.uuid4().hex)  # never a value seen before, even after a reset
            return
        path = _stamp_path()
        now = time.time_ns()
        try:
            now = max(now, os.stat(path).st_mtime_ns + 1)  # always a new value, even within a tick
        except FileNotFoundError:
            open(path, "ab").close()
        os.utime(path, ns=(now, now))
    except Exception:  # the change stands; other processes see it within KEY_CACHE_SECONDS
        logger.exception("bumping the key cache's stamp failed")


async def key_auth(*, secret: str) -> KeyAuth | None:
    """The key behind `secret` (None: no such key), from the cache when nothing changed."""
    ttl = settings.GHOSTGPT["KEY_CACHE_SECONDS"]
    if ttl <= 0:
        return await db.run(api_key_auth_sync, secret=secret)
    digest = hash_api_key(secret)
    stamp = await _current_stamp()  # read before the lookup: a change during it counts next time
    entry = _entries.get(digest)
    now = time.monotonic()
    if entry is not None and stamp is not None and entry[1] == stamp and now - entry[2] < ttl:
        return entry[0]
    key = await db.run(api_key_auth_sync, secret=secret)
    with _lock:
        if key is None or stamp is None:
            _entries.pop(digest, None)
            return key
        _entries[digest] = (key, stamp, now)
        _entries.move_to_end(digest)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return key


def _changed(**kwargs: Any) -> None:
    bump()
    transaction.on_commit(bump)


for _model in (ApiKey, Account, Tier, Budget):  # a budget made or removed changes a key's path
    receiver(post_save, sender=_model, dispatch_uid=f"ghostgpt-keycache-save-{_model.__name__}")(_changed)
    receiver(post_delete, sender=_model, dispatch_uid=f"ghostgpt-keycache-delete-{_model.__name__}")(_changed)
