"""Profile ``ministry/vbdlis-json``: a VBDLIS step (per-action JSON keyed by ``SoBienNhan``) → canonical
``dossier.status``.

Facts from PARTNER-FORMATS.md §5 only (secondary source TH: TH-BC VBDLISController.cs, TH-BV
VersionedApiController.cs, TH-BR ProvideToVBDLIS/*Request.cs and *Handler.cs). VBDLIS POSTs one JSON object per
step to ``api/v{version}/VBDLISs/<action>/{securityCode}`` (TH-BV:3; TH-BC:64-176); the fields per action are
``ACTIONS`` (TH-BR *Request.cs, "?" = optional); the status each action sets, and the statuses it leaves alone
("4 unless 5/9/10"), are the profile's code tables (TH-BR *Handler.cs), GuiKetQuaThue's the profile values
``tax_result_status``/``tax_result_keep_status`` (TH only logs it); ThongBaoNhapSaiThuTuc and
ThueChuyenTraHoSoDoSai, which TH only logs too, keep the dossier's status (recorded and delivered as a step).
TiepNhanHoSoChoMotCua (VBDLIS's own intake of a whole dossier) is not mapped: it is no status step. KetThucHoSo
with ``TrangThaiKetThuc`` other than 0 (returned or withdrawn without a result, §5) sets the profile value
``ended_status`` (9 as TH does by default; 7 withdrawn or 8 stopped where a deployment says so); a step that sets
3, 7 or 8 carries its GhiChu as the update's ``reason`` (required for 3 and 8: refused naming GhiChu without it).

Dates are .NET DateTime in JSON: ISO-8601 (an inference of §5); one without an offset is read at the profile's
``local_utc_offset``.

Field mapping: SoBienNhan → dossierCode; the action's date (NgayChuyen, NgayChoBoSung, NgayNhanBoSung,
NgayKetThuc, NgayCoKetQuaThue) → at (the time of receipt when the step has none); MaCanBoChuyen / MaCanBoXuLy /
NguoiXuLy → step actor, MaCanBoNhan → step handedTo, MaTrangThai → step partnerState, LaTrangThaiChuyenLai → step
sentBack, NoiDungXuLy / GhiChu → step content; HanXuLy → stepLimit (the number as written), NgayHenTraMoi →
newDueAt, LaTamDung → paused, TrangThaiKetThuc → finishKind, the action → partnerStep; file descriptors
{TenGiayTo, KieuFile, LinkFile, SoBanSao, SoBanChinh} (DanhSachTapTin, TapTin, DanhSachGiayToKetQua) →
attachments {name, fileType, url, copies, originals}; tax notices DanhSachThongBaoThue {HoTenChu, LoaiThue,
SoThongBaoThue, DuongDanThongBaoThue} → attachments named "LoaiThue SoThongBaoThue — HoTenChu".

``map_step`` is pure (the receipt time, the dossier's current status and the profile's settings are given), so
it is golden-file tested alone. Problems raise ``PacketInvalidError`` whose issues name the VBDLIS field
(``/NgayKetThuc``), which the route answers as ``{Result: 0, Message}``.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import ValidationError

from hub.errors import Issue, PacketInvalidError
from hub.packets.dossier import Attachment, DossierStatusUpdate, Step
from mappings.profiles import ProfileSettings, ProfileValueError

PROFILE = "ministry/vbdlis-json"
MESSAGE_TYPE = "dossier.status"
#: Namespace of the message ids derived from step content (``message_id``): fixed, so ids are stable.
ID_NAMESPACE = uuid.UUID("6f1d7f5e-3b0a-5d6c-9a51-7a9c0b1d2e44")

Kind = Literal["str", "bool", "int", "number", "time", "files", "taxes", "code"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    required: bool = False


@dataclass(frozen=True, slots=True)
class Action:
    """One VBDLIS step endpoint: its fields (TH-BR *Request.cs, PARTNER-FORMATS §5 table), its date field and where
    its officer is named."""

    name: str
    th_step: str  # TH's step name (the §5 table's parenthesis)
    fields: tuple[Field, ...]
    date: str | None  # the field that dates the step
    actor: str | None  # the field that names the officer


def _f(name: str, kind: Kind = "str", required: bool = False) -> Field:
    return Field(name, kind, required)


#: The sourced steps this profile maps (PARTNER-FORMATS §5 table; TH-BR *Request.cs).
ACTIONS: Mapping[str, Action] = {
    a.name: a
    for a in (
        Action(
            "ChuyenHoSo", "LuanChuyenHoSo",
            (_f("SoBienNhan", required=True), _f("MaCanBoChuyen", required=True), _f("MaCanBoNhan", required=True),
             _f("MaTrangThai", "code", True), _f("LaTrangThaiChuyenLai", "bool"), _f("NoiDungXuLy"),
             _f("NgayChuyen", "time"), _f("HanXuLy", "number"), _f("DanhSachTapTin", "files")),
            "NgayChuyen", "MaCanBoChuyen",
        ),
        Action(
            "YeuCauBoSungHoSo", "ChoBoSung",
            (_f("SoBienNhan", required=True), _f("NgayChoBoSung", "time", True), _f("MaCanBoXuLy", required=True),
             _f("LaTamDung", "bool", True), _f("GhiChu"), _f("TapTin", "files")),
            "NgayChoBoSung", "MaCanBoXuLy",
        ),
        Action(
            "NhanBoSungHoSo", "DaBoSung",
            (_f("SoBienNhan", required=True), _f("NgayNhanBoSung", "time", True), _f("NgayHenTraMoi", "time", True),
             _f("GhiChu"), _f("TapTin", "files")),
            "NgayNhanBoSung", None,
        ),
        Action(
            "KetThucHoSo", "KetThuc",
            (_f("SoBienNhan", required=True), _f("NgayKetThuc", "time", True), _f("MaCanBoXuLy", required=True),
             _f("TrangThaiKetThuc", "int", True), _f("GhiChu"), _f("DanhSachGiayToKetQua", "files")),
            "NgayKetThuc", "MaCanBoXuLy",
        ),
        Action(
            "GuiKetQuaThue", "GuiKetQuaThue",
            (_f("SoBienNhan", required=True), _f("NguoiXuLy"), _f("NgayCoKetQuaThue", "time"), _f("GhiChu"),
             _f("DanhSachThongBaoThue", "taxes")),
            "NgayCoKetQuaThue", "NguoiXuLy",
        ),
        # SoBienNhan is optional in TH's request class, but it is the only key of the dossier: required here.
        Action(
            "YeuCauCapNhatHoSo", "YeuCauCapNhatHoSo",
            (_f("SoBienNhan", required=True), _f("MaCanBoXuLy"), _f("GhiChu")),
            None, "MaCanBoXuLy",
        ),
        # TH only logs these two (§5 "logged"): the step is recorded and delivered at the dossier's current status.
        Action(
            "ThongBaoNhapSaiThuTuc", "ThongBaoNhapSaiThuTuc",
            (_f("SoBienNhan", required=True), _f("MaCanBoXuLy"), _f("GhiChu")),
            None, "MaCanBoXuLy",
        ),
        Action(
            "ThueChuyenTraHoSoDoSai", "ThueChuyenTraHoSoDoSai",
            (_f("SoBienNhan", required=True), _f("GhiChu")),
            None, None,
        ),
    )
}  # fmt: skip

FILE_FIELDS = ("TenGiayTo", "KieuFile", "LinkFile", "SoBanSao", "SoBanChinh")  # §5 "File descriptor"
#: What KetThucHoSo without a result (TrangThaiKetThuc ≠ 0) may set: done (9, as TH does), withdrawn (7), stopped (8).
ENDED_STATUSES = frozenset({7, 8, 9})
#: Statuses whose reason (``reason``) is the step's GhiChu: not received, withdrawn, stopped.
REASON_STATUSES = frozenset({3, 7, 8})
TAX_FIELDS = ("HoTenChu", "LoaiThue", "SoThongBaoThue", "DuongDanThongBaoThue")  # §5 GuiKetQuaThue


@dataclass(frozen=True, slots=True)
class StepSettings:
    """What the profile (and the connector's values) say about statuses and dates."""

    step_status: Mapping[str, int]
    keep_status: Mapping[str, frozenset[int]]
    local_offset: timezone
    default_actor: str
    #: KetThucHoSo's status when TrangThaiKetThuc is not 0 (returned or withdrawn without a result, §5).
    ended_status: int = 9

    @classmethod
    def from_profile(cls, values: ProfileSettings) -> StepSettings:
        """From a connector's profile values and the profile's code tables ``step_status``/``keep_status``."""
        codes = values.profile.codes
        status = {a: int(s) for a, s in codes["step_status"].values.items()}
        keep = {a: _statuses(s) for a, s in codes["keep_status"].values.items()}
        try:
            status["GuiKetQuaThue"] = int(values["tax_result_status"])
            keep["GuiKetQuaThue"] = _statuses(values["tax_result_keep_status"])
            offset = parse_offset(values["local_utc_offset"])
            ended = int(values["ended_status"])
            if ended not in ENDED_STATUSES:
                raise ValueError(f"ended_status {ended} is not one of {sorted(ENDED_STATUSES)}")
        except ValueError as exc:
            keys = ("tax_result_status", "tax_result_keep_status", "local_utc_offset", "ended_status")
            raise ProfileValueError(f"profile {values.profile.ref}: unusable value: {exc}", keys) from None
        return cls(status, keep, offset, values["default_actor"], ended)


def _statuses(text: str) -> frozenset[int]:
    return frozenset(int(p) for p in text.split(",") if p.strip())


def parse_offset(text: str) -> timezone:
    """``+07:00`` → a fixed offset (``ValueError`` if it is not ±HH:MM)."""
    match = re.fullmatch(r"([+-])([0-9]{2}):?([0-9]{2})", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a UTC offset ±HH:MM")
    sign = -1 if match[1] == "-" else 1
    return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))


