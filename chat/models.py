from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

MONEY = {"max_digits": 24, "decimal_places": 10}


def hash_api_key(secret: str) -> str:
    """SHA-256 of the key. Keys carry 256 random bits, so a fast hash is enough (as for
    GitHub tokens); a slow password hash would only add latency to every request."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Tier(models.Model):
    """A rate-limit tier. Null limits mean unlimited."""

    name = models.SlugField(max_length=32, unique=True)
    rpm = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per minute; empty = unlimited.")
    tpm = models.PositiveIntegerField(null=True, blank=True, help_text="Tokens per minute; empty = unlimited.")
    max_api_keys = models.PositiveIntegerField(
        null=True, blank=True, help_text="API keys an account may hold; empty = GHOSTGPT_MAX_API_KEYS."
    )
    storage_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="Bytes of chat turns an account may keep; empty = GHOSTGPT_STORAGE_BYTES."
    )

    def __str__(self) -> str:
        return self.name


class Account(models.Model):
    """Who pays: owns keys, a wallet balance and a membership tier."""

    name = models.CharField(max_length=150)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    balance = models.DecimalField(default=Decimal(0), **MONEY)
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT)
    membership_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # Bytes its chat turns keep (typed text and attachments): checked against the tier's
    # storage quota before a turn is written, given back when a conversation is deleted.
    storage_used = models.BigIntegerField(default=0)
    # Where its budgets' days, weeks and months begin (an IANA zone name).
    time_zone = models.CharField(max_length=64, default="UTC")
    created_at = models.DateTimeField(auto_now_add=True)

    # The balance may be below zero by an overage (chat.billing.wallet's policy) or a paid
    # top-up taken back (payments).

    def __str__(self) -> str:
        return f"{self.name} (#{self.pk})"


class ApiKey(models.Model):
    """An API key. The secret itself is never stored, only its hash and a display prefix.
    A browser session (`gg_sess` cookie) is a key of kind "session": same auth, limits and
    billing path, but only ever sent as an HttpOnly cookie and never listed as an API key."""

    class Kind(models.TextChoices):
        API = "api", "API key"
        SESSION = "session", "Browser session"
        AGENT = "agent", "Agent token"

    class Scope(models.TextChoices):
        FULL = "full", "Inference and key management"
        INFERENCE = "inference", "Inference only"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.API)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.FULL)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters of the key, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True)
    disabled_by_operator = models.BooleanField(
        default=False, help_text="Off until the operator turns it on again; no key can re-enable it."
    )
    created_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", help_text="The key that made it."
    )
    # The person who made it (signed in), or whose signed-in browser session it is.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    # A signed-in browser session's key lives as long as that Django session (its key):
    # signing out, "sign out everywhere" and a password change revoke it (people.services).
    web_session = models.CharField(max_length=64, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    allowed_models = models.JSONField(default=list, blank=True, help_text="Allowed model ids; empty = all.")
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, help_text="Empty = the account's.")
    rpm_override = models.PositiveIntegerField(null=True, blank=True)
    tpm_override = models.PositiveIntegerField(null=True, blank=True)
    response_cache = models.BooleanField(
        default=False, help_text="Answer repeated deterministic requests from the response cache (chat.api.cache)."
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Budget(models.Model):
    """A spend limit on a key, an organization member or a whole account: `amount` in a
    period (a day, week or month in the account's time zone; empty: for ever). What
    requests have cost in the current period (`spent`) and what running ones hold (`held`,
    their worst case) never pass `amount`: the hold is taken in the same transaction as the
    wallet's reservation (chat.billing.wallet). `period_key` names the period the counters
    are for ("2026-12-06", "2026-W49", "2026-12", "all"); a request in a new period starts
    them from zero."""

    class Scope(models.TextChoices):
        KEY = "key", "Key"
        MEMBER = "member", "Member"
        ACCOUNT = "account", "Account"

    class Period(models.TextChoices):
        DAY = "day", "Day"
        WEEK = "week", "Week"
        MONTH = "month", "Month"
        NONE = "", "Lifetime"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="budgets")
    scope = models.CharField(max_length=8, choices=Scope.choices)
    key = models.ForeignKey("ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    amount = models.DecimalField(**MONEY)
    period = models.CharField(max_length=5, choices=Period.choices, blank=True, default="")
    period_key = models.CharField(max_length=16, blank=True)
    spent = models.DecimalField(default=Decimal(0), **MONEY)
    held = models.DecimalField(default=Decimal(0), **MONEY)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=models.Q(scope="key"), name="one_budget_per_key"),
            models.UniqueConstraint(
                fields=["account", "user"], condition=models.Q(scope="member"), name="one_budget_per_member"
            ),
            models.UniqueConstraint(fields=["account"], condition=models.Q(scope="account"), name="one_account_budget"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="budget_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} budget {self.amount} per {self.period or 'lifetime'}"


class ModelPrice(models.Model):
    """USD (or settings.GHOSTGPT_CURRENCY) per million tokens. No row = free.

    The parts follow the providers' own bills (chat.billing.pricing): input tokens read from
    the provider's prompt cache and tokens written to it are priced apart from the rest of
    the prompt, reasoning tokens apart from the rest of the output. An empty part costs what
    the whole does (cached input = input, reasoning = output)."""

    model = models.CharField(max_length=200, unique=True)
    prompt_per_million = models.DecimalField(default=Decimal(0), **MONEY, help_text="Input tokens.")
    completion_per_million = models.DecimalField(default=Decimal(0), **MONEY, help_text="Output tokens.")
    cached_prompt_per_million = models.DecimalField(
        null=True, blank=True, **MONEY, help_text="Input tokens read from the provider's prompt cache."
    )
    cache_write_per_million = models.DecimalField(
        null=True, blank=True, **MONEY, help_text="Input tokens written to the provider's prompt cache."
    )
    reasoning_per_million = models.DecimalField(
        null=True, blank=True, **MONEY, help_text="Reasoning (thinking) tokens, where priced apart from output."
    )
    per_image = models.DecimalField(default=Decimal(0), **MONEY, help_text="Each image generated.")
    per_audio_second = models.DecimalField(default=Decimal(0), **MONEY, help_text="Each second of audio transcribed.")

    def __str__(self) -> str:
        return self.model


class LedgerEntry(models.Model):
    """Append-only record of every balance change; the entries sum to the balance."""

    class Kind(models.TextChoices):
        RESERVE = "reserve"
        SETTLE = "settle"
        OVERAGE = "overage"  # a real cost beyond the reservation (see chat.billing.wallet)
        REFUND = "refund"
        TOPUP = "topup"
        # A reservation closed by chat.billing.reconcile after its process was lost.
        RECONCILE = "reconcile"
        # A paid top-up taken back: refunded by, or disputed at, the payment provider.
        REVERSAL = "reversal"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="ledger")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(help_text="Signed: negative takes money from the balance.", **MONEY)
    balance_after = models.DecimalField(**MONEY)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_id = models.CharField(max_length=140, blank=True)
    # A reservation: what it held ({"model", "key_id", "prompt_tokens", "prompt_cost"}), for
    # closing it if its process is lost. A reconciliation: the policy that closed it.
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["account", "kind", "idempotency_key"], name="ledger_idempotency")
        ]


class UsageRecord(models.Model):
    """One row per finished request: tokens and cost, for /api/v1/usage."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage")
    # The key's id without a database foreign key (as UsageHour.key_id): a key deleted while
    # its request runs must not fail that request's settlement, and its rows keep saying
    # which key spent the money.
    key = models.ForeignKey(ApiKey, null=True, on_delete=models.DO_NOTHING, db_constraint=False)
    model = models.CharField(max_length=200, help_text="The canonical model id, which the price is for.")
    requested_model = models.CharField(max_length=200, blank=True, help_text="The name the client sent (an alias).")
    request_id = models.CharField(max_length=140, blank=True)
    prompt_tokens = models.PositiveIntegerField()
    completion_tokens = models.PositiveIntegerField()
    # Parts of the two counts above that the provider bills apart (chat.billing.pricing).
    cached_tokens = models.PositiveIntegerField(default=0, help_text="Prompt tokens read from the provider's cache.")
    cache_write_tokens = models.PositiveIntegerField(
        default=0, help_text="Prompt tokens written to the provider's cache."
    )
    reasoning_tokens = models.PositiveIntegerField(default=0, help_text="Completion tokens spent reasoning.")
    prompt_cost = models.DecimalField(**MONEY)
    completion_cost = models.DecimalField(**MONEY)
    estimated = models.BooleanField(default=False, help_text="Usage counted by us, not reported by the model.")
    dialect = models.CharField(max_length=24, blank=True, help_text="The API the client spoke (chat, messages, …).")
    failed = models.BooleanField(default=False, help_text="The request ended in an error.")
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to the first token.")
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="From the request to its end.")
    # Answered from the response cache (chat.api.cache): billed at the cache price; `cache_saved`
    # is what the same answer costs at the model's price, less what was billed.
    cache_hit = models.BooleanField(default=False)
    cache_saved = models.DecimalField(**MONEY, default=Decimal(0))
    # The request's text, redacted (chat.redaction), blanked after GHOSTGPT_REQUEST_LOG_DAYS:
    # the last user message and the answer — their start (GHOSTGPT_CONSOLE_REQUEST_TEXT
    # characters, shown to the key holder) or, with GHOSTGPT_REQUEST_LOGS, up to
    # GHOSTGPT_REQUEST_LOG_MAX_CHARS, with the whole request body (for operators only).
    prompt_text = models.TextField(blank=True)
    answer_text = models.TextField(blank=True)
    request_body = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-id"], name="usage_account_latest")]

    @property
    def total_cost(self) -> Decimal:
        return self.prompt_cost + self.completion_cost


