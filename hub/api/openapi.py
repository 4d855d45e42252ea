"""The OpenAPI document: FastAPI's, with ``Problem`` as a component and invalid parameters documented as the
problem+json the hub answers (``install_handlers``) instead of FastAPI's ``HTTPValidationError``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hub.api.problems import PROBLEM_MEDIA_TYPE, Problem

VALIDATION_EXAMPLE = {
    "type": "urn:lienthong:problem:invalid",
    "title": "Envelope rejected",
    "status": 422,
    "detail": "the request parameters are invalid",
    "instance": "/api/v1/dead-letters",
    "errors": [{"path": "/query/limit", "rule": "request:less_than_equal", "message": "should be at most 5000"}],
}


def install_openapi(app: FastAPI) -> None:
    """Serve the hub's OpenAPI document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(components["Problem"].pop("$defs", {}))
            _problem_validation_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problem_validation_errors(schema: dict[str, Any]) -> None:
    """FastAPI documents invalid parameters as 422 ``application/json`` ``HTTPValidationError``; the hub answers
    them as problem+json (``install_handlers``), so document that instead."""
    fastapi_default = {"$ref": "#/components/schemas/HTTPValidationError"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422")
            if response is None:
                continue
            content = response.get("content", {})
            if content.get("application/json", {}).get("schema") == fastapi_default:
                del content["application/json"]
                content.setdefault(
                    PROBLEM_MEDIA_TYPE,
                    {"schema": {"$ref": "#/components/schemas/Problem"}, "example": VALIDATION_EXAMPLE},
                )
                if response.get("description") == "Validation Error":
                    response["description"] = "Invalid parameters"
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
