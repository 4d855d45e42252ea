"""Logging: one JSON object per line (or readable console lines), personal IDs masked in every line.

Stdlib logging with a small formatter rather than structlog: every module logs ``key=value`` pairs in the
message (``message_id=… destination=…``), and this formatter lifts them into JSON fields. The fields
``message_id``, ``dossier_code`` and ``connector`` can also come from ``logging`` extras
(``log.info("…", extra={"message_id": …})``) or from the context (``with log_context(message_id=…):`` — a
contextvar, so every line logged inside, by any module, carries them). Values are masked like the message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from hub.config import Settings

# 12-digit personal IDs and 9-digit old IDs, not part of a longer number.
_PERSONAL_ID = re.compile(r"(?<!\d)(\d{5,8})(\d{4})(?!\d)")
_PAIR = re.compile(r"\b(message_id|destination|dossier_code|connector|sender|attempt)=(\S+)")
CONTEXT_FIELDS = ("message_id", "dossier_code", "connector", "actor")
_CONTEXT: ContextVar[dict[str, str]] = ContextVar("lienthong_log_context", default={})  # noqa: B039 (never mutated)


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every line logged inside (by this thread or task) carries these fields (``None`` values are left out)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: str(v) for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
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
    """Mask all but the last 4 digits of anything shaped like a personal ID (9 or 12 digits)."""
    return _PERSONAL_ID.sub(
        lambda m: "*" * len(m.group(1)) + m.group(2) if len(m.group(0)) in (9, 12) else m.group(0), text
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = mask_ids(record.getMessage())
        data: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        data.update(_PAIR.findall(message))
        for key, value in context_fields(record).items():
            data.setdefault(key, mask_ids(value))
        if "destination" in data:
            data.setdefault("connector", data["destination"])
        if record.exc_info:
            data["error"] = mask_ids(self.formatException(record.exc_info))
        return json.dumps(data, ensure_ascii=False)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_ids(super().format(record))


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
