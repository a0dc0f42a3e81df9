from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chat.selectors import api_key_is_active
from chat.services import account_create_with_key


class Command(BaseCommand):
    help = (
        "Development only: print the local dev API key, creating it the first time. "
        "Its secret is kept in GHOSTGPT_DATA_DIR/dev_api_key (mode 600) so `make run` can show it again."
    )

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            raise CommandError("dev_api_key is for development; use create_api_key in production.")
        path = settings.DATA_DIR / "dev_api_key"
        secret = path.read_text().strip() if path.exists() else ""
        if not secret or not api_key_is_active(secret=secret):
            _, secret = account_create_with_key(name="dev", tier="unlimited")
            path.write_text(secret + "\n")
            path.chmod(0o600)
        self.stdout.write(secret)
