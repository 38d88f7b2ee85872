"""A fake Amazon Bedrock runtime: ConverseStream's `application/vnd.amazon.eventstream` answers,
byte for byte, behind Bedrock's own checks of SigV4 signatures and Bedrock API keys.

Written from the specifications, not from streamfn's code:

- framing, AWS's event stream encoding (https://docs.aws.amazon.com/transcribe/latest/dg/
  event-stream.html; tests/unit/test_bedrock_eventstream.py proves `frame` against botocore's
  decoder): prelude (total length, headers length: big-endian uint32), its CRC32, headers
  (uint8 name length, name, type 7 = string, uint16 value length, value), payload, CRC32 of all
  before it;
- events, the bedrock-runtime service model (botocore/data/bedrock-runtime/2023-09-30/
  service-2.json, ConverseStreamOutput): headers `:event-type`, `:content-type`
  application/json, `:message-type` event, in the order Bedrock sends them; payloads compact
  JSON with sorted keys and Bedrock's `p` member, random padding against length side channels;
  what real servers do: no `contentBlockStart` for text or reasoning blocks (only for
  `toolUse`), a first empty `toolUse.input`, `metadata` with usage after `messageStop`;
  failures inside the stream are `:message-type` exception messages;
- errors before the stream, restJson1: the status, `x-amzn-ErrorType: Name:namespace`,
  `{"message"}`;
- signatures, SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html):
  the canonical request (each path segment URI-encoded twice, as for every service but S3),
  the credential scope `date/region/bedrock/aws4_request`, the signing key's HMAC chain.

`FakeBedrock` is a reply function for `tests.fakes.upstream.Upstream`. `python -m
tests.fakes.bedrock PORT` serves the benchmark's scripts (`serve`), named by the model id as
bench/upstream.py's are: `fast-N` is N text deltas (token i is `t<i> `) as fast as the socket
takes them, `pace-R-N` N of them at R a second, `idle-N` N and then nothing until the client
goes, `big-N-S` N of S characters; frames are encoded once and reused.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import hmac
import json
import re
import struct
import sys
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote

from tests.fakes.upstream import Recorded, Reply
from tests.fakes.wire import CONVERSATION, SECRET, Wire

EVENTSTREAM = "application/vnd.amazon.eventstream"
REGION = "us-west-2"
ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fakeSECRETkey/bedrock+0123456789abcdefghij"
SESSION_TOKEN = "FakeSessionTOKEN//bedrock//IQoJb3JpZ2luX2VjE0123456789"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS1fake-SECRET-bedrock-api-key-0123456789"
MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"

# --- the event stream encoding ----------------------------------------------------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return (
        struct.pack("!B", len(raw_name))
        + raw_name
        + b"\x07"
        + struct.pack("!H", len(raw_value))
        + raw_value
    )


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event stream message with string headers."""
    block = b"".join(_header(n, v) for n, v in headers.items())
    prelude = struct.pack("!II", 16 + len(block) + len(payload), len(block))
    message = prelude + struct.pack("!I", zlib.crc32(prelude)) + block + payload
    return message + struct.pack("!I", zlib.crc32(message))


_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_pads = 0


def _pad() -> str:
    """Bedrock's `p`: a prefix of the alphabet of varying length (here deterministic)."""
    global _pads
    _pads += 1
    return _PADDING[: 5 + (_pads * 7) % 50]


def _json(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def event(name: str, body: Mapping[str, Any], *, pad: str | None = None) -> bytes:
    data = {**body, "p": _pad() if pad is None else pad}
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, _json(data))


