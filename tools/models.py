from __future__ import annotations

import uuid

from django.db import models


class Job(models.Model):
    """One tool run. A row, so its status survives a worker restart."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tool = models.CharField(max_length=50)
    # Who started it: an account's jobs are readable only with that account's key or
    # session; anonymous jobs by whoever holds the (unguessable) id.
    account = models.ForeignKey("chat.Account", null=True, blank=True, on_delete=models.CASCADE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    params = models.JSONField(default=dict)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    @property
    def done(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


class Upload(models.Model):
    """The file a job works on (a PDF, an audio recording, an export to import), kept in the
    database until the job ends: every web process and every worker, on any machine, reaches
    the database, so no node needs a shared directory. It is stored and read in pieces
    (UploadChunk), so a 100 MB import never sits whole in a process's memory; the rows go
    when the job ends (and with it, if the job is deleted)."""

    job = models.OneToOneField(Job, primary_key=True, on_delete=models.CASCADE, related_name="upload")
    size = models.PositiveIntegerField()
    chunk_bytes = models.PositiveIntegerField(help_text="The size of every piece but the last.")
    created_at = models.DateTimeField(auto_now_add=True)


class UploadChunk(models.Model):
    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["upload", "index"], name="upload_chunk_once")]
