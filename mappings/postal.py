"""VNPost's formats (profile ``vnpost/ngsp``, PARTNER-FORMATS.md §4) ⇄ the canonical ``postal.order`` /
``postal.status``. Pure: no I/O beyond reading the shipped area table once.

- ``to_order(order)`` (the worker's outbound mapping of ``postal.order``) → an ``OrderDraft``: the order's fields
  that need nothing of the connector (OrderNumber = the dossier code, names, addresses, tels, emails, CODAmount,
  SenderDesc, Description) and the parties' administrative area codes;
- ``order_body(draft, options, item_code)`` (the adapter, with the connector's profile values) → the order as
  VNPost takes it: CustomerCode, the caller-assigned ItemCode, VNPost's own integer province/district codes
  (``AreaCodes``: the shipped table ``mappings/data/vnpost_areas.yaml`` and the profile's ``area_codes``), FlagConfig;
- ``order_status(answer, options)``: a ``{Status, Message}`` answer read as the sources read it (100 created,
  101 accepted per TH; anything else a refusal);
- ``tracking_page(answer)`` / ``status_from_doc(doc, status_map, time_unit)``: a tracking page (RESTHeart-shaped,
  ``_embedded."rh:doc"``) and one of its documents → ``postal.status``. EventTime is a ``long`` (OC-SDK MRhDoc;
  PARTNER-FORMATS §4), its unit unsourced: the profile's ``event_time`` (epoch milliseconds by default, or local
  ``yyyyMMddHHmmss`` digits); a time before 2000 or more than a day ahead is refused (``vnpost-event-time``), which
  is also how a wrong unit shows.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlencode

import yaml
from pydantic import BaseModel, ValidationError

from hub.errors import MappingError
from hub.packets.common import PostalParty
from hub.packets.postal import PostalOrder, PostalState, PostalStatus
from mappings import OutboundMapping, register_outbound
from mappings.profiles import ProfileSettings, ProfileValueError

KIND = "postal"
PROFILE = "vnpost/ngsp"
AREAS_FILE = Path(__file__).with_name("data") / "vnpost_areas.yaml"

#: The order's fields in the order OpenCPS builds them (OC-VM:14-51 propOrder; OC-SDK MOrder), with Thanh Hóa's
#: ItemCode and FlagConfig (TH-VR:9-30).
ORDER_FIELDS = (
    "CustomerCode", "ItemCode", "OrderNumber", "CODAmount", "SenderProvince", "SenderDistrict", "SenderAddress",
    "SenderName", "SenderEmail", "SenderTel", "SenderDesc", "Description", "ReceiverName", "ReceiverAddress",
    "ReceiverTel", "ReceiverProvince", "ReceiverDistrict", "ReceiverEmail", "FlagConfig",
)  # fmt: skip
#: VNPost's postal codes, integers (OC-VM:21-49; TH-VJ:12).
AREA_FIELDS = ("SenderProvince", "SenderDistrict", "ReceiverProvince", "ReceiverDistrict")
#: The tracking document's keys (OC-SDK MRhDoc; OC-VP:340-419).
DOC_FIELDS = ("_id", "CustomerCode", "OrderNumber", "ItemCode", "StatusCode", "StatusMessage", "EventTime", "POSID",
              "Notes")  # fmt: skip
_OID = re.compile(r"^[0-9a-fA-F]{24}$")  # a MongoDB ObjectId, as the tracking feed's {$oid} (RESTHeart rh:doc)
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,99}$")  # hub.packets.common.Code
#: EventTime's unit, profile value ``event_time`` — UNSOURCED: the sources say only "EventTime (long)".
EVENT_TIME_UNITS = ("epoch_ms", "yyyyMMddHHmmss")
LOCAL_TIME = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")  # yyyyMMddHHmmss digits: Vietnam's time, no DST
#: The event times taken as plausible: none before 2000, none more than a day ahead of the hub's clock.
EARLIEST_EVENT = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)


class EventTimeError(MappingError):
    """A tracking document's EventTime that is no plausible time in the profile's unit (rule
    ``vnpost-event-time``): before 2000, more than a day ahead, or not a number of that unit."""

    rule = "vnpost-event-time"

    def __init__(self, message: str) -> None:
        super().__init__(f"{message} [{self.rule}]")


class UnknownAreaError(MappingError):
    """An administrative code VNPost's tables do not map (rule ``vnpost-area-unknown``), or a district the table
    places in another province (``vnpost-area-mismatch``)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{message} [{rule}]")
        self.rule = rule


