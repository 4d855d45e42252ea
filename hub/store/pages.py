"""Keyset pagination shared by every long list the hub serves (messages, audit, dead letters).

A page is read newest first by a strictly decreasing integer key (the table's ``id``); the cursor is that key
of the page's last row, as an opaque URL-safe token, so a page stays right while new rows arrive — unlike
``OFFSET``, which shifts under inserts and costs more the deeper one pages. The total is counted with the same
filters, so a client can say "41–90 of 1,234".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from hub.errors import InvalidCursorError, Issue

T = TypeVar("T")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_KEY = 2**63 - 1  # the largest id a BIGINT holds: a bigger key is not one of ours (and would overflow the query)
_PREFIX = "k1."  # a cursor's version: a change of key scheme refuses old cursors instead of misreading them


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    total: int
    next_cursor: str | None  # None: this is the last page


def encode_cursor(key: int) -> str:
    """The opaque token for "rows with a key below ``key``"."""
    return base64.urlsafe_b64encode(f"{_PREFIX}{key}".encode()).decode().rstrip("=")


def decode_cursor(token: str | None, *, field: str = "cursor") -> int | None:
    """The key a cursor stands for (``None``: no cursor); ``InvalidCursorError`` naming ``field`` for anything else."""
    if token is None or token == "":
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        key = int(text[len(_PREFIX) :])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursorError(
            f"cursor {token[:40]!r} was not handed out by this list",
            issues=[Issue(field, "cursor", "use the next_cursor of a previous page, or no cursor for the first")],
        ) from None
    if not 0 <= key <= MAX_KEY:
        issue = Issue(field, "cursor", "not a cursor this hub hands out")
        raise InvalidCursorError("cursor out of range", issues=[issue])
    return key


def clamp_limit(limit: int | None) -> int:
    """A page size between 1 and ``MAX_LIMIT`` (``DEFAULT_LIMIT`` when not given)."""
    if limit is None:
        return DEFAULT_LIMIT
    return max(1, min(int(limit), MAX_LIMIT))
