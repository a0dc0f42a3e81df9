from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("api/documents", api.DocumentListApi.as_view()),
    path("api/documents/<str:document_id>", api.DocumentDetailApi.as_view()),
    path("api/documents/<str:document_id>/file", api.DocumentFileApi.as_view()),
    path("api/messages/<str:message_id>/sources", api.SourcesApi.as_view()),
]