class UsageHour(models.Model):
    """Usage rolled up per account, key, model and UTC hour — written in the same statement
    as each usage row (chat.billing.wallet), so a year of an account's usage is read from
    at most 24×365 rows per key and model however many requests it made."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    # The key's id, kept after the key is deleted (its usage stays attributable); 0 = none.
    key_id = models.BigIntegerField(default=0)
    model = models.CharField(max_length=200)
    hour = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost = models.DecimalField(default=Decimal(0), **MONEY)
    # Of `requests`: answered from the response cache, and what that saved (chat.api.cache).
    cache_hits = models.PositiveIntegerField(default=0)
    cache_saved = models.DecimalField(default=Decimal(0), **MONEY)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "key_id", "model", "hour"], name="usage_hour_unique")]
        indexes = [models.Index(fields=["account", "hour"], name="usage_hour_account")]


class TrafficSample(models.Model):
    """What one web process saw in one sampling interval (chat.traffic), for the operators'
    live-traffic chart. Rows older than two hours are deleted by the sampler."""

    at = models.DateTimeField(db_index=True)
    process = models.CharField(max_length=100)
    seconds = models.FloatField()
    requests = models.PositiveIntegerField(default=0)
    streams = models.PositiveIntegerField(default=0)
    queue = models.PositiveIntegerField(default=0)
    agents = models.PositiveIntegerField(default=0)


# --- The browser product: conversations, messages, shares ---------------------------------


class Conversation(models.Model):
    """A chat in the web product. Messages form a tree (edits and regenerations branch);
    `current_leaf` is the message whose path the page shows."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="conversations")
    # The person who wrote it (None: an anonymous or operator-made account's): within an
    # organization's account each member sees their own chats only.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True)
    system_prompt = models.TextField(blank=True)
    current_leaf = models.UUIDField(null=True, blank=True)
    # A project's chats go with it (deleting a project asks first, then deletes them).
    project = models.ForeignKey(
        "projects.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="conversations"
    )
    pinned_at = models.DateTimeField(null=True, blank=True, help_text="Pinned above the recent chats.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["account", "-updated_at"], name="conversation_recent")]

    def __str__(self) -> str:
        return self.title or str(self.pk)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        COMPLETE = "complete"
        STREAMING = "streaming"  # a generation owns it and saves it as it streams
        STOPPED = "stopped"  # stopped by the user: the text shown is the text kept
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="children")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # What went with a user message: [{"kind": "pdf"|"image"|"audio"|"web"|"url", "name", "text"?, ...}]
    attachments = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error = models.JSONField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True)
    usage = models.JSONField(null=True, blank=True)
    # An answer's documents: what went in ("whole" or "passages", the numbered sources, what
    # was cut) — documents.context.record; None when the turn read no documents.
    retrieval = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="message_order")]


