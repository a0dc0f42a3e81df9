"""Checking the trail (`manage.py audit_verify`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .models import AuditEvent
from .services import GENESIS, pii_mac, row_mac

HEAD_LINE = re.compile(r"audit-head seq=(\d+) mac=([0-9a-f]{64})")


@dataclass(frozen=True)
class Problem:
    seq: int
    what: str

    def __str__(self) -> str:
        return f"row {self.seq}: {self.what}"


def heads_from_log(lines: Iterable[str]) -> list[tuple[int, str]]:
    """The heads `audit.export_head` wrote, from log lines."""
    return [(int(m.group(1)), m.group(2)) for line in lines if (m := HEAD_LINE.search(line))]


def verify(heads: Iterable[tuple[int, str]] = ()) -> tuple[int, list[Problem]]:
    """Walk the chain: (rows checked, problems). Finds an edited row (its MAC or the MAC of
    who/where no longer matches), a deleted one (a gap, and the next row's MAC), an
    inserted one (its MAC, made without the key), a chain recomputed without the key (every
    MAC), and a cut tail (an exported head beyond the last row, or not matching it)."""
    wanted = dict(heads)
    seen: dict[int, str] = {}
    problems: list[Problem] = []
    previous, expected, checked = GENESIS, 1, 0
    for row in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        checked += 1
        if row.seq != expected:
            missing = f"{expected}" if row.seq == expected + 1 else f"{expected}–{row.seq - 1}"
            problems.append(Problem(row.seq, f"rows before it are missing ({missing}): deleted"))
        if row_mac(previous, row) != row.mac:
            problems.append(Problem(row.seq, "its MAC does not match: edited, inserted, or its predecessor changed"))
        if not row.erased and pii_mac(row.label, row.address) != row.pii_mac:
            problems.append(Problem(row.seq, "who or where it came from was edited"))
        if row.seq in wanted:
            seen[row.seq] = row.mac
        previous, expected = row.mac, row.seq + 1
    last = expected - 1
    for seq, mac in sorted(wanted.items()):
        if seq > last:
            problems.append(Problem(seq, f"an exported head has it, but the trail ends at row {last}: truncated"))
        elif seen.get(seq) != mac:
            problems.append(Problem(seq, "differs from the head exported to the log"))
    return checked, problems
