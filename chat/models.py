from __future__ import annotations

import hashlib

from django.db import models


def hash_api_key(secret: str) -> str:
    """SHA-256 of the key. Keys carry 256 random bits, so a fast hash is enough (as for
    GitHub tokens); a slow password hash would only add latency to every request."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ApiKey(models.Model):
    """An API key. The secret itself is never stored, only its hash and a display prefix."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
