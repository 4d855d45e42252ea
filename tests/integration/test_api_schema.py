"""Property-based run of schemathesis against the API's own OpenAPI document, in process (ASGI).

Every operation gets a bounded number of generated requests (``MAX_EXAMPLES``) with the admin key, some with
invalid parameters or bodies (schemathesis' negative mode), and a few without a key. Every answer must not be a
5xx and must conform to the document: a documented status code, a documented content type, and a body that
matches the documented schema. Failures of every operation are collected and reported together.

(Driven through ``APIOperation.as_strategy`` and hypothesis rather than ``schemathesis.pytest.from_fixture``,
whose lazy loader reads a pytest-internal attribute that pytest 9.2 no longer has.)
"""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from lxml import etree
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hub.api import create_app
from hub.config import Settings
from hub.registry import loads_spec, parse_spec

ADMIN_KEY = "admin-secret-key"
# Per operation with the admin key: 15 in `make test` (the whole run costs ~13 s of CPU on one test process);
# LIENTHONG_API_SCHEMA_EXAMPLES=100 for a deeper search before a release.
MAX_EXAMPLES = int(os.environ.get("LIENTHONG_API_SCHEMA_EXAMPLES", "15"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ADMIN = {"X-Api-Key": ADMIN_KEY}
RUNS = (  # (name, examples per operation, headers, generation mode)
    ("admin", MAX_EXAMPLES, ADMIN, GenerationMode.POSITIVE),
    ("admin, invalid input", max(4, MAX_EXAMPLES * 2 // 5), ADMIN, GenerationMode.NEGATIVE),
    ("no key", max(2, MAX_EXAMPLES // 5), None, GenerationMode.POSITIVE),
)


def has_inputs(operation) -> bool:
    """Whether the operation takes anything besides the API key header."""
    params = [p for p in operation.iter_parameters() if p.name != "X-Api-Key"]
    return bool(params) or bool(list(operation.body))


def make_app(tmp_path: Path):
    return create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'hub.db'}",
            data_dir=tmp_path / "var",
            hub_code="000.00.00.H00",
            admin_api_key=ADMIN_KEY,
            operator_api_key="operator-secret-key",
            max_message_bytes=64 * 1024,
            log_format="console",
        )
    )


@pytest.fixture
def api_schema(tmp_path: Path):
    app = make_app(tmp_path)
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan (HubService) runs from the first request until here


def run_operation(operation, examples: int, headers: dict[str, str] | None, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case) -> None:
        if headers is None and case.headers:
            case.headers.pop("X-Api-Key", None)
        case.call_and_validate(checks=CHECKS, headers=headers)

    check()


def test_api_conforms_to_its_openapi_document(api_schema) -> None:
    failures: dict[str, str] = {}
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for name, examples, headers, mode in RUNS:
            if mode is GenerationMode.NEGATIVE and not has_inputs(operation):
                continue  # nothing to make invalid
            try:
                run_operation(operation, examples, headers, mode)
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: collect it, go on with the others
                failures[f"{operation.label} ({name})"] = str(exc)
    assert "POST /api/v1/messages" in labels and "GET /api/v1/dossiers/{code}" in labels
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())


# --- the document itself and the pages that show it (no lifespan: neither needs the store nor the broker) ---


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(make_app(tmp_path))


@pytest.fixture
def document(client: TestClient) -> dict:
    return client.get("/openapi.json").json()


def operations(document: dict) -> dict[str, dict]:
    return {f"{m.upper()} {path}": op for path, ops in document["paths"].items() for m, op in ops.items()}


def test_every_operation_has_a_unique_snake_case_operation_id(document: dict) -> None:
    ids = {label: op.get("operationId") for label, op in operations(document).items()}
    assert len(ids) >= 15
    missing = [label for label, oid in ids.items() if not oid]
    assert not missing, f"operations without an operationId: {missing}"
    malformed = {label: oid for label, oid in ids.items() if not re.fullmatch(r"[a-z]+(_[a-z]+)*", oid)}
    assert not malformed, f"not snake_case (FastAPI's generated ids name the path and method): {malformed}"
    assert len(set(ids.values())) == len(ids), f"operationIds not unique: {sorted(ids.values())}"
    assert ids["POST /api/v1/messages"] == "submit_message"
    assert ids["GET /api/v1/dead-letters"] == "list_dead_letters"


def test_posting_a_connector_or_a_lookup_documents_a_request_example_the_hub_understands(document: dict) -> None:
    connector = document["paths"]["/api/v1/connectors"]["post"]["requestBody"]["content"]
    from_yaml = loads_spec(connector["application/yaml"]["example"], source="example")
    from_json = parse_spec(json.loads(json.dumps(connector["application/json"]["example"])), source="example")
    assert from_yaml == from_json and from_yaml is not None
    lookup = document["paths"]["/api/v1/lookups"]["post"]
    for media, content in lookup["requestBody"]["content"].items():
        root = etree.fromstring(content["example"].encode())
        assert root.findtext("{*}header/{*}messageType") == "citizen.lookup", media
        for field in ("officerId", "dossierCode", "purpose"):  # what a lookup is refused without (422)
            assert root.findtext(f"{{*}}body/{{*}}citizenLookup/{{*}}{field}"), (media, field)
    answer = etree.fromstring(lookup["responses"]["200"]["content"]["application/xml"]["example"].encode())
    assert answer.findtext("{*}header/{*}messageType") == "citizen.record"


def test_every_operation_that_can_fail_documents_its_errors_as_problems(document: dict) -> None:
    never_fail = {"check_liveness", "list_message_types"}
    # The payment callback answers in the platform's own JSON, not problem+json (hub.api.routes.payments); so do
    # VBDLIS steps ({Result, Message}, hub.api.routes.vbdlis).
    own_format = {"confirm_payment", "vbdlis_step"}
    for label, op in operations(document).items():
        if op["operationId"] in never_fail:
            continue
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert errors, f"{label} documents no error"
        if op["operationId"] in own_format:
            continue
        for code, response in errors.items():
            assert "application/problem+json" in response.get("content", {}), f"{label} {code}"
        keyed = any(p["name"] == "X-Api-Key" for p in op.get("parameters", []))
        if keyed:
            assert "401" in errors, f"{label} takes a key but documents no 401"
        if keyed and op["operationId"] != "get_metrics":
            assert "503" in errors, f"{label} reads the store but documents no 503"


def test_listing_limits_are_documented(document: dict) -> None:
    limits = [
        (label, p)
        for label, op in operations(document).items()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    ]
    assert {label for label, _ in limits} >= {"GET /api/v1/dead-letters", "GET /api/v1/lookups"}
    for label, parameter in limits:
        assert parameter.get("description"), label
        assert parameter["schema"]["maximum"] >= parameter["schema"]["minimum"] >= 1, label


class _References(HTMLParser):
    """Every URL a page makes the browser load: ``src`` of scripts, ``href`` of stylesheets and icons."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        for name in ("src", "href"):
            if found.get(name):
                self.urls.append(found[name] or "")


ASSET_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_everything_from_the_hub(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    parser = _References()
    parser.feed(answer.text)
    assert parser.urls, "the page references no asset"
    assert not re.search(r"https?://|//[a-z]", answer.text), "the page names another origin (a CDN)"
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        suffix = Path(url).suffix
        assert asset.status_code == 200, url
        assert ASSET_TYPES[suffix] in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 1000, url
    assert "/openapi.json" in answer.text
    assert client.get("/openapi.json").status_code == 200


def test_the_docs_pages_follow_the_root_path_of_a_reverse_proxy(tmp_path: Path) -> None:
    client = TestClient(make_app(tmp_path), root_path="/hub")
    parser = _References()
    parser.feed(client.get("/docs").text)
    assert parser.urls and all(url.startswith("/hub/docs/assets/") for url in parser.urls), parser.urls


def test_every_json_example_conforms_to_its_schema(document: dict) -> None:
    """An example that drifted from its model would teach integrators a wrong shape."""
    from jsonschema import Draft202012Validator

    checked, wrong = [], {}
    for label, op in operations(document).items():
        media = [(f"{code} answer", r.get("content", {})) for code, r in op["responses"].items()]
        media.append(("request", op.get("requestBody", {}).get("content", {})))
        for where, content in media:
            for media_type, entry in content.items():
                if "json" not in media_type or "example" not in entry or "schema" not in entry:
                    continue
                schema = {**entry["schema"], "components": document["components"]}
                errors = [e.message for e in Draft202012Validator(schema).iter_errors(entry["example"])]
                checked.append(f"{label} {where}")
                if errors:
                    wrong[f"{label} {where} ({media_type})"] = errors
    assert not wrong, wrong
    for expected in ("GET /api/v1/dead-letters 200 answer", "GET /api/v1/messages/{message_id} 200 answer",
                     "POST /api/v1/connectors 201 answer", "POST /api/v1/connectors request"):  # fmt: skip
        assert expected in checked, checked
