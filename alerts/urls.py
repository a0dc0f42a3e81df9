from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("api/v1/webhooks", views.EndpointsApi.as_view()),
    path("api/v1/webhooks/<int:endpoint_id>", views.EndpointApi.as_view()),
    path("api/v1/webhooks/<int:endpoint_id>/test", views.EndpointTestApi.as_view()),
    path("api/v1/webhooks/<int:endpoint_id>/deliveries", views.DeliveriesApi.as_view()),
    path("api/v1/alerts", views.AlertSettingsApi.as_view()),
    path("console/api/webhooks", views.ConsoleEndpointsApi.as_view()),
    path("console/api/webhooks/<int:endpoint_id>", views.ConsoleEndpointApi.as_view()),
    path("console/api/webhooks/<int:endpoint_id>/test", views.ConsoleEndpointTestApi.as_view()),
    path("console/api/webhooks/<int:endpoint_id>/deliveries", views.ConsoleDeliveriesApi.as_view()),
    path("console/api/alerts", views.ConsoleAlertSettingsApi.as_view()),
    path("console/api/ops/webhooks", views.OpsEndpointsApi.as_view()),
    path("console/api/ops/webhooks/<int:endpoint_id>", views.OpsEndpointApi.as_view()),
    path("console/api/ops/webhooks/<int:endpoint_id>/test", views.OpsEndpointTestApi.as_view()),
    path("console/api/ops/webhooks/<int:endpoint_id>/deliveries", views.OpsDeliveriesApi.as_view()),
]
