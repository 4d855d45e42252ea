"""Mapping between the canonical ``postal.order`` / ``postal.status`` and the postal service's JSON (VNPost-style).

- ``to_order(order, customer_code)``: (the outbound mapping of ``postal.order``, ``CustomerCode`` left for the
  adapter to fill) ``OrderNumber`` = the dossier code; ``Sender*`` / ``Receiver*`` name,
  address, tel, province, district; ``CODAmount``; ``Description``; ``Direction`` (``pickup`` — the citizen sends
  the dossier, the agency is the receiver — or ``delivery`` — the agency sends the result to the citizen).
- ``status_from_event(event)``: a tracking feed item ``{id, orderNumber, itemCode, statusCode, statusMessage,
  time}`` → ``postal.status`` (``time`` is ``yyyyMMddHHmmss`` local, Asia/Ho_Chi_Minh).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from hub.errors import MappingError
from hub.packets.common import PostalParty
from hub.packets.postal import PostalOrder, PostalStatus
from mappings import OutboundMapping, register_outbound

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def _party(prefix: str, party: PostalParty) -> dict[str, Any]:
    return {
        f"{prefix}Name": party.name,
        f"{prefix}Address": party.address,
        f"{prefix}Tel": party.phone,
        f"{prefix}Province": party.province_code,
        f"{prefix}District": party.district_code,
    }


def to_order(order: BaseModel, *, customer_code: str | None = None) -> dict[str, Any]:
    """The postal service's order for a canonical ``postal.order``."""
    if not isinstance(order, PostalOrder):
        raise TypeError(f"the postal service takes postal.order, not {type(order).__name__}")
    return {
        "CustomerCode": customer_code,
        "OrderNumber": order.dossier_code,
        "Direction": order.direction.value,
        **_party("Sender", order.sender),
        **_party("Receiver", order.receiver),
        "CODAmount": order.cod_amount,
        "Description": order.description or "",
    }


def local_time(at: datetime) -> str:
    return at.astimezone(LOCAL_TZ).strftime("%Y%m%d%H%M%S")


def status_from_event(event: dict[str, Any]) -> PostalStatus:
    try:
        at = datetime.strptime(str(event["time"]), "%Y%m%d%H%M%S").replace(tzinfo=LOCAL_TZ).astimezone(UTC)
        return PostalStatus(
            dossier_code=str(event["orderNumber"]),
            order_number=str(event.get("itemCode") or event["orderNumber"]),
            status_code=str(event["statusCode"]),
            message=str(event.get("statusMessage") or event["statusCode"]),
            at=at,
        )
    except KeyError as exc:
        raise MappingError(f"tracking event has no {exc.args[0]}") from None
    except (ValueError, OverflowError) as exc:  # OverflowError: year 1 local is before year 1 in UTC
        raise MappingError(f"tracking event cannot be mapped: {exc}") from None


KIND = "postal"
OUTBOUND = register_outbound(OutboundMapping(KIND, "postal.order", to_order))
