"""The trail's chain: `audit_verify` finds an edited, a deleted, an inserted and a cut row,
and a chain recomputed without the key; concurrent writers never fork it."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit import services
from audit.context import Actor
from audit.models import AuditEvent
from audit.verify import verify

pytestmark = pytest.mark.django_db
WHO = Actor("person", "user:7", "lea@example.com", 3)


def _trail(n: int = 6) -> list[AuditEvent]:
    return [
        services.record("key.update", actor=WHO, target=f"key:gg-{i}", before={"n": i}, after={"n": i + 1})
        for i in range(n)
    ]


def _verify(*args: str) -> str:
    out, err = StringIO(), StringIO()
    try:
        call_command("audit_verify", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return f"FAILED {exc}\n{err.getvalue()}"
    return out.getvalue()


def test_a_whole_trail_verifies_and_its_head_matches() -> None:
    _trail()
    seq, mac = services.head_export()
    assert seq == 6
    assert "whole: 6 rows, 1 exported head" in _verify("--head", f"{seq}:{mac}")


def test_an_edited_row_is_found() -> None:
    rows = _trail()
    AuditEvent.objects.filter(pk=rows[2].pk).update(after={"n": 999})
    report = _verify()
    assert report.startswith("FAILED") and "row 3: its MAC does not match" in report


def test_edited_who_or_where_is_found() -> None:
    rows = _trail()
    AuditEvent.objects.filter(pk=rows[1].pk).update(address="203.0.113.9")
    assert "row 2: who or where it came from was edited" in _verify()


def test_a_deleted_row_is_found() -> None:
    rows = _trail()
    AuditEvent.objects.filter(pk=rows[3].pk).delete()
    report = _verify()
    assert "row 5: rows before it are missing (4): deleted" in report


def test_an_inserted_row_is_found() -> None:
    rows = _trail()
    # Shift the tail up and slip a row in at 4, with a MAC made the way an intruder could.
    for row in reversed(rows[3:]):
        AuditEvent.objects.filter(pk=row.pk).update(seq=row.seq + 1)
    forged = AuditEvent(
        seq=4, at=rows[3].at, action="key.delete", actor_kind="person", actor="user:7", account_id=3,
        target="key:gg-x", label="", address="", pii_mac="0" * 64, mac="0" * 64,
    )  # fmt: skip
    forged.pii_mac = hashlib.sha256(b"pii").hexdigest()
    forged.mac = hashlib.sha256(rows[2].mac.encode() + b"forged").hexdigest()
    forged.save(force_insert=True)
    assert "row 4: its MAC does not match" in _verify()


def test_a_cut_tail_is_found_by_the_exported_head(tmp_path: Any) -> None:
    _trail()
    log = tmp_path / "ghostgpt.log"
    seq, mac = services.head_export()
    log.write_text(f"2026-12-06 12:00:00 INFO ghostgpt.audit [-]: audit-head seq={seq} mac={mac}\n")
    AuditEvent.objects.filter(seq__gte=5).delete()  # the last two rows: the chain itself still verifies
    assert verify()[1] == []
    report = _verify("--heads", str(log))
    assert "row 6: an exported head has it, but the trail ends at row 4: truncated" in report


def test_a_chain_recomputed_without_the_key_is_found(settings: Any) -> None:
    rows = _trail()
    operators_key = settings.AUDIT["KEY"]
    AuditEvent.objects.filter(pk=rows[0].pk).update(target="key:gg-rewritten")
    # An intruder rebuilds every MAC with a key of their own (or a plain hash).
    settings.AUDIT = {**settings.AUDIT, "KEY": "not-the-operators-key"}
    previous = services.GENESIS
    for row in AuditEvent.objects.order_by("seq"):
        row.pii_mac = services.pii_mac(row.label, row.address)
        row.mac = services.row_mac(previous, row)
        row.save()
        previous = row.mac
    assert verify()[1] == []  # consistent under the intruder's key…
    settings.AUDIT = {**settings.AUDIT, "KEY": operators_key}
    checked, problems = verify()
    assert checked == 6 and len(problems) >= 6  # …and wrong under the operator's


def test_erasure_keeps_the_chain_whole() -> None:
    _trail(2)
    services.record_failed_sign_in(login='=HYPERLINK("http://x")')
    assert services.pseudonymise(user_id=7) == 2
    labels = set(AuditEvent.objects.filter(actor="user:7").values_list("label", flat=True))
    assert len(labels) == 1 and labels.pop().startswith("deleted-")  # one pseudonym, no email
    assert services.erase_expired(now=timezone.now() + timedelta(days=365)) == 1
    assert verify()[1] == []


def test_no_secret_reaches_the_trail() -> None:
    row = services.record("key.create", actor=WHO, after={"name": "ci", "secret": "gg-s3cr3t", "password": "pw"})
    assert row.after == {"name": "ci", "secret": "[redacted]", "password": "[redacted]"}
