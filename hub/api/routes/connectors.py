"""The connector registry over HTTP: list the connectors, and register one from its YAML or JSON declaration."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hub.api.dependencies import ApiKey, hub_of, read_body, require_media_type, staff_hub
from hub.api.models import ConnectorCreatedOut, ConnectorOut
from hub.api.problems import BODY_PROBLEMS, ApiProblem, responses
from hub.errors import Issue
from hub.services import ADMIN, Caller, HubService, require

router = APIRouter()

SPEC_MEDIA_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

# The request and answer examples of ``POST /api/v1/connectors`` (deploy/connectors/ has commented specs).
SPEC_EXAMPLE: dict[str, Any] = {
    "code": "000.00.00.G05",
    "name": "Land registration office (Văn phòng đăng ký đất đai)",
    "kind": "ministry",
    "sends": ["dossier.status"],
    "receives": ["dossier.sync"],
    "endpoint": {"url": "https://land.example.gov.vn/lienthong/inbox", "transport": "http"},
    "mapping": {},
    "certificates": [],
    "retry": {"delays_s": [5, 30, 120, 600, 3600], "jitter": 0.2},
    "concurrency": 4,
    "timeout_s": 10,
    "circuit": {"failures": 5, "cooldown_s": 30},
}
SPEC_EXAMPLE_YAML = """\
code: 000.00.00.G05
name: Land registration office (Văn phòng đăng ký đất đai)
kind: ministry
sends: [dossier.status]
receives: [dossier.sync]
endpoint: {url: https://land.example.gov.vn/lienthong/inbox, transport: http}
mapping: {}
certificates: []   # inline PEM; empty: trusted through the CA
retry: {delays_s: [5, 30, 120, 600, 3600], jitter: 0.2}
concurrency: 4
timeout_s: 10
circuit: {failures: 5, cooldown_s: 30}
"""
CREATED_EXAMPLE = {
    "code": "000.00.00.G05",
    "name": "Land registration office (Văn phòng đăng ký đất đai)",
    "kind": "ministry",
    "enabled": True,
    "sends": ["dossier.status"],
    "receives": ["dossier.sync"],
    "api_key": "lt_5b0c19e2_…",
}


@router.get(
    "/api/v1/connectors",
    operation_id="list_connectors",
    tags=["connectors"],
    summary="Registered connectors (admin or operator key)",
    response_model=list[ConnectorOut],
    responses=responses("unauthenticated", "forbidden", "unavailable"),
)
def list_connectors(request: Request, x_api_key: ApiKey = None) -> list[ConnectorOut]:
    hub = staff_hub(request, x_api_key)
    return [ConnectorOut.of(c) for c in hub.registry.list()]


@router.post(
    "/api/v1/connectors",
    operation_id="register_connector",
    tags=["connectors"],
    summary="Register a connector from its YAML or JSON spec (admin key)",
    status_code=201,
    response_model=ConnectorCreatedOut,
    description="The body is the connector file (`application/yaml`, `application/x-yaml`, `text/yaml` or "
    "`application/json`). A new connector is 201 with its API key, shown this once; a spec for a registered "
    "code updates it (200, the key unchanged).",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/yaml": {"schema": {"type": "string"}, "example": SPEC_EXAMPLE_YAML},
                "application/json": {"schema": {"type": "object"}, "example": SPEC_EXAMPLE},
            },
        }
    },
    responses={
        201: {
            "description": "Registered, with its new API key",
            "content": {"application/json": {"example": CREATED_EXAMPLE}},
        },
        200: {
            "description": "An existing connector updated from the spec (its API key is unchanged: `api_key` null)",
            "model": ConnectorCreatedOut,
        },
        **responses(*BODY_PROBLEMS, "unavailable"),
    },
)
async def add_connector(request: Request, x_api_key: ApiKey = None) -> JSONResponse:
    hub = hub_of(request)
    caller = await run_in_threadpool(hub.authenticate, x_api_key)
    require(caller, ADMIN)
    media = require_media_type(request, SPEC_MEDIA_TYPES, "the connector spec as YAML or JSON", "YAML or JSON", "?")
    body = await read_body(request, hub.settings.max_connector_spec_bytes)
    connector, api_key = await run_in_threadpool(add_connector_from, hub, body, media, caller)
    out = ConnectorCreatedOut.of(connector, api_key=api_key)
    return JSONResponse(
        out.model_dump(),
        status_code=201 if api_key else 200,
        headers={"Location": f"/api/v1/connectors/{connector.code}"},
    )


def add_connector_from(hub: HubService, body: bytes, media: str, caller: Caller) -> tuple[Any, str | None]:
    """Validate and register (or update) a connector; return it and its new API key (``None`` on update).

    Certificates must be inline PEM and examples are refused: a spec posted over HTTP never makes the hub read
    its own files, nor tells whether one exists.
    Raises ``SpecInvalidError`` (422, every problem at once) or ``ApiProblem`` (400 for unreadable bodies).
    """
    from hub.registry import loads_spec, parse_spec

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem("malformed", "the connector spec is not UTF-8 text") from None
    if media == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiProblem(
                "malformed",
                f"not valid JSON: {exc.msg}",
                [Issue("/", "json", f"not valid JSON: {exc.msg}", exc.lineno)],
            ) from None
        spec = parse_spec(data, source="request body")
    else:
        spec = loads_spec(text, source="request body")
        if spec is None:  # pragma: no cover - loads_spec raises instead
            raise ApiProblem("malformed", "empty connector spec")
    connector, api_key = hub.registry.add(spec, actor=caller.name)
    hub.refresh()
    return connector, api_key
