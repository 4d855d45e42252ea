"""Domain value checks: plain ``check_*`` functions and the pydantic ``Annotated`` types built on them.

Every check raises ``RuleViolation`` (a ``ValueError``) carrying a stable rule name, so a failure can be
reported as ``Issue(path, rule, message, line)``. Inside a pydantic model the same failure surfaces as a
``PydanticCustomError`` whose error ``type`` is that rule name.

Patterns use ``[0-9]``, not ``\\d``: in Python ``str`` regexes (and in XSD) ``\\d`` also matches non-ASCII
digits. ``schemas/packets/common.xsd`` mirrors these rules; the tests keep the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, Final, TypeVar

from pydantic import AfterValidator, ValidationError, ValidationInfo, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError

from hub.errors import RuleViolation

T = TypeVar("T")

AGENCY_CODE_PATTERN: Final = r"[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-Z][0-9]{2}"
_AGENCY_CODE = re.compile(AGENCY_CODE_PATTERN)
_DOSSIER_CODE = re.compile(rf"(?P<agency>{AGENCY_CODE_PATTERN})-(?P<date>[0-9]{{6}})-(?P<serial>[0-9]{{4}})")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_ID_NUMBER = re.compile(r"[0-9]{9}|[0-9]{12}")

#: Province codes that open a 12-digit personal ID (số định danh cá nhân).
PROVINCE_CODES: Final[frozenset[str]] = frozenset(
    "001 002 004 006 008 010 011 012 014 015 017 019 020 022 024 025 026 027 030 031 033 034 035 036 037 "
    "038 040 042 044 045 046 048 049 051 052 054 056 058 060 062 064 066 067 068 070 072 074 075 077 079 "
    "080 082 083 084 086 087 089 091 092 093 094 095 096".split()
)


def _require_str(rule: str, value: object) -> str:
    if not isinstance(value, str):
        raise RuleViolation(rule, f"must be a string, got {type(value).__name__}")
    return value


def _require_int(rule: str, value: object) -> int:
    # bool is an int subclass, and floats/strings like "1.5" must not be coerced.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleViolation(rule, f"must be an integer, got {type(value).__name__} {value!r}")
    return int(value)


def check_agency_code(value: object) -> str:
    """An agency code (mã định danh) ``ddd.dd.dd.Xdd``, e.g. ``000.00.00.H12``. Rule ``agency-code``."""
    text = _require_str("agency-code", value)
    if not _AGENCY_CODE.fullmatch(text):
        raise RuleViolation("agency-code", f"{text!r} is not an agency code of the form ddd.dd.dd.Xdd")
    return text


def check_dossier_code(value: object) -> str:
    """A dossier code ``<agency code>-<YYMMDD>-<NNNN>`` (TT 01/2018/TT-VPCP Điều 19). Rule ``dossier-code``."""
    rule = "dossier-code"
    text = _require_str(rule, value)
    match = _DOSSIER_CODE.fullmatch(text)
    if match is None:
        raise RuleViolation(rule, f"{text!r} is not of the form <agency code ddd.dd.dd.Xdd>-<YYMMDD>-<NNNN>")
    day = match["date"]
    try:
        date(2000 + int(day[:2]), int(day[2:4]), int(day[4:]))
    except ValueError:
        raise RuleViolation(rule, f"{text!r}: {day} is not a calendar date (YYMMDD)") from None
    if match["serial"] == "0000":
        raise RuleViolation(rule, f"{text!r}: the serial number must be 0001-9999, not 0000")
    return text


def check_personal_id(value: object) -> str:
    """A 12-digit personal ID whose first three digits are a province code. Rule ``personal-id``."""
    rule = "personal-id"
    text = _require_str(rule, value)
    if len(text) != 12 or not text.isascii() or not text.isdigit():
        raise RuleViolation(rule, f"must be exactly 12 digits, got {len(text)} characters")
    if text[:3] not in PROVINCE_CODES:
        raise RuleViolation(rule, f"{text[:3]!r} is not a province code that opens a personal ID")
    return text


def check_old_id(value: object) -> str:
    """A 9-digit old identity card number. Rule ``old-id``."""
    text = _require_str("old-id", value)
    if len(text) != 9 or not text.isascii() or not text.isdigit():
        raise RuleViolation("old-id", f"must be exactly 9 digits, got {len(text)} characters")
    return text


def _check_range(rule: str, what: str, value: object, low: int, high: int | None = None) -> int:
    number = _require_int(rule, value)
    if number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"{low}..{high}"
        raise RuleViolation(rule, f"{what} must be {bounds}, got {number}")
    return number


def check_vnd_amount(value: object) -> int:
    """An amount in whole đồng: an ``int`` >= 0 (no bool, float or string). Rule ``vnd-amount``."""
    return _check_range("vnd-amount", "a VND amount", value, 0)


def check_status_code(value: object) -> int:
    """A dossier status code (TrangThaiHoSo) 1..10. Rule ``status-code``."""
    return _check_range("status-code", "a dossier status code", value, 1, 10)


def check_channel(value: object) -> int:
    """A submission channel: 1 in person, 2 online, 3 postal. Rule ``channel``."""
    return _check_range("channel", "a channel", value, 1, 3)


def check_applicant_type(value: object) -> int:
    """An applicant type: 1 citizen, 2 business, 3 agency, 4 other. Rule ``applicant-type``."""
    return _check_range("applicant-type", "an applicant type", value, 1, 4)


def check_birth_year(value: object) -> int:
    """A year of birth 1900..2100. Rule ``birth-year``."""
    return _check_range("birth-year", "a year of birth", value, 1900, 2100)


def check_sha256(value: object) -> str:
    """A SHA-256 digest as 64 hex digits. Rule ``sha256``."""
    text = _require_str("sha256", value)
    if not _SHA256.fullmatch(text):
        raise RuleViolation("sha256", "must be 64 hexadecimal digits")
    return text


def mask_personal_id(value: str) -> str:
    """``value`` with all but its last 4 characters replaced by ``*`` (fully masked if 4 or shorter)."""
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def check_portal_account_id(value: object) -> str:
    """The applicant's national-portal account (its TechID, sent as ``MaDoiTuong``), never an ID number: a 9- or
    12-digit number is refused (OC-DV:196-205; TH-SS:275-278). Rule ``portal-account-id``."""
    rule = "portal-account-id"
    text = _require_str(rule, value)
    if _ID_NUMBER.fullmatch(text):
        raise RuleViolation(
            rule, "looks like a personal ID number; the portal account id is the applicant's portal TechID "
            "(MaDoiTuong, OC-DV:196-205) — leave it out to have it looked up"
        )  # fmt: skip
    return text


def check_unit_name(value: object) -> str:
    """A processing unit's NAME (sent as ``DonViXuLy``, OC-DV:222; TH-SS:124), not its agency code: a value shaped
    ``ddd.dd.dd.Xdd`` is refused. Rule ``unit-name``."""
    rule = "unit-name"
    text = _require_str(rule, value)
    if _AGENCY_CODE.fullmatch(text.strip()):
        raise RuleViolation(rule, f"{text!r} is an agency code; DonViXuLy is the unit's name (OC-DV:222)")
    return text


def ruled_after(check: Callable[[Any], T]) -> AfterValidator:
    """``check`` run after the base type's own validation, its failures reported under the check's rule name."""

    def validate(value: Any) -> T:
        try:
            return check(value)
        except RuleViolation as violation:
            raise PydanticCustomError(violation.rule, "{detail}", {"detail": violation.message}) from None

    return AfterValidator(validate)


def _ruled(check: Callable[[Any], T]) -> WrapValidator:
    """A pydantic validator reporting ``check``'s failures under the check's rule name.

    Python input must already have the right type (no bool, float or str for an int). JSON input, which
    is how the XML codec hands text over, is first parsed by the base type (``"1500"`` -> 1500).
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> T:
        if info.mode == "json":
            try:
                value = handler(value)
            except ValidationError:
                pass  # check() below explains the failure under the rule's name
        try:
            return check(value)
        except RuleViolation as violation:
            raise PydanticCustomError(violation.rule, "{detail}", {"detail": violation.message}) from None

    return WrapValidator(validate)


