"""The land registration software's per-step JSON (profile ``ministry/vbdlis-json``):
``POST /api/v{version}/VBDLISs/{action}/{securityCode}``, answered ``{Result: 1|0, Message}``.

Facts (PARTNER-FORMATS.md §5, secondary source TH only): one unsigned JSON POST per step, the shared secret as the
last path segment (TH-BV:3; TH-BC:64-176), keyed by ``SoBienNhan``, answered ``{Result 1|0, Message}`` (TH-BR
ProvideToVBLISBaseResponse.cs:20-21). No HTTP status is sourced: every answer is HTTP 200 and ``Result`` says
what happened, except a store outage (503, ``Result`` 0, worth a retry) and a hub failure (500, ``Result`` 0).

The security code is the API key of a connector whose ``profile`` is ``ministry/vbdlis-json`` (``hub connector
add`` prints it, ``rotate-key`` replaces it): the hub stores only its salted hash and compares in constant time
(``Registry.authenticate``), and ``hub.logs`` masks the segment in every log line (the access log included). A
wrong code is refused with ``Result`` 0, logged with its rule and counted in ``lienthong_callbacks_refused_total``
(never stored: anonymous junk costs no write); a refusal of an authenticated step is recorded as a partner refusal
(``GET /api/v1/partner-refusals``, kind ``vbdlis.<action>``).

An accepted step is mapped (``mappings.vbdlis``) to the canonical ``dossier.status`` and enters the pipeline as
a message from that connector (``Acceptor.inject``: the hub signs the canonical envelope; the partner's body is
unsigned), authorized like any of its messages (type granted, its own unit, a dossier it handles), through the
status machine onto the timeline and routed to the province and the portal. Its message id derives from
(connector, action, SoBienNhan, the body's content digest): the same body sent again is answered ``Result`` 1
("already received") and applied once; a different body is another step (two handovers on the same day are two
steps: .NET dates are often date-only, so the step's date cannot name it). §5 sources no step id and no conflict
rule, so none is invented.

A NUL character anywhere in the decoded body is refused first (``Result`` 0, rule ``nul-character``, naming the
field): PostgreSQL text cannot hold it, and nothing of the body is looked up or stored before that check (the
reference and reason of the recorded refusal are stripped of NUL too).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hub.api.dependencies import hub_of
from hub.errors import (
    ConflictError,
    Issue,
    MappingError,
    PacketInvalidError,
    RejectedError,
    StatusTransitionError,
    StoreUnavailableError,
)
from hub.metrics import ACCEPTED, CALLBACKS_REFUSED, REJECTED
from hub.security.envelope import EnvelopeHeader
from hub.services import HubService
from hub.store import flow_records
from mappings import vbdlis
from mappings.profiles import get_profile

log = logging.getLogger(__name__)

router = APIRouter()
PATH = "/api/v{version}/VBDLISs/{action}/{security_code}"
CHANNEL = "vbdlis"


class VbdlisAnswer(BaseModel):
    """VBDLIS's answer shape (TH-BR ProvideToVBLISBaseResponse.cs:20-21)."""

    Result: int = Field(description="1 accepted (also for the same step again), 0 refused")
    Message: str


