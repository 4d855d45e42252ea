"""Models of ``citizen.lookup`` and ``citizen.record`` (``schemas/packets/citizen.*.xsd``)."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Self

from pydantic import model_validator

from hub.dossier.validators import BirthYear, DossierCode, OldId, PersonalId
from hub.packets.common import Address, Code, LongText, Name, PacketModel, Text, rule_error


class CitizenLookup(PacketModel):
    """``citizen.lookup``: exactly one of personal_id/old_id and one of birth_date/birth_year."""

    request_id: Code
    procedure_code: Code
    officer_id: Code
    dossier_code: DossierCode
    purpose: LongText
    personal_id: PersonalId | None = None
    old_id: OldId | None = None
    full_name: Name
    birth_date: date | None = None
    birth_year: BirthYear | None = None

    @model_validator(mode="after")
    def _one_id_one_birth(self) -> Self:
        if (self.personal_id is None) == (self.old_id is None):
            raise rule_error(
                "one-of-personal-id-old-id",
                "give exactly one of personalId (12 digits) or oldId (9 digits)",
                "personalId",
            )
        if (self.birth_date is None) == (self.birth_year is None):
            raise rule_error("one-of-birth-date-birth-year", "give exactly one of birthDate or birthYear", "birthDate")
        return self


class LookupResult(StrEnum):
    """Outcome of a population DB lookup."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    MISMATCH = "mismatch"


class Gender(StrEnum):
    """Gender as recorded in the population DB (GioiTinh)."""

    MALE = "male"
    FEMALE = "female"
    OTHER = "other"


class HouseholdHead(PacketModel):
    """The head of the citizen's household (ChuHo) and the citizen's relationship to them."""

    full_name: Name
    personal_id: PersonalId | None = None
    relationship: Text | None = None


class Citizen(PacketModel):
    """A citizen record: name parts (Ho, ChuDem, Ten), gender, birth date, addresses."""

    personal_id: PersonalId
    family_name: Name
    middle_name: Name | None = None
    given_name: Name
    gender: Gender
    birth_date: date
    hometown: Address | None = None
    permanent_address: Address | None = None
    current_address: Address | None = None
    household_head: HouseholdHead | None = None


class CitizenRecord(PacketModel):
    """``citizen.record``: the lookup's answer; ``citizen`` is present iff ``result`` is ``found``."""

    request_id: Code
    result: LookupResult
    citizen: Citizen | None = None

    @model_validator(mode="after")
    def _citizen_iff_found(self) -> Self:
        if (self.result is LookupResult.FOUND) != (self.citizen is not None):
            expected = "required" if self.result is LookupResult.FOUND else "not allowed"
            raise rule_error(
                "citizen-iff-found", f"citizen is {expected} when result is {self.result.value}", "citizen"
            )
        return self
