"""F4, the operator's side of VNPost orders: cancel one (``hub postal-cancel``) and ask a price (``hub postal-quote``).

Cancel: VNPost cancels by CustomerCode and OrderNumber (GET ``?CustomerCode=&OrderNumber=``, PARTNER-FORMATS §4):
the dossier code. The hub's record of the standing order (``hub.store.postal_orders``; one VNPost reported
delivered, returned or cancelled no longer stands) says which ItemCode that was, and is marked cancelled once VNPost
answers Status 100/101, so the next order of that dossier and direction takes a new ItemCode. VNPost's call names
no direction: when a dossier has both a pickup and a result delivery standing, the operator names the one meant,
and VNPost decides which it cancels.

Quote: UNSOURCED (no public source gives VNPost's price call; the connector's ``price_path`` turns it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hub.errors import LienthongError
from hub.store import postal_orders

if TYPE_CHECKING:
    from adapters.postal import PostalAdapter
    from hub.packets.postal import PostalOrder
    from hub.runtime import Runtime


class PostalOrderError(LienthongError):
    """No postal connector by that code, or no standing order of that dossier to cancel."""


@dataclass(frozen=True)
class Cancelled:
    dossier_code: str
    item_code: str | None
    status: str
    message: str


def _adapter(runtime: Runtime, connector: str) -> PostalAdapter:
    from adapters.postal import PostalAdapter

    adapter = runtime.adapters().get(connector)
    if not isinstance(adapter, PostalAdapter):
        known = ", ".join(sorted(c for c, a in runtime.adapters().items() if isinstance(a, PostalAdapter)))
        raise PostalOrderError(f"{connector} is not a postal connector that can be called (postal: {known or 'none'})")
    return adapter


def cancel(runtime: Runtime, connector: str, dossier_code: str, direction: str | None = None) -> Cancelled:
    """Cancel the standing order of ``dossier_code`` (of ``direction``, when given) at VNPost; ``DeliveryError``
    when VNPost refuses it (with its message)."""
    adapter = _adapter(runtime, connector)
    order = postal_orders.find_order(runtime.store.engine, connector, dossier_code=dossier_code, direction=direction,
                                     standing=True)  # fmt: skip
    if order is None and adapter.options.send_item_code:
        raise PostalOrderError(f"no standing order of {dossier_code} at {connector}")
    answer = adapter.cancel(connector, dossier_code, order.item_code if order is not None else None)
    return Cancelled(dossier_code, order.item_code if order is not None else None, answer.status, answer.message)


def quote(runtime: Runtime, connector: str, order: PostalOrder, weight_g: int = 0) -> int:
    """VNPost's price for ``order`` in whole đồng (UNSOURCED call)."""
    return _adapter(runtime, connector).quote(order, weight_g)
