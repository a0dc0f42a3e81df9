"""Dates that clients put in report queries (`from`, `to`): a date field with bounds, so a
far date is a 400 naming its parameter instead of an overflow when a day is added to it or
it is turned into an aware datetime."""

from __future__ import annotations

from datetime import date
from typing import Any

from rest_framework import serializers

EARLIEST = date(2000, 1, 1)
LATEST = date(2999, 12, 31)
# The longest range one report covers (the console's day buckets: three years).
MAX_RANGE_DAYS = 3 * 366


class ReportDateField(serializers.DateField):
    def to_internal_value(self, value: Any) -> date:
        day: date = super().to_internal_value(value)
        if not EARLIEST <= day <= LATEST:
            raise serializers.ValidationError(f"must be a date from {EARLIEST} to {LATEST}")
        return day
