"""What a request is, in OpenTelemetry's GenAI semantic conventions: span and metric attributes
made from its usage record, its request and its trail. Plain data, no SDK: the exporter
(`streamfn.observability.otel`) sends it.

The conventions followed are those of OpenTelemetry semantic conventions v1.41 (docs/gen-ai,
https://github.com/open-telemetry/semantic-conventions/tree/v1.41.1/docs/gen-ai): the last
release that defines them. From v1.42 they live in open-telemetry/semantic-conventions-genai,
which has no release yet; its main branch renames the client metrics (`gen_ai.client.inference.*`)
and `gen_ai.usage.cache_creation.input_tokens` (to `cache_write`), and replaces the token usage
histogram with counters. What is used here is unchanged there otherwise.

- One `chat {model}` span per request that reached a provider (kind CLIENT; INTERNAL for
  `echo`, a model in this process), with the provider and model that answered (the ones asked
  for unless a fallback answered: the request that produced the answer was made to it), usage,
  finish reason, `error.type` (streamfn's own error types, `chunks.ErrorType`) on failure.
  `gen_ai.response.model` is not set: no provider passes on the model name its upstream
  reports.
- The metrics are the model server's (streamfn serves a model API, and times each request
  from its arrival, as those define): request duration, time to first token, time per output
  token; and the token usage histogram. By provider (`gen_ai.provider.name`) and model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from streamfn.content import Image, Message, Text
from streamfn.observability.trail import Attempt, Trail
from streamfn.request import ChatRequest
from streamfn.usage import FAILED, UsageRecord

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"

# gen_ai.provider.name: the well-known value where one names the provider, else streamfn's name
# (a custom value, as the conventions allow): ollama, echo, an OpenAI-compatible server's.
_WELL_KNOWN = {"bedrock": "aws.bedrock", "gemini": "gcp.gemini"}
IN_PROCESS = frozenset({"echo"})

# The buckets the conventions give each histogram (gen-ai-metrics.md, ExplicitBucketBoundaries).
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


def provider_name(provider: str) -> str:
    return _WELL_KNOWN.get(provider, provider)


def failed(record: UsageRecord) -> bool:
    return record.outcome in FAILED


def metric_attributes(record: UsageRecord) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider_name(record.provider),
        "gen_ai.request.model": record.model,
    }


def _request_attributes(request: ChatRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.request.top_p": request.top_p,
        "gen_ai.request.stop_sequences": list(request.stop) or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


def span_attributes(
    record: UsageRecord, request: ChatRequest, trail: Trail | None
) -> dict[str, Any]:
    """The `chat {model}` span's attributes (content aside: `content_attributes`)."""
    attributes = metric_attributes(record) | _request_attributes(request)
    # Every provider is asked for a stream, whether the client gets one or one JSON answer.
    attributes["gen_ai.request.stream"] = True
    attributes["gen_ai.usage.input_tokens"] = record.input_tokens
    attributes["gen_ai.usage.output_tokens"] = record.output_tokens
    parts = {
        "gen_ai.usage.cache_read.input_tokens": record.cached_input_tokens,
        "gen_ai.usage.cache_creation.input_tokens": record.cache_creation_input_tokens,
        "gen_ai.usage.reasoning.output_tokens": record.reasoning_tokens,
    }
    attributes |= {k: v for k, v in parts.items() if v is not None}
    if record.finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = [record.finish_reason]
    if record.ttft_ms is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = record.ttft_ms / 1000
    if failed(record) and record.error_type is not None:
        attributes["error.type"] = record.error_type
    attributes["streamfn.request_id"] = record.request_id
    attributes["streamfn.outcome"] = record.outcome
    attributes["streamfn.provider"] = record.provider
    if record.cost_usd is not None:
        attributes["streamfn.cost_usd"] = record.cost_usd
    if record.usage_estimated:
        attributes["streamfn.usage_estimated"] = True
    if record.client_disconnected:
        attributes["streamfn.client_disconnected"] = True
    if trail is not None:
        attributes["streamfn.streamed"] = trail.streamed
        attributes["streamfn.attempts"] = len(trail.attempts)
        if (trail.provider, trail.model) != (record.provider, record.model):
            attributes["streamfn.requested"] = f"{trail.provider}/{trail.model}"
        if trail.conversation is not None:
            attributes["gen_ai.conversation.id"] = trail.conversation
    return attributes


def attempt_name(attempt: Attempt) -> str:
    role = "retry" if attempt.retry else "fallback" if attempt.candidate else "attempt"
    return f"{role} {attempt.provider}/{attempt.model}"


def attempt_attributes(attempt: Attempt) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "streamfn.attempt.candidate": attempt.candidate,
        "streamfn.attempt.retry": attempt.retry,
        "streamfn.attempt.provider": attempt.provider,
        "streamfn.attempt.model": attempt.model,
    }
    if attempt.error is not None:
        attributes["error.type"] = attempt.error
    if attempt.retry_in_s is not None:
        attributes["streamfn.attempt.retry_in_s"] = attempt.retry_in_s
    return attributes


# Content: only with STREAMFN_LOG_CONTENT, as the conventions' opt-in attributes, JSON strings
# in the shapes of gen-ai-input-messages.json and gen-ai-output-messages.json (spans cannot
# hold structured values in Python's SDK yet, which the conventions allow for).


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # cut short, or not JSON: as the model wrote it


def _parts(message: Message) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"type": "reasoning", "content": block.text} for block in message.reasoning if block.text
    ]
    for part in message.content:
        if isinstance(part, Text):
            parts.append({"type": "text", "content": part.text})
        elif isinstance(part, Image) and part.url is not None:
            parts.append({"type": "uri", "modality": "image", "uri": part.url})
        elif isinstance(part, Image):
            # Inline bytes by type and size only, as in the log line: a span is no place for
            # megabytes of base64 (a generic part, which the schema allows).
            parts.append({"type": "image", "mime_type": part.media_type, "size": part.size})
    if message.role == "tool":
        response = {"type": "tool_call_response", "id": message.tool_call_id}
        return [response | {"response": message.text}]
    parts += [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": _arguments(c.arguments)}
        for c in message.tool_calls
    ]
    return parts


def content_attributes(
    messages: Sequence[Message], request: ChatRequest, output_text: str, record: UsageRecord
) -> dict[str, str]:
    inputs = [{"role": m.role, "parts": _parts(m)} for m in messages]
    output: dict[str, Any] = {
        "role": "assistant",
        # What the model generated, text, reasoning and tool-call arguments, as the tally
        # keeps it: in one piece.
        "parts": [{"type": "text", "content": output_text}] if output_text else [],
        "finish_reason": record.finish_reason or "error",
    }
    attributes = {
        "gen_ai.input.messages": json.dumps(inputs, ensure_ascii=False),
        "gen_ai.output.messages": json.dumps([output], ensure_ascii=False),
    }
    if request.tools:
        tools = [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
            }
            for t in request.tools
        ]
        attributes["gen_ai.tool.definitions"] = json.dumps(tools, ensure_ascii=False)
    return attributes
