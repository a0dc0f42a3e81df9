"""The URLs of a model-tier process (GHOSTGPT_ROLE=model): the models and nothing else."""

from __future__ import annotations

from django.urls import path, re_path

from chat.api import catalog, embeddings, health
from chat.api import views as api_views
from chat.metrics import metrics_view

urlpatterns = [
    path("health", health.models),
    path("health/live", health.live),
    path("health/ready", health.ready),
    path("metrics", metrics_view),
    path("v1/models", catalog.list_models),
    path("v1/models/<path:model>", catalog.retrieve_model),
    path("v1/chat/completions", api_views.chat_completions),
    path("v1/completions", api_views.completions),
    path("v1/embeddings", embeddings.create_embeddings),
    re_path(r"^", catalog.unknown_path),
]

handler404 = "chat.api.catalog.unknown_path"
handler500 = "chat.api.catalog.server_error"
