from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One state-changing action, append-only (audit.services.record).

    Row n carries `mac` = HMAC(GHOSTGPT_AUDIT_KEY, mac of row n-1 ‖ this row's chained
    fields), so editing, deleting or inserting a row — or recomputing the chain without the
    key — is found by `manage.py audit_verify`, and a cut tail by the chain heads exported to
    the log. Who and from where (`label`: an email or a key's name; `address`) are personal
    data that retention and account deletion may erase: the chain covers them through
    `pii_mac`, checked while they are present."""

    seq = models.PositiveBigIntegerField(unique=True, help_text="Position in the chain, from 1.")
    at = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    # Who: "person", "key", "admin" (the admin key), "operator" (staff), "system".
    actor_kind = models.CharField(max_length=16)
    # Their stable reference: "user:12", "key:gg-AbCdEf12", "admin:<fingerprint>", "cli".
    actor = models.CharField(max_length=120)
    # The account acted on or for (whose trail it is).
    account_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    request_id = models.CharField(max_length=140, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    count = models.PositiveIntegerField(default=1, help_text="Events this row stands for (failed sign-ins in a flood).")
    # Erasable personal data, chained through pii_mac.
    label = models.CharField(max_length=254, blank=True)
    address = models.CharField(max_length=64, blank=True)
    erased = models.BooleanField(default=False, help_text="label/address erased (retention) or pseudonymised.")
    pii_mac = models.CharField(max_length=64)
    mac = models.CharField(max_length=64)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["account_id", "-seq"], name="audit_account_latest")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor}"
