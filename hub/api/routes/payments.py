"""F3 over HTTP (``hub.flows.payments``): ``POST /api/v1/callbacks/payment/{connector}`` — the payment
platform's callback, answered in the platform's own JSON and always with HTTP 200, as the platform expects
(OC-PA:293-306), not problem+json; ``GET /api/v1/partner-refusals`` — callbacks the hub refused, with the rule
and reason (admin or operator key)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from hub.api.dependencies import ApiKey, ListLimit, hub_of, payment_service, staff_hub
from hub.api.models import RefusalOut
from hub.api.problems import responses
from hub.store import flow_records

router = APIRouter()

RULE_HEADER = "X-Lienthong-Rule"  # the rule that refused a callback or holds its receipt (the platform reads the body)


@router.post(
    "/api/v1/callbacks/payment/{connector}",
    operation_id="confirm_payment",
    tags=["partners"],
    summary="F3: a payment platform's CONFIRM callback",
    description="Profile `paygov/1.0.6` (and a payment connector without a profile): the platform's JSON `{LoaiBanTin: "
    "CONFIRM, MaLoi, MaDoiTac, MaThamChieu, SoTien, MaTienTe, MaGiaoDich, MaNganHang, ThoiGianGD, ThongTinGiaoDich, "
    'MaXacThuc}`, answered `{MaLoi: "00" | "99", MoTaLoi, MaDoiTac, MaThamChieu, ThoiGianGD, MaXacThuc}` with the '
    "CONFIRM's MaXacThuc echoed; a repeated CONFIRM is answered the same and changes nothing. Profile `paygov/lgsp`: "
    "PayGov's callback `{orderId, errorCode, amount, transactionNo, …}` answered "
    '`{error_code: "SUCCESSFUL" | "FAILED", error_message}`. '
    "Always HTTP 200; a refusal names its rule in the `X-Lienthong-Rule` header. A receipt that breaks the "
    "receipt rule (not signed by the connector's `receipt_signers`) holds the payment: answered \"00\" / "
    "SUCCESSFUL (the payment happened), its rule in the header, nothing sent on, recorded as a `payment.receipt` "
    "refusal. A refusal of an "
    "authenticated callback is recorded (`GET /api/v1/partner-refusals`), one that did not authenticate (unknown "
    "connector, malformed body, partner code, checksum) is only counted in `lienthong_callbacks_refused_total`.",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}},
    responses={
        200: {
            "description": "The platform's answer (accepted or refused: see MaLoi / error_code)",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def payment_callback(request: Request, connector: str) -> JSONResponse:
    hub = hub_of(request)
    body = await request.body()
    answer = await run_in_threadpool(payment_service(hub).confirm, connector, body)
    headers = {} if answer.rule is None else {RULE_HEADER: answer.rule}
    return JSONResponse(answer.body, 200, headers=headers)


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
