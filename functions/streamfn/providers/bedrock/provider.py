"""The `bedrock` provider: ConverseStream over httpx2, its event stream read a network read at a
time (see the package's docstring for the choice of client).

The stream's events (ConverseStreamOutput in botocore/data/bedrock-runtime/2023-09-30/
service-2.json), each an event-stream message whose `:event-type` header names it and whose
payload is the event's JSON (with a `p` member of random padding, which is ignored):
`messageStart` (role), per content block `contentBlockStart` (only for `toolUse` blocks, with
`toolUseId` and `name`: text and reasoning blocks begin with their first delta),
`contentBlockDelta`s (`delta.text`, `delta.toolUse.input` as fragments of the input's JSON text,
`delta.reasoningContent` with `text`, `signature` or `redactedContent`), `contentBlockStop`;
`messageStop` (`stopReason`), then `metadata` (`usage`, `metrics`), last. A failure inside the
stream is a message of type `exception` whose `:exception-type` is one of the stream's exception
members (throttlingException, modelStreamErrorException, internalServerException,
serviceUnavailableException, validationException), its payload `{"message"}`. A failure before
it is an HTTP status, the error's name in `x-amzn-ErrorType` (as botocore's RestJSONParser
reads it) and `{"message"}` in the body.

Non-streaming requests (`stream: false` on /v1/chat/completions) are served by the pipeline,
which collects a stream: there is no non-streaming provider path, so Converse (the
non-streaming operation) is not used.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx2
import orjson
from botocore.exceptions import BotoCoreError, ClientError

from streamfn.chunks import (
    Finish,
    FinishReason,
    ReasoningDelta,
    ReasoningEnd,
    StreamChunk,
    StreamError,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
)
from streamfn.content import InvalidContent, Reasoning, ToolCall
from streamfn.providers import upstream
from streamfn.providers.bedrock import NAME, converse
from streamfn.providers.bedrock.aws import AwsAccess, NotConfigured
from streamfn.providers.eventstream import EventStreamError, EventStreamReader, Headers
from streamfn.providers.pool import streaming_client
from streamfn.request import ChatRequest

_ERROR_BODY_BYTES = 64 * 1024
# An exception message inside the stream, as the HTTP status it has when it is a response
# (service-2.json's httpStatusCode; modelStreamErrorException's 424 says "retry your request":
# the upstream's fault, 502).
_STATUS_OF_EXCEPTION = {
    "throttlingException": 429,
    "serviceUnavailableException": 503,
    "internalServerException": 500,
    "modelStreamErrorException": 502,
    "validationException": 400,
    "modelTimeoutException": 408,
}
_CREDENTIALS_REFUSED = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
    }
)


class BedrockProvider:
    def __init__(
        self,
        *,
        region: str | None,
        endpoint: str | None,
        bearer_token: str | None,
        total_timeout_s: float,
        connect_timeout_s: float,
        max_connections: int = 10000,
        resolve_now: bool = False,
    ) -> None:
        self._access = AwsAccess(region=region, endpoint=endpoint, bearer_token=bearer_token)
        self._client = streaming_client(
            total_timeout_s=total_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )
        if resolve_now:  # built in the registry's worker thread: resolve there, not on the loop
            self._access.prepare()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        try:
            payload, origins = converse.body(request)
        except InvalidContent as exc:  # what capabilities refuse first, for a direct caller
            yield StreamError("bad_request", f"{NAME}: {exc.param}: {exc.message}", False)
            return
        try:
            target = await self._access.target()
        except NotConfigured as exc:
            yield StreamError("auth", f"{NAME} is not configured: {exc}", retryable=False)
            return
        except (BotoCoreError, ClientError, OSError, RuntimeError) as exc:
            # Fetching or refreshing credentials failed (a credential process, STS, SSO, a
            # metadata endpoint: botocore's errors, STS's answers, refreshed ones still expired).
            detail = upstream.redact(str(exc), self._access.secrets())
            yield upstream.unreachable(NAME, f"AWS credentials could not be loaded: {detail}")
            return
        # A model id, inference profile id or ARN is one path segment: ':' and '/' encoded.
        url = f"{target.endpoint}/model/{quote(request.model, safe='')}/converse-stream"
        data = orjson.dumps(payload)
        headers = self._access.sign(url, data, {"content-type": "application/json"})
        reader = EventStreamReader()
        state = _State()
        try:
            # Leaving this block, however it is left (a client gone closes this generator),
            # closes the response and its connection: Bedrock stops generating.
            async with self._client.stream("POST", url, content=data, headers=headers) as response:
                if response.status_code >= 400:
                    yield await self._failure(response, request.model, target.region, origins)
                    return
                async for piece in response.aiter_bytes():
                    for meta, message in reader.feed(piece):
                        kind = meta.get(":message-type")
                        if kind != "event":
                            yield self._in_band(kind, meta, message)
                            return
                        event = orjson.loads(message)
                        name = meta.get(":event-type")
                        if name == "contentBlockDelta":
                            delta = event["delta"]
                            text = delta.get("text")
                            if text is not None:  # the event of nearly every token
                                if text:
                                    state.chars += len(text)
                                    yield TextDelta(text)
                                continue
                            for chunk in state.delta(event["contentBlockIndex"], delta):
                                yield chunk
                        elif name == "contentBlockStart":
                            for chunk in state.start(event["contentBlockIndex"], event["start"]):
                                yield chunk
                        elif name == "contentBlockStop":
                            for chunk in state.stop(event["contentBlockIndex"]):
                                yield chunk
                        elif name == "messageStop":
                            for chunk in state.message_stop(event["stopReason"]):
                                yield chunk
                        elif name == "metadata":
                            state.usage = _usage(event.get("usage"))
                        # messageStart, and events of later API versions, carry nothing here.
        except httpx2.TimeoutException:
            yield upstream.timed_out(NAME)
            return
        except httpx2.TransportError:
            yield upstream.unreachable(NAME, "the connection failed or broke")
            return
        except (EventStreamError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Not an event stream, or events not of Converse's shapes (orjson's errors are
            # ValueErrors).
            yield upstream.malformed(NAME, f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        if state.malformed is not None:
            yield StreamError(
                "upstream_error",
                f"{NAME}: the model's output was malformed (stopReason {state.malformed})",
                retryable=True,
            )
        elif state.finish is None or reader.pending:
            yield upstream.truncated(NAME)
        else:
            usage = state.usage or Usage.estimate(request.prompt_text(), state.chars)
            yield Finish(state.finish, usage)

    def _in_band(self, kind: object, headers: Headers, payload: bytes) -> StreamError:
        """An `exception` (or `error`) message inside the stream."""
        if kind == "exception":
            name = str(headers.get(":exception-type") or "exception")
            detail = _message(payload)
        else:  # `error`: the code and message are headers (botocore's _do_error_parse)
            name = str(headers.get(":error-code") or kind or "error")
            detail = str(headers.get(":error-message") or "")
        status = _STATUS_OF_EXCEPTION.get(name, 500)
        detail = upstream.redact(detail, self._access.secrets())
        return upstream.error_for_status(NAME, status, detail, reported=name)

    async def _failure(
        self, response: httpx2.Response, model: str, region: str | None, origins: list[int]
    ) -> StreamError:
        """A failed status: its error's name and message, with what to do about it."""
        raw = b""
        async for piece in response.aiter_bytes():
            raw += piece
            if len(raw) >= _ERROR_BODY_BYTES:
                break
        code, message = _error_of(response.headers, raw)
        message = message.split("\n\nThe Canonical String", 1)[0][:300]
        status = response.status_code
        if code == "ValidationException" and (where := converse.field_of(message, origins)):
            detail = f"{code} (request field {where}): {message}"
        elif code == "AccessDeniedException":
            detail = f"{code}: {message} ({_access_hint(message, region)})"
        elif code in _CREDENTIALS_REFUSED:
            detail = f"{code}: {message} (the AWS credentials were refused)"
        elif code == "ResourceNotFoundException":
            detail = f"{code}: {message} (model {model!r} in {region or 'the endpoint'}'s region)"
        else:
            detail = f"{code}: {message}" if code else message
        if code == "ModelErrorException":
            status = 502  # 424: the model failed, not the request
        return upstream.error_for_status(
            NAME,
            status,
            upstream.redact(detail, self._access.secrets()),
            retry_after_s=upstream.retry_after(response.headers),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass
class _Block:
    """An open tool-use or reasoning block, keyed by its contentBlockIndex."""

    tool_id: str | None = None
    name: str = ""
    parts: list[str] = field(default_factory=list)
    signature: str | None = None
    redacted: str | None = None

    def end(self) -> StreamChunk:
        text = "".join(self.parts)
        if self.tool_id is not None:
            # A tool that takes no input may stream no delta: its input is {}.
            return ToolCallEnd(ToolCall(self.tool_id, self.name, text or "{}"))
        if self.redacted is not None:
            return ReasoningEnd(Reasoning(redacted=self.redacted))
        return ReasoningEnd(Reasoning(text=text, signature=self.signature))


@dataclass
class _State:
    blocks: dict[int, _Block] = field(default_factory=dict)
    finish: FinishReason | None = None
    malformed: str | None = None
    called: bool = False
    usage: Usage | None = None
    chars: int = 0  # generated, for an estimate when no usage comes

    def start(self, index: int, start: dict[str, Any]) -> list[StreamChunk]:
        tool = start.get("toolUse")
        if tool is None:
            return []  # toolResult and image blocks: server tools' and image models' own
        self.blocks[index] = _Block(tool_id=tool["toolUseId"], name=tool["name"])
        self.called = True
        return [ToolCallStart(tool["toolUseId"], tool["name"])]

    def delta(self, index: int, delta: dict[str, Any]) -> list[StreamChunk]:
        if (tool := delta.get("toolUse")) is not None:
            block = self.blocks[index]  # a toolUse block always starts with its id and name
            fragment = tool["input"]
            if not fragment or block.tool_id is None:
                return []
            block.parts.append(fragment)
            self.chars += len(fragment)
            return [ToolCallDelta(block.tool_id, fragment)]
        reasoning = delta.get("reasoningContent")
        if reasoning is None:
            return []  # citations, tool results and images: nothing a client here takes
        block = self.blocks.setdefault(index, _Block())
        if text := reasoning.get("text"):
            block.parts.append(text)
            self.chars += len(text)
            return [ReasoningDelta(text)]
        if (signature := reasoning.get("signature")) is not None:
            block.signature = (block.signature or "") + signature
        if (redacted := reasoning.get("redactedContent")) is not None:
            block.redacted = (block.redacted or "") + redacted  # base64, as JSON carries a blob
        return []

    def stop(self, index: int) -> list[StreamChunk]:
        block = self.blocks.pop(index, None)
        return [block.end()] if block is not None else []

    def message_stop(self, reason: str) -> list[StreamChunk]:
        if reason in converse.MALFORMED:
            self.malformed = reason
        finish = converse.FINISH.get(reason, "stop")
        if finish == "stop" and self.called:
            finish = "tool_calls"
        self.finish = finish
        # Every block ends before the message does; one left open ends with it.
        ended, self.blocks = self.blocks, {}
        return [block.end() for _, block in sorted(ended.items())]


def _usage(usage: Any) -> Usage | None:
    """TokenUsage: `inputTokens` counts only what was not read from or written to the prompt
    cache (https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html); streamfn's
    input counts all of it."""
    if not isinstance(usage, dict):
        return None
    read = usage.get("cacheReadInputTokens")
    written = usage.get("cacheWriteInputTokens")
    return Usage(
        int(usage.get("inputTokens") or 0) + int(read or 0) + int(written or 0),
        int(usage.get("outputTokens") or 0),
        cached_input_tokens=None if read is None else int(read),
        cache_creation_input_tokens=None if written is None else int(written),
    )


def _message(payload: bytes) -> str:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:300].decode("utf-8", "replace")
    if isinstance(data, dict):
        return str(data.get("message") or data.get("Message") or "")
    return str(data)[:300]


def _error_of(headers: Mapping[str, str], raw: bytes) -> tuple[str, str]:
    """An error response's name and message, as botocore's RestJSONParser reads them: the name
    from `x-amzn-ErrorType` (`Name:namespace`), else the body's `code` or `__type`."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = headers.get("x-amzn-errortype") or body.get("code") or body.get("__type") or ""
    code = str(code).split(":", 1)[0].rsplit("#", 1)[-1]
    message = body.get("message") or body.get("Message")
    if message is None:
        message = raw[:300].decode("utf-8", "replace").strip() if not body else ""
    return code, str(message)


def _access_hint(message: str, region: str | None) -> str:
    """What an AccessDeniedException asks for: an IAM permission, or the model's access."""
    if "not authorized to perform" in message:
        return (
            "the credentials' policy must allow that action on that resource; deployed with "
            "template.yaml, list the model's ARNs in BedrockModelArns"
        )
    if "access to the model" in message:
        return f"enable the model for this account in the Bedrock console (Model access), {region}"
    return (
        "needs bedrock:InvokeModelWithResponseStream on the model, and the model enabled for "
        "this account (Bedrock console, Model access)"
    )
