"""allauth's OpenID Connect paths (/accounts/oidc/<provider_id>/login/ and …/callback/),
served by people.sso's views."""

from __future__ import annotations

from django.urls import include, path, re_path

from . import views

urlpatterns = [
    path(
        "oidc/",
        include(
            [
                re_path(
                    r"^(?P<provider_id>[^/]+)/",
                    include(
                        [
                            path("login/", views.login, name="openid_connect_login"),
                            path("login/callback/", views.callback, name="openid_connect_callback"),
                        ]
                    ),
                )
            ]
        ),
    )
]
