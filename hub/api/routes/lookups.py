"""F2 over HTTP (``hub.flows.lookups``): ``POST /api/v1/lookups`` — a signed ``citizen.lookup`` in, the
hub-signed ``citizen.record`` envelope out (200 ``application/xml``), synchronously; 422 without
officer/dossier/purpose, 504 when the population DB is slow, 502 when it is down or failing.
``GET /api/v1/lookups`` — the lookup audit (admin or operator key; ``?dossier=`` to filter)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from hub.api.dependencies import (
    XML_MEDIA_TYPES,
    ApiKey,
    ListLimit,
    hub_of,
    lookup_service,
    read_body,
    require_media_type,
    staff_hub,
    xml_request_body,
)
from hub.api.models import LookupAuditOut
from hub.api.problems import BODY_PROBLEMS, responses
from hub.store import flow_records

router = APIRouter()

# The request and answer examples of ``POST /api/v1/lookups`` (signatures elided: the hub checks real ones).
LOOKUP_EXAMPLE = """\
<env:envelope xmlns:env="urn:lienthong:envelope:1">
  <env:header>
    <env:messageId>7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60</env:messageId>
    <env:sender>000.00.00.H12</env:sender>
    <env:receiver>000.00.00.H00</env:receiver>
    <env:messageType>citizen.lookup</env:messageType>
    <env:schemaVersion>1.0</env:schemaVersion>
    <env:createdAt>2025-11-23T02:15:00Z</env:createdAt>
    <env:dossierCode>000.00.00.H12-251123-0042</env:dossierCode>
  </env:header>
  <env:body>
    <p:citizenLookup xmlns:p="urn:lienthong:packet:1">
      <p:requestId>TC-20251123-000117</p:requestId>
      <p:procedureCode>1.009994</p:procedureCode>
      <p:officerId>CB-H12-0031</p:officerId>
      <p:dossierCode>000.00.00.H12-251123-0042</p:dossierCode>
      <p:purpose>Xác minh thông tin công dân khi tiếp nhận hồ sơ cấp giấy phép xây dựng</p:purpose>
      <p:personalId>001099012345</p:personalId>
      <p:fullName>Nguyễn Văn An</p:fullName>
      <p:birthDate>1999-04-17</p:birthDate>
    </p:citizenLookup>
  </env:body>
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">…</ds:Signature>
</env:envelope>
"""
RECORD_EXAMPLE = """\
<env:envelope xmlns:env="urn:lienthong:envelope:1">
  <env:header>
    <env:messageId>c3a1e0d2-5b7f-4c19-8e2a-6d0f9b4a7e13</env:messageId>
    <env:correlationId>7f0c2a8e-4d1b-4e8f-9a51-2f1d3c4b5a60</env:correlationId>
    <env:sender>000.00.00.H00</env:sender>
    <env:receiver>000.00.00.H12</env:receiver>
    <env:messageType>citizen.record</env:messageType>
    <env:schemaVersion>1.0</env:schemaVersion>
    <env:createdAt>2025-11-23T02:15:01Z</env:createdAt>
    <env:dossierCode>000.00.00.H12-251123-0042</env:dossierCode>
  </env:header>
  <env:body>
    <p:citizenRecord xmlns:p="urn:lienthong:packet:1">
      <p:requestId>TC-20251123-000117</p:requestId>
      <p:result>found</p:result>
      <p:citizen>
        <p:personalId>001099012345</p:personalId>
        <p:familyName>Nguyễn</p:familyName>
        <p:middleName>Văn</p:middleName>
        <p:givenName>An</p:givenName>
        <p:birthDate>1999-04-17</p:birthDate>
        …
      </p:citizen>
    </p:citizenRecord>
  </env:body>
  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">…</ds:Signature>
</env:envelope>
"""


@router.post(
    "/api/v1/lookups",
    operation_id="lookup_citizen",
    tags=["partners"],
    summary="F2: look a citizen up in the population DB (synchronous)",
    description="The body is a signed `citizen.lookup` envelope (`application/xml`), the sender's API key in "
    "`X-Api-Key`. 200: the hub-signed `citizen.record` envelope (`application/xml`), `result` found / not_found / "
    "mismatch. A lookup without `officerId`, `dossierCode` or `purpose` is 422 (rules `lookup-officer-required`, "
    "`lookup-dossier-required`, `lookup-purpose-required`); every lookup is audited. The same message id and "
    "content again is answered with the first answer's very bytes, without asking the population DB again, and "
    "audited as `repeat`. 504 when the population DB "
    "does not answer within `LIENTHONG_LOOKUP_TIMEOUT_S` (default 10 s), 502 when it is down or fails. This is "
    "the only door for a `citizen.lookup`: `POST /api/v1/messages` and SOAP refuse one with 403 (rule "
    "`lookup-through-lookups`).",
    response_class=Response,
    openapi_extra=xml_request_body(LOOKUP_EXAMPLE),
    responses={
        200: {
            "description": "The hub-signed citizen.record",
            "content": {"application/xml": {"schema": {"type": "string"}, "example": RECORD_EXAMPLE}},
        },
        **responses(*BODY_PROBLEMS, "bad-gateway", "unavailable", "gateway-timeout"),
    },
)
async def post_lookup(request: Request, x_api_key: ApiKey = None) -> Response:
    hub = hub_of(request)
    caller = await run_in_threadpool(hub.authenticate, x_api_key)
    require_media_type(request, XML_MEDIA_TYPES, "the envelope as application/xml", "application/xml")
    body = await read_body(request, hub.settings.max_message_bytes)
    answer = await run_in_threadpool(lookup_service(hub).lookup, caller, body)
    return Response(
        answer.envelope,
        media_type="application/xml",
        headers={"X-Message-Id": answer.message_id, "X-Lookup-Result": answer.record.result.value},
    )


@router.get(
    "/api/v1/lookups",
    operation_id="list_lookups",
    tags=["partners"],
    summary="The citizen lookup audit (admin or operator key)",
    response_model=list[LookupAuditOut],
    responses=responses("unauthenticated", "forbidden", "unavailable"),
)
def list_lookups(
    request: Request,
    x_api_key: ApiKey = None,
    dossier: str | None = None,
    limit: ListLimit = 500,
) -> list[LookupAuditOut]:
    hub = staff_hub(request, x_api_key)
    return [LookupAuditOut(**row) for row in flow_records.lookups(hub.store.engine, dossier_code=dossier, limit=limit)]
