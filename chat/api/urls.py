from __future__ import annotations

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("v1", views.api_root),
    path("v1/", views.api_root),
    path("v1/models", views.list_models),
    path("v1/models/<path:model>", views.retrieve_model),
    path("v1/chat/completions", views.chat_completions),
    path("v1/completions", views.completions),
    path("v1/messages", views.anthropic_messages),
    re_path(r"^v1/", views.unknown_path),
]
