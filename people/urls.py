from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("profile/", views.account_page, name="people_account"),
]
