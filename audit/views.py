"""The trail as key holders (`GET /api/v1/audit`: their account's) and operators (the ops
console: everything, filterable, and as CSV) read it."""

from __future__ import annotations

import csv
import io

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.console import auth
from chat.models import ApiKey

from .selectors import FIELDS, audit_events, audit_page

CSV_ROWS = 100_000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> object:
    """A value a spreadsheet shows as text: an attempted login "=HYPERLINK(…)" stays text."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class QuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=500, default=100)
    before = serializers.IntegerField(min_value=1, required=False)
    action = serializers.RegexField(r"^[a-z.]{1,64}$", required=False, default="")
    actor = serializers.CharField(max_length=120, required=False, default="")


class OpsQuerySerializer(QuerySerializer):
    account = serializers.IntegerField(min_value=1, required=False)


class AccountAuditApi(APIView):
    """The key's account's trail. A key of `inference` scope may not read it."""

    def get(self, request: Request) -> Response:
        key: ApiKey = request.auth
        if key.scope != ApiKey.Scope.FULL:
            raise PermissionDenied("This key has inference scope: the audit trail needs a key with full scope.")
        query = QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        rows = audit_events(
            account_id=request.user.pk, action=q["action"], actor=q["actor"], before_seq=q.get("before")
        )
        return Response(audit_page(rows, q["limit"]))


class OpsAuditApi(APIView):
    authentication_classes = [auth.ConsoleOperatorAuthentication]
    permission_classes = [auth.SignedInOperator]

    def _rows(self, request: Request) -> tuple[object, int]:
        query = OpsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        rows = audit_events(
            account_id=q.get("account"), action=q["action"], actor=q["actor"], before_seq=q.get("before")
        )
        return rows, q["limit"]

    def get(self, request: Request) -> Response:
        rows, limit = self._rows(request)
        return Response(audit_page(rows, limit))  # type: ignore[arg-type]


class OpsAuditCsvApi(OpsAuditApi):
    def get(self, request: Request) -> HttpResponse:  # type: ignore[override]
        rows, _ = self._rows(request)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(FIELDS)
        for row in rows.values_list(*FIELDS)[:CSV_ROWS]:  # type: ignore[attr-defined]
            writer.writerow([_cell(value) for value in row])
        response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="ghostgpt-audit.csv"'
        return response