# ---------------------------------------------------------------------------------------------- area codes


@dataclass(frozen=True, slots=True)
class AreaEntry:
    vnpost: int
    name: str = ""
    source: str | None = None
    province: str | None = None  # a district's province (administrative code)


@functools.cache
def shipped_areas() -> tuple[Mapping[str, AreaEntry], Mapping[str, AreaEntry]]:
    """The shipped table ``mappings/data/vnpost_areas.yaml``: (provinces, districts) by administrative code."""
    data: Any = yaml.safe_load(AREAS_FILE.read_text(encoding="utf-8"))

    def entries(key: str) -> Mapping[str, AreaEntry]:
        out: dict[str, AreaEntry] = {}
        for code, raw in (data.get(key) or {}).items():
            if not isinstance(raw.get("vnpost"), int) or isinstance(raw.get("vnpost"), bool):
                raise MappingError(f"{AREAS_FILE}: {key}.{code}.vnpost must be an integer")
            source = raw.get("source")
            province = raw.get("province")
            out[str(code)] = AreaEntry(int(raw["vnpost"]), str(raw.get("name", "")),
                                       None if source is None else str(source),
                                       None if province is None else str(province))  # fmt: skip
        return MappingProxyType(out)

    return entries("provinces"), entries("districts")


def parse_area_codes(text: str) -> dict[str, int]:
    """A profile's ``area_codes`` (``"38=54,380=5401"``): administrative code → VNPost code."""
    out: dict[str, int] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        code, sep, value = (s.strip() for s in pair.partition("="))
        if not sep or not re.fullmatch(r"[0-9]{2,3}", code) or not re.fullmatch(r"[0-9]{1,9}", value):
            raise ProfileValueError(f"area_codes: {pair!r} is not <2- or 3-digit admin code>=<VNPost integer>",
                                    ("area_codes",))  # fmt: skip
        out[code] = int(value)
    return out


@dataclass(frozen=True)
class AreaCodes:
    """VNPost's integer codes for administrative codes: the connector's ``area_codes`` over the shipped table."""

    overrides: Mapping[str, int] = field(default_factory=dict)
    missing_district: int | None = None  # None: refuse an unmapped district; else send this (UNSOURCED)

    def province(self, code: str) -> int:
        if code in self.overrides and len(code) == 2:
            return self.overrides[code]
        entry = shipped_areas()[0].get(code)
        if entry is None:
            raise UnknownAreaError(
                "vnpost-area-unknown",
                f"province {code} has no VNPost code (shipped table {AREAS_FILE.name}, profile value area_codes)",
            )
        return entry.vnpost

    def district(self, code: str, province: str) -> int:
        if code in self.overrides and len(code) == 3:
            return self.overrides[code]
        entry = shipped_areas()[1].get(code)
        if entry is None:
            if self.missing_district is not None:
                return self.missing_district
            raise UnknownAreaError(
                "vnpost-area-unknown",
                f"district {code} has no VNPost code (shipped table {AREAS_FILE.name}, profile value area_codes)",
            )
        if entry.province is not None and entry.province != province:
            raise UnknownAreaError(
                "vnpost-area-mismatch",
                f"district {code} ({entry.name}) is in province {entry.province}, not {province}",
            )
        return entry.vnpost


# ---------------------------------------------------------------------------------------------- profile values


def parse_status_map(text: str) -> dict[int, PostalState]:
    """A profile's ``status_map`` (``"1:created,4:delivered"``): VNPost StatusCode → canonical state."""
    out: dict[int, PostalState] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        code, sep, state = (s.strip() for s in pair.partition(":"))
        try:
            if not sep:
                raise ValueError
            out[int(code)] = PostalState(state)
        except ValueError:
            states = ", ".join(s.value for s in PostalState)
            raise ProfileValueError(f"status_map: {pair!r} is not <StatusCode>:<state> ({states})",
                                    ("status_map",)) from None  # fmt: skip
    return out


