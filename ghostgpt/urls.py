from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path

from chat.api import health
from chat.api import urls as api_urls
from chat.metrics import metrics_view

# /admin/ signs in through allauth (rate limits, the second factor), never around it.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]

urlpatterns = [
    path("health", health.models),
    path("health/live", health.live),
    path("health/ready", health.ready),
    path("metrics", metrics_view),
    # The API first: Django tries the patterns in order on every request, and the admin's
    # alone are dozens (resolving /v1/chat/completions behind them took ~0.19 ms).
    path("", include("chat.api.urls")),
    # The operator API lives under /admin/… too: its exact paths come before Django's admin.
    path("", include("chat.accounts.urls")),
    path("", include("chat.console.urls")),
    path("", include("audit.urls")),
    path("", include("payments.urls")),
    path("", include("alerts.urls")),
    path("", include("tools.urls")),
    path("admin/", admin.site.urls),
    # Sign-up, sign-in, email, password, MFA, SSO and sessions (django-allauth), and the
    # people's own pages (people/).
    path("accounts/", include("people.urls")),
    path("accounts/", include("allauth.urls")),
    path("", include("projects.urls")),
    path("", include("documents.urls")),
    path("", include("chat.web.urls")),
    *api_urls.fallback,
]

handler404 = "chat.api.catalog.unknown_path"
handler500 = "chat.api.catalog.server_error"
