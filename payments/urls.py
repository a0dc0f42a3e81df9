from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("console/api/payments", views.PaymentsApi.as_view()),
    path("console/api/payments/<str:payment_id>", views.PaymentApi.as_view()),
    path("console/api/ops/payments", views.OpsPaymentsApi.as_view()),
    path("console/payments/<str:payment_id>", views.receipt_page, name="payment_receipt"),
    path("payments/webhooks/<slug:provider>", views.webhook, name="payment_webhook"),
]
