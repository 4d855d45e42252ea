"""The application layer: what one hub process does for its callers, free of HTTP (``hub.api`` serves it)."""

from hub.services.callers import ADMIN, CONNECTOR, OPERATOR, Caller, require
from hub.services.intake import HubService

__all__ = ["ADMIN", "CONNECTOR", "OPERATOR", "Caller", "HubService", "require"]
