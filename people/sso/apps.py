from django.apps import AppConfig


class SsoConfig(AppConfig):
    """GhostGPT's OpenID Connect provider for allauth (people.sso.provider)."""

    name = "people.sso"
    label = "people_sso"
    verbose_name = "Single sign-on"
