"""schemathesis over /api: no generated request, valid or not, gets a server error.
GEO_SCHEMATHESIS_EXAMPLES per operation and mode (50 in `make test`; `make fuzz` runs more)."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

EXAMPLES = int(os.environ.get("GEO_SCHEMATHESIS_EXAMPLES", "50"))
FIXED = "GEO_SCHEMATHESIS_EXAMPLES" not in os.environ  # make test: the same cases each run


def test_no_server_error_on_any_generated_request(server: str) -> None:
    schema = schemathesis.openapi.from_url(f"{server}/api")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    checked: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=FIXED, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                response = case.call(timeout=60)
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} {case.query}: "
                    f"{response.status_code} {response.text[:300]}")

            try:
                check()
            except Unsatisfiable:
                # an operation without parameters has no invalid variant to generate
                assert mode is GenerationMode.NEGATIVE and not operation.query
                checked.append(f"{operation.label} (no invalid input possible)")
            else:
                checked.append(f"{operation.label} {mode.value}")
    assert len(checked) == 2 * len(operations)
