"""Signals the gateway sends for others to hear (alerts/ listens)."""

from __future__ import annotations

from django.dispatch import Signal

# An upstream deployment's circuit opened (`opened=True`) or closed again, in this process:
# sent on the event loop, so a receiver must not block (alerts hands it to a thread).
circuit_changed = Signal()  # kwargs: deployment (its label), opened