def exception(name: str, message: str) -> bytes:
    """A failure inside the stream (one of ConverseStreamOutput's exception members)."""
    headers = {
        ":exception-type": name,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return frame(headers, _json({"message": message}))


def message_start() -> bytes:
    return event("messageStart", {"role": "assistant"})


def text(delta: str, index: int = 0) -> bytes:
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": delta}})


def block_stop(index: int) -> bytes:
    return event("contentBlockStop", {"contentBlockIndex": index})


def tool_start(index: int, tool_id: str, name: str) -> bytes:
    start = {"toolUse": {"name": name, "toolUseId": tool_id}}
    return event("contentBlockStart", {"contentBlockIndex": index, "start": start})


def tool_input(index: int, fragment: str) -> bytes:
    delta = {"toolUse": {"input": fragment}}
    return event("contentBlockDelta", {"contentBlockIndex": index, "delta": delta})


def reasoning(index: int, **delta: str) -> bytes:
    """A reasoningContent delta: `text=`, `signature=` or `redactedContent=` (base64)."""
    body = {"contentBlockIndex": index, "delta": {"reasoningContent": delta}}
    return event("contentBlockDelta", body)


def message_stop(reason: str = "end_turn") -> bytes:
    return event("messageStop", {"stopReason": reason})


def metadata(
    input_tokens: int = 11, output_tokens: int = 3, cache_read: int = 0, cache_write: int = 0
) -> bytes:
    usage: dict[str, int] = {
        "inputTokens": input_tokens,
        "outputTokens": output_tokens,
        "totalTokens": input_tokens + output_tokens + cache_read + cache_write,
    }
    if cache_read or cache_write:
        usage |= {"cacheReadInputTokens": cache_read, "cacheWriteInputTokens": cache_write}
    return event("metadata", {"metrics": {"latencyMs": 412}, "usage": usage})


def text_stream(
    tokens: list[str], reason: str = "end_turn", usage: tuple[int, int] = (11, 3)
) -> list[bytes]:
    """A whole answer as Bedrock streams text: no contentBlockStart."""
    return [
        message_start(),
        *(text(t) for t in tokens),
        block_stop(0),
        message_stop(reason),
        metadata(*usage),
    ]


# --- transcripts ------------------------------------------------------------------------------

SIGNATURE = "ErUBCkYIBRgCIkBmYWtlLXNpZ25hdHVyZS1vZi10aGUtdGhpbmtpbmc="
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"

# Claude with thinking on: a signed reasoning block, a redacted one, a sentence, then two
# parallel calls, the second of a tool that takes no input (no input delta at all); the first
# call's input in three fragments after an empty one; a network read that holds two messages
# and one cut in the middle of a message.
_call_w = tool_input(3, '{"city": "Pa')
THINKING_TWO_TOOLS = [
    message_start(),
    reasoning(0, text="Need the weather"),
    reasoning(0, text=" and the time."),
    reasoning(0, signature=SIGNATURE),
    block_stop(0),
    reasoning(1, redactedContent=REDACTED),
    block_stop(1),
    text("Checking both.", index=2),
    block_stop(2),
    tool_start(3, "tooluse_w0Xq2KdSRZm7v3Hc1Y8aIg", "get_weather"),
    tool_input(3, "") + tool_input(3, ""),
    _call_w[:20],
    _call_w[20:] + tool_input(3, 'ris"}'),
    block_stop(3),
    tool_start(4, "tooluse_t9Lm4NbVQyW2pXe7Rk3sAg", "get_time"),
    block_stop(4),
    message_stop("tool_use"),
    metadata(30, 12, cache_read=100, cache_write=20),
]

ANSWER = text_stream(["18C", " and", " noon."], usage=(40, 5))

# --- errors -----------------------------------------------------------------------------------

_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def error(status: int, name: str, message: str, *, key: str = "message") -> Reply:
    """An error response before the stream, as Bedrock's restJson1 protocol writes it."""
    return Reply(
        status=status,
        body=[json.dumps({key: message}).encode()],
        headers={"x-amzn-ErrorType": f"{name}:{_NAMESPACE}", "x-amzn-RequestId": "7f1e-fake"},
        content_type="application/json",
    )


# --- SigV4 and the Bearer key, checked as Bedrock checks them ---------------------------------

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sigv4_problem(
    request: Recorded,
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    session_token: str | None = SESSION_TOKEN,
    region: str = REGION,
    service: str = "bedrock",
) -> tuple[str, str] | None:
    """Why AWS would refuse the request's signature (the error's name and message), or None."""
    headers = request.headers
    match = _AUTHORIZATION.fullmatch(headers.get("authorization", ""))
    if match is None:
        return "IncompleteSignatureException", "Authorization header requires a signature."
    if match["service"] != service:
        return (
            "InvalidSignatureException",
            f"Credential should be scoped to correct service: '{service}'. ",
        )
    if match["region"] != region:
        return "InvalidSignatureException", "Credential should be scoped to a valid region. "
    if match["key"] != access_key:
        return (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    amz_date = headers.get("x-amz-date", "")
    signed = match["signed"].split(";")
    if not amz_date.startswith(match["date"]) or not {"host", "x-amz-date"} <= set(signed):
        return "IncompleteSignatureException", "Date and host must be signed."
    when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    if abs(time.time() - when.timestamp()) > 300:
        return "InvalidSignatureException", "Signature expired: the request time is too skewed."
    if session_token is not None and (
        headers.get("x-amz-security-token") != session_token or "x-amz-security-token" not in signed
    ):
        return (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    path, _, query = request.path.partition("?")
    # Every service but S3 encodes the (already encoded) path segments once more.
    canonical = "\n".join(
        [
            request.method,
            quote(path, safe="/-_.~"),
            query,
            "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in signed),
            match["signed"],
            hashlib.sha256(request.body).hexdigest(),
        ]
    )
    scope = f"{match['date']}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), match["date"])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        # AWS's own message, which quotes the canonical request: its session token too.
        return (
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.\n\nThe Canonical String for this request should have "
            f"been\n'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
        )
    return None


def bearer_problem(request: Recorded, api_key: str = API_KEY) -> tuple[str, str] | None:
    authorization = request.headers.get("authorization", "")
    if not authorization.startswith("Bearer "):
        return "IncompleteSignatureException", "Authorization header requires a signature."
    if not hmac.compare_digest(authorization, f"Bearer {api_key}"):
        return (
            "AccessDeniedException",
            "Authentication failed: Please make sure your API Key is valid.",
        )
    return None


# --- the fake server's replies ----------------------------------------------------------------

_PATH = re.compile(r"/model/(?P<model>[^/?]+)/converse-stream")
_FAST = re.compile(r"fast-(\d+)")


class FakeBedrock:
    """ConverseStream: each request's authorisation checked (SigV4 with the fake credentials
    by default, the Bearer key with `api_key=`), then answered with the next of `replies` (the
    last repeats): a transcript, a `Reply`, or a function of the request. The model id
    `fast-N` answers N text deltas whatever the replies."""

    def __init__(
        self,
        *replies: list[bytes] | Reply | Callable[[Recorded], Reply],
        api_key: str | None = None,
        session_token: str | None = SESSION_TOKEN,
    ) -> None:
        self.replies = list(replies) or [ANSWER]
        self.api_key = api_key
        self.session_token = session_token
        self.models: list[str] = []
        self.bodies: list[Any] = []
        self.refused: list[tuple[str, str]] = []

    def __call__(self, request: Recorded) -> Reply:
        if self.api_key is not None:
            problem = bearer_problem(request, self.api_key)
        else:
            problem = sigv4_problem(request, session_token=self.session_token)
        if problem is not None:
            self.refused.append(problem)
            return error(403, *problem, key="message")
        match = _PATH.fullmatch(request.path)
        if request.method != "POST" or match is None:
            return error(404, "UnknownOperationException", "")
        self.models.append(unquote(match["model"]))
        self.bodies.append(json.loads(request.body))
        if fast := _FAST.fullmatch(self.models[-1]):
            return Reply(body=list(fast_stream(int(fast[1]))), content_type=EVENTSTREAM)
        reply = self.replies[min(len(self.models), len(self.replies)) - 1]
        if callable(reply):
            return reply(request)
        if isinstance(reply, Reply):
            return reply
        return Reply(body=list(reply), content_type=EVENTSTREAM)


# --- the benchmark's scripts, frames made once --------------------------------------------------

_tokens: list[bytes] = []
_START = event("messageStart", {"role": "assistant"}, pad="abcdefghijklmnopqrstuvwxyzABCDEFGH")
_STOP = event("contentBlockStop", {"contentBlockIndex": 0}, pad="abcdefghijklmnopqrstu") + event(
    "messageStop", {"stopReason": "end_turn"}, pad="abcdefghijklm"
)
_ends: dict[int, bytes] = {}


def token_frame(i: int) -> bytes:
    """Text delta `t<i> `, encoded once."""
    while len(_tokens) <= i:
        n = len(_tokens)
        body = {"contentBlockIndex": 0, "delta": {"text": f"t{n} "}}
        _tokens.append(event("contentBlockDelta", body, pad=_PADDING[: 8 + n % 40]))
    return _tokens[i]


def end_frames(tokens: int) -> bytes:
    if tokens not in _ends:
        usage = {"inputTokens": 1, "outputTokens": tokens, "totalTokens": tokens + 1}
        _ends[tokens] = _STOP + event(
            "metadata", {"metrics": {"latencyMs": 1}, "usage": usage}, pad="abcdefghijkl"
        )
    return _ends[tokens]


def fast_stream(tokens: int) -> list[bytes]:
    return [_START, *(token_frame(i) for i in range(tokens)), end_frames(tokens)]


_HEAD = (
    f"HTTP/1.1 200 OK\r\ncontent-type: {EVENTSTREAM}\r\n"
    "transfer-encoding: chunked\r\nx-amzn-requestid: bench\r\n\r\n"
).encode()
_SCRIPT = re.compile(rb"POST /model/(fast|pace|idle|big)-(\d+)(?:-(\d+))?/converse-stream ")
_SCOPE = re.compile(
    rb"(?i)authorization: (AWS4-HMAC-SHA256 Credential=[^/]+/\d{8}/[^/]+/bedrock/aws4_request"
    rb"|Bearer )"
)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def big_frame(i: int, size: int) -> bytes:
    """Text delta `t<i> ` padded with `x` to `size` characters (made per use: `big` scripts
    measure memory, not speed)."""
    text = f"t{i} "
    body = {"contentBlockIndex": 0, "delta": {"text": text + "x" * (size - len(text))}}
    return event("contentBlockDelta", body, pad="abcdefgh")


class _Paced:
    """Every paced stream, written at each tick of one timer per rate (as bench/upstream.py
    paces: a timer per stream would load the shared cores more than the servers measured)."""

    def __init__(self) -> None:
        self.streams: dict[int, set[_Bench]] = {}

    def add(self, rate: int, stream: _Bench) -> None:
        if rate not in self.streams:
            self.streams[rate] = set()
            asyncio.get_running_loop().create_task(self._tick(rate))
        self.streams[rate].add(stream)

    async def _tick(self, rate: int) -> None:
        period, next_at = 1 / rate, time.monotonic()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            for stream in list(self.streams[rate]):
                if not stream.step():
                    self.streams[rate].discard(stream)


class _Bench(asyncio.Protocol):
    """One connection of the benchmark's fake: requests read whole, one answer at a time.
    `fast-N`: N tokens as fast as the socket takes them; `pace-R-N`: N at R a second;
    `idle-N`: N, then nothing until the client goes; `big-N-S`: N of S characters, fast."""

    def __init__(self, paced: _Paced) -> None:
        self.paced = paced
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.resumed: asyncio.Future[None] | None = None
        self.sent = self.total = self.size = 0
        self.idle = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, _exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        if not sep or len(rest) < (needed := int(length[1]) if length else 0):
            return
        self.buffer = rest[needed:]
        script = _SCRIPT.match(head)
        if self.transport is None:
            return
        if script is None or _SCOPE.search(head) is None:
            body = b'{"message":"unknown script, or not signed for bedrock"}'
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"x-amzn-ErrorType: ValidationException\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            return
        kind, first, second = script[1], int(script[2]), int(script[3] or 0)
        self.sent, self.size, self.idle = 0, 0, False
        self.transport.write(_HEAD + _chunk(_START))
        if kind in (b"fast", b"big"):
            self.total, self.size = first, second if kind == b"big" else 0
            asyncio.get_running_loop().create_task(self._fast())
        elif kind == b"pace":
            self.total = second
            self.paced.add(first, self)
        else:  # idle
            self.total, self.idle = first, True
            while self.step():
                pass

    def _frame(self, i: int) -> bytes:
        return big_frame(i, self.size) if self.size else token_frame(i)

    async def _fast(self) -> None:
        """One write per token, yielding to the loop between them, as a server generating
        tokens does; the reader's socket coalesces them when it reads slower."""
        while self.transport is not None and self.sent < self.total:
            self.transport.write(_chunk(self._frame(self.sent)))
            self.sent += 1
            await asyncio.sleep(0)
            if self.paused:
                self.resumed = asyncio.get_running_loop().create_future()
                await self.resumed
        self._end()

    def step(self) -> bool:
        """Send the next token; False once the stream is over (or, idle, has gone quiet)."""
        if self.transport is None:
            return False
        if self.sent < self.total:
            self.transport.write(_chunk(self._frame(self.sent)))
            self.sent += 1
            return True
        if not self.idle:
            self._end()
        return False

    def _end(self) -> None:
        if self.transport is not None:
            self.transport.write(_chunk(end_frames(self.total)) + b"0\r\n\r\n")


async def serve(port: int, ready: Callable[[int], None] | None = None) -> None:
    """The benchmark's fake Bedrock on 127.0.0.1:`port` (0: any), until cancelled."""
    for i in range(2000):  # the frames of the first 2,000 tokens, before any request
        token_frame(i)
    paced = _Paced()  # one per server: its timers run on this loop
    connections: set[_Bench] = set()

    def accept() -> _Bench:
        connection = _Bench(paced)
        connections.add(connection)
        return connection

    server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", port, backlog=8192)
    if ready is not None:
        ready(server.sockets[0].getsockname()[1])
    try:
        async with server:
            await server.serve_forever()
    finally:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()


if __name__ == "__main__":
    import uvloop

    def _ready(port: int) -> None:
        sys.stdout.write(f"ready {port}\n")
        sys.stdout.flush()

    uvloop.run(serve(int(sys.argv[1]), _ready))


# --- pointing streamfn at the fake --------------------------------------------------------------


def environment(
    monkeypatch: Any, tmp_path: Any, endpoint: str | None = None, *, api_key: bool = False
) -> None:
    """The process's AWS environment as a deployment of streamfn would have it, with the fake's
    credentials (or its Bedrock API key), and nothing of this machine's: no shared files, no
    metadata service (botocore's chain would otherwise try 169.254.169.254)."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_LAMBDA_FUNCTION_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", REGION)
    if endpoint is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint)
    if api_key:
        monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", API_KEY)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK", raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


# --- described as the shared provider tests describe every wire ---------------------------------


def _check_request(request: Recorded) -> None:
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    body = request.json()
    assert body["system"] == [{"text": "You are terse."}]
    assert body["messages"] == [
        {"role": m["role"], "content": [{"text": m["content"]}]}
        for m in CONVERSATION
        if m["role"] != "system"
    ]
    assert body["inferenceConfig"] == {
        "maxTokens": 50,
        "temperature": 0.5,
        "stopSequences": ["STOP"],
    }


BEDROCK = Wire(
    name="bedrock",
    path="/model/bedrock-test-model/converse-stream",
    content_type=EVENTSTREAM,
    # A Bedrock API key: a setting like the other providers' keys (SigV4 needs the environment).
    settings=lambda url: {
        "bedrock_bearer_token": SECRET,
        "bedrock_endpoint_url": url,
        "aws_region": REGION,
    },
    stream=text_stream,
    head=[message_start()],
    token=text,
    mid_error=exception("serviceUnavailableException", "Overloaded"),
    mid_error_type="overloaded",
    malformed=text("broken")[:-1] + b"\x00",  # its CRC does not match
    status_error=lambda m: json.dumps({"message": m}).encode(),
    check_request=_check_request,
)
