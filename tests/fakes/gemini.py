"""A fake Gemini API: its SSE wire format byte for byte, and the checks its server makes.

`POST /v1beta/models/{model}:streamGenerateContent?alt=sse` with the key in `x-goog-api-key`
answers `text/event-stream`: each event one `GenerateContentResponse` JSON object, written as
Google's frontend writes it (`": "` after a key, `,` alone between members, non-ASCII as is) and
ended by CRLF CRLF, no terminator event. These transcripts follow recorded responses of the
real API (vercel/ai packages/google/src/__fixtures__: google-stream-gemini-3.7-flash-*.chunks.txt,
issue-18073-empty-text-thought-signature, issue-10781, issue-19758-prompt-block,
google-429-retry-info.json; junjihashimoto/louter test-data/gemini/streaming*), including what
a naive client trips on: `usageMetadata` on every chunk, a last part of empty text that carries
only a `thoughtSignature`, a call's signature on the first of parallel calls only, a refused
prompt as a lone `promptFeedback` chunk.

`checks_signatures` answers as the real API does on a later turn: the first `functionCall` of
each step of the current turn must carry its signature back (else the 400 Gemini 3 answers),
and a signature must be one it issued, in either base64 alphabet (google-genai writes the
URL-safe one), or the documented `skip_thought_signature_validator`.

For `make bench`, `python tests/fakes/gemini.py PORT` serves the same scripts as
bench/upstream.py, named by the model in the path: `fast-N` (N chunks as fast as the socket takes
them), `pace-R-N`, `idle-N`, `big-N-S`; chunk i's text is `t<i> `. Its bytes are made once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (the benchmark): the repository on the path
    sys.path.insert(0, str(Path(__file__).parents[2]))

from tests.fakes.upstream import Recorded, Reply
from tests.fakes.wire import CONVERSATION, SECRET, Wire

MODEL = "gemini-test-model"
PATH = f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
SETTINGS: dict[str, Any] = {"gemini_api_key": SECRET, "gemini_base_url": lambda url: url}

# Signatures in the standard base64 alphabet, `+` and `/` included, as the API writes them.
CALL_SIGNATURE = "EvvvvgtjYWxsLXNpZ25hdHVyZS13//4="
TEXT_SIGNATURE = "Evu//gt0ZXh0LXNpZ25hdHVyZfv/"
THOUGHT_SIGNATURE = "Er777wt0aG91Z2h0LXNpZ25hdHVyZS0x/w=="
SKIP_VALIDATOR = "skip_thought_signature_validator"
ISSUED = (CALL_SIGNATURE, TEXT_SIGNATURE, THOUGHT_SIGNATURE)


def google_json(value: Any) -> str:
    """JSON as the Gemini API writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ": "))


def event(text: str) -> bytes:
    return f"data: {text}\r\n\r\n".encode()


def _usage(prompt: int, candidates: int | None, thoughts: int | None = None, **more: int) -> str:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + (candidates or 0) + (thoughts or 0)
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts is not None:
        usage["thoughtsTokenCount"] = thoughts
    usage.update(more)
    return google_json(usage)


def chunk(
    parts: str | None,
    usage: str,
    *,
    finish: str | None = None,
    message: str | None = None,
    model: str = "gemini-3-flash-preview",
    response_id: str = "vQRpaqzAPN2M9MoPxPq2uQ4",
) -> bytes:
    """One event; `parts` is the JSON text of the parts list (None: no content)."""
    candidate = f'{{"content": {{"parts": {parts},"role": "model"}},' if parts is not None else "{"
    if finish is not None:
        candidate += f'"finishReason": "{finish}",'
    candidate += '"index": 0'
    if message is not None:
        candidate += f',"finishMessage": {google_json(message)}'
    candidate += "}"
    return event(
        f'{{"candidates": [{candidate}],"usageMetadata": {usage},'
        f'"modelVersion": "{model}","responseId": "{response_id}"}}'
    )


def text(value: str, **extra: Any) -> str:
    return google_json([{"text": value, **extra}])


# --- Transcripts -------------------------------------------------------------------------------

# Gemini 3, text: usage on every chunk, then the signature alone on a part of empty text.
TEXT_THEN_SIGNATURE = [
    chunk(text("Hello"), _usage(12, 1, 27)),
    chunk(text(" there."), _usage(12, 3, 27)),
    chunk(text("", thoughtSignature=TEXT_SIGNATURE), _usage(12, 3, 27), finish="STOP"),
]

