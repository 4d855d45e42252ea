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
- These services answer ``result`` only: the sources read nothing else there (OC-DV:1252-1259, 171-186), so an
  answer without ``error_code`` is read; one that carries it is read as the login's is — a string or a number,
  OC-DV parses a string (OC-DV:2142), reads an int at login (OC-DV:1130), OC-DV23 compares with "00"
  (OC-DV23:1577), its meaning from the profile's ``error_code`` code table (only success is sourced). An answer
  without ``result`` (missing or null) is an error, never an empty catalogue.

The session, headers, URLs and ``error_code`` reading are the portal adapter's (``adapters.dvcqg.
DvcqgOpenCpsAdapter``, its ``call(service, params, url=...)``): one implementation of the portal's session for
deliveries and catalogue reads. This module only names the services and checks their answers' shape.

The ``dvcqg/proxy`` profile (the provincial proxy of TH-SS/TH-SI) calls only DongBoHoSoMC and CapNhatTienDoHoSoMC:
no catalogue service is sourced for it, so ``hub catalogue sync`` refuses such a connector (``hub.flows.catalogue``).
"""

from __future__ import annotations

from typing import Any

from adapters.dvcqg import DvcqgOpenCpsAdapter, LoginRefused, PortalRefusal, url_for
from hub.errors import CatalogueError
from mappings.profiles import ProfileSettings

LIST_PROCEDURES = "LayDanhSachTTHC"  # OC-DV:1252-1259
PROCEDURE = "LayThuTuc"  # OC-DV:171-186, 2503-2760
UNITS = "LayDanhMucCoQuan"  # OC-DV:534-558
FIELDS = "LayDanhMucLinhVuc"  # OC-DV:712-741


def join_url(base: str, path: str) -> str:
    """``base`` + ``path`` as the sources build it (OC-DV:1080-1090); a ``path`` that is a whole URL wins."""
    return url_for(base, path)


class PortalCatalogueClient:
    """Reads the portal's catalogue for one ``dvcqg/opencps`` connector: its ``endpoint.url``, its credentials and
    its resolved profile values (``mappings.profiles.resolve``: dstcode, madonvi and the three endpoints), through
    a ``DvcqgOpenCpsAdapter`` (its own, or ``adapter``: a delivery adapter's session is then shared).

    Not shared between threads: one sync uses one client."""

    def __init__(
        self,
        endpoint: str,
        *,
        username: str,
        password: str,
        settings: ProfileSettings,
        timeout_s: float = 30.0,
        adapter: DvcqgOpenCpsAdapter | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.adapter = adapter or DvcqgOpenCpsAdapter(
            endpoint, settings, username=username, password=password, timeout_s=timeout_s, max_connections=1
        )

    def __repr__(self) -> str:  # never the password or the session
        return f"PortalCatalogueClient({self.adapter!r})"

    def login(self) -> str:
        """The adapter's session: logs in (``auth_endpoint``) unless it holds one (OC-DV:1067-1072, 1087-1088)."""
        try:
            return self.adapter.session()
        except LoginRefused as exc:
            raise CatalogueError(f"the national portal refused the login: {exc.reason}".rstrip(": ")) from None

    def _call(self, url: str, service: str, **params: str) -> list[Any]:
        try:
            # logs in first when it holds no session; the answer is ``result`` only (OC-DV:1252-1259, 171-186)
            answer = self.adapter.call(service, params, url=url, answers_result=True)
        except LoginRefused as exc:
            raise CatalogueError(f"the national portal refused the login: {exc.reason}".rstrip(": ")) from None
        except PortalRefusal as exc:
            raise CatalogueError(f"the national portal refused {service}: {exc}".rstrip(": ")) from None
        result = answer.get("result")
        if result is None:  # the sources read the answer's result and nothing else: without one, nothing was read
            raise CatalogueError(f"the national portal answered {service} without a result")
        if not isinstance(result, list):
            raise CatalogueError(f"the national portal answered {service} with a result that is not a list")
        return result

    # ---------------------------------------------------------------- services

    def procedures(self) -> list[dict[str, Any]]:
        """``LayDanhSachTTHC``: every procedure, ``{MATTHC, TENTTHC}`` (OC-DV:1252-1259)."""
        return _rows(self._call(self.adapter.share_url, LIST_PROCEDURES), LIST_PROCEDURES, "MATTHC")

    def procedure(self, code: str) -> dict[str, Any] | None:
        """``LayThuTuc``: one procedure's record (``result[0]``), ``None`` when the portal has none."""
        found = self._call(self.adapter.integration_url, PROCEDURE, maTTHC=code)
        if not found:
            return None
        if not isinstance(found[0], dict):
            raise CatalogueError(f"the national portal answered {PROCEDURE} {code} with a result that is no record")
        return found[0]

    def units(self) -> list[dict[str, Any]]:
        """``LayDanhMucCoQuan``: every unit, ``{MADONVI, TENDONVI, CAPDONVI}`` (OC-DV:534-558)."""
        return _rows(self._call(self.adapter.share_url, UNITS), UNITS, "MADONVI")

    def fields(self) -> list[dict[str, Any]]:
        """``LayDanhMucLinhVuc``: every field, ``{MALINHVUC, TENLINHVUC, MANGANH}`` (OC-DV:712-741)."""
        return _rows(self._call(self.adapter.share_url, FIELDS), FIELDS, "MALINHVUC")

    def close(self) -> None:
        self.adapter.close()


def _rows(result: list[Any], service: str, key: str) -> list[dict[str, Any]]:
    """The records of a list answer; ``CatalogueError`` for an item that is no record or lacks its code."""
    for item in result:
        if not isinstance(item, dict) or not str(item.get(key) or "").strip():
            raise CatalogueError(f"the national portal answered {service} with an item without {key}: {item!r:.120}")
    return result
