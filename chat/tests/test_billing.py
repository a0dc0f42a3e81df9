"""Wallet services, prices and the in-process limiter, without a server."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from chat.backends.base import Usage
from chat.billing.pricing import Price
from chat.billing.ratelimit import Limits, MemoryLimiter
from chat.billing.wallet import InsufficientBalance, wallet_reserve, wallet_settle, wallet_top_up
from chat.models import Account, LedgerEntry, UsageRecord
from chat.services import account_create


def test_price_arithmetic_is_exact() -> None:
    price = Price(Decimal("2.5"), Decimal(10))
    assert price.cost(Usage(1234, 10)) == Decimal("0.003185")
    assert Price().is_free and not price.is_free
    assert not Price(cache_write_per_million=Decimal(1)).is_free


def test_each_part_is_billed_at_its_own_rate() -> None:
    # Anthropic's Claude Sonnet 4 list prices: input 3, 5-minute cache write 3.75, cache
    # read 0.30, output 15 (USD per million tokens); a made-up reasoning rate of 20.
    sonnet = Price(
        Decimal(3),
        Decimal(15),
        cached_prompt_per_million=Decimal("0.30"),
        cache_write_per_million=Decimal("3.75"),
        reasoning_per_million=Decimal(20),
    )
    usage = Usage(1_000, 500, cached_tokens=600, cache_write_tokens=300, reasoning_tokens=100)
    # 100 × 3 + 600 × 0.30 + 300 × 3.75 = 300 + 180 + 1125 = 1605 → 0.001605
    assert sonnet.prompt_cost(usage) == Decimal("0.001605")
    # 400 × 15 + 100 × 20 = 8000 → 0.008
    assert sonnet.completion_cost(usage) == Decimal("0.008")
    # The worst case prices every prompt token as a cache write, every output one as reasoning.
    assert sonnet.worst_cost(1_000, 500) == Decimal("0.01375")  # 3750 + 10000
    # Parts without their own rate cost their whole's.
    plain = Price(Decimal(3), Decimal(15))
    assert plain.cost(usage) == plain.cost(Usage(1_000, 500)) == Decimal("0.0105")
    # Parts reported larger than their whole are billed as the whole.
    assert sonnet.prompt_cost(Usage(10, 0, cached_tokens=50)) == Decimal("0.000003")  # 10 × 0.30
    assert sonnet.completion_cost(Usage(0, 10, reasoning_tokens=50)) == Decimal("0.0002")  # 10 × 20


@pytest.mark.django_db
class TestWallet:
    def account(self, balance: str) -> Account:
        account = account_create(name="w")
        wallet_top_up(account_id=account.pk, amount=Decimal(balance), idempotency_key="seed")
        return account

    def ledger_total(self, account: Account) -> Decimal:
        return sum((e.amount for e in LedgerEntry.objects.filter(account=account)), Decimal(0))

    def usage(self, account: Account) -> UsageRecord:
        return UsageRecord(
            account=account,
            model="m",
            prompt_tokens=1,
            completion_tokens=1,
            prompt_cost=Decimal(0),
            completion_cost=Decimal(0),
        )

    def test_reserve_beyond_the_balance_changes_nothing(self) -> None:
        account = self.account("1.00")
        with pytest.raises(InsufficientBalance):
            wallet_reserve(account_id=account.pk, amount=Decimal("1.01"), request_id="r1")
        account.refresh_from_db()
        assert account.balance == Decimal("1.00") and LedgerEntry.objects.filter(account=account).count() == 1

    def test_each_money_move_is_one_statement_with_its_records(self) -> None:
        """On PostgreSQL the account's row lock lives for one statement (bench/scale.py: an
        account's requests queued on it); everywhere, the entry and the usage row are written
        with the change, balance_after as the UPDATE left it."""
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        account = self.account("1.00")
        with CaptureQueriesContext(connection) as reserve_queries:
            reservation = wallet_reserve(account_id=account.pk, amount=Decimal("0.60"), request_id="r1")
        usage = self.usage(account)
        usage.request_id = "r1"
        with CaptureQueriesContext(connection) as settle_queries:
            wallet_settle(reservation=reservation, cost=Decimal("0.25"), usage=usage)
        if connection.vendor == "postgresql":
            assert len(reserve_queries) == 1 and len(settle_queries) == 1
        reserve, settle = LedgerEntry.objects.filter(account=account).exclude(kind="topup").order_by("id")
        assert (reserve.kind, reserve.amount, reserve.balance_after) == ("reserve", Decimal("-0.60"), Decimal("0.40"))
        assert (settle.kind, settle.amount, settle.balance_after) == ("settle", Decimal("0.35"), Decimal("0.75"))
        assert reserve.request_id == settle.request_id == "r1" and reserve.created_at is not None
        row = UsageRecord.objects.get(account=account)
        assert (row.request_id, row.prompt_tokens, row.model) == ("r1", 1, "m") and row.created_at is not None

    def test_settle_returns_the_unused_reservation(self) -> None:
        account = self.account("1.00")
        reservation = wallet_reserve(account_id=account.pk, amount=Decimal("0.60"), request_id="r1")
        wallet_settle(reservation=reservation, cost=Decimal("0.25"), usage=self.usage(account))
        account.refresh_from_db()
        assert account.balance == Decimal("0.75") == self.ledger_total(account)
        assert list(LedgerEntry.objects.filter(account=account).values_list("kind", flat=True)) == [
            "topup",
            "reserve",
            "settle",
        ]

    def test_a_cost_beyond_the_reservation_is_charged_as_an_overage(self) -> None:
        # Before: settlement was capped at the reservation, so every token beyond it was free.
        account = self.account("1.00")
        reservation = wallet_reserve(account_id=account.pk, amount=Decimal("0.10"), request_id="r1")
        wallet_settle(reservation=reservation, cost=Decimal("1.50"), usage=self.usage(account))
        account.refresh_from_db()
        assert account.balance == Decimal("-0.50") == self.ledger_total(account)  # below zero by the excess only
        assert LedgerEntry.objects.get(account=account, kind="overage").amount == Decimal("-1.40")
        with pytest.raises(InsufficientBalance):  # 402 until a top-up makes it positive
            wallet_reserve(account_id=account.pk, amount=Decimal("0.0000001"), request_id="r2")
        wallet_top_up(account_id=account.pk, amount=Decimal(1), idempotency_key="again")
        wallet_reserve(account_id=account.pk, amount=Decimal("0.10"), request_id="r3")

    def test_failures_are_refunds_and_no_reservation_is_a_credit(self) -> None:
        account = self.account("1.00")
        failed = wallet_reserve(account_id=account.pk, amount=Decimal("0.10"), request_id="r2")
        wallet_settle(reservation=failed, cost=Decimal(0), usage=self.usage(account), failed=True)
        for amount in (Decimal(0), Decimal("-5")):
            with pytest.raises(ValueError):
                wallet_reserve(account_id=account.pk, amount=amount, request_id="mint")
        negative = wallet_reserve(account_id=account.pk, amount=Decimal("0.10"), request_id="r3")
        wallet_settle(reservation=negative, cost=Decimal("-3"), usage=self.usage(account))  # billed as 0
        account.refresh_from_db()
        assert account.balance == Decimal("1.00") == self.ledger_total(account)
        assert LedgerEntry.objects.filter(account=account, kind="refund").count() == 1

    def test_top_up_is_idempotent(self) -> None:
        account = self.account("0")
        first, created = wallet_top_up(account_id=account.pk, amount=Decimal(3), idempotency_key="inv-7")
        again, created_again = wallet_top_up(account_id=account.pk, amount=Decimal(3), idempotency_key="inv-7")
        account.refresh_from_db()
        assert (created, created_again) == (True, False) and first.pk == again.pk
        assert account.balance == Decimal(3)


def test_memory_limiter_is_exact_under_threads(settings: object) -> None:
    limiter = MemoryLimiter()
    limits = Limits(subject="threads", rpm=10, tpm=None)
    outcomes: list[bool] = []
    barrier = threading.Barrier(50)

    def client() -> None:
        barrier.wait()
        outcomes.append(asyncio.run(limiter.hit(limits)).over_requests)

    threads = [threading.Thread(target=client) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count(False) == 10 and outcomes.count(True) == 40


def test_memory_limiter_tokens_and_headers() -> None:
    limiter = MemoryLimiter()
    limits = Limits(subject="tokens", rpm=5, tpm=100)
    asyncio.run(limiter.add_tokens(limits, 100))
    state = asyncio.run(limiter.hit(limits))
    assert state.over_tokens and not state.over_requests
    headers = state.headers()
    assert headers["x-ratelimit-remaining-requests"] == "4" and headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")


def test_tokens_are_held_at_the_worst_case_and_corrected_at_the_end() -> None:
    limiter = MemoryLimiter()
    limits = Limits(subject="hold", rpm=None, tpm=1000)
    first, used = asyncio.run(limiter.hold_tokens(limits, 600))
    assert first is not None and used == 600
    refused, used = asyncio.run(limiter.hold_tokens(limits, 600))  # would pass the TPM: nothing held
    assert refused is None and used == 600
    asyncio.run(limiter.correct_tokens(first, 50))  # it really used 50
    second, used = asyncio.run(limiter.hold_tokens(limits, 600))
    assert second is not None and used == 650
    asyncio.run(limiter.correct_tokens(second, -(10**9)))  # absurd reports never push it below zero
    assert asyncio.run(limiter.hit(limits, count=False)).tokens == 0
