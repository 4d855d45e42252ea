"""Property-based run of schemathesis against the API's own OpenAPI document, in process (ASGI).

Every operation gets a bounded number of generated requests (``MAX_EXAMPLES``) with the admin key, some with
invalid parameters or bodies (schemathesis' negative mode), and a few without a key. Every answer must not be a
5xx and must conform to the document: a documented status code, a documented content type, and a body that
matches the documented schema. Failures of every operation are collected and reported together.

(Driven through ``APIOperation.as_strategy`` and hypothesis rather than ``schemathesis.pytest.from_fixture``,
whose lazy loader reads a pytest-internal attribute that pytest 9.2 no longer has.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
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

ADMIN_KEY = "admin-secret-key"
MAX_EXAMPLES = 25  # per operation with the admin key
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
ADMIN = {"X-Api-Key": ADMIN_KEY}
RUNS = (  # (name, examples per operation, headers, generation mode)
    ("admin", MAX_EXAMPLES, ADMIN, GenerationMode.POSITIVE),
    ("admin, invalid input", 10, ADMIN, GenerationMode.NEGATIVE),
    ("no key", 5, None, GenerationMode.POSITIVE),
)


def has_inputs(operation) -> bool:
    """Whether the operation takes anything besides the API key header."""
    params = [p for p in operation.iter_parameters() if p.name != "X-Api-Key"]
    return bool(params) or bool(list(operation.body))


@pytest.fixture
def api_schema(tmp_path: Path):
    app = create_app(
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
