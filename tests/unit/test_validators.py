"""Domain value checks: plain functions and the pydantic Annotated types built on them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from hub.dossier import validators as v
from hub.errors import RuleViolation
from hub.packets.schemas import schema_bytes


class _Holder(BaseModel):
    agency: v.AgencyCode | None = None
    dossier: v.DossierCode | None = None
    pid: v.PersonalId | None = None
    old: v.OldId | None = None
    amount: v.VndAmount | None = None
    status: v.StatusCode | None = None
    channel: v.Channel | None = None
    applicant: v.ApplicantType | None = None


def _rule_of(field: str, value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        _Holder(**{field: value})
    (error,) = info.value.errors()
    return error["type"]


@pytest.mark.parametrize("code", ["000.00.00.H12", "123.45.67.Z99", "000.00.00.A00"])
def test_agency_code_valid(code: str) -> None:
    assert v.check_agency_code(code) == code
    assert _Holder(agency=code).agency == code


@pytest.mark.parametrize(
    "code",
    [
        "000.00.00.h12",
        "00.00.00.H12",
        "000.00.00.H1",
        "000.00.00.HH2",
        "000-00-00-H12",
        "000.00.00.H12 ",
        "",
        "٠00.00.00.H12",
    ],
)
def test_agency_code_invalid(code: str) -> None:
    with pytest.raises(ValueError, match=r"^agency-code: "):
        v.check_agency_code(code)
    assert _rule_of("agency", code) == "agency-code"


@pytest.mark.parametrize(
    "code",
    [
        "000.00.00.H12-251123-0042",
        "000.00.00.H12-240229-0001",  # 2024 is a leap year
        "000.00.00.H12-251231-9999",
        "123.45.67.Z99-180101-1000",
    ],
)
def test_dossier_code_valid(code: str) -> None:
    assert v.check_dossier_code(code) == code
    assert _Holder(dossier=code).dossier == code


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("000.00.00.H12-250230-0042", "calendar date"),  # 30 February
        ("000.00.00.H12-250229-0042", "calendar date"),  # 2025 is not a leap year
        ("000.00.00.H12-251323-0042", "calendar date"),  # month 13
        ("000.00.00.H12-251100-0042", "calendar date"),  # day 0
        ("000.00.00.H12-251123-0000", "0000"),
        ("000.00.00.h12-251123-0042", "of the form"),  # lowercase letter
        ("000.00.00.H12-251123-042", "of the form"),
        ("000.00.00.H12-2511230-0042", "of the form"),
        ("H12-2511-42", "of the form"),
        ("000.00.00.H12-251123-0042\n", "of the form"),
        ("000.00.00.H12-251123-00420", "of the form"),
    ],
)
def test_dossier_code_invalid(code: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"^dossier-code: .*{why}"):
        v.check_dossier_code(code)
    assert _rule_of("dossier", code) == "dossier-code"


@pytest.mark.parametrize("pid", ["001099012345", "096200000001", "079300123456"])
def test_personal_id_valid(pid: str) -> None:
    assert v.check_personal_id(pid) == pid
    assert _Holder(pid=pid).pid == pid


@pytest.mark.parametrize(
    ("pid", "why"),
    [
        ("00109901234", "12 digits"),  # 11 digits
        ("0010990123456", "12 digits"),  # 13 digits
        ("00109901234A", "12 digits"),
        ("００１099012345", "12 digits"),  # full-width digits are not ASCII
        ("", "12 digits"),
        ("003099012345", "province"),  # 003 is not a province code
        ("000099012345", "province"),
        ("099099012345", "province"),
        ("097099012345", "province"),
    ],
)
def test_personal_id_invalid(pid: str, why: str) -> None:
    with pytest.raises(ValueError, match=rf"^personal-id: .*{why}"):
        v.check_personal_id(pid)
    assert _rule_of("pid", pid) == "personal-id"


def test_personal_id_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="personal-id"):
        v.check_personal_id(1099012345)
    assert _rule_of("pid", 1099012345) == "personal-id"


@pytest.mark.parametrize("old", ["012345678", "999999999"])
def test_old_id_valid(old: str) -> None:
    assert v.check_old_id(old) == old


@pytest.mark.parametrize("old", ["01234567", "0123456789", "01234567X", ""])
def test_old_id_invalid(old: str) -> None:
    with pytest.raises(ValueError, match=r"^old-id: "):
        v.check_old_id(old)
    assert _rule_of("old", old) == "old-id"


@pytest.mark.parametrize("amount", [0, 1, 575_000, 10**15])
def test_vnd_amount_valid(amount: int) -> None:
    assert v.check_vnd_amount(amount) == amount
    holder = _Holder(amount=amount)
    assert holder.amount == amount and type(holder.amount) is int


@pytest.mark.parametrize("amount", [-1, 1.5, 1.0, True, False, "1.5", "1500", None, 10**3 * 1.0])
def test_vnd_amount_invalid(amount: object) -> None:
    with pytest.raises(ValueError, match=r"^vnd-amount: "):
        v.check_vnd_amount(amount)
    if amount is not None:  # None is the holder's "absent"
        assert _rule_of("amount", amount) == "vnd-amount"


@pytest.mark.parametrize(
    ("field", "check", "valid", "invalid"),
    [
        ("status", v.check_status_code, [1, 5, 10], [0, 11, -1, True, 4.0, "4"]),
        ("channel", v.check_channel, [1, 2, 3], [0, 4, True, 2.0, "2"]),
        ("applicant", v.check_applicant_type, [1, 4], [0, 5, False, "1"]),
    ],
)
def test_small_integer_codes(field: str, check: Any, valid: list[int], invalid: list[object]) -> None:
    rule = {"status": "status-code", "channel": "channel", "applicant": "applicant-type"}[field]
    for value in valid:
        assert check(value) == value
        assert getattr(_Holder(**{field: value}), field) == value
    for value in invalid:
        with pytest.raises(ValueError, match=f"^{rule}: "):
            check(value)
        assert _rule_of(field, value) == rule


def test_json_input_is_parsed_from_text_but_python_input_is_not() -> None:
    # The XML codec hands leaf text to pydantic as JSON; Python callers must pass real ints.
    assert _Holder.model_validate_json('{"amount": "1500", "status": "4"}').amount == 1500
    with pytest.raises(ValidationError) as info:
        _Holder.model_validate_json('{"amount": "1.5"}')
    assert info.value.errors()[0]["type"] == "vnd-amount"
    with pytest.raises(ValidationError):
        _Holder.model_validate({"amount": "1500"})


def test_rule_violation_is_a_value_error_naming_the_rule() -> None:
    with pytest.raises(RuleViolation) as info:
        v.check_channel(4)
    assert isinstance(info.value, ValueError)
    assert info.value.rule == "channel"
    assert str(info.value).startswith("channel: ")
    assert set(v.CHECKS) >= {
        "dossier-code",
        "agency-code",
        "personal-id",
        "old-id",
        "vnd-amount",
        "status-code",
        "channel",
    }


@pytest.mark.parametrize(
    ("value", "masked"),
    [("001099012345", "********2345"), ("012345678", "*****5678"), ("12345", "*2345"), ("1234", "****"), ("", "")],
)
def test_mask_personal_id(value: str, masked: str) -> None:
    assert v.mask_personal_id(value) == masked


def test_common_xsd_personal_id_pattern_lists_the_same_province_codes() -> None:
    xsd = schema_bytes("common.xsd").decode()
    pattern = re.search(r'name="PersonalId">.*?<xs:pattern value="\(([0-9|]+)\)\[0-9\]\{9\}"', xsd, re.S)
    assert pattern is not None
    assert set(pattern.group(1).split("|")) == v.PROVINCE_CODES
    assert len(v.PROVINCE_CODES) == 63