# Gemini 3 with includeThoughts: a thought summary, then two parallel calls of which only the
# first is signed, then an empty part that ends the turn (STOP, though the model called).
THOUGHTS_AND_TWO_CALLS = [
    chunk(text("**Planning**\n\nNeed the weather", thought=True), _usage(40, None, 61)),
    chunk(text(" and the time.", thought=True), _usage(40, None, 61)),
    chunk(
        google_json(
            [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": CALL_SIGNATURE,
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ]
        ),
        _usage(40, 18, 61),
    ),
    chunk(text(""), _usage(40, 18, 61), finish="STOP"),
]

# Gemini 3.1: text, then a call with an id of Gemini's own (and no args: it takes none), then the
# empty last part.
TEXT_AND_CALL_WITH_ID = [
    chunk(text("Let me check."), _usage(83, 4, 178), response_id="7uVgavK_CL7yxN8P-aGnkAY"),
    chunk(
        google_json(
            [
                {
                    "functionCall": {"name": "get_time", "id": "g1bmv6il"},
                    "thoughtSignature": CALL_SIGNATURE,
                }
            ]
        ),
        _usage(83, 21, 178),
        response_id="7uVgavK_CL7yxN8P-aGnkAY",
    ),
    chunk(text(""), _usage(83, 21, 178), finish="STOP", response_id="7uVgavK_CL7yxN8P-aGnkAY"),
]

# Gemini 2.5: a thought run closed by an empty thought part holding its signature, then the
# answer, whose last text chunk carries the finish (no empty part after it).
SIGNED_THOUGHTS = [
    chunk(text("Two and two", thought=True), _usage(9, None, 30), model="gemini-2.5-flash"),
    chunk(
        text("", thought=True, thoughtSignature=THOUGHT_SIGNATURE),
        _usage(9, None, 30),
        model="gemini-2.5-flash",
    ),
    chunk(text("Four."), _usage(9, 2, 30), finish="STOP", model="gemini-2.5-flash"),
]

# The answer after the tool results, signed at its end.
ANSWER = [
    chunk(text("18C and noon."), _usage(120, 6, 20), response_id="Il0taoSYJ5Cez7a1"),
    chunk(
        text("", thoughtSignature=TEXT_SIGNATURE),
        _usage(120, 6, 20),
        finish="STOP",
        response_id="Il0taoSYJ5Cez7a1",
    ),
]

# A refused prompt: one chunk, no candidates.
PROMPT_BLOCKED = [
    event(
        '{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},"usageMetadata": '
        '{"promptTokenCount": 9,"totalTokenCount": 9,"promptTokensDetails": [{"modality": '
        '"TEXT","tokenCount": 9}],"serviceTier": "standard"},"modelVersion": "gemini-3.7-flash",'
        '"responseId": "EXCPatOAKMrQjMcPteHVmQo"}'
    )
]

# Output stopped by the safety filter: the last chunk has no content at all.
SAFETY_STOP = [
    chunk(text("Here is how"), _usage(15, 3)),
    event(
        '{"candidates": [{"finishReason": "SAFETY","index": 0,"safetyRatings": [{"category": '
        '"HARM_CATEGORY_DANGEROUS_CONTENT","probability": "HIGH","blocked": true}]}],'
        f'"usageMetadata": {_usage(15, 3)},"modelVersion": "gemini-3-flash-preview",'
        '"responseId": "vQRpaqzAPN2M9MoPxPq2uQ4"}'
    ),
]

# A call the model wrote wrong: no content, a finish message saying what it wrote.
MALFORMED_CALL = [
    chunk(
        None,
        _usage(40, 0, 12),
        finish="MALFORMED_FUNCTION_CALL",
        message="Malformed function call: call:get_weather{city:Paris",
    )
]

# The output limit, with implicit caching of most of the prompt and tool-use prompt tokens.
MAX_TOKENS_CACHED = [
    chunk(text("A long"), _usage(2100, 2, 40, cachedContentTokenCount=2048)),
    chunk(
        text(" answer"),
        _usage(2100, 4, 40, cachedContentTokenCount=2048, toolUsePromptTokenCount=7),
        finish="MAX_TOKENS",
    ),
]

# The body of an error status, pretty-printed as the API sends it.


def error_body(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = list(details)
    return json.dumps({"error": error}, indent=2, ensure_ascii=False).encode() + b"\n"


QUOTA_EXCEEDED = error_body(
    429,
    "RESOURCE_EXHAUSTED",
    "You exceeded your current quota, please check your plan.",
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.4s"},
)
KEY_INVALID = error_body(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    },
)
NO_KEY = error_body(
    403,
    "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API.",
)
OVERLOADED = error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
NOT_FOUND = error_body(
    404,
    "NOT_FOUND",
    "models/gemini-0 is not found for API version v1beta, or is not supported for "
    "generateContent. Call ListModels to see the list of available models and their "
    "supported methods.",
)
MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is required for "
    "tools to work correctly, and missing thought_signature may lead to degraded model "
    "performance. Additional data, function call `default_api:{name}` , position {position}. "
    "Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
