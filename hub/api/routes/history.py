"""The delivery history: delivered / failed / dead per destination over the last hour, day or week
(``GET /api/v1/history``), the figures of the operator page's charts (``hub.store.traffic``).

Not a paged list: a window has a fixed number of buckets (60, 96 or 168) per destination, every one listed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from hub.api.dependencies import ApiKey, staff_hub
from hub.api.problems import responses
from hub.store.traffic import DEFAULT_WINDOW, DestinationHistory, TrafficHistory

router = APIRouter()


class HistoryBucketOut(BaseModel):
    """One bucket: from ``start`` (UTC) for the window's ``bucket_s`` seconds."""

    start: datetime
    delivered: int = Field(description="Deliveries recorded delivered")
    failed: int = Field(description="Failed attempts with a retry planned (timeouts, 5xx, 429…)")
    dead: int = Field(description="Deliveries given up on (dead letters)")


class DestinationHistoryOut(BaseModel):
    """One destination's buckets, oldest first, and the window's totals."""

    destination: str
    delivered: int
    failed: int
    dead: int
    buckets: list[HistoryBucketOut]


class HistoryOut(BaseModel):
    """The window read at ``read_at``: buckets from ``start`` to ``end`` (the current bucket, partly elapsed, last)."""

    window: Literal["1h", "24h", "7d"]
    bucket_s: int = Field(description="Length of a bucket: 60 (1h), 900 (24h) or 3600 (7d) seconds")
    start: datetime
    end: datetime
    read_at: datetime
    destinations: list[DestinationHistoryOut] = Field(
        description="Destinations with traffic in the window (or the one asked for), by code"
    )

    @classmethod
    def of(cls, traffic: TrafficHistory) -> HistoryOut:
        return cls(
            window=traffic.window,  # one of WINDOWS, checked by the store
            bucket_s=traffic.bucket_s,
            start=traffic.start,
            end=traffic.end,
            read_at=traffic.at,
            destinations=[_destination(d) for d in traffic.destinations],
        )


def _destination(history: DestinationHistory) -> DestinationHistoryOut:
    return DestinationHistoryOut(
        destination=history.destination,
        delivered=history.delivered,
        failed=history.failed,
        dead=history.dead,
        buckets=[HistoryBucketOut(start=b.start, delivered=b.delivered, failed=b.failed, dead=b.dead)
                 for b in history.buckets],
    )  # fmt: skip


_BUCKETS = [
    {"start": "2026-12-02T06:57:00Z", "delivered": 41, "failed": 0, "dead": 0},
    {"start": "2026-12-02T06:58:00Z", "delivered": 38, "failed": 2, "dead": 0},
    {"start": "2026-12-02T06:59:00Z", "delivered": 12, "failed": 5, "dead": 1},
]
HISTORY_EXAMPLE = {
    "window": "1h", "bucket_s": 60, "start": "2026-12-02T06:00:00Z", "end": "2026-12-02T07:00:00Z",
    "read_at": "2026-12-02T06:59:41Z",
    "destinations": [{"destination": "000.00.00.H00", "delivered": 91, "failed": 7, "dead": 1,
                      "buckets": _BUCKETS}],  # shortened: a 1h window lists 60 buckets
}  # fmt: skip


@router.get(
    "/api/v1/history",
    operation_id="get_delivery_history",
    tags=["operations"],
    summary="Delivered, failed and dead deliveries per destination over time (admin or operator key)",
    description=(
        "Counted per destination and minute as the workers record deliveries, kept 7 days. `window=1h` answers "
        "60 one-minute buckets, `24h` 96 quarter-hour buckets, `7d` 168 hourly buckets; every bucket is listed, "
        "empty ones as zeros. Without `destination`, every destination with traffic in the window."
    ),
    response_model=HistoryOut,
    responses={
        200: {"content": {"application/json": {"example": HISTORY_EXAMPLE}}},
        **responses("unauthenticated", "forbidden", "invalid", "unavailable"),
    },
)
def history(
    request: Request,
    window: Annotated[Literal["1h", "24h", "7d"], Query(description="How far back: 1h, 24h or 7d")] = DEFAULT_WINDOW,  # type: ignore[assignment]
    destination: Annotated[str | None, Query(max_length=64, description="One destination connector's code")] = None,
    x_api_key: ApiKey = None,
) -> HistoryOut:
    hub = staff_hub(request, x_api_key)
    return HistoryOut.of(hub.store.history(window, destination=destination))
