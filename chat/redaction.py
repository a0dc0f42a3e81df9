"""Redaction of request text before it is written anywhere (chat.api.metering's request
logs and excerpts): email addresses, phone numbers, payment card numbers and secrets
(API keys, tokens, private keys) become `[email]`, `[phone]`, `[card]`, `[secret]`.

Phone numbers are found by libphonenumber's matcher (phonenumberslite): numbers written
internationally (+44 20 7946 0958) anywhere, and national ones for
GHOSTGPT_REDACT_PHONE_REGION (default US). Card numbers are 13–19 digits, in groups or not,
that begin as issuers' numbers do (2–6) and pass the Luhn check — so order numbers and
timestamps stay. Secrets: the known key
shapes (OpenAI and Anthropic `sk-…`, GhostGPT's own `gg-…`, AWS access keys, Google API
keys, GitHub, GitLab, Slack and Stripe tokens, JSON Web Tokens, PEM private keys) and
whatever follows `Bearer`, `api_key=`, `password:` and their kin.
"""

from __future__ import annotations

import re

import phonenumbers
from django.conf import settings

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@(?:[A-Za-z0-9\-]{1,63}\.){1,8}[A-Za-z]{2,24}")
# Issuers' numbers begin with 2 (Mastercard, Mir) to 6 (Discover, UnionPay): not a timestamp.
CARD = re.compile(r"(?<![\d.])[2-6](?:[ \-]?\d){12,18}(?![\d.])")
SECRETS = re.compile(
    "|".join(
        (
            r"-----BEGIN[A-Z ]{0,40}PRIVATE KEY-----[\s\S]{0,10000}?-----END[A-Z ]{0,40}PRIVATE KEY-----",
            r"\b(?:sk|rk|pk)-(?:[A-Za-z0-9]{1,20}-)?[A-Za-z0-9_\-]{20,}",  # OpenAI, Anthropic (sk-ant-…)
            r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
            r"\bgg-[A-Za-z0-9_\-]{20,}",  # GhostGPT keys
            r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
            r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
            r"\bgh[pousr]_[A-Za-z0-9]{36,}",  # GitHub
            r"\bgithub_pat_[A-Za-z0-9_]{40,}",
            r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab
            r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",  # JWT
        )
    )
)
# `Bearer X`, `api_key=X`, `"password": "X"`: the value goes, the name stays.
NAMED_SECRET = re.compile(
    r"(?i)(\bbearer\s+|\b(?:api[_-]?key|access[_-]?token|secret|password|passwd|token)\b[\"']?\s*[:=]\s*[\"']?)"
    r"([^\s\"',;&]{8,})"
)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        number = int(char)
        if position % 2:
            number = number * 2 - 9 if number > 4 else number * 2
        total += number
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group()


def _phones(text: str) -> str:
    region = settings.REQUEST_LOGS["PHONE_REGION"]
    found = [
        (m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    ]
    for start, end in reversed(found):
        text = text[:start] + "[phone]" + text[end:]
    return text


def redact(text: str) -> str:
    """`text` with what must not be kept replaced. Secrets first (a key may hold digits a
    card or phone pattern would take apart), cards before phones."""
    if not text:
        return text
    text = SECRETS.sub("[secret]", text)
    text = NAMED_SECRET.sub(lambda m: m.group(1) + "[secret]", text)
    text = EMAIL.sub("[email]", text)
    text = CARD.sub(_card, text)
    return _phones(text)
