"""Metrics and alerts as Prometheus' own tool reads them: ``promtool check rules`` and ``test rules`` on the shipped
alert rules, ``promtool check metrics`` on the API's real ``/metrics`` and on a worker's metrics port after it
delivered, and the worker's histograms counting what happened. promtool is Debian's ``prometheus`` package
(``make system-deps`` installs it): skipped without it, a failure on CI (``LIENTHONG_REQUIRE_SERVICES=1``)."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, start_http_server

from hub.api import create_app
from hub.config import Settings
from hub.runtime import hub_certificate_path, hub_signer
from hub.security import keys
from hub.security.keys import load_certificate
from hub.store import Store
from tests.support import free_port, require
from tests.unit.test_console_views import _envelope
from tests.unit.test_worker_outages import DEST, Rig, delivery, eventually

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
PROVINCE = "000.00.00.H12"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        require("promtool is not installed (Debian package prometheus; `make system-deps`)")
    return path


def run(promtool: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([promtool, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def test_the_alert_rules_pass_promtool_check_rules(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "check", "rules", str(RULES))


def test_the_alert_rules_fire_on_the_series_they_watch(promtool: str) -> None:
    """``deploy/prometheus/alerts_test.yml``: each alert fires on a made-up series after its ``for`` and not
    before, and stays quiet on healthy values."""
    run(promtool, "test", "rules", str(RULE_TESTS))


def test_promtool_finds_fault_with_a_unit_that_is_not_a_base_unit(promtool: str) -> None:
    """The check below can fail: the former ``…_days`` gauge is refused."""
    bad = "# HELP x_expiry_days d\n# TYPE x_expiry_days gauge\nx_expiry_days 3\n"
    done = subprocess.run([promtool, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "base unit" in done.stdout + done.stderr


def test_the_api_metrics_pass_promtool_and_give_certificate_expiries_as_timestamps(promtool: str, tmp_path, pki):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hub.db'}", data_dir=tmp_path / "var",
                        admin_api_key="k", log_format="console")  # fmt: skip
    hub_signer(settings)  # the demo hub's own key and certificate, as a worker creates them
    with TestClient(create_app(settings)) as client:
        spec = {"code": PROVINCE, "name": "Province", "kind": "provincial", "sends": ["dossier.sync"],
                "certificates": [pki.province.cert_path.read_text()]}  # fmt: skip
        assert client.post("/api/v1/connectors", json=spec, headers={"X-Api-Key": "k"}).status_code == 201
        text = client.get("/metrics", headers={"Authorization": "Bearer k"}).text
    run(promtool, "check", "metrics", stdin=text)
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}
    partner = load_certificate(pki.province.cert_path).not_valid_after_utc
    own = load_certificate(hub_certificate_path(settings)).not_valid_after_utc
    assert samples[f'lienthong_certificate_expiry_timestamp_seconds{{connector="{PROVINCE}"}}'] == partner.timestamp()
    assert samples["lienthong_hub_certificate_expiry_timestamp_seconds"] == own.timestamp()
    ca = load_certificate(settings.data_dir / "keys" / keys.CA_CERT_FILE)  # the demo CA: the hub's trust anchor
    labels = f'ca="{keys.common_name(ca)}",fingerprint="{keys.fingerprint(ca)}"'
    anchor = f"lienthong_trust_anchor_expiry_timestamp_seconds{{{labels}}}"
    assert samples[anchor] == ca.not_valid_after_utc.timestamp()
    assert "_days" not in text


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.worker.close()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_worker_observes_each_partner_call_and_the_acceptance_to_delivered_time(promtool: str, rig: Rig) -> None:
    """Two calls (one delivered, one failed): two call durations; one delivered message accepted two minutes ago:
    one latency of about two minutes. The worker's metrics port then serves text promtool accepts."""
    calls = _sample("lienthong_partner_call_duration_seconds_count", destination=DEST)
    latencies = _sample("lienthong_accept_to_delivered_seconds_count", destination=DEST)
    latency_sum = _sample("lienthong_accept_to_delivered_seconds_sum", destination=DEST)
    under_minute = _sample("lienthong_accept_to_delivered_seconds_bucket", destination=DEST, le="60.0")
    rig.store.accepted_at = datetime.now(UTC) - timedelta(minutes=2)
    rig.partner.failing.add("m-2")
    rig.broker.put(delivery(1), delivery(2))
    rig.start()
    eventually(lambda: rig.broker.acked == [1] and rig.broker.retried == [2])
    rig.stop()
    assert _sample("lienthong_partner_call_duration_seconds_count", destination=DEST) == calls + 2
    assert _sample("lienthong_accept_to_delivered_seconds_count", destination=DEST) == latencies + 1  # delivered only
    added = _sample("lienthong_accept_to_delivered_seconds_sum", destination=DEST) - latency_sum
    assert 120 <= added < 180
    assert _sample("lienthong_accept_to_delivered_seconds_bucket", destination=DEST, le="60.0") == under_minute
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")  # what `hub worker --metrics-port` serves
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        thread.join(5)
    assert f'lienthong_partner_call_duration_seconds_bucket{{destination="{DEST}",le="0.01"}}' in text
    run(promtool, "check", "metrics", stdin=text)


def test_starting_an_attempt_returns_when_its_message_was_accepted(tmp_path, pki) -> None:
    """The worker's accept-to-delivered latency starts at the message's acceptance, also on a later attempt."""
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.migrate()
    try:
        accepted = store.accept(
            sender=PROVINCE, message_id="m-latency", correlation_id=None, message_type="dossier.sync",
            receiver=DEST, dossier_code="D-1", envelope=_envelope(pki, "dossier.sync"), destinations=[DEST],
        )  # fmt: skip
        (delivery_id,) = accepted.delivery_ids
        assert store.start_attempts_at([delivery_id]) == {delivery_id: (1, accepted.received_at)}
        store.record_retry(delivery_id, error="HTTP 503", delay_s=0)
        assert store.start_attempts_at([delivery_id]) == {delivery_id: (2, accepted.received_at)}
        store.record_delivered_many([(delivery_id, b"<x/>", "HTTP 200")])
        assert store.start_attempts_at([delivery_id]) == {}  # delivered: not attempted again
    finally:
        store.close()
