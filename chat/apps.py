from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat and OpenAI-compatible API"

    def ready(self) -> None:
        from . import keycache, revocation  # noqa: F401  (connect their signal receivers)
