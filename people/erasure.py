""" "Delete my data": a person deletes their chats, projects, files and shares — or their
whole account. The books stay whole: the personal account's row, its ledger, usage and
audit rows are kept, the identity in them replaced by a pseudonym (audit.services.pseudonymise
for the audit chain; `deleted-…` for the account's name), so the ledger still adds up and
the audit chain still verifies.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.conf import settings
from django.db import transaction

from chat.models import Account, ApiKey, Conversation, Share
from chat.services import request_text_purge
from chat.web.services import conversations_delete
from documents.models import Document
from documents.services import documents_delete
from projects.models import Project
from tools.models import Job

from .models import Membership, Role


class ErasureRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def pseudonym(user_id: int) -> str:
    """The name a deleted person's account keeps: the same for the same person, not
    reversible without the server's secret."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"person:{user_id}".encode(), hashlib.sha256).hexdigest()
    return f"deleted-{digest[:16]}"


@transaction.atomic
def person_data_delete(*, user: Any) -> dict[str, int]:
    """The person's chats (in every account they write in) and projects; their own
    account's shares, tool jobs with their files and results, and request-log text. Each
    account's storage quota gets the chats' bytes back. Returns how many of each went."""
    counts = {"conversations": conversations_delete(conversations=Conversation.objects.filter(owner=user))}
    counts["documents"] = documents_delete(documents=Document.objects.filter(owner=user))
    _, deleted = Project.objects.filter(owner=user).delete()
    counts["projects"] = deleted.get(Project._meta.label, 0)
    own = Account.objects.filter(user=user).first()
    counts["shares"] = counts["files"] = 0
    if own is not None:
        counts["shares"], _ = Share.objects.filter(account=own).delete()
        _, deleted = Job.objects.filter(account=own).delete()  # their uploads go with them
        counts["files"] = deleted.get(Job._meta.label, 0)
        request_text_purge(account_id=own.pk)
    return counts


def deletion_refusal(*, user: Any) -> str | None:
    """Why this person may not delete their account now (None: they may)."""
    own = Account.objects.filter(user=user).first()
    if own is not None and own.balance < 0:
        return (
            f"Your balance is {own.balance.normalize():f}: settle it before deleting your account "
            "(the books must balance)."
        )
    owned = Membership.objects.filter(user=user, role=Role.OWNER).select_related("organization__account").first()
    if owned is not None:
        return (
            f"You own the organization “{owned.organization.account.name}”: hand it to another owner or delete it "
            "before deleting your account."
        )
    return None


@transaction.atomic
def person_delete(*, user: Any) -> dict[str, int]:
    """The person's data (person_data_delete), their keys, and their sign-in (email
    addresses, second factors, SSO links, memberships) — refused (ErasureRefused) while
    their balance is negative or they own an organization. Their own account's row stays,
    disabled and named by a pseudonym, with its ledger and usage; the audit chain keeps its
    rows with the person pseudonymised (audit.receivers.person_deleted)."""
    # The row lock orders this against a concurrent charge that could take the balance
    # below zero between the check and the deletion.
    own = Account.objects.select_for_update().filter(user=user).first()
    refusal = deletion_refusal(user=user)
    if refusal:
        raise ErasureRefused(refusal)
    counts = person_data_delete(user=user)
    if own is not None:
        for key in ApiKey.objects.filter(account=own):
            key.delete()  # each stops working at once (chat.revocation), streams included
        own.user = None
        own.name = pseudonym(user.pk)
        own.is_active = False
        own.save(update_fields=["user", "name", "is_active"])
    user.delete()
    return counts