class Share(models.Model):
    """A frozen snapshot of conversation blocks behind a public, unguessable id."""

    id = models.CharField(primary_key=True, max_length=32, editable=False)  # >= 128 random bits
    # Null for an anonymous share (no session or key): nobody can revoke it.
    account = models.ForeignKey(Account, null=True, blank=True, on_delete=models.CASCADE, related_name="shares")
    # Who made an anonymous share (the client's rate-limit bucket), for its storage quota.
    creator_bucket = models.CharField(max_length=64, blank=True, db_index=True)
    title = models.CharField(max_length=200, blank=True)
    snapshot = models.JSONField()
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.title or self.pk


class AgentConnection(models.Model):
    """One WebSocket connection of a dial-in agent (a model worker behind NAT that connects
    out to GhostGPT). Rows stay after the connection ends, with `disconnected_at` set."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.ForeignKey(ApiKey, null=True, on_delete=models.SET_NULL, related_name="agent_connections")
    name = models.CharField(max_length=100, blank=True)
    channel_name = models.CharField(max_length=200)
    model_ids = models.JSONField(default=list, blank=True, help_text="What the agent says it serves.")
    parallel = models.PositiveSmallIntegerField(default=1, help_text="Jobs it takes at once.")
    in_flight = models.PositiveIntegerField(default=0)
    served = models.PositiveIntegerField(default=0)
    connected_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    last_message_at = models.DateTimeField(null=True, blank=True)
    disconnected_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-connected_at"]

    def __str__(self) -> str:
        return f"agent {self.name or self.pk}"


class StoredResponse(models.Model):
    """A Responses API response kept for `previous_response_id`, GET and input_items
    (`store: true`, the default as on OpenAI) until `expires_at`. `context` holds the items
    of the conversation before this request (earlier inputs and outputs), so continuing
    from it is one read."""

    id = models.CharField(primary_key=True, max_length=64)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="stored_responses")
    # No database foreign key, as UsageRecord.key: storing a response never fails on a key
    # deleted meanwhile.
    key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    model = models.CharField(max_length=200)
    context = models.JSONField(default=list, blank=True)
    input_items = models.JSONField(default=list, blank=True)
    body = models.JSONField(help_text="The response object as it was returned.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"], name="stored_response_recent")]

    def __str__(self) -> str:
        return self.pk


class CachedResponse(models.Model):
    """An answer kept by the response cache (chat.api.cache) where there is no Redis: the
    events a backend produced for one deterministic request, replayed in any dialect."""

    # "a<account id>" or "a<account id>:k<key id>": who may be answered from it.
    scope = models.CharField(max_length=64)
    key = models.CharField(max_length=64, unique=True, help_text="HMAC-SHA-256 of the scope, model and request.")
    body = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["scope", "created_at"], name="cached_response_scope")]
