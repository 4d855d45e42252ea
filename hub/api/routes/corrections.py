"""``POST /api/v1/dossiers/{code}/corrections``: an operator's correction of a dossier's status (admin or operator
key), the only way past a terminal status (3, 7, 10) or back from 9. The work is ``hub.services.corrections``':
recorded on the timeline with who, why, before and after, audited (``dossier.correct``), and reported to every
connector that receives ``dossier.status`` (the province, the national portal)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as FastApiPath
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from hub.api.dependencies import ApiKey, hub_of
from hub.api.problems import responses
from hub.services import actions
from hub.services.corrections import MAX_REASON, XML_TEXT, correct_status

router = APIRouter()

CODE = "000.00.00.H12-251123-0042"
REQUEST_EXAMPLE = {"status": 4, "reason": "Bộ TN&MT xác nhận hồ sơ còn đang xử lý; trả kết quả nhầm (phiếu HD-1042)"}
DONE_EXAMPLE = {
    "dossier_code": CODE, "status_before": 10, "status": 4, "reason": REQUEST_EXAMPLE["reason"],
    "corrected_by": "nguyen.van.a", "at": "2025-12-08T02:15:00Z", "message_id": "0b6f1c2e-5d8a-4e3b-9c71-2a4f6d8e0b13",
    "destinations": ["000.00.00.H12", "000.00.00.G22"],
}  # fmt: skip


def _problem(kind: str, status: int, detail: str, path: str, rule: str) -> dict:
    return {"type": f"urn:lienthong:problem:{kind}", "title": kind, "status": status, "detail": detail,
            "instance": f"/api/v1/dossiers/{CODE}/corrections", "errors": [{"path": path, "rule": rule,
                                                                            "message": detail}]}  # fmt: skip


PROBLEM_EXAMPLES = {
    "malformed": _problem("malformed", 400, "a correction needs a reason", "/reason", "reason-required"),
    "not_found": _problem(
        "not-found", 404, f"no status was ever applied to dossier {CODE}", "/code", "dossier-unknown"
    ),
    "conflict": _problem("conflict", 409, f"dossier {CODE} is at status 4 already", "/status", "correction-unchanged"),
}


class CorrectionIn(BaseModel):
    status: int = Field(ge=1, le=10, strict=True, description="The dossier's status after the correction (1..10)")
    reason: str = Field(
        max_length=MAX_REASON,
        pattern=XML_TEXT,  # sent in the hub's signed dossier.status: no control character XML cannot carry
        description="Why (required, not blank; no control characters but tab and line breaks): on the timeline, "
        "audited, sent to the partners",
    )


class CorrectionOut(BaseModel):
    dossier_code: str
    status_before: int = Field(description="The dossier's status before the correction")
    status: int = Field(description="Its status now")
    reason: str
    corrected_by: str = Field(description="The key owner's name, as audited")
    at: datetime = Field(description="The correction's time (the reporting dossier.status's `at`)")
    message_id: str | None = Field(description="The hub's dossier.status reporting it; null when nobody receives one")
    destinations: list[str] = Field(description="The connectors it is queued for (the province, the portal)")


@router.post(
    "/api/v1/dossiers/{code}/corrections",
    operation_id="correct_dossier_status",
    tags=["dossiers"],
    summary="Correct a dossier's status (admin or operator key)",
    response_model=CorrectionOut,
    status_code=201,
    description="Sets the dossier's status whatever the status machine allows: the only way past a terminal status "
    "(3 not received, 7 withdrawn, 10 result returned) or back from 9. Recorded on the dossier's timeline (outcome "
    "`corrected`, with who, why and the status before), audited (`dossier.correct`) and reported as a hub-signed "
    "`dossier.status` (the operator as the step's actor, `reason`, `corrects` = the status before) to every "
    "connector that receives `dossier.status` — the province and the national portal (`CapNhatTienDoHoSoMC`). "
    "404 (`dossier-unknown`) for a dossier without an applied status; 409 `correction-unchanged` when it has that "
    "status already; 400 `reason-required` for a blank reason; 422 `request:string_pattern_mismatch` at "
    "`/body/reason` for a control character XML cannot carry. A correction is applied after the dossier's last "
    "update, even one dated ahead of now.",
    openapi_extra={"requestBody": {"content": {"application/json": {"example": REQUEST_EXAMPLE}}}},
    responses={
        201: {"content": {"application/json": {"example": DONE_EXAMPLE}}},
        **responses("malformed", "unauthenticated", "forbidden", "not-found", "conflict", "invalid", "unavailable",
                    **PROBLEM_EXAMPLES),
    },
)
async def correct_dossier_status(
    request: Request,
    body: CorrectionIn,
    code: Annotated[str, FastApiPath(max_length=64, description="The dossier code")],
    x_api_key: ApiKey = None,
) -> CorrectionOut:
    hub = hub_of(request)
    client = request.client.host if request.client else None
    actor = actions.Actor.of(hub.authenticate(x_api_key), client)
    done = await run_in_threadpool(correct_status, hub.runtime, code, status=body.status, reason=body.reason,
                                   actor=actor)  # fmt: skip
    return CorrectionOut(dossier_code=done.dossier_code, status_before=done.status_before, status=done.status,
                         reason=done.reason, corrected_by=done.corrected_by, at=done.at, message_id=done.message_id,
                         destinations=list(done.destinations))  # fmt: skip