@dataclass(frozen=True, slots=True)
class MappedStep:
    """A VBDLIS step as the hub takes it: the canonical update, the content digest (its idempotency key) and whether
    a TH guard kept the dossier's status."""

    action: str
    update: DossierStatusUpdate
    digest: str
    kept: bool

    def message_id(self, connector: str) -> str:
        """The stable message id of this step from ``connector``: (connector, action, SoBienNhan, content digest).
        The same body sent again is the same message (a duplicate); another body is another step. Not the step's
        date: .NET dates are often date-only, so two real handovers on one day would share it (§5 sources no
        step id, so none is invented)."""
        name = f"vbdlis|{connector}|{self.action}|{self.update.dossier_code}|sha256:{self.digest}"
        return str(uuid.uuid5(ID_NAMESPACE, name))

    @property
    def correlation_id(self) -> str:
        """Carries the content digest in the stored header (the trace shows which body a step was)."""
        return f"vbdlis:{self.digest}"


def content_digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the body's canonical JSON (keys sorted): equal for the same content however it was spaced."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


NUL = "\x00"
ESCAPED_NUL = "\\u0000"  # how a path shows it


def nul_path(value: object) -> str | None:
    """The JSON pointer of the first string (value or key) holding a NUL character in a decoded body; ``None``
    when there is none. PostgreSQL text cannot store NUL, so such a body is refused before anything reads it.
    Iterative: a deeply nested body cannot exhaust the stack here."""
    pending: list[tuple[str, object]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if NUL in item:
                return path or "/"
        elif isinstance(item, Mapping):
            children = []
            for key, child in item.items():
                name = str(key)
                where = f"{path}/{name.replace(NUL, ESCAPED_NUL)}"
                if NUL in name:
                    return where
                children.append((where, child))
            pending.extend(reversed(children))
        elif isinstance(item, list):
            pending.extend(reversed([(f"{path}/{i}", child) for i, child in enumerate(item)]))
    return None


class _Reader:
    def __init__(self, body: Mapping[str, Any], offset: timezone) -> None:
        self.body = body
        self.offset = offset
        self.issues: list[Issue] = []

    def fail(self, path: str, rule: str, message: str) -> Any:
        """Note the problem; ``None`` (what the field reads as)."""
        self.issues.append(Issue(path, rule, message))
        return None

    def read(self, field: Field) -> Any:
        value = self.body.get(field.name)
        path = f"/{field.name}"
        if value is None or (isinstance(value, str) and not value.strip() and field.kind != "str"):
            if field.required:
                self.fail(path, "vbdlis:required", f"{field.name} is required")
            return None
        if field.kind in ("str", "code"):
            if field.kind == "code" and isinstance(value, int) and not isinstance(value, bool):
                return str(value)  # MaTrangThai: its JSON type is not sourced
            if not isinstance(value, str):
                return self.fail(path, "vbdlis:type", f"{field.name} must be a string")
            if not value.strip():
                if field.required:
                    self.fail(path, "vbdlis:required", f"{field.name} is required")
                return None
            return value.strip()
        if field.kind == "bool":
            if not isinstance(value, bool):
                return self.fail(path, "vbdlis:type", f"{field.name} must be true or false")
            return value
        if field.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                return self.fail(path, "vbdlis:type", f"{field.name} must be an integer")
            return value
        if field.kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return self.fail(path, "vbdlis:type", f"{field.name} must be a number")
            return format(value, "g") if isinstance(value, float) else str(value)
        if field.kind == "time":
            return self.time(path, value)
        if field.kind == "files":
            return self.items(path, value, FILE_FIELDS, self.file)
        return self.items(path, value, TAX_FIELDS, self.tax)

    def time(self, path: str, value: Any) -> datetime | None:
        if not isinstance(value, str):
            return self.fail(path, "vbdlis:time", f"{path[1:]} must be an ISO-8601 date and time string")
        try:
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=self.offset)
            return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            return self.fail(path, "vbdlis:time", f"{path[1:]} {value!r} is not an ISO-8601 date and time")

    def items(self, path: str, value: Any, names: Sequence[str], make: Any) -> list[Attachment]:
        items = [value] if isinstance(value, Mapping) else value  # TapTin: one descriptor or a list (unsourced)
        if not isinstance(items, list):
            self.fail(path, "vbdlis:type", f"{path[1:]} must be a list of {{{', '.join(names)}}}")
            return []
        found = []
        for index, item in enumerate(items):
            where = f"{path}/{index}"
            if not isinstance(item, Mapping):
                self.fail(where, "vbdlis:type", f"{where[1:]} must be an object {{{', '.join(names)}}}")
                continue
            made = make(where, item)
            if made is not None:
                found.append(made)
        return found

    def _text(self, where: str, item: Mapping[str, Any], name: str, required: bool = False) -> str | None:
        value = item.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(f"{where}/{name}", "vbdlis:required", f"{name} is required")
            return None
        if not isinstance(value, str):
            self.fail(f"{where}/{name}", "vbdlis:type", f"{name} must be a string")
            return None
        return value.strip()

    def _count(self, where: str, item: Mapping[str, Any], name: str) -> int | None:
        value = item.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.fail(f"{where}/{name}", "vbdlis:type", f"{name} must be a whole number ≥ 0")
            return None
        return value

    def file(self, where: str, item: Mapping[str, Any]) -> Attachment | None:
        name = self._text(where, item, "TenGiayTo", True)
        url = self._text(where, item, "LinkFile", True)
        kind = self._text(where, item, "KieuFile")
        copies, originals = self._count(where, item, "SoBanSao"), self._count(where, item, "SoBanChinh")
        if name is None or url is None:
            return None
        return self._attachment(where, {"name": name, "url": url, "file_type": kind, "copies": copies,
                                        "originals": originals}, {"name": "TenGiayTo", "url": "LinkFile",
                                                                  "file_type": "KieuFile"})  # fmt: skip

    def tax(self, where: str, item: Mapping[str, Any]) -> Attachment | None:
        owner = self._text(where, item, "HoTenChu")
        kind = self._text(where, item, "LoaiThue")
        number = self._text(where, item, "SoThongBaoThue", True)
        url = self._text(where, item, "DuongDanThongBaoThue", True)
        if number is None or url is None:
            return None
        name = " ".join(p for p in (kind, number) if p) + (f" — {owner}" if owner else "")
        return self._attachment(
            where, {"name": name, "url": url}, {"name": "SoThongBaoThue", "url": "DuongDanThongBaoThue"}
        )

    def _attachment(self, where: str, data: dict[str, Any], source: Mapping[str, str]) -> Attachment | None:
        try:
            return Attachment(**data)
        except ValidationError as exc:
            for e in exc.errors(include_url=False):
                field = str(e["loc"][0]) if e["loc"] else ""
                self.fail(f"{where}/{source.get(field, field)}", e["type"], e["msg"])
            return None


