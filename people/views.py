"""The people's own pages beside allauth's: the account overview."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from . import selectors, services


@require_GET
@login_required
def account_page(request: HttpRequest) -> HttpResponse:
    account = services.person_account(request.user)  # type: ignore[arg-type]
    context = {
        **selectors.person_overview(user=request.user, account=account),
        "currency": settings.GHOSTGPT["CURRENCY"],
    }  # type: ignore[arg-type]
    return render(request, "people/account.html", context)
