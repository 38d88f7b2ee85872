"""Each provider's real wire format, for the fake upstreams, and how to point streamfn at it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.upstream import Recorded

SECRET = "sk-test-SECRET-0123456789"


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


# --- OpenAI chat.completion.chunk ------------------------------------------------------------


def openai_chunk(
    content: str | None = None, finish: str | None = None, usage: tuple[int, int] | None = None
) -> bytes:
    choices = []
    if content is not None or finish is not None:
        delta = {"content": content} if content is not None else {}
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return _sse(chunk)


OPENAI_ROLE = _sse(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
)
OPENAI_DONE = b"data: [DONE]\n\n"


def openai_stream(
    tokens: list[str], finish: str = "stop", usage: tuple[int, int] | None = (11, 3)
) -> list[bytes]:
    body = [OPENAI_ROLE, *(openai_chunk(t) for t in tokens), openai_chunk(finish=finish)]
    if usage is not None:
        body.append(openai_chunk(usage=usage))
    return [*body, OPENAI_DONE]


# --- Anthropic Messages events ---------------------------------------------------------------


def anthropic_start(input_tokens: int = 11, cache_read: int = 0) -> list[bytes]:
    return [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "claude-test",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": input_tokens,
                        "output_tokens": 1,
                        "cache_read_input_tokens": cache_read,
                    },
                },
            },
            "message_start",
        ),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
        _sse({"type": "ping"}, "ping"),
    ]


def anthropic_delta(text: str) -> bytes:
    return _sse(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        "content_block_delta",
    )


def anthropic_end(stop_reason: str = "end_turn", output_tokens: int = 3) -> list[bytes]:
    return [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
            "message_delta",
        ),
        _sse({"type": "message_stop"}, "message_stop"),
    ]


def anthropic_error(kind: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    return _sse({"type": "error", "error": {"type": kind, "message": message}}, "error")


def anthropic_stream(
    tokens: list[str], stop_reason: str = "end_turn", usage: tuple[int, int] = (11, 3)
) -> list[bytes]:
    return [
        *anthropic_start(usage[0]),
        *(anthropic_delta(t) for t in tokens),
        *anthropic_end(stop_reason, usage[1]),
    ]


# --- Ollama /api/chat NDJSON -----------------------------------------------------------------


def ollama_line(content: str) -> bytes:
    return (
        json.dumps(
            {
                "model": "llama-test",
                "created_at": "2026-11-24T00:00:00Z",
                "message": {"role": "assistant", "content": content},
                "done": False,
            }
        )
        + "\n"
    ).encode()


def ollama_done(reason: str = "stop", usage: tuple[int, int] | None = (11, 3)) -> bytes:
    done: dict[str, Any] = {
        "model": "llama-test",
        "created_at": "2026-11-24T00:00:01Z",
        "message": {"role": "assistant", "content": ""},
        "done": True,
        "done_reason": reason,
        "total_duration": 123,
    }
    if usage is not None:
        done |= {"prompt_eval_count": usage[0], "eval_count": usage[1]}
    return (json.dumps(done) + "\n").encode()


def ollama_stream(
    tokens: list[str], reason: str = "stop", usage: tuple[int, int] = (11, 3)
) -> list[bytes]:
    return [*(ollama_line(t) for t in tokens), ollama_done(reason, usage)]


# --- The three, described alike for the shared provider tests --------------------------------


@dataclass(frozen=True)
class Wire:
    name: str
    path: str
    content_type: str
    settings: Callable[[str], dict[str, Any]]  # upstream base URL -> Settings keyword arguments
    stream: Callable[[list[str]], list[bytes]]  # a whole successful stream, usage (11, 3)
    head: list[bytes]  # what precedes the first token
    token: Callable[[str], bytes]
    mid_error: bytes
    mid_error_type: str
    malformed: bytes
    status_error: Callable[[str], bytes]  # an error response body carrying a message
    check_request: Callable[[Recorded], None]


def _check_openai(request: Recorded) -> None:
    body = request.json()
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert body["model"] == "gpt-test-model"
    assert body["messages"] == CONVERSATION
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 50  # a custom base URL: an OpenAI-compatible server
    assert body["temperature"] == 0.5
    assert body["stop"] == ["STOP"]


def _check_anthropic(request: Recorded) -> None:
    body = request.json()
    assert SECRET in (
        request.headers.get("x-api-key", "") + request.headers.get("authorization", "")
    )
    assert body["model"] == "claude-test-model"
    assert body["system"] == "You are terse."
    assert body["messages"] == [m for m in CONVERSATION if m["role"] != "system"]
    assert body["max_tokens"] == 50
    assert body["stream"] is True
    assert body["stop_sequences"] == ["STOP"]
    assert "temperature" not in body  # rejected by API version 2026-10-21


def _check_ollama(request: Recorded) -> None:
    body = request.json()
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert body["model"] == "llama-test-model"
    assert body["messages"] == CONVERSATION  # the whole conversation, not only the last turn
    assert body["stream"] is True
    assert body["options"] == {"num_predict": 50, "temperature": 0.5, "stop": ["STOP"]}


CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Say three words"},
]

OPENAI = Wire(
    name="openai",
    path="/v1/chat/completions",
    content_type="text/event-stream",
    settings=lambda url: {"openai_api_key": SECRET, "openai_base_url": f"{url}/v1"},
    stream=openai_stream,
    head=[OPENAI_ROLE],
    token=lambda t: openai_chunk(t),
    mid_error=_sse({"error": {"message": "The server had an error", "type": "server_error"}}),
    mid_error_type="upstream_unavailable",
    malformed=b"data: {this is not json\n\n",
    status_error=lambda m: json.dumps(
        {"error": {"message": m, "type": "invalid_request_error", "code": None}}
    ).encode(),
    check_request=_check_openai,
)

ANTHROPIC = Wire(
    name="anthropic",
    path="/v1/messages",
    content_type="text/event-stream",
    settings=lambda url: {"anthropic_api_key": SECRET, "anthropic_base_url": url},
    stream=anthropic_stream,
    head=anthropic_start(),
    token=anthropic_delta,
    mid_error=anthropic_error(),
    mid_error_type="overloaded",
    malformed=b"event: content_block_delta\ndata: {broken\n\n",
    status_error=lambda m: json.dumps(
        {"type": "error", "error": {"type": "authentication_error", "message": m}}
    ).encode(),
    check_request=_check_anthropic,
)

OLLAMA = Wire(
    name="ollama",
    path="/api/chat",
    content_type="application/x-ndjson",
    settings=lambda url: {"ollama_host": url, "ollama_api_key": SECRET},
    stream=ollama_stream,
    head=[],
    token=ollama_line,
    mid_error=b'{"error": "an error was encountered while running the model"}\n',
    mid_error_type="upstream_unavailable",
    malformed=b"{not json\n",
    status_error=lambda m: json.dumps({"error": m}).encode(),
    check_request=_check_ollama,
)

WIRES = [OPENAI, ANTHROPIC, OLLAMA]

# Settings for the provider-specific tests, each a function of the upstream's URL.
OPENAI_SETTINGS = {"openai_api_key": SECRET, "openai_base_url": lambda url: f"{url}/v1"}
ANTHROPIC_SETTINGS = {"anthropic_api_key": SECRET, "anthropic_base_url": lambda url: url}
OLLAMA_SETTINGS = {"ollama_host": lambda url: url}
