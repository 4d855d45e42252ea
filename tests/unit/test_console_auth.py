"""Operator sign-in: argon2id (and older scrypt) password hashes, the same hash work for every name, accounts
from configuration, CSRF on every POST, sessions in signed cookies, the replay's confirmation step and its audit
trail (through the app, in process)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from lxml import etree
from prometheus_client import REGISTRY

from hub import packets
from hub.api import create_app
from hub.config import Settings
from hub.console import auth, passwords, throttle
from hub.console.secure_cookies import plain_http_loopback
from hub.errors import ConfigError
from hub.security.envelope import EnvelopeHeader
from hub.security.signing import sign_payload
from hub.store.schema import console_sessions, signin_failures

PROVINCE, PORTAL = "000.00.00.H12", "000.00.00.G22"


def test_password_hash_round_trip() -> None:
    stored = auth.hash_password("bí mật")
    assert stored.startswith("$argon2id$") and "bí mật" not in stored
    assert auth.verify_password("bí mật", stored)
    assert not auth.verify_password("bi mat", stored)
    assert not auth.verify_password("bí mật", stored.replace("argon2id", "sha256"))
    assert not auth.verify_password("x", "garbage")
    assert auth.hash_password("same") != auth.hash_password("same")  # salted


def test_the_older_scrypt_form_is_still_accepted() -> None:
    stored = auth.scrypt_hash("bí mật", n=2**10)
    assert stored.startswith("scrypt$1024$8$1$") and "bí mật" not in stored
    assert auth.verify_password("bí mật", stored) and not auth.verify_password("bi mat", stored)
    assert not auth.verify_password("bí mật", stored.replace("scrypt", "sha256"))


def test_accounts_from_configuration() -> None:
    settings = Settings(
        operators=f"lan:{auth.hash_password('pw-lan')}, operator:{auth.scrypt_hash('own', n=2**10)},"
        f"mai:{auth.hash_password('pw-mai')}",
        operator_api_key="op-key", admin_api_key="admin-key", admin_name="quan.tri",
    )  # fmt: skip
    found = auth.accounts(settings)
    assert set(found) == {"lan", "operator", "quan.tri", "mai"}  # argon2 hashes hold commas: still three entries
    assert auth.authenticate(settings, "lan", "pw-lan").role == "operator"
    assert auth.authenticate(settings, "mai", "pw-mai") is not None
    assert auth.authenticate(settings, "quan.tri", "admin-key").role == "admin"
    assert auth.authenticate(settings, "operator", "own") is not None
    assert auth.authenticate(settings, "operator", "op-key") is None  # a named account replaces the key sign-in
    assert auth.authenticate(settings, "lan", "wrong") is None
    assert auth.authenticate(settings, "nobody", "pw-lan") is None
    assert auth.authenticate(settings, "lan", "") is None
    with pytest.raises(ConfigError):
        auth.parse_operators("lan:plaintext")
    assert auth.accounts(Settings()) == {}  # no keys, no operators: nobody signs in


@pytest.mark.parametrize(
    ("name", "password", "signs_in"),
    [
        ("lan", "pw-lan", True),  # argon2id account
        ("lan", "wrong", False),
        ("cu", "pw-cu", True),  # older scrypt account
        ("cu", "wrong", False),
        ("quan.tri", "admin-key", True),  # API-key account: no hash of its own, the same work all the same
        ("quan.tri", "wrong", False),
        ("nobody", "pw-lan", False),  # unknown name
        ("lan", "", False),  # empty password
    ],
)
def test_every_attempt_does_the_same_hash_work_once(monkeypatch, name, password, signs_in) -> None:
    settings = Settings(operators=f"lan:{auth.hash_password('pw-lan')},cu:{auth.scrypt_hash('pw-cu', n=2**10)}",
                        admin_api_key="admin-key", admin_name="quan.tri")  # fmt: skip
    checked: list[str] = []
    real = passwords.verify_password

    def counting(candidate: str, stored: str) -> bool:
        checked.append(stored.split("$")[1] if stored.startswith("$") else stored.split("$")[0])
        return real(candidate, stored)

    monkeypatch.setattr(passwords, "verify_password", counting)
    assert (auth.authenticate(settings, name, password) is not None) is signs_in
    assert len(checked) == 1
    expected = "scrypt" if name == "cu" and password else "argon2id"  # unknown names cost an argon2id check
    assert checked == [expected]


def test_the_dummy_hash_costs_what_the_accounts_cost() -> None:
    for stored in (auth.hash_password("a"), auth.scrypt_hash("a", n=2**11, r=4)):
        dummy = passwords.dummy_like(stored)
        assert dummy.rsplit("$", 2)[0] == stored.rsplit("$", 2)[0] and dummy != stored
    assert passwords.dummy_like(None).startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_csrf_token() -> None:
    session: dict = {}
    token = auth.csrf_token(session)
    assert auth.csrf_token(session) == token
    assert auth.csrf_ok(session, token)
    assert not auth.csrf_ok(session, token + "x") and not auth.csrf_ok(session, None) and not auth.csrf_ok({}, token)


# ---------------------------------------------------------------------------------------------- through the app

PASSWORD = "mat-khau-dai-du"


@pytest.fixture
def client(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var", admin_api_key="admin-key",
        operators=f"lan:{auth.hash_password(PASSWORD)}", log_format="console",
        signin_backoff_base_s=60,  # long enough that no slow test run outlasts a wait
    )  # fmt: skip
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html)[1]


def _sign_in(client: TestClient, password: str = PASSWORD, name: str = "lan"):
    token = _csrf(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "username": name, "password": password, "next": "/"},
                       follow_redirects=False)  # fmt: skip


def test_pages_need_a_session(client) -> None:
    response = client.get("/?q=x", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2F%3Fq%3Dx"
    assert client.get("/console/panels").status_code == 401
    assert (
        client.post("/console/replay", data={"id": "1"}, follow_redirects=False)
        .headers["location"]
        .startswith("/login")
    )


def test_bad_password_and_missing_csrf_are_refused(client, caplog) -> None:
    response = _sign_in(client, "wrong")
    assert response.status_code == 200 and "Sai tên đăng nhập hoặc mật khẩu" in response.text
    assert "lienthong_console" not in response.headers.get("set-cookie", "") or "user" not in response.text
    assert client.get("/", follow_redirects=False).status_code == 303
    refused = client.post("/login", data={"username": "lan", "password": PASSWORD}, follow_redirects=False)
    assert refused.status_code == 400 and client.get("/", follow_redirects=False).status_code == 303
    assert any(r.name == "hub.audit" and getattr(r, "actor", None) == "lan" for r in caplog.records)


def test_sign_in_sets_a_signed_httponly_lax_cookie(client) -> None:
    response = _sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("lienthong_console=") and "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
    page = client.get("/")
    assert page.status_code == 200 and "lan" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    tampered = client.cookies.get("lienthong_console")[:-3] + "abc"
    client.cookies.set("lienthong_console", tampered)
    assert client.get("/", follow_redirects=False).status_code == 303  # a forged cookie is no session


def test_english_switch_is_kept_in_a_cookie(client) -> None:
    _sign_in(client)
    assert "Dead letters" in client.get("/?lang=en").text
    assert "Dead letters" in client.get("/").text
    assert "Thư lỗi" in client.get("/?lang=vi").text


def _dead_letter(client: TestClient, pki) -> int:
    store = client.app.state.hub.store
    header = EnvelopeHeader(sender=PROVINCE, receiver=PORTAL, message_type="dossier.sync")
    payload = packets.to_element(packets.example("dossier.sync"))
    data = etree.tostring(sign_payload(pki.province.signer, header, payload))
    client.app.state.hub.broker.declare([PORTAL])
    accepted = store.accept(
        sender=PROVINCE, message_id=str(uuid.uuid4()), correlation_id=None, message_type="dossier.sync",
        receiver=PORTAL, dossier_code="D-1", envelope=data, destinations=[PORTAL],
    )  # fmt: skip
    delivery = accepted.delivery_ids[0]
    store.start_attempts([delivery])
    return store.record_dead(delivery, reason="rejected", error="HTTP 400")


def test_the_dead_letter_count_is_the_total_when_the_page_lists_fewer(client, pki, monkeypatch) -> None:
    from hub.console import views

    monkeypatch.setattr(views, "DEAD_SHOWN", 2)
    ids = [_dead_letter(client, pki) for _ in range(3)]
    _sign_in(client)
    panels = client.get("/console/panels").text
    assert re.search(r'id="dead-total">3<', panels)
    assert [f'id="dl-{i}"' in panels for i in ids] == [True, True, False]  # the oldest first
    assert "Hiện 2 thư lỗi cũ nhất trên tổng số 3" in panels


def test_replay_needs_csrf_then_confirmation_and_is_audited(client, pki) -> None:
    dead_id = _dead_letter(client, pki)
    _sign_in(client)
    page = client.get("/")
    assert f'id="dl-{dead_id}"' in page.text and "Nguyễn Văn An" not in page.text  # the preview is masked
    token = _csrf(page.text)

    no_csrf = client.post("/console/replay/confirm", data={"id": str(dead_id)}, follow_redirects=False)
    assert no_csrf.status_code == 303
    assert "hợp lệ" in client.get("/").text  # "…biểu mẫu không hợp lệ"
    assert client.app.state.hub.store.dead_letters()  # nothing replayed

    confirm = client.post("/console/replay", data={"csrf_token": token, "only": str(dead_id)})
    assert confirm.status_code == 200 and "Xác nhận gửi lại" in confirm.text and "lan" in confirm.text
    assert client.app.state.hub.store.dead_letters()  # still nothing replayed: confirmation first

    form = {"csrf_token": token, "id": str(dead_id)}
    done = client.post("/console/replay/confirm", data=form, follow_redirects=False)
    assert done.status_code == 303
    assert "Đã đưa 1 thư" in client.get("/").text
    store = client.app.state.hub.store
    assert store.dead_letters() == []
    (replayed,) = store.dead_letters(include_replayed=True)
    assert replayed.replayed_by == "lan" and replayed.replayed_at is not None
    trace = store.trace(replayed.message_id)
    assert ("replayed", "lan") in [(e.state, e.actor) for e in trace.events]

    again = client.post("/console/replay/confirm", data={"csrf_token": token, "id": str(dead_id)})
    assert "already replayed" in again.text  # a dead letter is replayed once

    client.get(f"/?q={replayed.message_id}")
    viewed = [e for e in store.trace(replayed.message_id).events if e.state == "viewed"]
    assert viewed and viewed[-1].actor == "lan"  # reading the message log is audited

    token = _csrf(client.get("/").text)
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/", follow_redirects=False).status_code == 303


def test_cli_hashes_a_password_for_the_operators_setting() -> None:
    from typer.testing import CliRunner

    from hub.cli import app

    result = CliRunner().invoke(app, ["operator", "hash-password", "lan", "--stdin"], input="mot-mat-khau-dai\n")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith("lan:$argon2id$") and "mot-mat-khau-dai" not in line
    settings = Settings(operators=line)
    assert auth.authenticate(settings, "lan", "mot-mat-khau-dai") is not None
    short = CliRunner().invoke(app, ["operator", "hash-password", "lan", "--stdin"], input="short\n")
    assert short.exit_code != 0


# ---------------------------------------------------------------------------------------------- server-side sessions


def _session_rows(client: TestClient) -> list:
    with client.app.state.hub.store.transaction(readonly=True) as conn:
        return list(conn.execute(sa.select(console_sessions)))


def test_sign_out_ends_the_session_even_for_a_kept_cookie(client) -> None:
    _sign_in(client)
    kept = client.cookies.get("lienthong_console")
    (row,) = _session_rows(client)
    assert row.name == "lan" and len(row.token_hash) == 64  # only a hash of the token is stored
    token = _csrf(client.get("/").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert _session_rows(client) == []
    client.cookies.set("lienthong_console", kept)  # the cookie an attacker copied before the sign-out
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get("/console/panels").status_code == 401


def test_a_password_change_ends_the_accounts_sessions(client) -> None:
    _sign_in(client)
    assert client.get("/", follow_redirects=False).status_code == 200
    client.app.state.hub.settings.operators = f"lan:{auth.hash_password('a-new-password')}"  # reconfigured
    assert client.get("/", follow_redirects=False).status_code == 303
    assert _session_rows(client) == []
    assert _sign_in(client, "a-new-password").status_code == 303 and client.get("/").status_code == 200


# ---------------------------------------------------------------------------------------------- Secure cookies


@pytest.mark.parametrize(
    ("base_url", "https_only", "secure"),
    [
        ("http://127.0.0.1", False, False),  # hub demo, a local hub serve: plain HTTP on loopback
        ("http://localhost:8000", False, False),
        ("http://127.0.0.1", True, True),  # forced on
        ("https://hub.example.gov.vn", False, True),
        ("http://hub.example.gov.vn", False, True),  # plain HTTP over a network: the browser drops it
    ],
)
def test_cookies_are_secure_unless_plain_http_on_loopback(tmp_path, base_url, https_only, secure) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var",
                        admin_api_key="admin-key", session_https_only=https_only, log_format="console")  # fmt: skip
    with TestClient(create_app(settings), base_url=base_url) as c:
        page = c.get("/login?lang=en")
        cookies = page.headers.get_list("set-cookie")
        assert cookies and all(("; secure" in cookie.lower()) is secure for cookie in cookies)
        assert ("over HTTPS" in page.text) is (base_url == "http://hub.example.gov.vn")


def test_a_loopback_host_header_from_another_machine_still_gets_secure_cookies(tmp_path) -> None:
    """A proxy forwarding a public client's request as ``Host: 127.0.0.1`` (or a client saying so) is no local page."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var",
                        admin_api_key="admin-key", log_format="console")  # fmt: skip
    with TestClient(create_app(settings), base_url="http://127.0.0.1", client=("203.0.113.9", 40000)) as c:
        cookies = c.get("/login").headers.get_list("set-cookie")
        assert cookies and all("; secure" in cookie.lower() for cookie in cookies)
    https = settings.model_copy(update={"public_url": "https://hub.example.gov.vn"})
    with TestClient(create_app(https), base_url="http://127.0.0.1") as c:  # served over HTTPS, whatever the Host
        cookies = c.get("/login").headers.get_list("set-cookie")
        assert cookies and all("; secure" in cookie.lower() for cookie in cookies)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:8000", True), ("localhost", True), ("[::1]:8000", True), ("127.9.9.9", True),
     ("10.0.0.5:8000", False), ("hub.example.gov.vn", False), ("[2001:db8::1]", False), ("127.0.0.1.nip.io", False)],
)  # fmt: skip
def test_plain_http_loopback(host, loopback) -> None:
    scope = {"type": "http", "scheme": "http", "headers": [(b"host", host.encode())]}
    assert plain_http_loopback(scope) is loopback
    assert plain_http_loopback({**scope, "scheme": "https"}) is False


