"""Is the process up (``/healthz``), can it reach the store and the broker (``/readyz``), and its Prometheus
metrics (``/metrics``, see ``hub.metrics``)."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from hub import __version__
from hub.api.dependencies import hub_of
from hub.api.problems import ApiProblem, responses
from hub.errors import Issue
from hub.metrics import render

router = APIRouter()


@router.get("/healthz", tags=["operations"], summary="The process is up")
def healthz() -> dict[str, str]:
    return {"status": "ok", "version": __version__, "pid": str(os.getpid())}  # which worker process answered


@router.get(
    "/readyz",
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
    tags=["operations"],
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> Response:
    return Response(render(hub_of(request).metrics), media_type=CONTENT_TYPE_LATEST)
