"""``GET /api/v1/types``: the canonical message types the hub knows."""

from __future__ import annotations

from fastapi import APIRouter

from hub import packets

router = APIRouter()


@router.get("/api/v1/types", tags=["packets"], summary="The canonical message types", operation_id="list_message_types")
def message_types() -> list[dict[str, str]]:
    return [{"type": name, "root": t.root} for name, t in sorted(packets.PACKET_TYPES.items())]
