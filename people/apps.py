from __future__ import annotations

from django.apps import AppConfig


class PeopleConfig(AppConfig):
    """People who sign in (django-allauth): their own accounts, signed-in browser sessions."""

    name = "people"
    verbose_name = "People"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connect the sign-in and sign-out receivers)
