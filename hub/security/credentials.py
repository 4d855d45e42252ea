"""Partner credentials in a connector's endpoint (``endpoint.credentials``): kept, never shown or logged."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer

SECRET_MASK = "**********"  # noqa: S105 - the mask shown instead of a secret


class Credentials(BaseModel):
    """How the hub logs in to a partner that wants a session (the national portal): never shown or logged.

    The password is kept by the registry (``ConnectorSpec.stored()``) but written as ``**********`` by every
    other dump (``public()``, the API, the audit log, ``hub connector show``) and by ``repr``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, max_length=256)
    password: SecretStr = Field(min_length=1)
    madonvi: str | None = Field(None, description="The calling unit's code (madonvi) when the partner wants one")

    @field_serializer("password", when_used="always")
    def _password(self, value: SecretStr, info: SerializationInfo) -> str:
        return value.get_secret_value() if (info.context or {}).get("secrets") else SECRET_MASK
