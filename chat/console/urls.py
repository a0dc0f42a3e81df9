from __future__ import annotations

from django.urls import path

from . import ops_views, views

urlpatterns = [
    path("console", views.console_page, name="console"),
    path("console/ops", views.ops_page, name="console-ops"),
    path("console/api/session", views.SessionApi.as_view()),
    path("console/api/overview", views.OverviewApi.as_view()),
    path("console/api/usage", views.UsageApi.as_view()),
    path("console/api/usage.csv", views.UsageCsvApi.as_view()),
    path("console/api/requests", views.RequestsApi.as_view()),
    path("console/api/keys", views.KeysApi.as_view()),
    path("console/api/keys/<int:key_id>", views.KeyApi.as_view()),
    path("console/api/budget", views.BudgetApi.as_view()),
    path("console/api/quote", views.QuoteApi.as_view()),
    path("console/api/ops/session", views.OperatorSessionApi.as_view()),
    path("console/api/ops/accounts", ops_views.AccountsApi.as_view()),
    path("console/api/ops/accounts/<int:account_id>", ops_views.AccountApi.as_view()),
    path("console/api/ops/accounts/<int:account_id>/requests", ops_views.AccountRequestsApi.as_view()),
    path("console/api/ops/topup", ops_views.OpsTopUpApi.as_view()),
    path("console/api/ops/topups", ops_views.TopUpsApi.as_view()),
    path("console/api/ops/models", ops_views.ModelsHealthApi.as_view()),
    path("console/api/ops/traffic", ops_views.TrafficApi.as_view()),
]
