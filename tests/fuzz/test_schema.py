"""Schemathesis against the app's own OpenAPI schema: generated requests, valid and not, to every
route, with auth off and on. No 5xx, every status the schema's, every media type declared.

`make test` runs STREAMFN_FUZZ_EXAMPLES (default 200) per operation, a few thousand requests in
all; `make fuzz` runs 5,000 per operation.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from streamfn.app import create_app
from streamfn.settings import Settings

EXAMPLES = int(os.environ.get("STREAMFN_FUZZ_EXAMPLES", "200"))
# One operation is a few hundred requests, whose generation alone takes close to the suite's
# 60 s on a loaded two-core machine (the AI SDK's parts, which take any JSON): a limit of their
# own, in proportion to the examples (a marker overrides `make fuzz`'s --timeout).
pytestmark = pytest.mark.timeout(max(300, EXAMPLES * 3 // 2))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]

# "testserver" is the host Starlette's test client (schemathesis's ASGI transport) sends.
open_app = create_app(
    Settings(echo_delay_ms=0, usage_records=False, keepalive_s=0, allowed_hosts=["testserver"])
)
schema = schemathesis.openapi.from_asgi("/openapi.json", open_app)


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_and_every_status_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS)


# The same routes with auth on and no credentials: every request that would spend is refused
# with a documented 401, however malformed.
guarded_app = create_app(
    Settings(
        auth="api_key",
        # Beside the tests' usage file, in the directory tests/conftest.py removes at the end.
        keys_db=Path(os.environ["STREAMFN_USAGE_DB"]).parent / "fuzz-keys.sqlite3",
        usage_records=False,
        allowed_hosts=["testserver"],
    )
)
guarded = schemathesis.openapi.from_asgi("/openapi.json", guarded_app)


@guarded.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_without_credentials_nothing_spends_and_nothing_fails(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    if case.path in ("/chat/stream", "/api/chat") or case.path.startswith("/v1/"):
        # Refused before the gate as well: 204, OPTIONS; 415, a body not sent as JSON.
        assert response.status_code in (401, 204, 415), response.status_code
