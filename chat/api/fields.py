"""Reading a client's JSON values by type. A value where a string belongs may be any JSON
type: an object or an array is unhashable, so looking it up in a dict or testing it against a
set raises TypeError (a 500). Every dialect reads such values through `string()` first, so a
wrong type is a 400 naming the parameter, like any other bad value."""

from __future__ import annotations

from typing import Any


def string(value: Any) -> str | None:
    """`value` if it is a string, else None (the caller's "missing or invalid")."""
    return value if isinstance(value, str) else None
