from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("profile/", views.account_page, name="people_account"),
    path("delete/", views.erasure_page, name="people_erasure"),
    path("organizations/", views.organizations_page, name="people_organizations"),
    path("organizations/<slug:slug>/", views.organization_page, name="people_organization"),
    path("organizations/<slug:slug>/<str:action>/", views.organization_action, name="people_organization_action"),
    path("wallet/", views.wallet_switch, name="people_wallet"),
    path("invitations/<str:token>/", views.invitation_page, name="people_invitation"),
]
