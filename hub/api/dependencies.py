"""What the routes share: the process's ``HubService``, the X-Api-Key header, role checks, the media type and
the size-limited body reader, and the lazily made flow services. Routes import from here, never from ``app``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Query, Request, Security
from fastapi.security import APIKeyHeader

from hub.api.problems import ApiProblem
from hub.errors import Issue
from hub.services import ADMIN, OPERATOR, HubService, require

if TYPE_CHECKING:
    from hub.flows.lookups import LookupService
    from hub.flows.payments import PaymentCallbacks

XML_MEDIA_TYPES = ("application/xml", "text/xml")
API_KEY = APIKeyHeader(name="X-Api-Key", auto_error=False, description="The caller's API key")
ApiKey = Annotated[str | None, Security(API_KEY)]  # one security scheme in the OpenAPI document
ListLimit = Annotated[int, Query(ge=1, le=5000)]  # how many rows a listing endpoint answers at the most



def hub_of(request: Request) -> HubService:
    """The ``HubService`` of the process serving ``request`` (set up by ``create_app``'s lifespan)."""
    hub: HubService = request.app.state.hub
    return hub


def staff_hub(request: Request, api_key: str | None) -> HubService:
    """``hub_of`` for endpoints only the admin or operator key may call; raises the 401/403 refusal otherwise."""
    hub = hub_of(request)
    require(hub.authenticate(api_key), ADMIN, OPERATOR)
    return hub


def xml_request_body(example: str | None = None) -> dict[str, Any]:
    """``openapi_extra=`` of an endpoint whose body is an XML envelope: the routes read the raw body themselves,
    so FastAPI cannot describe it."""
    shown = {} if example is None else {"example": example}
    return {
        "requestBody": {
            "required": True,
            "content": {media: {"schema": {"type": "string"}, **shown} for media in XML_MEDIA_TYPES},
        }
    }


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' when absent)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def require_media_type(
    request: Request, accepted: tuple[str, ...], what: str, expected: str, missing: str = "no Content-Type"
) -> str:
    """The media type, or 415 naming what to send (``what``) and the expected type in the issue."""
    media = media_type(request)
    if media not in accepted:
        raise ApiProblem(
            "unsupported-media-type",
            f"send {what}, not {media or missing}",
            [Issue("/headers/Content-Type", "media-type", f"expected {expected}")],
        )
    return media


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) before reading when Content-Length says too much, and while reading
    when a body without a length grows past the limit."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise ApiProblem("malformed", "Content-Length is not a number") from None
        if declared > limit:
            raise _too_large(f"the body is {declared} bytes, the limit is {limit}", limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"the body is larger than the limit of {limit} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(detail: str, limit: int) -> ApiProblem:
    return ApiProblem("too-large", detail, [Issue("/", "max-message-bytes", f"limit is {limit} bytes")])


def lookup_service(hub: HubService) -> LookupService:
    """The process's ``LookupService`` (made on first use, closed with the ``HubService``)."""
    from hub.flows.lookups import LookupService

    return hub.service(LookupService)


def payment_service(hub: HubService) -> PaymentCallbacks:
    """The process's ``PaymentCallbacks`` (made on first use, closed with the ``HubService``)."""
    from hub.flows.payments import PaymentCallbacks

    return hub.service(PaymentCallbacks)
