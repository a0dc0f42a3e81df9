"""`manage.py audit_verify [--heads LOGFILE ...] [--head SEQ:MAC ...]`: exit 0 when the
trail is whole, 1 with the problems listed otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.verify import heads_from_log, verify


class Command(BaseCommand):
    help = "Check the audit trail's HMAC chain, and its tail against heads exported to the log."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--heads", action="append", default=[], help="A log file with audit-head lines.")
        parser.add_argument("--head", action="append", default=[], help="SEQ:MAC, a head noted elsewhere.")

    def handle(self, *args: Any, **options: Any) -> None:
        heads: list[tuple[int, str]] = []
        for path in options["heads"]:
            try:
                heads += heads_from_log(Path(path).read_text(errors="replace").splitlines())
            except OSError as exc:
                raise CommandError(f"cannot read {path}: {exc}") from None
        for item in options["head"]:
            seq, _, mac = item.partition(":")
            if not seq.isdigit() or len(mac) != 64:
                raise CommandError(f"--head wants SEQ:MAC (64 hex digits), not {item!r}")
            heads.append((int(seq), mac))
        checked, problems = verify(heads)
        if problems:
            for problem in problems:
                self.stderr.write(str(problem))
            raise CommandError(f"the audit trail is not whole: {len(problems)} problem(s) in {checked} rows")
        self.stdout.write(f"audit trail whole: {checked} rows, {len(heads)} exported head(s) matched")