def _flag(settings: Mapping[str, str], key: str) -> bool:
    value = settings[key].strip()
    if value not in ("0", "1"):
        raise ProfileValueError(f"{key}: {value!r} must be 0 or 1", (key,))
    return value == "1"


def _int(settings: Mapping[str, str], key: str, *, low: int = 0) -> int | None:
    value = settings[key].strip()
    if not value:
        return None
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low:
        raise ProfileValueError(f"{key}: {value!r} must be an integer >= {low}", (key,))
    return number


AUTH_HEADERS = ("token_type", "bearer", "access_token")


@dataclass(frozen=True)
class VnpostOptions:
    """A ``vnpost/ngsp`` connector's profile values, parsed (``ProfileValueError`` names a value that is wrong)."""

    customer_code: str
    token_path: str
    order_path: str
    cancel_path: str
    tracking_path: str
    price_path: str
    auth_header: str
    service_query: bool
    page_size: int
    send_item_code: bool
    item_codes: tuple[str, ...]
    flag_config: int | None
    areas: AreaCodes
    status_map: Mapping[int, PostalState]
    accepted: Mapping[str, str]  # the profile's Status table: "100" created, "101" accepted
    event_time: str = "epoch_ms"  # EventTime's unit (EVENT_TIME_UNITS), unsourced

    @classmethod
    def from_settings(cls, settings: ProfileSettings) -> VnpostOptions:
        auth = settings["auth_header"].strip()
        if auth not in AUTH_HEADERS:
            raise ProfileValueError(f"auth_header: {auth!r} is not one of {', '.join(AUTH_HEADERS)}", ("auth_header",))
        missing = settings["missing_district"].strip()
        if missing not in ("refuse", "0"):
            raise ProfileValueError(f"missing_district: {missing!r} must be refuse or 0", ("missing_district",))
        codes = tuple(c.strip() for c in re.split(r"[,\s]+", settings["item_codes"]) if c.strip())
        bad = [c for c in codes if not _CODE.match(c)]
        if bad or len(set(codes)) != len(codes):
            why = f"{bad[0]!r} is not a code" if bad else "a code is listed twice"
            raise ProfileValueError(f"item_codes: {why}", ("item_codes",))
        table = settings.profile.codes.get("Status")
        unit = settings["event_time"].strip()
        if unit not in EVENT_TIME_UNITS:
            raise ProfileValueError(f"event_time: {unit!r} is not one of {', '.join(EVENT_TIME_UNITS)}",
                                    ("event_time",))  # fmt: skip
        return cls(
            customer_code=settings["customer_code"].strip(),
            token_path=settings["token_path"].strip(),
            order_path=settings["order_path"].strip(),
            cancel_path=settings["cancel_path"].strip(),
            tracking_path=settings["tracking_path"].strip(),
            price_path=settings["price_path"].strip(),
            auth_header=auth,
            service_query=_flag(settings, "service_query"),
            page_size=_int(settings, "page_size", low=1) or 100,
            send_item_code=_flag(settings, "item_code"),
            item_codes=codes,
            flag_config=_int(settings, "flag_config"),
            areas=AreaCodes(parse_area_codes(settings["area_codes"]), None if missing == "refuse" else 0),
            status_map=MappingProxyType(parse_status_map(settings["status_map"])),
            accepted=MappingProxyType(dict(table.values) if table is not None else {"100": "created"}),
            event_time=unit,
        )


# ---------------------------------------------------------------------------------------------- the order


class OrderDraft(NamedTuple):
    """What the worker maps once from a ``postal.order``: the order's fields that need no profile value, and the
    parties' administrative area codes (``order_body`` turns them into VNPost's integers)."""

    fields: dict[str, Any]
    areas: dict[str, str]  # "SenderProvince" → "48", …


def _party(prefix: str, party: PostalParty) -> tuple[dict[str, Any], dict[str, str]]:
    fields = {
        f"{prefix}Name": party.name,
        f"{prefix}Address": party.address,
        f"{prefix}Tel": party.phone,
        f"{prefix}Email": party.email or "",
    }
    return fields, {f"{prefix}Province": party.province_code, f"{prefix}District": party.district_code}


