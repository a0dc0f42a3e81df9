"""Reads of projects, always with their owner (an account, and a person within it)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from django.http import Http404

from chat.web.selectors import uuid_or_404

from .models import Project


def project_list(*, account_id: int, owner_id: int | None, archived: bool = False) -> QuerySet[Project]:
    """By name, each with its number of chats; archived ones only when asked for."""
    projects = Project.objects.filter(account_id=account_id, owner_id=owner_id)
    if not archived:
        projects = projects.filter(archived_at__isnull=True)
    return projects.annotate(conversation_count=Count("conversations")).order_by("name", "created_at")


def project_get_for_owner(*, account_id: int, owner_id: int | None, project_id: Any) -> Project:
    project = Project.objects.filter(pk=uuid_or_404(project_id), account_id=account_id, owner_id=owner_id).first()
    if project is None:
        raise Http404("No such project.")
    return project
