from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/audit", views.AccountAuditApi.as_view()),
    path("console/api/ops/audit", views.OpsAuditApi.as_view()),
    path("console/api/ops/audit.csv", views.OpsAuditCsvApi.as_view()),
]
