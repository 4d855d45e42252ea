"""HTTP endpoints of the partner flows F2–F4 (included by ``hub.api.app``).

- ``POST /api/v1/lookups`` — F2: a signed ``citizen.lookup`` in, the hub-signed ``citizen.record`` envelope out
  (200 ``application/xml``), synchronously; 422 without officer/dossier/purpose, 504 when the population DB is
  slow, 502 when it is down or failing (see ``hub.flows.lookups``).
- ``GET /api/v1/lookups`` — the lookup audit (admin or operator key; ``?dossier=`` to filter).
- ``POST /api/v1/callbacks/payment/{connector}`` — F3: the payment platform's ``CONFIRM`` (see ``hub.flows.payments``).
- ``GET /api/v1/partner-refusals`` — callbacks the hub refused, with the rule and reason (admin or operator key).
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel

from hub.api.problems import ApiProblem, responses
from hub.api.service import HubService, hub_of, staff_hub
from hub.errors import Issue

router = APIRouter()
_lock = threading.Lock()
XML_MEDIA_TYPES = ("application/xml", "text/xml")
ApiKey = Annotated[
    str | None, Security(APIKeyHeader(name="X-Api-Key", auto_error=False, description="The caller's API key"))
]


def lookup_service(hub: HubService):
    """The process's ``LookupService`` (created on first use, kept on the ``HubService``)."""
    from hub.flows.lookups import LookupService

    with _lock:
        service = getattr(hub, "_lookup_service", None)
        if service is None:
            service = LookupService(hub)
            hub._lookup_service = service  # type: ignore[attr-defined]
        return service


def payment_service(hub: HubService):
    from hub.flows.payments import PaymentCallbacks

    with _lock:
        service = getattr(hub, "_payment_service", None)
        if service is None:
            service = PaymentCallbacks(hub)
            hub._payment_service = service  # type: ignore[attr-defined]
        return service


class LookupAuditOut(BaseModel):
    id: int
    at: datetime
    requester: str
    message_id: str | None
    request_id: str | None
    officer_id: str | None
    dossier_code: str | None
    procedure_code: str | None
    purpose: str | None
    subject: str | None
    source: str | None
    result: str
    detail: str
    fields: list[str] | None
    record_digest: str | None
    duration_ms: int | None


class RefusalOut(BaseModel):
    id: int
    at: datetime
    connector: str
    kind: str
    reference: str | None
    rule: str
    reason: str
    payload_digest: str


@router.post(
    "/api/v1/lookups",
    tags=["partners"],
    summary="F2: look a citizen up in the population DB (synchronous)",
    description="The body is a signed `citizen.lookup` envelope (`application/xml`), the sender's API key in "
    "`X-Api-Key`. 200: the hub-signed `citizen.record` envelope (`application/xml`), `result` found / not_found / "
    "mismatch. A lookup without `officerId`, `dossierCode` or `purpose` is 422 (rules `lookup-officer-required`, "
    "`lookup-dossier-required`, `lookup-purpose-required`); every lookup is audited. 504 when the population DB "
    "does not answer within `LIENTHONG_LOOKUP_TIMEOUT_S` (default 10 s), 502 when it is down or fails.",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {media: {"schema": {"type": "string"}} for media in XML_MEDIA_TYPES},
        }
    },
    responses={
        200: {
            "description": "The hub-signed citizen.record",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
        **responses(
            "malformed",
            "unauthenticated",
            "forbidden",
            "conflict",
            "too-large",
            "unsupported-media-type",
            "invalid",
            "bad-gateway",
            "gateway-timeout",
        ),
    },
)
async def post_lookup(request: Request, x_api_key: ApiKey = None) -> Response:
    from hub.api.app import read_body

    hub = hub_of(request)
    caller = await run_in_threadpool(hub.authenticate, x_api_key)
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in XML_MEDIA_TYPES:
        raise ApiProblem(
            "unsupported-media-type",
            f"send the envelope as application/xml, not {media or 'no Content-Type'}",
            [Issue("/headers/Content-Type", "media-type", "expected application/xml")],
        )
    body = await read_body(request, hub.settings.max_message_bytes)
    answer = await run_in_threadpool(lookup_service(hub).lookup, caller, body)
    return Response(
        answer.envelope,
        media_type="application/xml",
        headers={"X-Message-Id": answer.message_id, "X-Lookup-Result": answer.record.result.value},
    )


@router.get(
    "/api/v1/lookups",
    tags=["partners"],
    summary="The citizen lookup audit (admin or operator key)",
    response_model=list[LookupAuditOut],
    responses=responses("unauthenticated", "forbidden"),
)
def list_lookups(
    request: Request,
    x_api_key: ApiKey = None,
    dossier: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[LookupAuditOut]:
    from hub.store import flow_records as partners

    hub = staff_hub(request, x_api_key)
    return [LookupAuditOut(**row) for row in partners.lookups(hub.store.engine, dossier_code=dossier, limit=limit)]


@router.post(
    "/api/v1/callbacks/payment/{connector}",
    tags=["partners"],
    summary="F3: a payment platform's CONFIRM callback",
    description="JSON `{LoaiBanTin: CONFIRM, MaLoi, MaDoiTac, MaThamChieu, SoTien, MaTienTe, MaGiaoDich, "
    "MaNganHang, ThoiGianGD, ThongTinGiaoDich, MaXacThuc, BienLai}` where `BienLai` is the bank-signed receipt "
    'XML (base64). Answered `{MaLoi: "00"}` when accepted (also for a repeated CONFIRM), else 4xx '
    "`{MaLoi, MoTaLoi, rule}` and the refusal is recorded (`GET /api/v1/partner-refusals`).",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
    responses={
        status: {"description": why, "content": {"application/json": {"schema": {"type": "object"}}}}
        for status, why in (
            (200, "Accepted (MaLoi 00), also for a repeated CONFIRM; or a failed payment recorded"),
            (400, "Refused: malformed, partner code, amount or receipt"),
            (401, "Refused: wrong MaXacThuc"),
            (404, "Refused: unknown connector or reference"),
            (409, "Refused: the reference was confirmed with another transaction"),
            (503, "The payment connector has no credentials"),
        )
    },
)
async def payment_callback(request: Request, connector: str) -> JSONResponse:
    hub = hub_of(request)
    body = await request.body()
    status, answer = await run_in_threadpool(payment_service(hub).confirm, connector, body)
    return JSONResponse(answer, status_code=status)


@router.get(
    "/api/v1/partner-refusals",
    tags=["partners"],
    summary="Partner callbacks the hub refused (admin or operator key)",
    response_model=list[RefusalOut],
    responses=responses("unauthenticated", "forbidden"),
)
def list_refusals(
    request: Request,
    x_api_key: ApiKey = None,
    connector: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[Any]:
    from hub.store import flow_records as partners

    hub = staff_hub(request, x_api_key)
    return [RefusalOut(**row) for row in partners.refusals(hub.store.engine, connector=connector, limit=limit)]
