"""`manage.py audit_head`: write the chain's head to the log now (beat does it every
GHOSTGPT_AUDIT_HEAD_SECONDS) and print it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.services import head_export


class Command(BaseCommand):
    help = "Export the audit chain's head (row count and MAC) to the log."

    def handle(self, *args: Any, **options: Any) -> None:
        seq, mac = head_export()
        self.stdout.write(f"audit-head seq={seq} mac={mac}")
