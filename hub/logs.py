"""Logging: one JSON object per line (or readable console lines), personal IDs masked in every line.

Stdlib logging with a small formatter rather than structlog: every module logs ``key=value`` pairs in the
message (``message_id=… destination=…``), and this formatter lifts them into JSON fields.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from hub.config import Settings

# 12-digit personal IDs and 9-digit old IDs, not part of a longer number.
_PERSONAL_ID = re.compile(r"(?<!\d)(\d{5,8})(\d{4})(?!\d)")
_PAIR = re.compile(r"\b(message_id|destination|dossier_code|connector|sender|attempt)=(\S+)")


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
