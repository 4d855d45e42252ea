"""Profile ``ministry-steps``: a ministry's step message ``<BuocXuLy>`` → canonical ``dossier.status``.

The format is ``schemas/ministry-step.xsd`` (namespace ``urn:lienthong:ministry:1``); the step → status table
is data, ``ministry_steps.yaml`` beside this file:

==================  ====================================  =========================
LoaiBuoc            meaning                               canonical status
==================  ====================================  =========================
LuanChuyenHoSo      handover to the next officer/unit     4 processing
ChoBoSung           waiting for the applicant's supplement 5 supplement requested
DaBoSung            supplement received                   4 processing
KetThuc             finished, with result documents       9 done
==================  ====================================  =========================

Field mapping: MaHoSo → dossierCode, MaDonVi → sourceSystem, ThoiDiem → at and HanXuLy → stepDue (local
yyyyMMddHHmmss, Asia/Ho_Chi_Minh = UTC+7, converted to UTC), NguoiXuLy/ChucDanh/PhongBan/NoiDung →
step actor/title/department/content, DanhSachGiayToKetQua/GiayToKetQua {TenGiayTo, DuongDan, MaBam} →
attachments {name, url, sha256}. ``MaGiayTo`` has no canonical field: it stays in the raw message, which the
hub's message log keeps as received.

``to_canonical`` is pure: it reads only the element (validating it against the XSD first) and raises
``PacketInvalidError`` with issues that name the ministry's elements.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from typing import Any

import yaml
from lxml import etree
from pydantic import ValidationError

from hub.errors import Issue, PacketInvalidError
from hub.packets.dossier import Attachment, DossierStatusUpdate, Step
from hub.packets.issues import element_path, xsd_issues
from mappings import InboundMapping, register_inbound

PROFILE = "ministry-steps"
MESSAGE_TYPE = "dossier.status"
NAMESPACE = "urn:lienthong:ministry:1"
ROOT = f"{{{NAMESPACE}}}BuocXuLy"
SCHEMA_FILE = "ministry-step.xsd"
TIME_FORMAT = "%Y%m%d%H%M%S"
_N = f"{{{NAMESPACE}}}"
_local = threading.local()


@dataclass(frozen=True, slots=True)
class StepRule:
    """What one step code (LoaiBuoc) means canonically."""

    code: str
    status: int
    results_required: bool = False


@cache
def _table_data() -> dict[str, Any]:
    text = resources.files("mappings").joinpath("ministry_steps.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def step_table() -> dict[str, StepRule]:
    """LoaiBuoc → ``StepRule``, from ``ministry_steps.yaml``."""
    return {
        code: StepRule(code, int(rule["status"]), bool(rule.get("results_required", False)))
        for code, rule in _table_data()["steps"].items()
    }


#: Asia/Ho_Chi_Minh: UTC+7 all year (no daylight saving since 1975), so a fixed offset needs no tz database.
LOCAL_TIME = timezone(timedelta(hours=int(_table_data()["timezone_offset_hours"])), "Asia/Ho_Chi_Minh")


def schema() -> etree.XMLSchema:
    """The compiled ``schemas/ministry-step.xsd`` (one per thread: lxml keeps the error log on the object)."""
    found = getattr(_local, "schema", None)
    if found is None:
        data = resources.files("schemas").joinpath(SCHEMA_FILE).read_bytes()
        parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True)
        found = _local.schema = etree.XMLSchema(etree.fromstring(data, parser=parser))
    return found


def local_to_utc(text: str) -> datetime:
    """``yyyyMMddHHmmss`` in Asia/Ho_Chi_Minh → an aware UTC datetime; ``ValueError`` if not a real time."""
    try:
        return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=LOCAL_TIME).astimezone(UTC)
    except OverflowError:  # year 1 local is before year 1 in UTC
        raise ValueError(f"{text!r} is before the first representable instant") from None


def _child(element: etree._Element, name: str) -> etree._Element | None:
    return element.find(f"{_N}{name}")


def _text(element: etree._Element, name: str) -> str | None:
    child = _child(element, name)
    if child is None:
        return None
    return (child.text or "").strip()


# Canonical field (pydantic loc) → the ministry element it came from, to name the right element in issues.
_SOURCE = {
    "dossier_code": "MaHoSo",
    "source_system": "MaDonVi",
    "status": "LoaiBuoc",
    "at": "ThoiDiem",
    "step_due": "HanXuLy",
    "actor": "NguoiXuLy",
    "title": "ChucDanh",
    "department": "PhongBan",
    "content": "NoiDung",
    "attachments": "DanhSachGiayToKetQua",
}


def _issue(element: etree._Element, name: str | None, rule: str, message: str) -> Issue:
    child = None if name is None else _child(element, name)
    node = child if child is not None else element
    path = element_path(node, element) + (f"/{name}" if name is not None and child is None else "")
    return Issue(path, rule, message, node.sourceline)


def _time(element: etree._Element, name: str, issues: list[Issue]) -> datetime | None:
    text = _text(element, name)
    if text is None:
        return None
    try:
        return local_to_utc(text)
    except ValueError:
        issues.append(_issue(element, name, "ministry:time", f"{name} {text!r} is not a real yyyyMMddHHmmss time"))
        return None


def to_canonical(element: etree._Element) -> DossierStatusUpdate:
    """Map a ``<BuocXuLy>`` element to the canonical ``DossierStatusUpdate``.

    Raises ``PacketInvalidError`` (issues with paths into the ministry's message) when the element is not a
    valid ``BuocXuLy`` or does not make a valid canonical update."""
    if element.tag != ROOT:
        found = etree.QName(element)
        raise PacketInvalidError(
            "not a ministry step message",
            [
                Issue(
                    f"/{found.localname}",
                    "root-element",
                    f"root element is <{found.localname}> in namespace {found.namespace}; profile {PROFILE} "
                    f"expects <BuocXuLy> in namespace {NAMESPACE}",
                    element.sourceline,
                )
            ],
        )
    xsd = schema()
    if not xsd.validate(element):
        raise PacketInvalidError("invalid ministry step message", xsd_issues(xsd.error_log, element))

    issues: list[Issue] = []
    code = _text(element, "LoaiBuoc") or ""
    rule = step_table().get(code)
    if rule is None:  # the XSD's enumeration and the table disagree: a packaging bug, reported, not raised
        issues.append(_issue(element, "LoaiBuoc", "ministry:step", f"no status is mapped for step {code!r}"))
    at = _time(element, "ThoiDiem", issues)
    due = _time(element, "HanXuLy", issues)
    documents = element.findall(f"{_N}DanhSachGiayToKetQua/{_N}GiayToKetQua")
    if rule is not None and rule.results_required and not documents:
        issues.append(
            _issue(
                element, "DanhSachGiayToKetQua", "ministry:results-required",
                f"step {code} must carry its result documents (DanhSachGiayToKetQua/GiayToKetQua)",
            )
        )  # fmt: skip
    if issues:
        raise PacketInvalidError("invalid ministry step message", issues)
    assert rule is not None and at is not None

    try:
        return DossierStatusUpdate(
            dossier_code=_text(element, "MaHoSo"),
            status=rule.status,
            step=Step(
                actor=_text(element, "NguoiXuLy"),
                title=_text(element, "ChucDanh"),
                department=_text(element, "PhongBan"),
                content=_text(element, "NoiDung"),
            ),
            at=at,
            step_due=due,
            source_system=_text(element, "MaDonVi"),
            attachments=[
                Attachment(name=_text(doc, "TenGiayTo"), url=_text(doc, "DuongDan"), sha256=_text(doc, "MaBam"))
                for doc in documents
            ],
        )
    except ValidationError as exc:
        raise PacketInvalidError(
            "the ministry step message does not make a valid dossier.status",
            [
                _issue(
                    element,
                    next((_SOURCE[str(p)] for p in reversed(e["loc"]) if str(p) in _SOURCE), None),
                    e["type"],
                    e["msg"],
                )
                for e in exc.errors(include_url=False)
            ],
        ) from None


MAPPING = register_inbound(InboundMapping(PROFILE, MESSAGE_TYPE, ROOT, to_canonical))

__all__ = [
    "LOCAL_TIME",
    "MAPPING",
    "NAMESPACE",
    "PROFILE",
    "ROOT",
    "StepRule",
    "local_to_utc",
    "schema",
    "step_table",
    "to_canonical",
]
