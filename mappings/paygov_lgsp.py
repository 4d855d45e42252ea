"""PayGov through the provincial LGSP gateway, protocol (b) of PARTNER-FORMATS §3 (profile ``paygov/lgsp``): pure
builders and parsers (sources in ``mappings/profiles/paygov/lgsp.yaml``).

- The order (OC-PI:1753-1812; OC-API:124-210): ``{partnerCode, returnUrl, orderId, amount, orderInfo, requestCode,
  ipAddress, checksum, accessKey, serviceCode}``, every value a string (OC-API:147 copies each with
  ``GetterUtil.getString``); ``orderId`` = ``<agency code>-<dossier code>-01`` (OC-PI:1785); ``checksum`` = SHA-256
  hex of secretKey + accessKey + partnerCode + orderId + requestCode + amount (OC-PT:208-224). Answer
  ``{data: {url}}`` (OC-API:200-206).
- The callback (OC-PI:1699-1751): ``{orderId, errorCode ("00" paid), amount, orderInfo, requestCode, transactionNo,
  payDate, paygate, type, transactionCode, checksum}``, answered ``{error_code: "SUCCESSFUL" | "FAILED",
  error_message}`` (OC-PU:139-144). Its checksum's formula is not in the sources (OC reads it and never checks it,
  OC-PI:1717-1724): the profile's ``callback_checksum`` ``order`` applies the order's formula to the callback's
  orderId, requestCode and amount (an assumption, marked unsourced).
- The e-receipt call (OC-PF:1510-1580; OC-API:347-410): ``{partnerCode, accessKey, payerId, payerName, payerAddress,
  payerDistrict, payerProvince, docCode, decisionDate (dd-MM-yyyy), procedureName, paids (Base64 of the JSON list
  of the callback's transactionCode), otherInfo (Base64 of {beneficiaryUnitCode, beneficiaryUnitName}), checksum}``
  answered ``{transactionReceipt: <URL of the PDF>}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from hub.errors import MappingError
from hub.packets.payment import PaymentRequest
from mappings import OutboundMapping, register_outbound

PROFILE = "paygov/lgsp"
PAID = "00"  # errorCode of a paid callback (OC-PI:1707, 1726)
SUCCESSFUL, FAILED = "SUCCESSFUL", "FAILED"  # OC-PT:173-174
CALLBACK_FIELDS = (
    "orderId",
    "errorCode",
    "amount",
    "orderInfo",
    "requestCode",
    "transactionNo",
    "payDate",
    "paygate",
    "type",
    "transactionCode",
    "checksum",
)  # OC-PT:177-187


def strip_accents(text: str) -> str:
    """Vietnamese without diacritics (``StringUtils.stripAccents``, OC-PI:1793): đ/Đ become d/D too."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def order_checksum(
    *, secret_key: str, access_key: str, partner_code: str, order_id: str, request_code: str, amount: object
) -> str:
    """SHA-256 hex of secretKey + accessKey + partnerCode + orderId + requestCode + amount (OC-PT:208-224)."""
    return sha256_hex(f"{secret_key}{access_key}{partner_code}{order_id}{request_code}{amount}")


def order_id(request: PaymentRequest, suffix: str = "-01") -> str:
    """``<agency code>-<dossier code>-01`` (OC-PI:1785; OC reads the dossier back from it, OC-PI:1711-1712)."""
    return f"{request.agency_code}-{request.dossier_code}{suffix}"


def order_draft(request: BaseModel) -> dict[str, str | None]:
    """The outbound mapping of ``payment.request`` for ``paygov/lgsp``: the order's fields the request decides,
    the rest (the partner's keys and codes, ``orderId``'s suffix, the call's ``requestCode`` and address, the
    checksum) ``None`` for ``stamp_order``."""
    if not isinstance(request, PaymentRequest):
        raise TypeError(f"PayGov takes payment.request, not {type(request).__name__}")
    if request.kind == "refund":
        raise MappingError("PayGov via LGSP has no sourced refund: refunds go through a paygov/1.0.6 connector")
    info = request.procedure_name or request.description or f"Thanh toan ho so {request.dossier_code}"
    return {
        "partnerCode": None,
        "returnUrl": None,
        "orderId": None,
        "amount": str(request.amount),
        "orderInfo": strip_accents(info),  # OC-PI:1793
        "requestCode": None,
        "ipAddress": None,
        "checksum": None,
        "accessKey": None,
        "serviceCode": None,
    }


