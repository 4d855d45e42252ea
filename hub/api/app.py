"""The FastAPI application served by ``hub serve``."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub import __version__


def create_app() -> FastAPI:
    """Build the API application."""
    app = FastAPI(
        title="Lienthong hub",
        version=__version__,
        description="The provincial data-sharing hub: signed envelopes in, routed deliveries out.",
    )

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/types", tags=["packets"], summary="The canonical message types")
    def message_types() -> list[dict[str, str]]:
        from hub import packets

        return [{"type": name, "root": t.root} for name, t in sorted(packets.PACKET_TYPES.items())]

    return app
