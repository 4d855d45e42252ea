"""Is the process up (``/healthz``, on the event loop, touching neither store nor broker), can it reach the store
and the broker (``/readyz``: ``store: ok|down`` from a ping bounded in time, ``broker: ok|down`` as the publisher
thread last saw it, without calling the broker — see ``HubService.ready``), and its Prometheus metrics
(``/metrics``, see ``hub.metrics``): those name connectors, partner states and certificate expiries, so they need
a key (``LIENTHONG_METRICS_API_KEY``, or the admin or operator key) unless ``LIENTHONG_METRICS_PUBLIC`` says the
hub listens only where Prometheus alone reaches it."""

from __future__ import annotations

import hmac
import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hub import __version__
from hub.api.dependencies import hub_of
from hub.api.problems import ApiProblem, responses
from hub.config import Settings
from hub.errors import Issue
from hub.metrics import render

router = APIRouter()


LIVENESS_PATH = "/healthz"


def liveness() -> dict[str, str]:
    """``/healthz``'s answer; ``hub serve`` sends it from its HTTP protocol (``hub.api.server``), this route for
    any other server of the app."""
    return {"status": "ok", "version": __version__, "pid": str(os.getpid())}  # which worker process answered


@router.get(LIVENESS_PATH, tags=["operations"], summary="The process is up", operation_id="check_liveness")
async def healthz() -> dict[str, str]:
    return liveness()


@router.get(
    "/readyz",
    operation_id="check_readiness",
    tags=["operations"],
    summary="The store and the broker are reachable",
    responses=responses("unavailable"),
)
def readyz(request: Request) -> JSONResponse:
    checks = hub_of(request).ready()
    if all(v == "ok" for v in checks.values()):
        return JSONResponse({"status": "ok", "checks": checks})
    raise ApiProblem(
        "unavailable",
        "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok"),
        [Issue(f"/{k}", "reachable", v) for k, v in checks.items() if v != "ok"],
    )


@router.get(
    "/metrics",
    operation_id="get_metrics",
    tags=["operations"],
    summary="Prometheus metrics (metrics, admin or operator key, unless LIENTHONG_METRICS_PUBLIC)",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses("unauthenticated"),
    },
)
def metrics(request: Request) -> Response:
    hub = hub_of(request)
    if not hub.settings.metrics_public:
        require_metrics_key(hub.settings, request.headers.get("authorization"), request.headers.get("x-api-key"))
    return Response(render(hub.metrics), media_type=CONTENT_TYPE_LATEST)


def require_metrics_key(settings: Settings, authorization: str | None, x_api_key: str | None) -> None:
    """Accept the metrics, admin or operator key, as ``Authorization: Bearer`` (what Prometheus sends with
    ``authorization.credentials``) or ``X-Api-Key``; raise the 401 refusal otherwise."""
    scheme, _, token = (authorization or "").partition(" ")
    key = token.strip() if scheme.lower() == "bearer" else x_api_key
    if not key:
        raise ApiProblem(
            "unauthenticated",
            "send the metrics key as Authorization: Bearer <key> or X-Api-Key",
            [Issue("/headers/Authorization", "api-key-required", "no API key was sent")],
        )
    accepted = (settings.metrics_api_key, settings.admin_api_key, settings.operator_api_key)
    if not any(
        secret is not None and hmac.compare_digest(secret.get_secret_value().encode(), key.encode())
        for secret in accepted
    ):
        raise ApiProblem(
            "unauthenticated",
            "the key is not the metrics, admin or operator key",
            [Issue("/headers/Authorization", "api-key-unknown", "unknown API key")],
        )
