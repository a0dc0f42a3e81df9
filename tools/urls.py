from __future__ import annotations

from django.urls import path

from . import openai_audio, views

urlpatterns = [
    path("api/fetch-url", views.FetchUrlApi.as_view()),
    path("api/web-research", views.WebResearchApi.as_view()),
    path("api/pdf/extract", views.PdfExtractApi.as_view()),
    path("api/import", views.ImportChatsApi.as_view()),
    path("api/transcribe", views.TranscribeApi.as_view()),
    path("api/jobs/<uuid:job_id>", views.JobApi.as_view()),
    path("v1/audio/transcriptions", openai_audio.AudioTranscriptionsApi.as_view()),
]
