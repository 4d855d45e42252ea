"""``POST /api/v1/connectors``: a connector declaration (YAML or JSON) → validated spec → registry."""

from __future__ import annotations

import json
from typing import Any

from hub.api.problems import ApiProblem
from hub.errors import Issue


def add_connector_from(hub: Any, body: bytes, media: str, caller: Any) -> tuple[Any, str | None]:
    """Validate and register (or update) a connector; return it and its new API key (``None`` on update).

    Certificates must be inline PEM: a spec posted over HTTP never makes the hub read its own files.
    Raises ``SpecInvalidError`` (422, every problem at once) or ``ApiProblem`` (400 for unreadable bodies).
    """
    from hub.registry import loads_spec, parse_spec

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem("malformed", "the connector spec is not UTF-8 text") from None
    if media == "application/json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiProblem(
                "malformed",
                f"not valid JSON: {exc.msg}",
                [Issue("/", "json", f"not valid JSON: {exc.msg}", exc.lineno)],
            ) from None
        spec = parse_spec(data, source="request body")
    else:
        spec = loads_spec(text, source="request body")
        if spec is None:  # pragma: no cover - loads_spec raises instead
            raise ApiProblem("malformed", "empty connector spec")
    connector, api_key = hub.registry.add(spec, actor=caller.name)
    hub.refresh()
    return connector, api_key
