"""What request logs never keep: each pattern, and what must survive next to it."""

from __future__ import annotations

import pytest

from chat.redaction import redact


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Write to john.doe+tag@mail.example.co.uk today", "Write to [email] today"),
        ("a@b.io, Z_9@sub-domain.example.com", "[email], [email]"),
        # Phones: international anywhere, national for the default region (US).
        ("Call +44 20 7946 0958 now", "Call [phone] now"),
        ("Ring (415) 555-2671.", "Ring [phone]."),
        ("Mob: +7 912 345-67-89", "Mob: [phone]"),
        ("+49 30 901820", "[phone]"),
        # Cards: issuers' numbers that pass the Luhn check, in groups or not.
        ("Visa 4111 1111 1111 1111 exp 12/29", "Visa [card] exp 12/29"),
        ("MC 5555-5555-5555-4444", "MC [card]"),
        ("Amex 378282246310005", "Amex [card]"),
        ("Mir 2200 0000 0000 0004", "Mir [card]"),
        # Secrets.
        ("key sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123", "key [secret]"),
        ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz", "[secret]"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [secret]"),
        ("ours gg-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "ours [secret]"),
        ("AKIAIOSFODNN7EXAMPLE", "[secret]"),
        ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "[secret]"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "[secret]"),
        ("xoxb-123456789012-abcdefABCDEF", "[secret]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "jwt [secret]",
        ),
        ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer [secret]"),
        ('{"password": "hunter2hunter2", "user": "bob"}', '{"password": "[secret]", "user": "bob"}'),
        ("api_key=0123456789abcdef&x=1", "api_key=[secret]&x=1"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY-----",
            "[secret]",
        ),
    ],
)
def test_each_pattern_is_redacted(text: str, kept: str) -> None:
    assert redact(text) == kept


@pytest.mark.parametrize(
    "text",
    [
        "Order 1234567890123 shipped",  # starts with 1: no issuer's number
        "4111 1111 1111 1112",  # fails the Luhn check
        "ts 1733500000000, version 3.11.5, at 10:45, in 2026, 1500 dollars",
        "call me maybe",
        "an email-like thing: user@localhost",
        "short token: abc",
        "the password is long",  # no value after a separator
        "",
    ],
)
def test_what_is_not_sensitive_stays(text: str) -> None:
    assert redact(text) == text


def test_a_mixed_request_body_keeps_its_shape() -> None:
    body = (
        '{"messages":[{"role":"user","content":"I am ann@example.org, card 4242424242424242, '
        'key sk-abcdefghijklmnopqrstuvwx"}]}'
    )
    assert redact(body) == '{"messages":[{"role":"user","content":"I am [email], card [card], key [secret]"}]}'
