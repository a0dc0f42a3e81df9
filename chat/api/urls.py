from __future__ import annotations

from django.urls import path, re_path

from . import catalog, embeddings, response_views, views

urlpatterns = [
    path("v1", catalog.api_root),
    path("v1/", catalog.api_root),
    # Gemini's routes first: "models/{model}:generateContent" would otherwise look like a model id.
    re_path(
        r"^(?P<version>v1beta|v1)/models/(?P<model>[^/]+):(?P<method>generateContent|streamGenerateContent)$",
        views.gemini_generate,
    ),
    path("v1beta/models", catalog.gemini_models),
    path("v1/models", catalog.list_models),
    path("v1/models/<path:model>", catalog.retrieve_model),
    path("v1/chat/completions", views.chat_completions),
    path("v1/completions", views.completions),
    path("v1/messages", views.anthropic_messages),
    path("v1/responses", response_views.create_response),
    path("v1/embeddings", embeddings.create_embeddings),
    path("v1/responses/<str:response_id>", response_views.response_detail),
    path("v1/responses/<str:response_id>/input_items", response_views.response_input_items),
]

# Any other /v1 or /v1beta path: a 404 in the OpenAI error format. Listed last in the root
# URLconf (after other apps' /v1 routes, e.g. /v1/audio/transcriptions).
fallback = [
    re_path(r"^v1/", catalog.unknown_path),
    re_path(r"^v1beta/", catalog.unknown_path),
]
