"""Schemathesis against the app's own OpenAPI schema: generated requests, valid and not, to every
route, with auth off and on. No 5xx, every status the schema's, every media type declared.

`make test` runs STREAMFN_FUZZ_EXAMPLES (default 80) per operation, a quick slice of about two
thousand requests in all; `make fuzz` runs 5,000 per operation. With auth on, where the gate
answers before the body is read, a quarter of that.

The checks include schemathesis's response conformance (every body of its documented schema,
SSE events included) and its data checks: a body of the schema is not refused as malformed, a
body outside it is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from streamfn.app import create_app
from streamfn.providers.registry import builtin_specs
from streamfn.settings import Settings

EXAMPLES = int(os.environ.get("STREAMFN_FUZZ_EXAMPLES", "80"))
# One operation is a few hundred requests, whose generation alone takes close to the suite's
# 60 s on a loaded two-core machine (the AI SDK's parts, which take any JSON): a limit of their
# own, in proportion to the examples (a marker overrides `make fuzz`'s --timeout).
pytestmark = pytest.mark.timeout(max(300, EXAMPLES * 3 // 2))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
    allow_header_conformance,
]
# A body of the schema may still be refused as content that cannot be used: an unknown provider
# or model, a tool result that answers no call, an image that is not one. That is a 400 naming
# the field; a 422 says the body is not of the schema, so a valid one must never get it.
ACCEPTED = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
CHECKS_CONFIG = {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}

# "testserver" is the host Starlette's test client (schemathesis's ASGI transport) sends.
open_settings = Settings(
    auth="none",  # off by name: a server named for other hosts asks for keys by default
    echo_delay_ms=0,
    max_tokens_cap=8,  # every answer streamed, none of them long
    usage_records=False,
    keepalive_s=0,
    allowed_hosts=["testserver"],
)
# Only the offline provider: what is fuzzed is streamfn, not whether an Ollama happens to run
# here (`"provider": "ollama"` would be its 502, an upstream that is not there).
open_app = create_app(
    open_settings,
    providers=[s for s in builtin_specs(open_settings) if s.name == "echo"],
)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", open_app, config=schemathesis.Config.from_dict({"checks": CHECKS_CONFIG})
)


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
# The gate refuses before a body is read: the coverage phase's boundary values (a few hundred an
# operation) have nothing to find here, and a quarter of the fuzzing phase's bodies suffice.
guarded = schemathesis.openapi.from_asgi(
    "/openapi.json",
    guarded_app,
    config=schemathesis.Config.from_dict(
        {"checks": CHECKS_CONFIG, "phases": {"coverage": {"enabled": False}}}
    ),
)


@guarded.parametrize()
@hypothesis_settings(
    max_examples=max(1, EXAMPLES // 4), deadline=None, suppress_health_check=list(HealthCheck)
)
def test_without_credentials_nothing_spends_and_nothing_fails(case: schemathesis.Case) -> None:
    response = case.call_and_validate(checks=CHECKS)
    if case.path in ("/chat/stream", "/api/chat") or case.path.startswith("/v1/"):
        # Refused before the gate as well: 204, OPTIONS; 405, a method the path does not take;
        # 415, a body not sent as JSON.
        assert response.status_code in (401, 204, 405, 415), response.status_code
