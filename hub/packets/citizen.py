"""Models of ``citizen.lookup`` and ``citizen.record`` (``schemas/packets/citizen.*.xsd``)."""

from __future__ import annotations

from collections.abc import Iterable
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
    """Outcome of a population DB lookup. The real population DB answers a ``CongDan`` or none (PARTNER-FORMATS §2,
    FE:481-489): ``found`` or ``not_found``; ``mismatch`` (the ID exists, the name or birth date differs) is kept
    for records made before that was known, and for partners that tell it apart (no source shows one)."""

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


class Relative(PacketModel):
    """A parent or spouse as the population DB names them (Cha, Me, VoChong: a name, IDs, nationality)."""

    full_name: Name
    personal_id: PersonalId | None = None
    old_id: OldId | None = None
    nationality: Code | None = None


#: Citizen fields beyond what a one-stop officer needs (name parts, sex, birth date, addresses, household head):
#: a record carries them only where the population DB connector's policy names them
#: (``policy.extra_citizen_fields``); everything else the population DB answers never leaves the adapter.
EXTRA_CITIZEN_FIELDS: tuple[str, ...] = ("old_id", "ethnicity", "nationality", "father", "mother", "spouse")


class Citizen(PacketModel):
    """A citizen record: name parts (Ho, ChuDem, Ten), gender, birth date (or only the year, when the population DB
    knows no more), addresses and household head; the ``EXTRA_CITIZEN_FIELDS`` only where a policy keeps them."""

    personal_id: PersonalId
    family_name: Name
    middle_name: Name | None = None
    given_name: Name
    gender: Gender
    birth_date: date | None = None
    birth_year: BirthYear | None = None
    hometown: Address | None = None
    permanent_address: Address | None = None
    current_address: Address | None = None
    household_head: HouseholdHead | None = None
    old_id: OldId | None = None
    ethnicity: Code | None = None
    nationality: Code | None = None
    father: Relative | None = None
    mother: Relative | None = None
    spouse: Relative | None = None

    @model_validator(mode="after")
    def _one_birth(self) -> Self:
        if (self.birth_date is None) == (self.birth_year is None):
            raise rule_error("one-of-birth-date-birth-year", "give exactly one of birthDate or birthYear", "birthDate")
        return self


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

    def minimised(self, keep: Iterable[str] = ()) -> CitizenRecord:
        """This record without the ``EXTRA_CITIZEN_FIELDS`` not named in ``keep`` (data minimisation: what a
        connector's policy does not let through is dropped before the record is signed)."""
        if self.citizen is None:
            return self
        kept = set(keep)
        dropped = {name: None for name in EXTRA_CITIZEN_FIELDS if name not in kept}
        return self.model_copy(update={"citizen": self.citizen.model_copy(update=dropped)})
