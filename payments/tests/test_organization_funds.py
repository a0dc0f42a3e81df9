"""An organization's owner, admins and billing members add funds to its wallet from its page
(members may not); back from the provider, the page asks about the payment and shows it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from payments.models import Payment
from payments.providers.registry import providers
from people.models import Organization
from people.tests.test_organizations import _act, _invite_and_join, _organization, _person

from .doubles import StripeDouble

pytestmark = pytest.mark.django_db


@pytest.fixture
def stripe(settings: Any) -> Iterator[StripeDouble]:
    double = StripeDouble(secret_key="sk_test_org", webhook_secret="whsec_org")
    settings.PAYMENTS = {
        **settings.PAYMENTS,
        "STRIPE": {
            "SECRET_KEY": "sk_test_org",
            "WEBHOOK_SECRET": "whsec_org",
            "CURRENCY": "USD",
            "RATE": Decimal(1),
            "API_BASE": double.base_url,
        },
    }
    providers.cache_clear()
    yield double
    providers.cache_clear()
    double.close()


def test_billing_adds_funds_from_the_organizations_page(stripe: StripeDouble) -> None:
    owner = _person("olga@example.com")
    organization = _organization(owner)
    billing = _invite_and_join(owner, organization, "bea@example.com", role="billing")
    member = _invite_and_join(owner, organization, "max@example.com")

    assert _act(member, organization.slug, "fund", amount="12.00", provider="stripe").status_code == 403
    started = _act(billing, organization.slug, "fund", amount="12.00", provider="stripe")
    assert started.status_code == 302 and started["Location"].startswith(stripe.base_url + "/c/pay/")
    payment = Payment.objects.get()
    assert payment.account_id == organization.pk and payment.user.email == "bea@example.com"
    assert _act(billing, organization.slug, "fund", amount="12.001", provider="stripe").status_code == 400

    stripe.complete(payment.reference, notify=False)  # paid; the notification is late
    page = billing.get(f"/accounts/organizations/{organization.slug}/?payment={payment.pk}").content.decode()
    assert re.search(r'id="payment-status"[^>]*>Payment of 12.00 USD: Paid', page), page
    assert Organization.objects.get(pk=organization.pk).account.balance == 12
    assert billing.get(f"/accounts/organizations/{organization.slug}/?payment=not-a-uuid").status_code == 200
