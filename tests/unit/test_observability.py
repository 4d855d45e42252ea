"""Observability: /metrics exports every gauge the alert rules and the Grafana dashboard use (promtool itself runs
in ``test_promtool``), each alert links its own section of ``docs/runbooks.md``, and the JSON log lines carry
message id, dossier code and connector, with personal IDs masked."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from hub.api import create_app
from hub.config import Settings
from hub.console.metrics import EXPORTED
from hub.logs import JsonFormatter, log_context, logging_dict, mask_ids

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "lienthong.json"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
METRIC = re.compile(r"\blienthong_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, pki) -> set[str]:
    """Every series name /metrics exposes (families from their TYPE lines, with their sample suffixes)."""
    tmp = tmp_path_factory.mktemp("metrics")
    settings = Settings(database_url=f"sqlite:///{tmp / 'hub.db'}", data_dir=tmp / "var", admin_api_key="k",
                        log_format="console")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        spec = {"code": "000.00.00.H12", "name": "Province", "kind": "provincial", "sends": ["dossier.sync"],
                "certificates": [pki.province.cert_path.read_text()]}  # fmt: skip
        assert client.post("/api/v1/connectors", json=spec, headers={"X-Api-Key": "k"}).status_code == 201
        text = client.get("/metrics", headers={"Authorization": "Bearer k"}).text
    names: set[str] = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = kind_line
        names.add(name)
        names.update(name + suffix for suffix in SUFFIXES.get(kind, ()))
    assert 'lienthong_certificate_expiry_timestamp_seconds{connector="000.00.00.H12"}' in text
    assert 'lienthong_partner_state{connector="000.00.00.H12",state="push_only"} 1.0' in text
    return names


def test_the_console_gauges_are_exported(exported) -> None:
    assert set(EXPORTED) <= exported


def test_alert_rules_have_the_expected_structure_and_use_exported_metrics(exported) -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert all(group["name"] and group["rules"] for group in doc["groups"])
    by_name = {rule["alert"]: rule for rule in rules}
    assert len(by_name) == len(rules), "alert names are unique"
    expected = {
        "LienthongDeadLetters": "lienthong_dead_letters",
        "LienthongOldestMessageTooOld": "lienthong_oldest_pending_age_seconds",
        "LienthongPartnerDown": "lienthong_partner_down",
        "LienthongCertificateExpiring": "lienthong_certificate_expiry_timestamp_seconds",
        "LienthongHubCertificateExpiring": "lienthong_hub_certificate_expiry_timestamp_seconds",
        "LienthongTrustAnchorExpiringSoon": "lienthong_trust_anchor_expiry_timestamp_seconds",
        "LienthongWorkerDependencyDown": "lienthong_worker_dependency_up",
        "LienthongRejectionRateHigh": "lienthong_rejected_total",
        "LienthongPaymentConfirmationsRejected": "lienthong_payment_confirmations_rejected_total",
        "LienthongIntakeDeadlineBreached": "lienthong_intake_overdue",
        "LienthongProcessingOverdue": "lienthong_processing_overdue",
    }
    for alert, metric in expected.items():
        assert metric in by_name[alert]["expr"], alert
    assert "> 0" in by_name["LienthongDeadLetters"]["expr"] and by_name["LienthongDeadLetters"]["for"] == "10m"
    assert "> 900" in by_name["LienthongOldestMessageTooOld"]["expr"]
    assert "< 30 * 86400" in by_name["LienthongCertificateExpiring"]["expr"]
    assert "< 7 * 86400" in by_name["LienthongHubCertificateExpiringSoon"]["expr"]
    assert by_name["LienthongTargetDown"]["expr"].startswith("up{") and by_name["LienthongTargetDown"]["for"] == "2m"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
        used = set(METRIC.findall(rule["expr"]))
        assert used <= exported, f"{rule['alert']} uses metrics /metrics does not export: {used - exported}"
        assert used or rule["alert"] == "LienthongTargetDown", rule["alert"]  # Prometheus' own `up`


def _anchor(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub, GitLab) gives a heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_each_alert_links_its_own_runbook_section_and_each_section_has_its_alert() -> None:
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    sections = {_anchor(h): h for h in re.findall(r"^## (.+)$", RUNBOOKS.read_text(encoding="utf-8"), re.M)}
    linked = {}
    for rule in rules:
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbooks.md" and anchor in sections, rule["alert"]
        assert sections[anchor] == rule["alert"], f"{rule['alert']} links the section of {sections[anchor]}"
        linked[anchor] = rule["alert"]
    assert set(sections) == set(linked), f"sections without an alert: {set(sections) - set(linked)}"
    for heading in sections.values():
        body = RUNBOOKS.read_text(encoding="utf-8").split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Means**" in body and "**Do**" in body and "**Check**" in body, heading


def test_dashboard_panels_use_exported_metrics(exported) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    seen: set[str] = set()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(METRIC.findall(target["expr"]))
            assert used and used <= exported, f"{panel['title']}: {used - exported}"
            seen |= used
    for metric in ("lienthong_dead_letters", "lienthong_oldest_pending_age_seconds", "lienthong_partner_down",
                   "lienthong_certificate_expiry_timestamp_seconds", "lienthong_intake_overdue"):  # fmt: skip
        assert metric in seen, f"no panel shows {metric}"


def _json_lines(emit) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.observability")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_logs_carry_message_dossier_and_connector_from_context_and_extras() -> None:
    def emit(logger: logging.Logger) -> None:
        with log_context(message_id="m-1", connector="000.00.00.H12"):
            logger.info("calling the partner for 001099012345")
            logger.warning("rejected", extra={"dossier_code": "D-7"})
        logger.info("outside message_id=m-2 destination=000.00.00.G22")

    first, second, third = _json_lines(emit)
    assert (first["message_id"], first["connector"]) == ("m-1", "000.00.00.H12")
    assert "001099012345" not in first["msg"] and "********2345" in first["msg"]
    assert second["dossier_code"] == "D-7" and second["message_id"] == "m-1"
    assert third["message_id"] == "m-2" and third["connector"] == "000.00.00.G22"  # destination= is the connector
    assert "connector" not in _json_lines(lambda lg: lg.info("plain"))[0]


def test_hub_serve_hands_uvicorn_the_json_configuration() -> None:
    config = logging_dict(Settings(log_format="json", log_level="WARNING"))
    assert config["formatters"]["hub"]["()"] == "hub.logs.JsonFormatter"
    assert config["root"]["level"] == "WARNING"
    assert config["loggers"]["uvicorn.access"]["propagate"] is True

    import hub.cli

    assert "log_config=logging_dict(settings)" in Path(hub.cli.__file__).read_text()


def test_names_of_the_message_at_hand_are_masked_in_every_line_and_read_only_when_needed() -> None:
    """Known names (the packet's name fields, read lazily) masked whole, whatever the case, accents and spacing;
    a lone name part is not (``An`` is also a word); ID-shaped digits as before; lines outside any message as
    before."""
    from hub import packets
    from hub.logs import mask_personal, personal_names

    reads: list[int] = []

    def names() -> list[str]:
        reads.append(1)
        return personal_names(packets.to_element(packets.example("citizen.record")))

    def emit(logger: logging.Logger) -> None:
        with log_context(message_id="m-1", names=names):
            logger.warning("partner: ho ten NGUYEN  VAN AN sai; chu ho Nguyễn Văn Bình; An error 001090001234")
            logger.info("second line")
        logger.info("outside: Nguyễn Văn An")

    with log_context(names=names):
        pass
    assert reads == []  # nothing logged: nothing parsed
    first, second, third = _json_lines(emit)
    assert first["msg"] == "partner: ho ten N***** V** A* sai; chu ho N***** V** B***; An error ********1234"
    assert second["msg"] == "second line" and reads == [1]  # read once per context
    assert third["msg"] == "outside: Nguyễn Văn An"
    assert mask_personal("Nguyễn Văn An đã nộp", ["Nguyễn Văn An"]) == "N***** V** A* đã nộp"


def test_personal_ids_are_masked_but_digests_are_left_whole() -> None:
    digest = "73d004048d77957a81142b2ad7492a99dddcdfe65e557946016490d65648b8d6"  # holds a 12-digit run
    masked = mask_ids(f"SoDinhDanh 001203012345, CMND 123456789, sha256={digest}")
    assert masked == f"SoDinhDanh ********2345, CMND *****6789, sha256={digest}"


def test_a_message_id_whose_last_group_holds_nine_digits_is_left_whole() -> None:
    """A random UUID's last group can hold a 9-digit run (``…-712999863cdd``): it is an id to search the logs by,
    not a personal ID (masked, the operator page's trace and the tests could not find the message's lines)."""
    message_id = "ad8eb6fe-c3f9-499f-bf7c-712999863cdd"
    assert mask_ids(f"message_id={message_id} CMND 123456789") == f"message_id={message_id} CMND *****6789"


def test_the_scrape_config_sends_a_bearer_token_and_loads_the_alert_rules() -> None:
    """/metrics needs a key unless configured public: the shipped scrape job sends one the way it accepts it; the
    workers' metrics ports are scraped too (the target-down alert watches every ``lienthong*`` job)."""
    config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"lienthong", "lienthong-worker"}
    job = jobs["lienthong"]
    assert job["metrics_path"] == "/metrics" and job["authorization"]["type"] == "Bearer"
    assert job["authorization"]["credentials_file"] and config["rule_files"] == [ALERTS.name]
