from __future__ import annotations

from django.urls import path

from . import api

urlpatterns = [
    path("api/projects", api.ProjectListApi.as_view()),
    path("api/projects/<str:project_id>", api.ProjectDetailApi.as_view()),
]