# An error after the 200, as an event (google-genai's _api_client.py raises these too).
MID_STREAM_ERROR = event(
    '{"error": {"code": 503,"message": "The model is overloaded. Please try again later.",'
    '"status": "UNAVAILABLE"}}'
)


def error_reply(status: int, raw: bytes, **headers: str) -> Reply:
    return Reply(
        status=status, body=[raw], headers=headers, content_type="application/json; charset=UTF-8"
    )


def reply(transcript: list[bytes]) -> Reply:
    return Reply(body=list(transcript), content_type="text/event-stream")


# --- The server's checks -----------------------------------------------------------------------


def _bytes_of(signature: str) -> bytes | None:
    """A signature's bytes, whichever base64 alphabet it is written in."""
    try:
        return base64.b64decode(
            signature.replace("-", "+").replace("_", "/") + "=" * (-len(signature) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError):
        return None


def signature_problem(body: dict[str, Any], issued: Iterable[str] = ISSUED) -> str | None:
    """What the API would refuse about `body`'s signatures, or None.

    The current turn starts after the last user content that is not function responses; in
    each of its model contents (a step), the first functionCall part must carry a signature.
    Every signature sent, in any turn, must be one the server issued."""
    known = {_bytes_of(s) for s in issued}
    contents = body.get("contents") or []
    start = 0
    for i, content in enumerate(contents):
        parts = content.get("parts") or []
        if content.get("role") == "user" and any("functionResponse" not in p for p in parts):
            start = i + 1
    position = 0
    for i, content in enumerate(contents):
        if content.get("role") != "model":
            continue
        first = True
        for part in content.get("parts") or []:
            position += 1
            signature = part.get("thoughtSignature")
            if signature not in (None, SKIP_VALIDATOR) and _bytes_of(signature) not in known:
                return "Corrupted thought signature."
            if "functionCall" in part:
                if first and i >= start and signature is None:
                    name = part["functionCall"].get("name")
                    return MISSING_SIGNATURE.format(name=name, position=position)
                first = False
    return None


def checks_signatures(answer: list[bytes], issued: Iterable[str] = ISSUED) -> Callable[..., Reply]:
    """A reply that refuses what the real API refuses about a later turn, else `answer`."""
    allowed = tuple(issued)

    def respond(request: Recorded) -> Reply:
        if request.headers.get("x-goog-api-key") != SECRET:
            return error_reply(400, KEY_INVALID)
        problem = signature_problem(request.json(), allowed)
        if problem is not None:
            return error_reply(400, error_body(400, "INVALID_ARGUMENT", problem))
        return reply(answer)

    return respond


# --- For the shared provider tests (tests/integration/test_providers.py) -----------------------


def stream(tokens: list[str], usage: tuple[int, int] = (11, 3)) -> list[bytes]:
    """A whole answer, Gemini 2.5's way: the finish on the last text chunk."""
    if not tokens:
        return [chunk(text(""), _usage(usage[0], usage[1]), finish="STOP")]
    *head, last = tokens
    return [
        *(chunk(text(t), _usage(usage[0], i + 1)) for i, t in enumerate(head)),
        chunk(text(last), _usage(usage[0], usage[1]), finish="STOP"),
    ]


def _check_request(request: Recorded) -> None:
    body = request.json()
    assert request.headers["x-goog-api-key"] == SECRET
    assert "key=" not in request.path  # the key is never in the URL
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert body["contents"] == [
        {"role": "user" if m["role"] == "user" else "model", "parts": [{"text": m["content"]}]}
        for m in CONVERSATION
        if m["role"] != "system"
    ]
    assert body["generationConfig"] == {
        "temperature": 0.5,
        "maxOutputTokens": 50,
        "stopSequences": ["STOP"],
    }


GEMINI = Wire(
    name="gemini",
    path=PATH,
    content_type="text/event-stream",
    settings=lambda url: {"gemini_api_key": SECRET, "gemini_base_url": url},
    stream=stream,
    head=[],
    token=lambda t: chunk(text(t), _usage(11, 1)),
    mid_error=MID_STREAM_ERROR,
    mid_error_type="overloaded",
    malformed=b"data: {this is not json\r\n\r\n",
    status_error=lambda m: error_body(401, "UNAUTHENTICATED", m),
    check_request=_check_request,
)


# --- The benchmark's upstream ------------------------------------------------------------------

_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
_TOKEN = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "%s"}],"role": "model"},'
    b'"index": 0}],"usageMetadata": {"promptTokenCount": 1,"candidatesTokenCount": %d,'
    b'"totalTokenCount": %d,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 1}]},'
    b'"modelVersion": "bench","responseId": "bench"}\r\n\r\n'
)
_END = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "","thoughtSignature": "'
    + TEXT_SIGNATURE.encode()
    + b'"}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": '
    b'{"promptTokenCount": 1,"candidatesTokenCount": %d,"totalTokenCount": %d,'
    b'"promptTokensDetails": [{"modality": "TEXT","tokenCount": 1}]},"modelVersion": "bench",'
    b'"responseId": "bench"}\r\n\r\n'
)
_SCRIPT = re.compile(rb"^POST /v1beta/models/(fast|pace|idle|big)-(\d+)(?:-(\d+))?:")
_KEY = re.compile(rb"(?im)^x-goog-api-key:\s*(\S+)\s*$")
_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


