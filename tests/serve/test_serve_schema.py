"""Property-based API tests with schemathesis over the app's own OpenAPI schema: for schema-valid
and schema-violating input alike, never a 5xx, a violating input is refused with a 4xx, and
every answer (success or error) has a declared status, content type and body shape."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from shopsearch.serve.app import create_app

TOKEN = "s3cret-admin-token"
PRODUCT = "/products/{domain}/{product_id}"
OPERATIONS = [
    ("GET", "/search"),
    ("GET", "/suggest"),
    ("GET", "/domains"),
    ("GET", "/health"),
    ("POST", "/events"),
    ("GET", PRODUCT),
    ("PUT", PRODUCT),
    ("DELETE", PRODUCT),
    ("POST", "/admin/reload"),
    ("GET", "/metrics"),
]
#: Operations with inputs get schema-violating cases too (the others have nothing to violate).
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE)
    for m, p in OPERATIONS
    if p not in ("/domains", "/health", "/metrics")
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_is_fuzzed(workspace, config):
    spec = create_app(workspace, config()).openapi()
    declared = {(m.upper(), path) for path, item in spec["paths"].items() for m in item}
    assert declared == set(OPERATIONS)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_fuzzed_requests_never_fail_and_match_the_schema(workspace, config, method, path, mode):
    app = create_app(workspace, config(), compact_every_s=3600)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = schema[path][method]
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=30,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks)

    with TestClient(app):  # runs the lifespan: the event log is open while the cases call
        fuzz()
