"""JSON on the streaming hot path, with orjson: every event of a stream is parsed from the
upstream and written to the client, and the stdlib's encoder and decoder were ~4% of the
event loop's time on a 33-event stream (py-spy, bench/gateway.py); orjson is several times
faster and writes the same compact UTF-8 JSON (`ensure_ascii=False`, no spaces).

Where orjson refuses what the stdlib takes — a Decimal or an integer past 64 bits to
write; NaN, Infinity or a number past a double to read — the stdlib does it, so nothing
that parsed or encoded before fails now.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; what orjson cannot write (a Decimal, an integer past 64 bits) is
    written by the stdlib with Django's encoder, as JsonResponse would."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), cls=DjangoJSONEncoder).encode()


def loads(data: bytes | str) -> Any:
    """Raises ValueError (json.JSONDecodeError, or UnicodeDecodeError for bytes that are not
    UTF-8) on what is not JSON, as json.loads does."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
