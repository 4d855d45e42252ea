"""The national portal's catalogue services (Cổng DVCQG), as the VietOpenCPS code calls them (profile
``dvcqg/opencps``; PARTNER-FORMATS §1, OC-DV = DVCQGIntegrationActionImpl.java @2c719850): transport only.

- Every call: HTTP POST, JSON, headers ``Accept``/``Content-Type: application/json``, ``Charset: utf-8`` and
  ``dstcode`` — on the login too (OC-DV:1102, 1690, 1863).
- URL = the connector's ``endpoint.url`` + ``auth_endpoint`` | ``integration_endpoint`` | ``share_endpoint``
  (OC-DV:1080-1090, 1665-1678, 1832-1851); a value that is a whole URL is used as it is.
- Login ``{username, password}`` → ``{session, error_code: 0}`` (OC-DV:1087-1088, 1130); no expiry is read, the
  token is kept and reused (OC-DV:1067-1072).
- A call's body: ``session``, ``madonvi``, ``service`` and its parameters at top level (OC-DV:1670-1676).
  ``LayDanhSachTTHC`` → ``result[{MATTHC, TENTTHC}]`` (OC-DV:1252-1259), ``LayDanhMucCoQuan`` →
  ``result[{MADONVI, TENDONVI, CAPDONVI}]`` (OC-DV:534-558), ``LayDanhMucLinhVuc`` →
  ``result[{MALINHVUC, TENLINHVUC, MANGANH}]`` (OC-DV:712-741), all at ``share_endpoint``; ``LayThuTuc`` with
  ``maTTHC`` at ``integration_endpoint`` → ``result[0]``: TENTTHC, LINHVUCTHUCHIEN[{MALINHVUC, TENLINHVUC}], …
  (OC-DV:171-186, 2503-2760).
- ``error_code`` is read as a string or a number: OC-DV parses a string (OC-DV:2142), reads an int at login
  (OC-DV:1130), OC-DV23 compares with "00" (OC-DV23:1577); its meaning comes from the profile's ``error_code``
  code table (only success is sourced).

The ``dvcqg/proxy`` profile (the provincial proxy of TH-SS/TH-SI) calls only DongBoHoSoMC and CapNhatTienDoHoSoMC:
no catalogue service is sourced for it, so ``hub catalogue sync`` refuses such a connector (``hub.flows.catalogue``).
"""

from __future__ import annotations

import json
from typing import Any

from adapters.http import classify_status, partner_pool, request_text
from hub.errors import CatalogueError
from hub.logs import mask_ids
from mappings.profiles import ProfileSettings

LIST_PROCEDURES = "LayDanhSachTTHC"  # OC-DV:1252-1259
PROCEDURE = "LayThuTuc"  # OC-DV:171-186, 2503-2760
UNITS = "LayDanhMucCoQuan"  # OC-DV:534-558
FIELDS = "LayDanhMucLinhVuc"  # OC-DV:712-741
SUCCESS = "success"  # the meaning of a successful error_code in the profile's code table


def join_url(base: str, path: str) -> str:
    """``base`` + ``path`` as the sources build it (OC-DV:1080-1090); a ``path`` that is a whole URL wins."""
    if path.startswith(("http://", "https://")):
        return path
    return base.rstrip("/") + "/" + path.lstrip("/")


