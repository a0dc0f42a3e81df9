"""Documents: files added to a chat or a project, split into passages the embedding model
reads whole, each passage embedded and indexed for full-text search (documents.store holds
the vectors and the text index, per database)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from chat.models import Account, Conversation


class Document(models.Model):
    class Kind(models.TextChoices):
        PDF = "pdf"
        DOCX = "docx"
        TEXT = "text"
        MARKDOWN = "markdown"
        CSV = "csv"
        HTML = "html"
        IMAGE = "image"

    class Status(models.TextChoices):
        QUEUED = "queued"
        INDEXING = "indexing"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="documents")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    # Where it belongs: a project's files, or the chat it was attached in (set by the turn
    # that first sends it). Neither: added in the composer of a chat not started yet.
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="documents"
    )
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    content_type = models.CharField(max_length=100)
    url = models.URLField(max_length=2048, blank=True, help_text="Where a fetched page came from.")
    size = models.PositiveBigIntegerField(default=0, help_text="Bytes kept: the file, or the fetched page's text.")
    pages = models.PositiveIntegerField(default=0, help_text="PDF pages; sections for other kinds.")
    tokens = models.PositiveIntegerField(default=0, help_text="The text's word pieces, for the context budget.")
    text_bytes = models.PositiveBigIntegerField(default=0)
    # Which model embedded its passages (a routed model's canonical id; blank: the shipped
    # all-MiniLM-L6-v2) and its vectors' length: questions are embedded by the same model.
    embedding_model = models.CharField(max_length=200, blank=True)
    dimensions = models.PositiveSmallIntegerField(default=384)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.JSONField(null=True, blank=True)
    job = models.ForeignKey("tools.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["account", "owner", "-created_at"], name="document_owner"),
            models.Index(fields=["project", "created_at"], name="document_project"),
            models.Index(fields=["conversation", "created_at"], name="document_conversation"),
        ]

    def __str__(self) -> str:
        return self.name


class DocumentFile(models.Model):
    """The file as uploaded (the viewer draws it; the export carries it)."""

    document = models.OneToOneField(Document, primary_key=True, on_delete=models.CASCADE, related_name="file")
    data = models.BinaryField()


class Passage(models.Model):
    """A piece of a document's text: at most the embedding model's window, never across a page."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="passages")
    ordinal = models.PositiveIntegerField()
    page = models.PositiveIntegerField(null=True, blank=True)
    heading = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    tokens = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [models.UniqueConstraint(fields=["document", "ordinal"], name="passage_order")]
