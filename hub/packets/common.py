"""The base model of every canonical packet and the field types and structures the packets share.

Mirrors ``schemas/packets/common.xsd``; the codes with a named domain rule live in ``hub.dossier.validators``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, PlainSerializer, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from hub.dossier.validators import VndAmount


def _to_utc(value: datetime) -> datetime:
    """The instant in UTC; a date-time that UTC cannot represent (``9999-12-31T23:59:59-14:00`` is in year 10000)
    is a validation error, not an ``OverflowError`` that would escape as a 500."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime-range",
            "{value} is outside the range of representable instants (years 1 to 9999 in UTC)",
            {"value": value.isoformat()},
        ) from None


#: A timezone-aware instant (naive datetimes are rejected), normalised to UTC; written as ``...Z``.
UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]


def _standard_base64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


#: Bytes written as standard base64 (xs:base64Binary); pydantic's own base64 output is the URL-safe alphabet.
Base64Binary = Annotated[bytes, PlainSerializer(_standard_base64, return_type=str, when_used="json")]

Code = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,99}$")]
ResultCode = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9]{1,10}$")]
Name = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=1000)]
LongText = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=4000)]
Url = Annotated[str, StringConstraints(strict=True, max_length=2000, pattern=r"^https?://\S+$")]
Phone = Annotated[str, StringConstraints(strict=True, pattern=r"^\+?[0-9]{8,15}$")]
# Shape only, as the XSD checks it; the email-validator package is not a dependency.
Email = Annotated[str, StringConstraints(strict=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
ProvinceCode = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{2}$")]
DistrictCode = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{3}$")]
WardCode = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{5}$")]


def rule_error(rule: str, message: str, field: str | None = None) -> PydanticCustomError:
    """A model-level rule failure; ``field`` (an alias) tells the issue mapper which element it concerns."""
    context: dict[str, str] = {"detail": message}
    if field is not None:
        context["field"] = field
    return PydanticCustomError(rule, "{detail}", context)


class PacketModel(BaseModel):
    """Base of every packet model: camelCase element names, no unknown fields, immutable.

    Build with the snake_case field names in Python; XML uses the camelCase aliases.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        val_json_bytes="base64",
    )


class FeeLine(PacketModel):
    """One fee or charge (phí, lệ phí) in whole đồng."""

    code: Code
    name: Text
    amount: VndAmount


class Address(PacketModel):
    """An administrative address: province, district and ward codes plus free text."""

    province_code: ProvinceCode
    district_code: DistrictCode | None = None
    ward_code: WardCode | None = None
    detail: Text | None = None


class PostalParty(PacketModel):
    """Sender or receiver of a postal order."""

    name: Name
    address: Text
    phone: Phone
    province_code: ProvinceCode
    district_code: DistrictCode
    email: Email | None = None
