"""Errors the store raises on purpose (all are ``StoreError``, hence ``LienthongError``)."""

from __future__ import annotations

from datetime import datetime

from hub.errors import LienthongError


class StoreError(LienthongError):
    """Base class of the store's own errors."""


class UnknownDeliveryError(StoreError, LookupError):
    """No delivery has this id."""

    def __init__(self, delivery_id: int) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"unknown delivery {delivery_id}")


class DeliveryClosedError(StoreError):
    """The delivery is in a state that does not allow the requested change (e.g. it was already delivered)."""

    def __init__(self, delivery_id: int, state: str, action: str) -> None:
        self.delivery_id = delivery_id
        self.state = state
        super().__init__(f"delivery {delivery_id} is {state}; cannot {action}")


class UnknownDeadLetterError(StoreError, LookupError):
    """No dead letter has this id."""

    def __init__(self, dead_letter_id: int) -> None:
        self.dead_letter_id = dead_letter_id
        super().__init__(f"unknown dead letter {dead_letter_id}")


class AlreadyReplayedError(StoreError):
    """The dead letter was replayed before; a dead letter is replayed at most once."""

    def __init__(self, dead_letter_id: int, replayed_by: str | None, replayed_at: datetime | None) -> None:
        self.dead_letter_id = dead_letter_id
        self.replayed_by = replayed_by
        self.replayed_at = replayed_at
        when = replayed_at.isoformat() if replayed_at else "?"
        super().__init__(f"dead letter {dead_letter_id} was already replayed by {replayed_by} at {when}")