def to_order(order: BaseModel) -> OrderDraft:
    """The draft of VNPost's order for a canonical ``postal.order`` (OC-VM:14-51; TH-VR:9-30): OrderNumber = the
    dossier code (OC-VM:14-51), CODAmount in whole đồng, SenderDesc = the dossier's parts."""
    if not isinstance(order, PostalOrder):
        raise TypeError(f"the postal service takes postal.order, not {type(order).__name__}")
    sender, sender_areas = _party("Sender", order.sender)
    receiver, receiver_areas = _party("Receiver", order.receiver)
    fields = {
        "OrderNumber": order.dossier_code,
        "CODAmount": order.cod_amount,
        **sender,
        "SenderDesc": order.contents or "",
        "Description": order.description or "",
        **receiver,
    }
    return OrderDraft(fields, {**sender_areas, **receiver_areas})


def order_body(draft: OrderDraft, options: VnpostOptions, item_code: str | None) -> dict[str, Any]:
    """VNPost's order as posted: ``draft`` with CustomerCode, ItemCode (when the profile sends one), VNPost's
    integer area codes and FlagConfig (when set), in OpenCPS's field order. ``UnknownAreaError`` for an area code
    VNPost's tables lack."""
    areas = draft.areas
    values: dict[str, Any] = {
        **draft.fields,
        "CustomerCode": options.customer_code,
        "SenderProvince": options.areas.province(areas["SenderProvince"]),
        "SenderDistrict": options.areas.district(areas["SenderDistrict"], areas["SenderProvince"]),
        "ReceiverProvince": options.areas.province(areas["ReceiverProvince"]),
        "ReceiverDistrict": options.areas.district(areas["ReceiverDistrict"], areas["ReceiverProvince"]),
    }
    if options.send_item_code and item_code:
        values["ItemCode"] = item_code
    if options.flag_config is not None:
        values["FlagConfig"] = options.flag_config
    return {name: values[name] for name in ORDER_FIELDS if name in values}


def price_body(draft: OrderDraft, options: VnpostOptions, weight_g: int = 0) -> dict[str, Any]:
    """A price quote's body — UNSOURCED (no public source gives the call): the order's areas and COD amount."""
    order = order_body(draft, options, None)
    return {
        "CustomerCode": options.customer_code,
        **{name: order[name] for name in AREA_FIELDS},
        "CODAmount": order["CODAmount"],
        "Weight": weight_g,
    }


def cancel_query(customer_code: str, order_number: str) -> str:
    """The cancel call's query: GET ``?CustomerCode=&OrderNumber=`` (PARTNER-FORMATS §4; OC-SDK IOrder)."""
    return urlencode({"CustomerCode": customer_code, "OrderNumber": order_number})


def tracking_query(page_size: int, last_id: str | None) -> str:
    """A tracking page's query: ``pagesize=N&lastId=<$oid>`` (OC-SDK MStatus; OC-VP:340-419); the first page
    has no ``lastId``."""
    params: dict[str, str | int] = {"pagesize": page_size}
    if last_id:
        params["lastId"] = last_id
    return urlencode(params)


class OrderAnswer(NamedTuple):
    accepted: bool
    status: str
    message: str


def order_status(answer: object, options: VnpostOptions) -> OrderAnswer | None:
    """A ``{Status, Message}`` answer (Integer in OC-SDK MResult, string in TH-VS:48), read against the profile's
    Status table; ``None`` when it is not that shape."""
    if not isinstance(answer, dict) or "Status" not in answer:
        return None
    raw = answer["Status"]
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return None
    text = str(raw).strip()
    try:
        text = str(int(text))  # "0100" and 100 are Status 100
    except ValueError:
        pass
    message = answer.get("Message")
    return OrderAnswer(text in options.accepted, text, "" if message is None else str(message))


# ---------------------------------------------------------------------------------------------- tracking


class TrackingPage(NamedTuple):
    docs: list[dict[str, Any]]
    returned: int
    total_pages: int | None