# Canonical field (pydantic loc) → the VBDLIS field it came from, to name it in issues.
_SOURCE = {
    "dossier_code": "SoBienNhan",
    "actor": "actor",
    "handed_to": "MaCanBoNhan",
    "partner_state": "MaTrangThai",
    "content": "GhiChu",
    "step_limit": "HanXuLy",
    "reason": "GhiChu",
}


def _reason(action: str, note: str | None, status: int | None, kept: bool) -> str | None:
    """The update's reason: the step's GhiChu when the step sets 3, 7 or 8; a step only logged at such a status
    (kept) names itself when it has no GhiChu, so that it is still recorded (and refused as a transition)."""
    if status not in REASON_STATUSES:
        return None
    return note or (action if kept else None)


def map_step(
    action: str,
    body: object,
    *,
    unit: str,
    received_at: datetime,
    current: int | None,
    settings: StepSettings,
) -> MappedStep:
    """Map one VBDLIS step body to the canonical update from ``unit`` (the connector's registered unit).

    ``received_at``: the time of the step when it carries no date; ``current``: the dossier's status now (a TH
    guard keeps it: the update then carries the current status). Raises ``PacketInvalidError`` naming fields."""
    spec = ACTIONS.get(action)
    if spec is None:
        known = ", ".join(ACTIONS)
        raise PacketInvalidError(f"unknown VBDLIS action {action!r}",
                                 [Issue("/action", "vbdlis:action", f"{action!r} is not one of {known}")])  # fmt: skip
    if not isinstance(body, Mapping):
        raise PacketInvalidError("the body is not a JSON object", [Issue("/", "vbdlis:body", "a JSON object")])
    reader = _Reader(body, settings.local_offset)
    values = {field.name: reader.read(field) for field in spec.fields}
    if reader.issues:
        raise PacketInvalidError(f"invalid VBDLIS {action} step", reader.issues)

    status = settings.step_status.get(action)  # None: a step TH only logs, which keeps the status
    if action == "KetThucHoSo" and values.get("TrangThaiKetThuc") not in (None, 0):
        status = settings.ended_status  # returned or withdrawn without a result (§5 TrangThaiKetThuc)
    if status is None and current is None:
        raise PacketInvalidError(
            f"VBDLIS {action} keeps the dossier's status, and the hub knows none for it",
            [Issue("/SoBienNhan", "vbdlis:status-unknown", f"no status is known for dossier {values['SoBienNhan']}")],
        )
    kept = current is not None and (status is None or current in settings.keep_status.get(action, frozenset()))
    actor = values.get(spec.actor) if spec.actor else None
    content = values.get("NoiDungXuLy") or values.get("GhiChu")
    files = [*(values.get("DanhSachTapTin") or ()), *(values.get("TapTin") or ()),
             *(values.get("DanhSachGiayToKetQua") or ()), *(values.get("DanhSachThongBaoThue") or ())]  # fmt: skip
    at = values.get(spec.date) if spec.date else None
    digest = content_digest(body)
    try:
        update = DossierStatusUpdate(
            dossier_code=values["SoBienNhan"],
            status=current if kept else status,
            step=Step(
                actor=actor or settings.default_actor,
                content=content,
                handed_to=values.get("MaCanBoNhan"),
                partner_state=values.get("MaTrangThai"),
                sent_back=values.get("LaTrangThaiChuyenLai"),
            ),
            at=at or received_at,
            source_system=unit,
            attachments=files,
            partner_step=action,
            step_limit=values.get("HanXuLy"),
            new_due_at=values.get("NgayHenTraMoi"),
            paused=values.get("LaTamDung"),
            finish_kind=values.get("TrangThaiKetThuc"),
            reason=_reason(action, values.get("GhiChu"), current if kept else status, kept),
        )
    except ValidationError as exc:
        issues = []
        for e in exc.errors(include_url=False):
            loc = (*e["loc"], (e.get("ctx") or {}).get("field", ""))  # a rule of the model names its field in ctx
            name = next((_SOURCE[str(p)] for p in reversed(loc) if str(p) in _SOURCE), None)
            if name == "actor":
                name = spec.actor or "actor"
            issues.append(Issue(f"/{name}" if name else "/", e["type"], e["msg"]))
        raise PacketInvalidError(f"the VBDLIS {action} step does not make a valid dossier.status", issues) from None
    return MappedStep(action, update, digest, kept)


__all__ = [
    "ACTIONS",
    "FILE_FIELDS",
    "PROFILE",
    "TAX_FIELDS",
    "Action",
    "MappedStep",
    "StepSettings",
    "content_digest",
    "map_step",
    "nul_path",
    "parse_offset",
]
