"""The FastAPI application served by ``hub serve``: ``create_app`` assembles it, the routes live in
``hub.api.routes``.

One ``HubService`` per process (uvicorn worker), opened by the lifespan: a Runtime (store, broker), the
connector registry, one Acceptor, the publisher thread (the only user of the broker: publishing, the outbox relay,
broker pings) and a thread that reloads routes and certificates from the registry. Blocking work (signature
checks of large envelopes, store reads) runs in the threadpool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from prometheus_client.core import Metric

from hub import __version__
from hub.api.limits import BodyLimits
from hub.api.openapi import install_openapi
from hub.api.problems import install_handlers
from hub.api.routes import (
    actions,
    audit,
    connectors,
    corrections,
    deadlines,
    health,
    history,
    lookups,
    messages,
    operations,
    payments,
    soap,
    types,
    vbdlis,
)
from hub.config import Settings
from hub.errors import KeyMaterialError
from hub.metrics import certificate_families
from hub.runtime import hub_certificate_path
from hub.security.keys import load_certificate
from hub.services import HubService

ROUTERS = (
    messages, connectors, operations, actions, health, types, soap, lookups, payments, deadlines, history, audit,
    vbdlis, corrections,
)  # fmt: skip


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API application (a uvicorn factory: ``hub.api:create_app``)."""
    if settings is None:
        from hub.config import get_settings

        settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = await run_in_threadpool(HubService, settings, console_gauges)
        hub.start()
        app.state.hub = hub
        try:
            yield
        finally:
            await run_in_threadpool(hub.close)

    app = FastAPI(
        title="Lienthong hub",
        version=__version__,
        description=(
            "The provincial data-sharing hub: signed envelopes in, routed deliveries out. Errors are RFC 9457 "
            "`application/problem+json` with `errors: [{path, rule, message}]`. Legacy SOAP clients use "
            "`/soap/exchange` (WSDL at `/soap/exchange?wsdl`)."
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc are hub.api.openapi's: their assets are served by the hub, not a CDN
        redoc_url=None,
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry hooks would only cost a lookup per request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_handlers(app)
    install_openapi(app, [module.router for module in ROUTERS])
    for module in ROUTERS:
        app.include_router(module.router)
    from hub.console import install_console

    install_console(app, settings)  # the operator page at /
    app.add_middleware(BodyLimits, settings=settings)  # outermost: bodies are bounded before anything reads them
    return app


def console_gauges(hub: HubService) -> Sequence[Metric]:
    """The operator page's gauges for ``/metrics`` (``hub.console.metrics``) and the certificate expiries, read
    with the store's counters."""
    from hub.console.metrics import families
    from hub.console.trust import anchor_expiries
    from hub.console.views import hub_snapshot
    from hub.metrics import trust_anchor_families

    return [
        *families(hub_snapshot(hub, previews=False)),
        *certificate_families(*_certificate_expiries(hub)),
        *trust_anchor_families(anchor_expiries(hub.runtime.trust().anchors)),
    ]


def _certificate_expiries(hub: HubService) -> tuple[list[tuple[str, datetime]], datetime | None]:
    """Each registered connector's soonest active certificate expiry, and the hub's own (``None``: not readable,
    e.g. a demo hub whose worker has not created its key yet)."""
    partners = []
    for connector in [] if hub.registry is None else hub.registry.list():
        soonest = min((cert.not_after for cert in connector.certificates), default=None)
        if soonest is not None:
            partners.append((connector.code, soonest))
    try:
        own: datetime | None = load_certificate(hub_certificate_path(hub.settings)).not_valid_after_utc
    except (KeyMaterialError, ValueError):  # no file yet, or not a certificate: no sample, other figures stay
        own = None
    return partners, own


__all__ = ["create_app"]