def stamp_order(
    draft: Mapping[str, str | None],
    request: PaymentRequest,
    *,
    partner_code: str,
    secret_key: str,
    settings: Mapping[str, str],
    request_code: str,
    ip: str,
) -> dict[str, str]:
    """The order as sent (OC-PI:1789-1809): the draft with the connector's values, ``requestCode`` (OC: dossier id
    and the time in milliseconds, OC-PI:1787), the caller's address and the checksum (OC-PT:208-224)."""
    oid = order_id(request, settings.get("order_suffix", "-01"))
    order = {
        **{k: "" if v is None else v for k, v in draft.items()},
        "partnerCode": partner_code,
        "returnUrl": settings["return_url"],
        "orderId": oid,
        "requestCode": request_code,
        "ipAddress": ip,
        "accessKey": settings["access_key"],
        "serviceCode": settings["service_code"],
    }
    order["checksum"] = order_checksum(
        secret_key=secret_key,
        access_key=order["accessKey"],
        partner_code=partner_code,
        order_id=oid,
        request_code=request_code,
        amount=order["amount"],
    )
    return order


def payment_url(answer: object) -> str:
    """``data.url`` of the order's answer (OC-API:200-206); ``MappingError`` when there is none."""
    data = answer.get("data") if isinstance(answer, Mapping) else None
    url = data.get("url") if isinstance(data, Mapping) else None
    if not isinstance(url, str) or not url:
        raise MappingError("the order's answer has no data.url")
    return url


def callback_fields(body: bytes) -> dict[str, Any]:
    """The callback's JSON object, or ``MappingError``."""
    try:
        message = json.loads(body)
    except ValueError:
        raise MappingError("the callback is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("orderId"), str):
        raise MappingError("the callback has no orderId")
    return message


def callback_checksum_ok(message: Mapping[str, Any], *, secret_key: str, access_key: str, partner_code: str) -> bool:
    """The callback's checksum under the order's formula (the profile's ``callback_checksum: order``, unsourced)."""
    given = message.get("checksum")
    if not isinstance(given, str):
        return False
    expected = order_checksum(
        secret_key=secret_key,
        access_key=access_key,
        partner_code=partner_code,
        order_id=str(message.get("orderId", "")),
        request_code=str(message.get("requestCode", "")),
        amount=message.get("amount", ""),
    )
    return hmac.compare_digest(given.lower(), expected)


def callback_answer(ok: bool, message: str = "") -> dict[str, str]:
    """``{error_code, error_message}`` (OC-PU:139-144; OC-PI:1742-1752)."""
    return {"error_code": SUCCESSFUL if ok else FAILED, "error_message": message}


def receipt_message(
    request: PaymentRequest,
    *,
    partner_code: str,
    secret_key: str,
    settings: Mapping[str, str],
    transaction_code: str,
    at: datetime,
) -> dict[str, str]:
    """The e-receipt call's body for a paid order (OC-PF:1510-1568)."""
    payer = request.payer
    paids = base64.b64encode(json.dumps([transaction_code]).encode()).decode()
    other = {
        "beneficiaryUnitCode": settings.get("beneficiary_unit_code", ""),
        "beneficiaryUnitName": settings.get("beneficiary_unit_name", ""),
    }
    other_info = base64.b64encode(json.dumps(other, ensure_ascii=False).encode()).decode()
    body = {
        "partnerCode": partner_code,
        "accessKey": settings["access_key"],
        "payerId": payer.personal_id or "",
        "payerName": strip_accents(payer.name),
        "payerAddress": strip_accents(payer.address or ""),
        "payerDistrict": strip_accents(payer.district or ""),
        "payerProvince": strip_accents(payer.province or ""),
        "docCode": request.dossier_code,
        "decisionDate": at.strftime("%d-%m-%Y"),
        "procedureName": request.procedure_name or "",
        "paids": paids,
        "otherInfo": other_info,
    }
    order = (
        "payerId",
        "payerName",
        "payerAddress",
        "payerDistrict",
        "payerProvince",
        "docCode",
        "procedureName",
        "paids",
        "otherInfo",
        "decisionDate",
    )  # OC-PF:1542-1544
    body["checksum"] = sha256_hex(secret_key + partner_code + body["accessKey"] + "".join(body[k] for k in order))
    return body


KIND = PROFILE
OUTBOUND = register_outbound(OutboundMapping(KIND, "payment.request", order_draft))
