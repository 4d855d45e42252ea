"""The trust view: days left and levels at the alert rules' thresholds (30 and 7 days), the rows of the hub's
certificate, the connectors' and the anchors', and the page through the app (signed in, both languages)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.api import create_app
from hub.config import Settings
from hub.console import auth, trust
from hub.runtime import hub_certificate_path, hub_signer
from hub.security import keys

NOW = datetime(2026, 1, 10, 3, 0, tzinfo=UTC)
PROVINCE, PORTAL, HUB = "000.00.00.H12", "000.00.00.G01", "000.00.00.H00"


@pytest.mark.parametrize(
    ("left", "days", "expected"),
    [
        (timedelta(days=400), 400, "ok"),
        (timedelta(days=30), 30, "ok"),  # 30 days left: not yet (the alert fires below 30 days)
        (timedelta(days=29, hours=23), 29, "warning"),
        (timedelta(days=7, seconds=1), 7, "warning"),
        (timedelta(days=7), 7, "warning"),
        (timedelta(days=6, hours=23), 6, "critical"),
        (timedelta(hours=1), 0, "critical"),
        (timedelta(0), 0, "expired"),
        (-timedelta(days=2), -2, "expired"),
    ],
)
def test_days_left_and_level(left: timedelta, days: int, expected: str) -> None:
    assert trust.days_left(NOW + left, NOW) == days
    assert trust.level(NOW + left, NOW) == expected


def _cert(directory: Path, name: str, days: int, code: str | None = None):
    return keys.load_certificate(keys.issue_key(name, directory, algorithm="ec", days=days, code=code).cert_path)


@dataclass
class Info:
    certificate: object


@dataclass
class Connector:
    code: str
    name: str
    certificates: tuple


def test_the_view_lists_the_hub_the_connectors_and_the_anchors_most_urgent_first(tmp_path: Path) -> None:
    soon, later = _cert(tmp_path, "portal", 5, PORTAL), _cert(tmp_path, "province", 20, PROVINCE)
    old = _cert(tmp_path, "province-old", 200, PROVINCE)
    hub = keys.issue_key("hub", tmp_path / "hub", algorithm="ec", days=365, code=HUB).cert_path
    ca = keys.load_certificate(tmp_path / keys.CA_CERT_FILE)
    now = datetime.now(UTC) + timedelta(minutes=1)  # after the issues: whole days are a day short of each validity
    connectors = [
        Connector(PROVINCE, "Tỉnh", (Info(old), Info(later))),
        Connector(PORTAL, "Cổng", (Info(soon),)),
        Connector("000.00.00.G10", "Bộ", ()),
    ]
    view = trust.trust_view(hub, HUB, connectors, [ca], now)
    assert view.hub is not None and view.hub.owner == HUB and view.hub.level == "ok" and view.hub.days_left == 364
    assert view.hub.fingerprint == keys.fingerprint(keys.load_certificate(hub))
    assert [(r.owner, r.level, r.days_left) for r in view.connectors] == [
        (PORTAL, "critical", 4), (PROVINCE, "warning", 19), (PROVINCE, "ok", 199),
    ]  # fmt: skip
    assert view.connectors[0].serial == format(soon.serial_number, "x") and "portal" in view.connectors[0].subject
    assert view.unpinned == [("000.00.00.G10", "Bộ")]
    assert [(r.owner, r.level) for r in view.anchors] == [("Lienthong Demo CA", "ok")]
    assert view.counts == {"ok": 3, "warning": 1, "critical": 1} and view.worst == "critical"


def test_an_unreadable_hub_certificate_is_said_not_raised(tmp_path: Path) -> None:
    view = trust.trust_view(tmp_path / "missing.pem", HUB, [], [], NOW)
    assert view.hub is None and "missing.pem" in (view.hub_error or "")
    assert view.worst == "ok" and view.connectors == [] and view.anchors == []


PASSWORD = "mat-khau-dai-du"


def test_the_trust_page_shows_every_certificate_with_its_days_left(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var", admin_api_key="admin-key",
        operators=f"lan:{auth.hash_password(PASSWORD)}", log_format="console", hub_code=HUB,
    )  # fmt: skip
    hub_signer(settings)  # the demo hub's key and certificate (and the demo CA: the anchor) under the data folder
    expiring = keys.issue_key("province", tmp_path / "partner", days=20, code=PROVINCE).cert_path
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        assert client.get("/console/trust", follow_redirects=False).headers["location"].startswith("/login")
        spec = {"code": PROVINCE, "name": "Tỉnh", "kind": "provincial", "sends": ["dossier.sync"],
                "certificates": [expiring.read_text()]}  # fmt: skip
        assert client.post("/api/v1/connectors", json=spec, headers={"X-Api-Key": "admin-key"}).status_code == 201
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)[1]
        client.post("/login", data={"csrf_token": token, "username": "lan", "password": PASSWORD, "next": "/"})
        page = client.get("/console/trust?lang=en")
        vi = client.get("/console/trust?lang=vi").text
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    own = keys.load_certificate(hub_certificate_path(settings))
    assert keys.fingerprint(own)[:16] in html and format(own.serial_number, "x") in html
    row = re.search(rf'<tr class="" data-level="warning" data-owner="{PROVINCE}">(.*?)</tr>', html, re.S)
    assert row is not None and "19 days" in row[1] and "Expiring" in row[1]
    assert 'data-owner="Lienthong Demo CA"' in html  # the anchor
    assert 'id="trust-worst">Expiring<' in html
    assert "19 ngày" in vi and "Sắp hết hạn" in vi and "Chứng thư của trục" in vi
