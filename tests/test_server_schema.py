"""Property-based: schemathesis generates requests from /openapi.json against a real server and checks
(valid and invalid ones) that none gets a 500 and every response (status, content type, body) matches the schema."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serving import running

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 6  # per operation: enough to find a 500 in CI time (about 35 operations)


def test_api_matches_its_schema(tmp_path: Path) -> None:
    with running(tmp_path / "vault") as url:
        # NOTE: some data, so generated ids and names sometimes hit something
        httpx.post(f"{url}/v1/collections/docs/units", json={"texts": ["alpha beta", "gamma"], "ids": ["u1", "u2"]})
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(path="/v1/witness/stream")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 30
        checked = 0
        for operation, mode in itertools.product(operations, (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            def conforms(case: schemathesis.Case) -> None:
                case.call_and_validate(checks=CHECKS)

            try:
                conforms()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise  # NOTE: only an operation without parameters has no invalid input to make
                checked -= 1
            checked += 1
        assert checked > len(operations)  # every operation, and invalid input for those that take any