class PortalCatalogueClient:
    """Reads the portal's catalogue for one ``dvcqg/opencps`` connector: its ``endpoint.url``, its credentials and
    its resolved profile values (``mappings.profiles.resolve``: dstcode, madonvi and the three endpoints).

    Not shared between threads: one sync uses one client."""

    def __init__(
        self, endpoint: str, *, username: str, password: str, settings: ProfileSettings, timeout_s: float = 30.0
    ) -> None:
        self.endpoint = endpoint
        self._username = username
        self._password = password
        self.settings = settings
        self._pool = partner_pool(timeout_s=timeout_s, max_connections=1)
        self._session: str | None = None

    def __repr__(self) -> str:  # never the password or the session
        return f"PortalCatalogueClient({self.endpoint!r}, username={self._username!r})"

    def _headers(self) -> dict[str, str]:
        # OC-DV:1102, 1690, 1863: the same headers on every call, login included.
        return {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Charset": "utf-8",
            "dstcode": self.settings["dstcode"],
        }

    def _post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        url = join_url(self.endpoint, path)
        status, text = request_text(
            self._pool, "POST", url, where=f"the national portal ({what})", headers=self._headers(),
            body=json.dumps(body, ensure_ascii=False).encode(),
        )  # fmt: skip
        classify_status(status, text)  # HTTP errors raise (transient 5xx/429, permanent 4xx)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or "error_code" not in answer:
            raise CatalogueError(f"the national portal answered {what} with a malformed reply: {text[:120]!r}")
        code = str(answer["error_code"]).strip()  # a string or a number (OC-DV:2142, 1130; OC-DV23:1577)
        if self.settings.code("error_code", code) != SUCCESS:
            message = mask_ids(str(answer.get("message", "")))
            raise CatalogueError(f"the national portal refused {what}: error_code {code}: {message}".rstrip(": "))
        return answer

    # ---------------------------------------------------------------- session
    # The lead merges this with the portal adapter's session (adapters/national_portal.py): one login per
    # connector, shared by deliveries and catalogue reads. Until then the catalogue logs in on its own.

    def login(self) -> str:
        """Log in (``auth_endpoint``) and keep the session for the calls that follow (OC-DV:1067-1072, 1087-1088)."""
        answer = self._post(self.settings["auth_endpoint"], {"username": self._username, "password": self._password},
                            "the login")  # fmt: skip
        token = answer.get("session")
        if not isinstance(token, str) or not token:
            raise CatalogueError("the national portal's login answered without a session")
        self._session = token
        return token

    def _call(self, path: str, service: str, **params: str) -> list[Any]:
        session = self._session or self.login()
        body = {"session": session, "madonvi": self.settings["madonvi"], "service": service, **params}
        result = self._post(path, body, service).get("result")
        if result is None:
            return []
        if not isinstance(result, list):
            raise CatalogueError(f"the national portal answered {service} with a result that is not a list")
        return result

    # ---------------------------------------------------------------- services

    def procedures(self) -> list[dict[str, Any]]:
        """``LayDanhSachTTHC``: every procedure, ``{MATTHC, TENTTHC}`` (OC-DV:1252-1259)."""
        return _rows(self._call(self.settings["share_endpoint"], LIST_PROCEDURES), LIST_PROCEDURES, "MATTHC")

    def procedure(self, code: str) -> dict[str, Any] | None:
        """``LayThuTuc``: one procedure's record (``result[0]``), ``None`` when the portal has none."""
        found = self._call(self.settings["integration_endpoint"], PROCEDURE, maTTHC=code)
        if not found:
            return None
        if not isinstance(found[0], dict):
            raise CatalogueError(f"the national portal answered {PROCEDURE} {code} with a result that is no record")
        return found[0]

    def units(self) -> list[dict[str, Any]]:
        """``LayDanhMucCoQuan``: every unit, ``{MADONVI, TENDONVI, CAPDONVI}`` (OC-DV:534-558)."""
        return _rows(self._call(self.settings["share_endpoint"], UNITS), UNITS, "MADONVI")

    def fields(self) -> list[dict[str, Any]]:
        """``LayDanhMucLinhVuc``: every field, ``{MALINHVUC, TENLINHVUC, MANGANH}`` (OC-DV:712-741)."""
        return _rows(self._call(self.settings["share_endpoint"], FIELDS), FIELDS, "MALINHVUC")

    def close(self) -> None:
        self._pool.clear()


def _rows(result: list[Any], service: str, key: str) -> list[dict[str, Any]]:
    """The records of a list answer; ``CatalogueError`` for an item that is no record or lacks its code."""
    for item in result:
        if not isinstance(item, dict) or not str(item.get(key) or "").strip():
            raise CatalogueError(f"the national portal answered {service} with an item without {key}: {item!r:.120}")
    return result
