"""F3 over HTTP (``hub.flows.payments``): ``POST /api/v1/callbacks/payment/{connector}`` — the payment
platform's ``CONFIRM``, answered in the platform's own JSON (``MaLoi``), not problem+json;
``GET /api/v1/partner-refusals`` — callbacks the hub refused, with the rule and reason (admin or operator key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hub.api.dependencies import ApiKey, ListLimit, hub_of, payment_service, staff_hub
from hub.api.models import RefusalOut
from hub.api.problems import KINDS, responses
from hub.errors import PaymentRefusedError
from hub.store import flow_records

router = APIRouter()

# A failed payment the platform reports is recorded and acknowledged: the callback itself was fine.
DECLINED_STATUS = 200


@router.post(
    "/api/v1/callbacks/payment/{connector}",
    operation_id="confirm_payment",
    tags=["partners"],
    summary="F3: a payment platform's CONFIRM callback",
    description="JSON `{LoaiBanTin: CONFIRM, MaLoi, MaDoiTac, MaThamChieu, SoTien, MaTienTe, MaGiaoDich, "
    "MaNganHang, ThoiGianGD, ThongTinGiaoDich, MaXacThuc, BienLai}` where `BienLai` is the bank-signed receipt "
    'XML (base64). Answered `{MaLoi: "00"}` when accepted (also for a repeated CONFIRM), else 4xx '
    "`{MaLoi, MoTaLoi, rule}`; a refusal of an authenticated callback is recorded (`GET /api/v1/partner-refusals`), "
    "one that did not authenticate (unknown connector, malformed body, partner code, checksum) is only counted in "
    "`lienthong_callbacks_refused_total`.",
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
    try:
        answer = await run_in_threadpool(payment_service(hub).confirm, connector, body)
    except PaymentRefusedError as refused:
        status = DECLINED_STATUS if refused.kind == "declined" else KINDS[refused.kind][0]
        return JSONResponse({"MaLoi": refused.code, "MoTaLoi": refused.reason, "rule": refused.rule}, status)
    return JSONResponse(answer)


@router.get(
    "/api/v1/partner-refusals",
    operation_id="list_partner_refusals",
    tags=["partners"],
    summary="Partner callbacks the hub refused (admin or operator key)",
    response_model=list[RefusalOut],
    responses=responses("unauthenticated", "forbidden", "unavailable"),
)
def list_refusals(
    request: Request,
    x_api_key: ApiKey = None,
    connector: str | None = None,
    limit: ListLimit = 500,
) -> list[RefusalOut]:
    hub = staff_hub(request, x_api_key)
    return [RefusalOut(**row) for row in flow_records.refusals(hub.store.engine, connector=connector, limit=limit)]