# ---------------------------------------------------------------------------------------------- throttling


def test_backoff_doubles_after_the_free_failures_up_to_the_cap() -> None:
    settings = Settings(signin_backoff_base_s=2, signin_backoff_max_s=60)
    assert [throttle.backoff_s(settings, n) for n in range(1, 12)] == [0, 0, 0, 0, 2, 4, 8, 16, 32, 60, 60]
    assert throttle.keys(" Lan ", "2001:db8::1") == ["account:lan", "address:2001:db8::/64"]
    assert throttle.keys("lan", "10.0.0.7") == ["account:lan", "address:10.0.0.7"]


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _unblock(client: TestClient) -> None:
    """The backoff has passed (without sleeping through it)."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with client.app.state.hub.store.transaction() as conn:
        conn.execute(sa.update(signin_failures).values(blocked_until=past))


def test_failures_back_off_per_account_and_a_throttled_attempt_is_not_checked(client, monkeypatch, caplog) -> None:
    failures, throttled = (
        _count("lienthong_signin_failures_total"),
        _count("lienthong_signin_throttled_total", scope="account"),
    )
    checked: list[str] = []
    real = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password", lambda p, s: checked.append(s) or real(p, s))
    for _ in range(5):
        assert _sign_in(client, "wrong").status_code == 200
    assert len(checked) == 5
    # from another address: the account is backing off, even the right password is refused without a check
    elsewhere = TestClient(client.app, base_url="https://hub.example.gov.vn", client=("10.0.0.9", 40000))
    refused = _sign_in(elsewhere)
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60
    assert len(checked) == 5 and elsewhere.get("/", follow_redirects=False).status_code == 303
    assert _count("lienthong_signin_failures_total") == failures + 5
    assert _count("lienthong_signin_throttled_total", scope="account") == throttled + 1
    assert any("throttled" in r.getMessage() and getattr(r, "actor", None) == "lan" for r in caplog.records)
    scraped = client.get("/metrics", headers={"Authorization": "Bearer admin-key"})
    assert "lienthong_signin_throttled_total" in scraped.text
    _unblock(client)
    assert _sign_in(elsewhere, "wrong").status_code == 200  # one more failure: twice the wait
    assert 60 < int(_sign_in(elsewhere).headers["retry-after"]) <= 120
    _unblock(client)
    assert _sign_in(elsewhere).status_code == 303 and elsewhere.get("/").status_code == 200  # the wait is over
    assert _sign_in(client, "wrong").status_code == 200  # a right password cleared the account's count


def test_failures_back_off_per_address_whatever_the_names(client) -> None:
    before = _count("lienthong_signin_throttled_total", scope="address")
    for n in range(5):
        assert _sign_in(client, "wrong", name=f"nobody-{n}").status_code == 200
    assert _sign_in(client, name="lan").status_code == 429  # the address is backing off
    assert _count("lienthong_signin_throttled_total", scope="address") == before + 1
    elsewhere = TestClient(client.app, base_url="https://hub.example.gov.vn", client=("10.0.0.9", 40000))
    assert _sign_in(elsewhere).status_code == 303  # not the account: it never failed
