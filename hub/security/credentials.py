"""Partner credentials in a connector's endpoint (``endpoint.credentials``): kept, never shown or logged.

Credentials never travel in a URL: a URL is shown in connector listings, spec dumps, the audit log and error
messages, so ``user:password@`` in one would be printed everywhere (``url_has_userinfo`` is what the connector spec
refuses; ``redact_url`` what messages show of a URL that might still carry one)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer

from hub.logs import mask_url_userinfo

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
    token: SecretStr | None = Field(
        None, description="A bearer token the partner issued, sent as `Authorization: Bearer` (payment: TH-PS:58-59)"
    )
    lgsp_access_token: SecretStr | None = Field(
        None, description="The provincial LGSP's `lgspaccesstoken` header value (PayGov via LGSP: OC-API:163)"
    )

    @field_serializer("password", "token", "lgsp_access_token", when_used="always")
    def _password(self, value: SecretStr | None, info: SerializationInfo) -> str | None:
        if value is None:
            return None
        return value.get_secret_value() if (info.context or {}).get("secrets") else SECRET_MASK

    def secret(self, name: str) -> str | None:
        """The plain value of an optional secret (``token``, ``lgsp_access_token``), ``None`` when unset."""
        value = getattr(self, name)
        return None if value is None else value.get_secret_value()


def url_has_userinfo(url: str) -> bool:
    """Whether ``url`` names a user (and perhaps a password) before its host: ``smtp://user:pass@host``."""
    try:
        return "@" in urlsplit(url).netloc
    except ValueError:  # a malformed URL (an unclosed IPv6 bracket): judged on the text
        return redact_url(url) != url


#: ``text`` (a URL, or a message holding URLs) with every URL's user information replaced by ``***``.
redact_url = mask_url_userinfo