def _framed(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class _Chunks:
    """Every chunk a script sends, framed once and shared by every stream."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, int], bytes] = {}

    def token(self, i: int, size: int) -> bytes:
        made = self._made.get((i, size))
        if made is None:
            word = b"t%d " % i
            made = self._made[(i, size)] = _framed(
                _TOKEN % (word + b"x" * (size - len(word)), i + 1, i + 2)
            )
        return made

    @staticmethod
    def end(total: int) -> bytes:
        return _framed(_END % (total, total + 1)) + b"0\r\n\r\n"


CHUNKS = _Chunks()


class _Paced:
    """Every paced stream, written at each tick of one timer per rate."""

    def __init__(self) -> None:
        self.streams: dict[int, set[BenchUpstream]] = {}

    def add(self, rate: int, stream: BenchUpstream) -> None:
        if rate not in self.streams:
            self.streams[rate] = set()
            asyncio.get_running_loop().create_task(self._tick(rate))
        self.streams[rate].add(stream)

    async def _tick(self, rate: int) -> None:
        next_at = time.monotonic()
        while True:
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            for stream in list(self.streams[rate]):
                if not stream.step():
                    self.streams[rate].discard(stream)


PACED = _Paced()


class BenchUpstream(asyncio.Protocol):
    """One connection of the benchmark's fake Gemini, a bare protocol (as bench/upstream.py is,
    for the same reason: it must cost far less than the servers it feeds)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.sent = self.total = self.size = 0
        self.idle = self.paused = False
        self.waiting: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)

    def connection_lost(self, _exc: Exception | None) -> None:
        self.transport = None
        self.resume_writing()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = _LENGTH.search(head)
        needed = int(length[1]) if length else 0
        if len(rest) < needed or self.transport is None:
            return
        self.buffer = rest[needed:]
        key, script = _KEY.search(head), _SCRIPT.match(head)
        if key is None or key[1] != SECRET.encode() or script is None:
            raw = KEY_INVALID if script else error_body(404, "NOT_FOUND", "unknown script")
            status = b"400 Bad Request" if script else b"404 Not Found"
            self.transport.write(
                b"HTTP/1.1 %s\r\ncontent-type: application/json; charset=UTF-8\r\n"
                b"content-length: %d\r\n\r\n%s" % (status, len(raw), raw)
            )
            return
        kind, first, second = script[1], int(script[2]), script[3]
        self.sent = 0
        self.transport.write(_HEAD)
        if kind in (b"fast", b"big"):
            self.total = first
            self.size = int(second or 0) if kind == b"big" else 0
            asyncio.get_running_loop().create_task(self._fast())
        elif kind == b"pace":
            self.total = int(second or 0)
            PACED.add(first, self)
        else:
            self.total, self.idle = first, True
            for _ in range(first):
                self.step()

    async def _fast(self) -> None:
        while self.transport is not None and self.sent < self.total:
            self.transport.write(CHUNKS.token(self.sent, self.size))
            self.sent += 1
            await asyncio.sleep(0)
            if self.paused:
                self.waiting = asyncio.get_running_loop().create_future()
                await self.waiting
        if self.transport is not None:
            self.transport.write(CHUNKS.end(self.total))

    def step(self) -> bool:
        """Send the next paced chunk; False once the stream is over."""
        if self.transport is None:
            return False
        if self.sent < self.total:
            self.transport.write(CHUNKS.token(self.sent, 0))
            self.sent += 1
            return True
        if not self.idle:
            self.transport.write(CHUNKS.end(self.total))
        return False


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BenchUpstream, "127.0.0.1", port, backlog=8192)
    sys.stdout.write(f"ready {port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(int(sys.argv[1])))
    else:
        uvloop.run(serve(int(sys.argv[1])))
