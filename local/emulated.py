"""What the emulator knows of an invocation, an execution environment and what happened."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

API = "/2018-06-01/runtime"
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\0" * 8
# https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html: "The Init phase
# is limited to 10 seconds. If all three tasks do not complete within 10 seconds, Lambda retries
# the Init phase at the time of the first function invocation with the configured function
# timeout."
INIT_LIMIT_S = 10
# Lambda Managed Instances: "initialization can take up to 15 minutes. The timeout is the maximum
# of 130 seconds or the configured function timeout (up to 900 seconds)"
# (lambda-managed-instances-execution-environment.html, "Init phase").
MANAGED_INIT_LIMIT_S = 130
ERROR_TYPE = "lambda-runtime-function-error-type"
ERROR_BODY = "lambda-runtime-function-error-body"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


@dataclass
class Invocation:
    request_id: str
    event: dict[str, Any]
    timeout_s: float
    # Set when a runtime takes the invocation: the function's timeout runs from the invoke,
    # not from the init before it, which has its own limit (INIT_LIMIT_S).
    deadline_ms: int | None = None
    init_limit_s: float = INIT_LIMIT_S
    # One attempt of the request, sent with `next` as Lambda-Runtime-Invocation-Id; the runtime
    # echoes it on the attempt's response or error.
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # Managed Instances: past its deadline Lambda has failed it, but the runtime runs on; its late
    # answer is refused (410).
    timed_out: bool = False
    created: float = field(default_factory=time.time)
    # The X-Ray header Lambda passes on with active tracing: a root, a parent, sampled.
    trace_id: str = field(
        default_factory=lambda: (
            f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};"
            f"Parent={uuid.uuid4().hex[:16]};Sampled=1"
        )
    )
    # What the runtime sent, for the HTTP client: ("prelude", dict), ("data", bytes),
    # ("end", trailers), ("error", document).
    outbox: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    environment: Environment | None = None  # the one serving it

    def take(self) -> int:
        """The deadline, from now: a runtime has taken the invocation."""
        self.deadline_ms = int((time.time() + self.timeout_s) * 1000)
        return self.deadline_ms

    def ends_at(self) -> float:
        """When Lambda ends it: its deadline once taken; before that, once an init that
        outlived its limit has been retried within the invoke's timeout."""
        if self.deadline_ms is not None:
            return self.deadline_ms / 1000
        return self.created + self.init_limit_s + self.timeout_s


@dataclass
class Record:
    """What happened, for tests: Runtime API calls in order, errors, trailers, violations."""

    # (time.monotonic(), what, request id); "asked" is the runtime's GET .../next arriving,
    # "next" that GET being answered with an invocation.
    calls: list[tuple[float, str, str]] = field(default_factory=list)
    invocation_errors: list[dict[str, Any]] = field(default_factory=list)
    init_errors: list[dict[str, Any]] = field(default_factory=list)
    restore_errors: list[dict[str, Any]] = field(default_factory=list)
    trailers: dict[str, dict[str, str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    runtime_starts: int = 0
    throttled: int = 0  # requests answered 429: every environment busy at the concurrency limit
    oversized: int = 0  # requests answered 413: an event over the 6 MB invocation payload
    preflights: int = 0  # answered by the URL's CORS settings, without an invocation
    logs: list[str] = field(default_factory=list)
    trace_ids: dict[str, str] = field(default_factory=dict)  # request id -> X-Ray header
    deadlines: dict[str, int] = field(default_factory=dict)  # request id -> deadline (ms)
    # request id -> the Lambda-Runtime-Invocation-Id sent with it, and the ones its response and
    # error requests carried (None: the header was missing).
    invocation_ids: dict[str, str] = field(default_factory=dict)
    echoed: dict[str, list[str | None]] = field(default_factory=dict)
    late: int = 0  # answers refused with 410: their invocation had timed out (Managed Instances)


@dataclass(eq=False)
class Environment:
    """One execution environment: a runtime process with a Runtime API of its own, serving one
    invocation at a time, or with `max_concurrency` (Lambda Managed Instances) up to that many."""

    number: int
    max_concurrency: int | None = None  # set: AWS_LAMBDA_MAX_CONCURRENCY of its runtime
    pending: asyncio.Queue[Invocation] = field(default_factory=asyncio.Queue)
    waiting: int = 0  # the runtime's `next` requests waiting for an invocation
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # its first `next` came
    server: asyncio.Server | None = None
    port: int = 0
    child: asyncio.subprocess.Process | None = None
    busy: bool = False  # an invocation is assigned to it and not finished
    gone: bool = False  # stopped, timed out or exited: never assigned again
    restore: asyncio.Event = field(default_factory=asyncio.Event)  # SnapStart's restore signal
    restored: bool = False
    log_task: asyncio.Future[None] | None = None

    @property
    def idle(self) -> int:
        """Runtime loops waiting in `next` with no invocation yet put their way: Lambda Managed
        Instances hand an invocation only to one of those ("no idle runtimes" is refused: AWS's
        Runtime Interface Emulator, internal/lambda-managed-instances/invoke/invoke_router.go)."""
        return self.waiting - self.pending.qsize()


def function_url_event(
    method: str,
    path: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    source_ip: str,
    host: str,
) -> dict[str, Any]:
    """A function URL request event, payload format 2.0, as AWS builds it
    (https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html#urls-payloads)."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    params: dict[str, str] = {}
    for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    content_type = joined.get("content-type", "")
    try:
        text = body.decode("utf-8")
        is_text = not body or content_type.startswith(TEXT_TYPES)
    except UnicodeDecodeError:
        is_text = False
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query.decode("latin-1"),
        "headers": joined,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "localfunctionurl",
            "domainName": host,
            "domainPrefix": "localfunctionurl",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": not is_text,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        event["body"] = text if is_text else base64.b64encode(body).decode()
    return event