class Refused(Exception):
    """A step answered ``Result`` 0: the rule broken and why (``status``: its HTTP status, 200)."""

    def __init__(self, rule: str, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.status = status


def _answer(result: int, message: str, status: int = 200) -> JSONResponse:
    return JSONResponse(VbdlisAnswer(Result=result, Message=message).model_dump(), status)


def _issues_text(issues: list[Issue]) -> str:
    return "; ".join(f"{i.path.lstrip('/') or 'body'}: {i.message}" for i in issues[:10])


def _authenticated(hub: HubService, security_code: str) -> Any:
    """The VBDLIS connector whose key is ``security_code``; ``Refused`` otherwise (counted, logged, not stored)."""
    connector = hub.registry.authenticate(security_code)
    rule = None
    if connector is None or not connector.enabled:
        rule, why = "security-code-unknown", "unknown security code"
    elif connector.spec.profile is None or get_profile(connector.spec.profile).name != vbdlis.PROFILE:
        rule, why = "vbdlis-profile", "unknown security code"  # the same answer: no probing of other keys
    if rule is not None:
        CALLBACKS_REFUSED.labels(connector="unknown", reason=rule).inc()
        log.warning("VBDLIS step refused before authentication rule=%s", rule)
        raise Refused(rule, why)
    return connector


def _accepted_versions(settings: Any) -> set[str]:
    return {v.strip() for v in settings["api_versions"].split(",") if v.strip()}


def _step(hub: HubService, version: str, action: str, security_code: str, raw: bytes) -> tuple[int, str]:
    connector = _authenticated(hub, security_code)
    code = connector.code
    settings = connector.spec.profile_settings()
    try:
        if version not in _accepted_versions(settings):
            known = ", ".join(sorted(_accepted_versions(settings)))
            raise Refused("vbdlis-version", f"API version {version!r} is not accepted (accepted: {known})")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Refused("vbdlis:json", f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise Refused("vbdlis:json", "the body is not JSON a step can be: nested too deeply") from None
        nul = vbdlis.nul_path(body)  # before anything looks it up or stores it: PostgreSQL text holds no NUL
        if nul is not None:
            field = nul.lstrip("/") or "body"
            raise Refused("nul-character", f"{field}: a NUL character (\\u0000) is not accepted in a step")
        number = body.get("SoBienNhan") if isinstance(body, dict) else None
        record = hub.store.dossier(number) if isinstance(number, str) and number.strip() else None
        try:
            step = vbdlis.map_step(
                action, body, unit=connector.spec.registered_unit, received_at=datetime.now(UTC),
                current=None if record is None or record.status is None else int(record.status),
                settings=vbdlis.StepSettings.from_profile(settings),
            )  # fmt: skip
        except PacketInvalidError as exc:
            raise Refused(exc.issues[0].rule if exc.issues else "vbdlis:body", _issues_text(list(exc.issues))) from None
        return _inject(hub, connector, step)
    except Refused as refused:
        REJECTED.labels(code, refused.rule).inc()
        log.info("VBDLIS step refused connector=%s action=%s rule=%s", code, action[:64], refused.rule)
        flow_records.record_refusal(
            hub.store.engine, connector=code, kind=f"vbdlis.{_no_nul(action)[:40]}", rule=refused.rule,
            reason=_no_nul(refused.message)[:1000], payload=raw, reference=_reference(raw),
        )  # fmt: skip
        raise


def _no_nul(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text columns cannot hold."""
    return text.replace(vbdlis.NUL, "")


def _reference(raw: bytes) -> str | None:
    try:
        number = json.loads(raw).get("SoBienNhan")
    except (ValueError, AttributeError, RecursionError):
        return None
    return (_no_nul(number)[:128] or None) if isinstance(number, str) else None


def _inject(hub: HubService, connector: Any, step: vbdlis.MappedStep) -> tuple[int, str]:
    update = step.update
    header = EnvelopeHeader(
        message_id=step.message_id(connector.code),
        correlation_id=step.correlation_id,
        sender=connector.code,
        receiver=hub.settings.hub_code,
        message_type=vbdlis.MESSAGE_TYPE,
        dossier_code=update.dossier_code,
    )
    issues = hub.registry.authorize(connector, header) + hub.registry.authorize_dossier(connector, header, update)
    if issues:
        raise Refused(issues[0].rule, _issues_text(issues))
    try:
        accepted = hub.runtime.inject(header, update)
    except ConflictError:
        # The id embeds the body's digest: the same body again, whose canonical update differs only in what the
        # hub added (the time of receipt of an undated step, a kept status). A duplicate, not a conflict.
        return 1, f"already received (message {header.message_id})"
    except StatusTransitionError as exc:
        if step.kept:  # TH keeps the status and logs the step (TH-BR *Handler.cs "unless"): it is on the timeline
            return 1, f"recorded on the dossier's timeline; status kept at {update.status}"
        raise Refused("status-transition", str(exc)) from None
    except RejectedError as exc:
        raise Refused(exc.issues[0].rule if exc.issues else exc.kind, str(exc)) from None
    ACCEPTED.labels(connector.code, CHANNEL).inc()
    if accepted.duplicate:
        return 1, f"already received (message {accepted.message_id})"
    kept = f"; status kept at {update.status}" if step.kept else ""
    return 1, f"accepted (message {accepted.message_id}, {accepted.status_update or accepted.status}){kept}"


@router.post(
    PATH,
    operation_id="vbdlis_step",
    tags=["partners"],
    summary="A VBDLIS processing step (profile ministry/vbdlis-json)",
    description="Land registration software VBDLIS posts one JSON object per step, keyed by `SoBienNhan` "
    "(PARTNER-FORMATS §5): `action` is one of " + ", ".join(f"`{a}`" for a in vbdlis.ACTIONS) + "; "
    "`security_code` is the API key of a connector with `profile: ministry/vbdlis-json`; `version` one of its "
    "`api_versions`. Answered `{Result: 1, Message}` when accepted (also for the same step again) and "
    "`{Result: 0, Message}` when refused (unknown code, bad body naming the field, status transition), all with "
    "HTTP 200; 503 when the store is down.",
    response_model=VbdlisAnswer,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object"},
                    "example": {
                        "SoBienNhan": "000.00.00.H12-251123-0042",
                        "NgayKetThuc": "2025-11-28T16:00:00",
                        "MaCanBoXuLy": "cb.tnmt.07",
                        "TrangThaiKetThuc": 0,
                        "GhiChu": "Đã cấp giấy chứng nhận",
                        "DanhSachGiayToKetQua": [
                            {
                                "TenGiayTo": "Giấy chứng nhận",
                                "KieuFile": "pdf",
                                "LinkFile": "https://vbdlis.example.gov.vn/f/gcn.pdf",
                                "SoBanSao": 0,
                                "SoBanChinh": 1,
                            }
                        ],
                    },
                }
            },
        }
    },
    responses={
        200: {
            "description": "Result 1 accepted, or Result 0 refused with the reason",
            "content": {
                "application/json": {
                    "examples": {
                        "accepted": {"value": {"Result": 1, "Message": "accepted (message 562f28ea-…, applied)"}},
                        "refused": {"value": {"Result": 0, "Message": "NgayKetThuc: NgayKetThuc is required"}},
                    }
                }
            },
        },
        503: {"description": "The store is unavailable (Result 0): send the step again later", "model": VbdlisAnswer},
    },
)
async def vbdlis_step(request: Request, version: str, action: str, security_code: str) -> JSONResponse:
    hub = hub_of(request)
    raw = await request.body()
    try:
        result, message = await run_in_threadpool(_step, hub, version, action, security_code, raw)
    except Refused as refused:
        return _answer(0, refused.message, refused.status)
    except StoreUnavailableError as exc:
        log.warning("store unavailable on a VBDLIS step: %s", exc)
        return _answer(0, "the hub's store is unavailable; send the step again later", 503)
    except MappingError as exc:  # the connector's profile values cannot be used (hub connector check says why)
        log.warning("VBDLIS connector profile unusable: %s", exc)
        return _answer(0, "the hub's configuration for this connector is incomplete", 503)
    except Exception:
        log.exception("VBDLIS step failed action=%s", action[:64])
        return _answer(0, "the hub failed to handle this step; it was logged", 500)
    return _answer(result, message)


__all__ = ["PATH", "VbdlisAnswer", "router"]