AgencyCode = Annotated[str, _ruled(check_agency_code)]
DossierCode = Annotated[str, _ruled(check_dossier_code)]
PersonalId = Annotated[str, _ruled(check_personal_id)]
OldId = Annotated[str, _ruled(check_old_id)]
VndAmount = Annotated[int, _ruled(check_vnd_amount)]
StatusCode = Annotated[int, _ruled(check_status_code)]
Channel = Annotated[int, _ruled(check_channel)]
ApplicantType = Annotated[int, _ruled(check_applicant_type)]
BirthYear = Annotated[int, _ruled(check_birth_year)]
Sha256Hex = Annotated[str, _ruled(check_sha256)]

#: rule name -> plain check function, for callers that validate one value outside a model.
CHECKS: Final[dict[str, Callable[[object], object]]] = {
    "agency-code": check_agency_code,
    "dossier-code": check_dossier_code,
    "personal-id": check_personal_id,
    "old-id": check_old_id,
    "vnd-amount": check_vnd_amount,
    "status-code": check_status_code,
    "channel": check_channel,
    "applicant-type": check_applicant_type,
    "birth-year": check_birth_year,
    "sha256": check_sha256,
    "portal-account-id": check_portal_account_id,
    "unit-name": check_unit_name,
}

__all__ = [
    "AGENCY_CODE_PATTERN",
    "CHECKS",
    "PROVINCE_CODES",
    "AgencyCode",
    "ApplicantType",
    "BirthYear",
    "Channel",
    "DossierCode",
    "OldId",
    "PersonalId",
    "RuleViolation",
    "Sha256Hex",
    "StatusCode",
    "VndAmount",
    "check_agency_code",
    "check_applicant_type",
    "check_birth_year",
    "check_channel",
    "check_dossier_code",
    "check_old_id",
    "check_personal_id",
    "check_portal_account_id",
    "check_sha256",
    "check_status_code",
    "check_unit_name",
    "check_vnd_amount",
    "mask_personal_id",
    "ruled_after",
]
