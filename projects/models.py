"""Projects: a person's chats grouped under a name, with instructions every chat in the
project is given (chat.web.services.history_messages)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from chat.models import Account


class Project(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="projects")
    # Whose (as a conversation's owner: None for an anonymous or operator-made account's).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, help_text="A system prompt every chat in the project gets.")
    # The project's files are embedded by this routed embeddings model (its canonical id),
    # billed to whoever adds a file or chooses the model; blank: the shipped model (free).
    embedding_model = models.CharField(max_length=200, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["account", "owner"], name="project_owner")]

    def __str__(self) -> str:
        return self.name
