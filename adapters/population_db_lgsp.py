"""The population database through the provincial LGSP gateway (profile ``c06/lgsp``), as the VietOpenCPS code
reaches it (PARTNER-FORMATS.md §2; OC-QL:52-112, OC-API:459-520, 540-578):

- ``lgspaccesstoken`` = Base64 of the JSON ``{"AccessKey", "SecretKey", "AppName", "PartnerCode",
  "PartnerCodeCus"}``, written compactly in that order as OpenCPS concatenates it (OC-QL:52-57); AccessKey and
  SecretKey are the connector's ``endpoint.credentials`` (username, password), the rest profile values.
- Token: ``POST endpoint + token_path``, form ``grant_type=client_credentials``, header ``lgspaccesstoken`` → JSON
  ``access_token`` (OC-QL:60-75); an answer without one is a refusal ("No token found"). The sources read no
  expiry: the token is reused ``token_ttl_s`` seconds (unsourced) or its ``expires_in`` when the answer has one,
  shared by every thread (``RenewingToken``), and fetched again once when a call is answered HTTP 401.
- Call: ``POST endpoint + lookup_path`` with ``Authorization: Bearer <token>``, ``lgspaccesstoken``, ``Content-Type:
  application/xml`` and, for an officer of the ``officers_file``, ``AuthHash`` (OC-QL2:96-125; OC-API@49227ecd:553);
  the body is the SOAP 1.1 envelope itself — OpenCPS's ``{accessToken, lgspAccessToken, data}`` holder is never
  sent as JSON (OC-API:548-552) — and no ``SOAPAction`` header is sent.

``DeliveryReceipt.sent`` is the envelope as posted; the headers (token, ``lgspaccesstoken``, ``AuthHash``) are never
part of it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from adapters.base import TransientDeliveryError
from adapters.credentials import RenewingToken
from adapters.dvcqg import url_for
from adapters.population_db import Officer, PopulationDbAdapter, TokenRefusedError, read_envelope
from mappings.population_db import request_envelope
from mappings.profiles import ProfileSettings, ProfileValueError

#: The order OpenCPS writes the members of ``lgspaccesstoken`` in (OC-QL:52-57).
ACCESS_TOKEN_KEYS = ("AccessKey", "SecretKey", "AppName", "PartnerCode", "PartnerCodeCus")
SESSION_STATUSES = frozenset({401})  # a bearer token refused (RFC 6750; not sourced): 403 is a refusal
TOKEN_RENEW_MARGIN_S = 30.0


def lgsp_access_token(values: dict[str, str]) -> str:
    """The ``lgspaccesstoken`` header: Base64 of the compact JSON of ``ACCESS_TOKEN_KEYS`` (OC-QL:52-57)."""
    document = json.dumps({key: values.get(key, "") for key in ACCESS_TOKEN_KEYS}, ensure_ascii=False,
                          separators=(",", ":"))  # fmt: skip
    return base64.b64encode(document.encode()).decode("ascii")


class LgspPopulationDbAdapter(PopulationDbAdapter):
    """The population DB behind one LGSP: a token shared by every thread, the SOAP body posted as
    ``application/xml``."""

    where = "the population DB (LGSP)"

    def __init__(
        self,
        endpoint: str,
        settings: ProfileSettings,
        *,
        access_key: str,
        secret_key: str,
        timeout_s: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        super().__init__(endpoint, settings, timeout_s=timeout_s, max_connections=max_connections)
        self.token_url = url_for(endpoint, settings["token_path"])
        self.lookup_url = url_for(endpoint, settings["lookup_path"])
        try:
            self.token_ttl_s = float(settings.get("token_ttl_s", "300"))
        except ValueError:
            raise ProfileValueError("token_ttl_s: not a number of seconds", ("token_ttl_s",)) from None
        self._access_token = lgsp_access_token({
            "AccessKey": access_key, "SecretKey": secret_key, "AppName": settings["app_name"],
            "PartnerCode": settings["partner_code"], "PartnerCodeCus": settings.get("partner_code_cus", ""),
        })  # fmt: skip
        self.token = RenewingToken(self._fetch_token, renew_margin_s=TOKEN_RENEW_MARGIN_S)

    # ------------------------------------------------------------ token

    def _fetch_token(self) -> tuple[str, float]:
        """``POST token_path`` (OC-QL:60-75): the ``access_token`` and how long to reuse it."""
        headers = {"Content-Type": "application/x-www-form-urlencoded", "lgspaccesstoken": self._access_token}
        status, data = self.post(self.token_url, b"grant_type=client_credentials", headers)
        if status in {408, 425, 429} or status >= 500:
            raise TransientDeliveryError(f"the LGSP's token endpoint answered HTTP {status}", status=status)
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if 200 <= status < 300 and not isinstance(answer, dict):
            raise TransientDeliveryError(f"the LGSP's token endpoint answered HTTP {status} with a malformed reply")
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not 200 <= status < 300 or not isinstance(token, str) or not token:
            raise TokenRefusedError(f"the LGSP refused a token (HTTP {status}, no access_token)", status=status)
        ttl = answer.get("expires_in") if isinstance(answer, dict) else None
        try:
            lifetime = float(ttl) if ttl is not None else self.token_ttl_s
        except (TypeError, ValueError):
            lifetime = self.token_ttl_s
        return token, max(lifetime, 1.0)

    # ------------------------------------------------------------ the call

    def headers(self, token: str, officer: Officer) -> dict[str, str]:
        """A call's headers (OC-API:540-578; OC-QL2:96-125): no ``SOAPAction``."""
        headers = {
            "Authorization": f"Bearer {token}",
            "lgspaccesstoken": self._access_token,
            "Content-Type": "application/xml",
        }
        if officer.auth_hash:
            headers["AuthHash"] = officer.auth_hash
        return headers

    def exchange(self, request: dict[str, Any], officer: Officer) -> tuple[list[dict[str, Any]], bytes]:
        body = request_envelope(request)
        for attempt in (1, 2):
            token = self.token.get()
            status, data = self.post(self.lookup_url, body, self.headers(token, officer))
            if status not in SESSION_STATUSES:
                return self.citizens(read_envelope(status, data, self.where)), body
            self.token.drop(token)
            if attempt == 2:
                raise TokenRefusedError(f"the LGSP refused a fresh token for {self.where} (HTTP {status})",
                                        status=status)  # fmt: skip
        raise AssertionError("unreachable")
