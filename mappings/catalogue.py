"""Names from the national portal's procedure catalogue for a portal record: pure, the lookups come in.

The portal's record carries a procedure's name and field (``TenTTHC``, ``MaLinhVuc``, ``TenLinhVuc``: "name/field
from LayThuTuc") and the processing unit's NAME (``DonViXuLy``, OC-DV:222; TH-SS:124); a provincial system's
``dossier.sync`` may lack them. ``catalogue_names`` reads them from what ``hub catalogue sync`` stored — through any
object with ``catalogue_procedure(code)`` and ``catalogue_unit(code)`` (the ``Store``, or an in-memory
``CatalogueSnapshot``) — and ``fill_portal_record`` puts them in a record where the dossier gave none. The worker
looks the names up and passes them in, so the mapping itself stays a pure function.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol


class _ProcedureLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def field_code(self) -> str | None: ...
    @property
    def field_name(self) -> str | None: ...


class _UnitLike(Protocol):
    @property
    def name(self) -> str: ...


class CatalogueSource(Protocol):
    """Where the names are read: ``hub.store.Store`` has these two methods (``hub.store.catalogue``)."""

    def catalogue_procedure(self, code: str) -> Any: ...
    def catalogue_unit(self, code: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class CatalogueNames:
    """What the catalogue says of a dossier's procedure and unit; ``None`` where it lists nothing."""

    procedure_name: str | None = None  # TENTTHC
    field_code: str | None = None  # LINHVUCTHUCHIEN[0].MALINHVUC
    field_name: str | None = None  # LINHVUCTHUCHIEN[0].TENLINHVUC
    unit_name: str | None = None  # TENDONVI of the unit's MADONVI


@dataclass(frozen=True)
class CatalogueSnapshot:
    """A catalogue held in memory ({code: procedure}, {code: unit}): for tests and batch conversions."""

    procedures: Mapping[str, _ProcedureLike]
    units: Mapping[str, _UnitLike]

    def catalogue_procedure(self, code: str) -> _ProcedureLike | None:
        return self.procedures.get(code)

    def catalogue_unit(self, code: str) -> _UnitLike | None:
        return self.units.get(code)


def catalogue_names(source: CatalogueSource, procedure_code: str | None, unit_code: str | None) -> CatalogueNames:
    """The catalogue's names for a procedure code (MATTHC) and a unit code (MADONVI); nothing for unknown codes."""
    procedure = source.catalogue_procedure(procedure_code) if procedure_code else None
    unit = source.catalogue_unit(unit_code) if unit_code else None
    return CatalogueNames(
        procedure_name=_text(getattr(procedure, "name", None)),
        field_code=_text(getattr(procedure, "field_code", None)),
        field_name=_text(getattr(procedure, "field_name", None)),
        unit_name=_text(getattr(unit, "name", None)),
    )


#: The portal record's keys each name fills (OC-DV:149-322; DonViXuLy OC-DV:222, TH-SS:124).
RECORD_KEYS = {"TenTTHC": "procedure_name", "MaLinhVuc": "field_code", "TenLinhVuc": "field_name",
               "DonViXuLy": "unit_name"}  # fmt: skip


def fill_portal_record(record: MutableMapping[str, Any], names: CatalogueNames) -> MutableMapping[str, Any]:
    """Put the catalogue's names in a DongBoHoSoMC record where it has none (missing or empty); what the dossier
    gave is kept, and a field's name is taken only with the catalogue's field code (a dossier naming another field
    keeps ``TenLinhVuc`` empty rather than another field's name). Returns the same record."""
    own_field = str(record.get("MaLinhVuc") or "").strip()
    for key, attr in RECORD_KEYS.items():
        value = getattr(names, attr)
        if key == "TenLinhVuc" and own_field and own_field != names.field_code:
            continue
        if value and not str(record.get(key) or "").strip():
            record[key] = value
    return record


def named_call(call: object, names: CatalogueNames) -> object:
    """A ``dvcqg`` adapter's request (``mappings.dvcqg.DvcqgCall``, or each of ``DvcqgCalls``) with the catalogue's
    names in its DongBoHoSoMC record (a new record; anything else is returned as it is)."""
    from mappings.dvcqg import SERVICE_SYNC, DvcqgCall, DvcqgCalls

    def named(one: DvcqgCall) -> DvcqgCall:
        if one.service != SERVICE_SYNC:
            return one
        return one._replace(record=dict(fill_portal_record(dict(one.record), names)))

    if isinstance(call, DvcqgCalls):
        return DvcqgCalls(tuple(named(c) for c in call.calls))
    return named(call) if isinstance(call, DvcqgCall) else call


def _text(value: object) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None