def tracking_page(answer: object) -> TrackingPage:
    """A tracking page ``{_embedded: {"rh:doc": [...]}, _size, _total_pages, _returned}`` (OC-SDK MStatus;
    OC-VP:340-419); no ``_embedded`` (OpenCPS checks for null) = no documents. ``MappingError`` otherwise."""
    if not isinstance(answer, dict):
        raise MappingError("the tracking page is not a JSON object")
    embedded = answer.get("_embedded")
    docs = [] if embedded is None else embedded.get("rh:doc", []) if isinstance(embedded, dict) else None
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        raise MappingError('the tracking page\'s _embedded."rh:doc" is not a list of documents')
    for index, doc in enumerate(docs):
        oid = doc.get("_id", {}).get("$oid") if isinstance(doc.get("_id"), dict) else None
        if not isinstance(oid, str) or not _OID.match(oid):
            raise MappingError(f"tracking document {index} has no _id.$oid (24 hex digits): {doc.get('_id')!r}")
    returned = answer.get("_returned", len(docs))
    pages = answer.get("_total_pages")
    return TrackingPage(docs, int(returned) if isinstance(returned, int) else len(docs),
                        pages if isinstance(pages, int) and not isinstance(pages, bool) else None)  # fmt: skip


def doc_id(doc: Mapping[str, Any]) -> str:
    """A tracking document's id, ``_id.$oid`` (lower case), the next page's ``lastId``."""
    return str(doc["_id"]["$oid"]).lower()


def _status_code(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("StatusCode is a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,9}", value.strip()):
        return int(value)
    raise ValueError(f"StatusCode {value!r} is not an integer")


def event_time(value: object, unit: str = "epoch_ms", *, now: datetime | None = None) -> datetime:
    """EventTime, a ``long`` (OC-SDK MRhDoc), in ``unit`` — ``epoch_ms`` (milliseconds since 1970, UTC) or
    ``yyyyMMddHHmmss`` (local digits) — as UTC; the unit is unsourced, so a time before 2000 or more than a day
    after ``now`` is refused (``EventTimeError``) rather than taken as the instant."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventTimeError(f"EventTime {value!r} is not a long")
    try:
        if unit == "epoch_ms":
            at = datetime.fromtimestamp(value / 1000, UTC)
        else:
            at = datetime.strptime(f"{value:014d}", "%Y%m%d%H%M%S").replace(tzinfo=LOCAL_TIME).astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise EventTimeError(f"EventTime {value} is no time in {unit} (profile value event_time)") from None
    latest = (now or datetime.now(UTC)) + LATEST_AHEAD
    if not EARLIEST_EVENT <= at <= latest:
        raise EventTimeError(
            f"EventTime {value} read as {unit} is {at.isoformat()}: before 2000 or more than a day ahead "
            "(is the profile value event_time VNPost's unit?)"
        )
    return at


def status_from_doc(
    doc: Mapping[str, Any], status_map: Mapping[int, PostalState], time_unit: str = "epoch_ms", *,
    now: datetime | None = None,
) -> PostalStatus:  # fmt: skip
    """One tracking document → ``postal.status``: OrderNumber = the dossier, ItemCode = the carrier's order,
    StatusCode kept as sent and mapped to a state (``other`` when the map lacks it), EventTime the instant (in
    ``time_unit``, see ``event_time``), POSID the post office, Notes the notes. ``MappingError`` when a sourced key
    is missing or ill-typed; ``EventTimeError`` for an implausible EventTime."""
    try:
        code = _status_code(doc["StatusCode"])
        item = doc.get("ItemCode")
        order_number = str(doc["OrderNumber"])
        pos = str(doc.get("POSID") or "").strip()
        notes = str(doc.get("Notes") or "").strip()
        return PostalStatus(
            dossier_code=order_number,
            order_number=str(item) if item else order_number,
            status_code=str(code),
            message=str(doc.get("StatusMessage") or "").strip() or str(code),
            at=event_time(doc["EventTime"], time_unit, now=now),
            state=status_map.get(code, PostalState.OTHER),
            post_office=pos if _CODE.match(pos) else None,
            notes=notes or None,
        )
    except EventTimeError:
        raise
    except KeyError as exc:
        raise MappingError(f"tracking document has no {exc.args[0]}") from None
    except (ValueError, OverflowError, OSError) as exc:  # ValidationError is a ValueError
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise MappingError(f"tracking document cannot be mapped: {detail}") from None


OUTBOUND = register_outbound(OutboundMapping(KIND, "postal.order", to_order))
