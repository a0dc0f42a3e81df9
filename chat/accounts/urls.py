from __future__ import annotations

from django.urls import path

from . import admin_views, views

management_urls = [
    path("api/v1/keys", views.KeyListCreateApi.as_view()),
    path("api/v1/keys/<int:key_id>", views.KeyDetailApi.as_view()),
    path("api/v1/balance", views.BalanceApi.as_view()),
    path("api/v1/budget", views.AccountBudgetApi.as_view()),
    path("api/v1/membership", views.MembershipApi.as_view()),
    path("api/v1/rates", views.RatesApi.as_view()),
    path("api/v1/usage", views.UsageApi.as_view()),
]

operator_urls = [
    path("admin/users/add", admin_views.UserAddApi.as_view()),
    path("admin/users/delete", admin_views.UserDeleteApi.as_view()),
    path("admin/users", admin_views.UserListApi.as_view()),
    path("admin/topup", admin_views.TopUpApi.as_view()),
]

urlpatterns = management_urls + operator_urls
