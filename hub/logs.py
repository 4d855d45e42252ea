"""Logging: one JSON object per line (or readable console lines), personal IDs and names masked in every line.

Stdlib logging with a small formatter rather than structlog: every module logs ``key=value`` pairs in the
message (``message_id=… destination=…``), and this formatter lifts them into JSON fields. The fields
``message_id``, ``dossier_code`` and ``connector`` can also come from ``logging`` extras
(``log.info("…", extra={"message_id": …})``) or from the context (``with log_context(message_id=…):`` — a
contextvar, so every line logged inside, by any module, carries them). Values are masked like the message.

Masking: ID-shaped digits (9 or 12) everywhere; and the names of the people the message at hand is about
(``log_context(names=…)``: the name fields of its packet, read only when a line is logged or an error masked),
matched whole, regardless of case, accents and spacing (a partner may echo ``NGUYEN VAN AN``). Known values
rather than a pattern: Vietnamese names in free text cannot be told from ordinary capitalised words.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from hub.config import Settings

# 12-digit personal IDs and 9-digit old IDs, not part of a longer number.
# A personal ID: 9 or 12 digits on their own; a digest (32+ hex characters) or a UUID (a message id, whose last
# group can hold a 9-digit run) is matched first and left whole.
_PERSONAL_ID = re.compile(
    r"(?P<digest>[0-9a-fA-F]{32,}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?<!\d)(\d{5,8})(\d{4})(?!\d)"
)
_PAIR = re.compile(r"\b(message_id|destination|dossier_code|connector|sender|attempt)=(\S+)")
CONTEXT_FIELDS = ("message_id", "dossier_code", "connector", "actor")
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("lienthong_log_context", default={})  # noqa: B039 (never mutated)
# Elements of a packet holding a person's name, by local name; ``name`` only under these parents (a fee item or a
# document has a ``name`` too).
NAME_ELEMENTS = frozenset({"fullName", "familyName", "middleName", "givenName", "HoTen", "HoTenNguoiNop", "hoTen",
                           "HoVaTen"})  # fmt: skip
PERSON_PARENTS = frozenset({"applicant", "payer", "sender", "receiver", "citizen", "householdHead", "recipient"})
NameSource = Callable[[], Iterable[str]] | Iterable[str]


class PersonalNames:
    """The names a context's lines are masked for, read from ``source`` the first time they are needed (most
    messages log nothing, so the hot path never parses for them)."""

    __slots__ = ("_outer", "_patterns", "_source")

    def __init__(self, source: NameSource, outer: PersonalNames | None = None) -> None:
        self._source: NameSource | None = source
        self._outer = outer
        self._patterns: list[re.Pattern[str]] = []

    def patterns(self) -> list[re.Pattern[str]]:
        if self._source is not None:
            source, self._source = self._source, None
            try:
                names = list(source() if callable(source) else source)
            except Exception:  # an unreadable packet has no names to find; never fail a log line for it
                names = []
            outer = [] if self._outer is None else self._outer.patterns()
            self._patterns = outer + [p for p in map(_name_pattern, names) if p is not None]
        return self._patterns


_NAMES: ContextVar[PersonalNames | None] = ContextVar("lienthong_log_names", default=None)


@contextmanager
def log_context(*, names: NameSource | None = None, **fields: object) -> Iterator[None]:
    """Every line logged inside (by this thread or task) carries these fields (``None`` values are left out), and
    is masked for ``names`` too (values, or a callable giving them when first needed; added to the outer ones)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    named = None if names is None else _NAMES.set(PersonalNames(names, _NAMES.get()))
    try:
        yield
    finally:
        if named is not None:
            _NAMES.reset(named)
        _CONTEXT.reset(token)


def context_fields(record: logging.LogRecord | None = None) -> dict[str, str]:
    """The context fields of a record: the current ``log_context``, then the record's extras."""
    fields = dict(_CONTEXT.get())
    if record is not None:
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                fields[name] = str(value)
    return fields


def mask_ids(text: str) -> str:
    """Mask all but the last 4 digits of anything shaped like a personal ID (9 or 12 digits), not digits inside a
    digest (a SHA-256 in an event's detail must stay checkable)."""

    def mask(m: re.Match[str]) -> str:
        if m.group("digest") is not None or len(m.group(0)) not in (9, 12):
            return m.group(0)
        return "*" * len(m.group(2)) + m.group(3)

    return _PERSONAL_ID.sub(mask, text)


def _fold(text: str) -> str:
    """``text`` lower-cased without accents, one character for one (``Đ`` → ``d``), so spans carry over."""
    return "".join(_fold_char(c) for c in text)


