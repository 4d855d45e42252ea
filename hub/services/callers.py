"""Who is calling the hub: the administrator, an operator, or a registered connector, told apart by API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hub.errors import AccessDeniedError, Issue

ADMIN, OPERATOR, CONNECTOR = "admin", "operator", "connector"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the hub administrator, an operator, or a registered connector."""

    role: str
    name: str
    connector: Any = None

    @property
    def code(self) -> str | None:
        return None if self.connector is None else self.connector.code

    @property
    def is_staff(self) -> bool:
        return self.role in (ADMIN, OPERATOR)


def require(caller: Caller, *roles: str) -> None:
    """Refuse (``AccessDeniedError``, rule ``role-required``) a caller whose role is not one of ``roles``."""
    if caller.role not in roles:
        needed = " or ".join(roles)
        raise AccessDeniedError(
            f"this needs the {needed} key",
            [Issue("/headers/X-Api-Key", "role-required", f"needs role {needed}")],
        )
