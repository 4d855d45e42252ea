"""Adapter choice for the partner kinds of flows F2–F4 (called by ``hub.runtime.adapter_for``)."""

from __future__ import annotations

from typing import Any

from adapters.base import Adapter, DeliveryReceipt, OutboundRequest, TransientDeliveryError
from hub.exchange.routing import DestinationConfig


class _Unusable(Adapter):
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def deliver(self, request: OutboundRequest) -> DeliveryReceipt:
        raise TransientDeliveryError(self.reason)


def partner_adapter(cfg: DestinationConfig, store: Any = None) -> Adapter:
    """The population DB (SOAP via zeep), payment platform or postal service adapter for one destination.

    ``store`` (a ``hub.store.Store``) is where the payment adapter records the references it initiates; without
    one, the store named by ``LIENTHONG_DATABASE_URL``."""
    if cfg.kind == "population_db":
        from adapters.population_db import PopulationDbAdapter

        return PopulationDbAdapter(cfg.endpoint, timeout_s=cfg.timeout_s, max_connections=cfg.concurrency)
    if cfg.credentials is None:  # keep its messages queued (and say why) rather than stop the worker
        return _Unusable(f"the {cfg.kind} endpoint {cfg.endpoint} has no endpoint.credentials")
    if cfg.kind == "payment":
        from adapters.payment import PaymentAdapter
        from hub.config import get_settings
        from hub.flows.payments import initiated_recorder

        target = store.engine if store is not None else get_settings().database_url
        return PaymentAdapter(
            cfg.endpoint,
            partner_code=cfg.credentials.username,
            secret=cfg.credentials.password.get_secret_value(),
            timeout_s=cfg.timeout_s,
            on_initiated=initiated_recorder(target),
        )
    from adapters.postal import PostalAdapter

    return PostalAdapter(
        cfg.endpoint,
        client_id=cfg.credentials.username,
        client_secret=cfg.credentials.password.get_secret_value(),
        customer_code=cfg.credentials.madonvi or cfg.credentials.username,
        timeout_s=cfg.timeout_s,
    )