def _fold_char(char: str) -> str:
    if char in "đĐ":
        return "d"
    return unicodedata.normalize("NFD", char)[0].lower()


def _name_pattern(name: str) -> re.Pattern[str] | None:
    words = _fold(unicodedata.normalize("NFC", name)).split()
    if len(words) < 2:  # a one-word value would mask ordinary words too; personal names have two or more
        return None
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, words)) + r"(?!\w)")


def mask_name(text: str) -> str:
    """Each word down to its first letter: ``Nguyễn Văn An`` → ``N***** V** A*``."""
    return " ".join(word[:1] + "*" * (len(word) - 1) for word in text.split())


def mask_names(text: str, names: NameSource | None = None) -> str:
    """``text`` with every occurrence of the given names (default: the context's) masked by ``mask_name``,
    regardless of case, accents and spacing."""
    if names is None:
        current = _NAMES.get()
        if current is None:  # the usual log line: no message at hand
            return text
        patterns = current.patterns()
    else:
        patterns = PersonalNames(names).patterns()
    if not patterns:
        return text
    text = unicodedata.normalize("NFC", text)
    folded = _fold(text)
    spans = sorted({m.span() for p in patterns for m in p.finditer(folded)})
    for start, end in reversed(spans):
        text = text[:start] + mask_name(text[start:end]) + text[end:]
    return text


def mask_personal(text: str, names: NameSource | None = None) -> str:
    """``text`` with personal IDs and the known names (given, or the context's) masked: what every log line,
    stored error and staff answer gets."""
    return mask_ids(mask_names(mask_secrets(text), names))


#: A VBDLIS security code is a path segment (``/VBDLISs/<action>/<code>``, PARTNER-FORMATS §5 TH-BV:3): the access
#: log would print it.
_PATH_SECRET = re.compile(r"(/VBDLISs/[^/\s?\"]*/)[^/\s?\"]+", re.IGNORECASE)


#: ``://userinfo@`` up to the authority's last ``@`` (a password may hold one): a URL's user and password.
_URL_USERINFO = re.compile(r"://[^/?#\s\"'<>]*@")


def mask_url_userinfo(text: str) -> str:
    """``text`` (a URL, or a message holding URLs) with every URL's user information replaced by ``***``."""
    return _URL_USERINFO.sub("://***@", text) if "@" in text and "://" in text else text


def mask_secrets(text: str) -> str:
    """``text`` with the secrets that travel in URLs replaced by ``***``: the VBDLIS security code (a path
    segment) and user information (``scheme://user:password@host``, which a connector may no longer hold but a
    library's error about a database or broker URL might print)."""
    text = mask_url_userinfo(text)
    return _PATH_SECRET.sub(r"\1***", text) if "VBDLIS" in text.upper() else text


_NAME_PARTS = frozenset({"familyName", "middleName", "givenName"})


def personal_names(root: etree._Element) -> list[str]:
    """The names of people in a packet (or envelope) tree, and each person's family, middle and given names
    joined (never a lone part: ``An`` or ``Văn`` alone would mask ordinary words): what ``mask_names`` looks for."""
    found: list[str] = []
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        local = etree.QName(el).localname
        parent = el.getparent()
        if (local in NAME_ELEMENTS and local not in _NAME_PARTS) or (
            local == "name" and parent is not None and etree.QName(parent).localname in PERSON_PARENTS
        ):
            if el.text and el.text.strip():
                found.append(el.text.strip())
    for el in root.iter("{*}familyName"):
        parent = el.getparent()
        if parent is not None:
            parts = [parent.findtext(f"{{*}}{n}") for n in ("familyName", "middleName", "givenName")]
            found.append(" ".join(p.strip() for p in parts if p and p.strip()))
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = mask_personal(record.getMessage())
        data: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        data.update(_PAIR.findall(message))
        for key, value in context_fields(record).items():
            data.setdefault(key, mask_personal(value))
        if "destination" in data:
            data.setdefault("connector", data["destination"])
        if record.exc_info:
            data["error"] = mask_personal(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_personal(super().format(record))


def configure_logging(settings: Settings) -> None:
    """Send the hub's logs to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())


def logging_dict(settings: Settings) -> dict[str, Any]:
    """The same configuration as ``configure_logging`` as a ``logging.config.dictConfig`` dict: what ``hub
    serve`` hands uvicorn (``log_config``), which applies it in every worker process, its own loggers included."""
    formatter: dict[str, Any] = (
        {"()": "hub.logs.JsonFormatter"}
        if settings.log_format == "json"
        else {"()": "hub.logs.MaskingFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"hub": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "hub", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": settings.log_level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
