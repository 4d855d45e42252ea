"""The OpenAPI document and its pages.

The document is FastAPI's, with ``Problem`` as a component, invalid parameters documented as the problem+json the
hub answers (``install_handlers``) instead of FastAPI's ``HTTPValidationError``, and listing limits explained.
Swagger UI (``/docs``) and ReDoc (``/redoc``) load their scripts and styles from the hub (``/docs/assets``, the
files the ``fastapi-offline`` package ships), never from a CDN: the hub runs on networks with no way out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from hub.api.problems import PROBLEM_MEDIA_TYPE, Problem

VALIDATION_EXAMPLE = {
    "type": "urn:lienthong:problem:invalid",
    "title": "Envelope rejected",
    "status": 422,
    "detail": "the request parameters are invalid",
    "instance": "/api/v1/dead-letters",
    "errors": [{"path": "/query/limit", "rule": "request:less_than_equal", "message": "should be at most 5000"}],
}


DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
#: Where the Swagger UI and ReDoc bundles come from: a package that ships them (with their licence notices in
#: the bundles' headers), so upgrading them is a version bump, not copying files by hand.
ASSETS_PACKAGE = ("fastapi_offline", "static")
#: Swagger UI asks validator.swagger.io for a badge unless told not to: nothing may leave the hub's network.
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "docExpansion": "list", "displayOperationId": True}


def install_openapi(app: FastAPI, routers: Sequence[APIRouter] = ()) -> None:
    """Serve the hub's OpenAPI document (built once, on first request) and its pages; the app is created with
    ``docs_url=None, redoc_url=None`` so that FastAPI's CDN-loading pages are not installed. ``routers`` (included
    without a prefix) are those whose examples the document shows as written."""
    install_docs(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(components["Problem"].pop("$defs", {}))
            _problem_validation_errors(schema)
            _document_limits(schema)
            _document_url_refusals(schema)
            _restore_examples(schema, routers)
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


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), their assets under ``/docs/assets``; every URL is on the hub,
    prefixed with the ASGI ``root_path`` when the hub is served below a reverse proxy's path."""
    app.mount(ASSETS_URL, StaticFiles(packages=[ASSETS_PACKAGE]), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )


LIMIT_DESCRIPTION = (
    "How many rows to answer at the most (the operation says in which order). A listing has no cursor yet: to see "
    "rows past the limit, narrow it with its filters."
)


def _document_limits(schema: dict[str, Any]) -> None:
    """Say what a listing's ``limit`` does where it has none (``hub.api.dependencies.ListLimit``)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "limit" and parameter.get("in") == "query":
                    parameter.setdefault("description", LIMIT_DESCRIPTION)


NUL_EXAMPLE = {
    "type": "urn:lienthong:problem:malformed", "title": "Malformed request", "status": 400,
    "detail": "dossier: holds a NUL character", "instance": "/api/v1/messages",
    "errors": [{"path": "/query/dossier", "rule": "nul-character",
                "message": "no NUL character: nothing the hub stores or looks up holds one"}],
}  # fmt: skip


def _document_url_refusals(schema: dict[str, Any]) -> None:
    """Every operation with a path or query parameter may be refused 400 ``nul-character`` before it runs
    (``hub.api.limits.nul_in_url``): say so where the route itself documents no 400."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not any(p.get("in") in ("path", "query") for p in operation.get("parameters", [])):
                continue
            operation.setdefault("responses", {}).setdefault("400", {
                "description": "Malformed request (a NUL character in the URL)",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"},
                                                         "example": NUL_EXAMPLE}},
            })  # fmt: skip


def _restore_examples(schema: dict[str, Any], routers: Sequence[APIRouter]) -> None:
    """Put the routes' examples back as written: FastAPI drops every ``null`` from the document (``exclude_none``),
    so an example of a nullable required field would otherwise not match its own schema."""
    for route in (r for router in routers for r in router.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = schema["paths"][route.path_format][method.lower()]
            for code, response in route.responses.items():
                for media, content in response.get("content", {}).items():
                    if "example" in content:
                        operation["responses"][str(code)]["content"][media]["example"] = content["example"]
            body = (route.openapi_extra or {}).get("requestBody", {})
            for media, content in body.get("content", {}).items():
                if "example" in content:
                    operation["requestBody"]["content"][media]["example"] = content["example"]
