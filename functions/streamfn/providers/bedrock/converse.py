"""A `ChatRequest` as a ConverseStream request body, and Converse's words back in streamfn's.

Shapes from the service model, botocore/data/bedrock-runtime/2023-09-30/service-2.json
(ConverseStreamRequest, Message, ContentBlock, ToolConfiguration, ReasoningContentBlock):

- `system` is a list of `{"text"}` blocks; `messages` alternate user and assistant turns (two
  turns of one role in a row are refused), each a list of content blocks: `text`, `image`
  (`format` png/jpeg/gif/webp and `source.bytes`, a blob: base64 in JSON; no URLs), `toolUse`
  (`toolUseId`, `name`, `input` as an object), `toolResult` (in a user turn), and
  `reasoningContent` (`reasoningText` with `text` and `signature`, or `redactedContent`, a
  blob), which Claude wants back unchanged and first in its assistant turn.
- `inferenceConfig`: `maxTokens`, `temperature`, `topP`, `stopSequences` (non-empty strings).
- `toolConfig`: `tools` of `toolSpec` (`name`, `description`, `inputSchema.json`) and
  `toolChoice`, one of `auto`, `any` (a tool must be called) or `tool` (this one). There is no
  "none": tools are left out then, which Bedrock allows only while no turn holds `toolUse` or
  `toolResult` blocks; and no switch for parallel calls.
- Reasoning: a token budget is Claude's extended thinking, in `additionalModelRequestFields`
  (`{"thinking": {"type": "enabled", "budget_tokens": N}}`, N >= 1024; the only form Claude
  4.5 and older take). An effort is Converse's own `outputConfig.effort` (low, medium, high,
  xhigh, max: service-2.json's OutputConfig); for Claude (an id or ARN naming an `anthropic.`
  model) with adaptive thinking on (`{"thinking": {"type": "adaptive"}}`,
  https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-adaptive-thinking.html),
  since without thinking Claude's effort stops at high and nothing is reasoned. A model that
  takes neither says so with a ValidationException, which reaches the client as a 400.
"""

from __future__ import annotations

import re
from typing import Any

from streamfn.chunks import FinishReason
from streamfn.content import InvalidContent, Message, NamedTool, Part, Text
from streamfn.request import ChatRequest

# StopReason (service-2.json); the malformed_* reasons are not an end a client can use, and
# are errors (`MALFORMED`).
FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
MALFORMED = frozenset({"malformed_model_output", "malformed_tool_use"})

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


def is_claude(model: str) -> bool:
    """A model id, inference profile or ARN naming one of Anthropic's models."""
    return "anthropic." in model


def body(request: ChatRequest) -> tuple[dict[str, Any], list[int]]:
    """The request body, and for each of its messages the index of the request message it
    begins with (Bedrock's errors name its own indexes: `field_of` turns them into ours)."""
    system = [{"text": m.text} for m in request.messages if m.role == "system" and m.text]
    messages: list[dict[str, Any]] = []
    origins: list[int] = []
    for i, message in enumerate(request.messages):
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        content = _content(i, message)
        if not content:
            continue  # an empty turn: Bedrock refuses a message without content
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += content  # tool results, and turns of one role in a row
        else:
            messages.append({"role": role, "content": content})
            origins.append(i)
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if stops := [s for s in request.stop if s]:
        inference["stopSequences"] = stops
    if inference:
        out["inferenceConfig"] = inference
    check(request)
    if request.tools and request.tool_choice != "none":
        out["toolConfig"] = _tool_config(request)
    option = request.reasoning
    if option is not None and option.budget_tokens is not None:
        thinking = {"type": "enabled", "budget_tokens": option.budget_tokens}
        out["additionalModelRequestFields"] = {"thinking": thinking}
    elif option is not None and option.effort is not None:
        out["outputConfig"] = {"effort": option.effort}
        if is_claude(request.model):
            out["additionalModelRequestFields"] = {"thinking": {"type": "adaptive"}}
    return out, origins


def check(request: ChatRequest, provider: str = "bedrock") -> None:
    """Raise `InvalidContent` for what Converse cannot express (see the module's docstring)."""
    if not request.tools:
        return
    if request.tool_choice == "none" and any(
        m.tool_calls or m.role == "tool" for m in request.messages
    ):
        raise InvalidContent(
            "tool_choice",
            f"{provider} cannot take tool_choice none in a conversation with tool calls "
            "(Converse has no such choice; without the tools it refuses those turns)",
        )
    if request.parallel_tool_calls is False:
        raise InvalidContent(
            "parallel_tool_calls", f"{provider} cannot turn parallel tool calls off (Converse)"
        )


def _content(i: int, message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        result = {"toolUseId": message.tool_call_id, "content": [{"text": message.text}]}
        return [{"toolResult": result}]
    blocks: list[dict[str, Any]] = []
    if message.role == "assistant":
        for block in message.reasoning:
            if block.redacted is not None:
                blocks.append({"reasoningContent": {"redactedContent": block.redacted}})
            elif (signature := block.signed_by(None)) is not None:
                text = {"text": block.text, "signature": signature}
                blocks.append({"reasoningContent": {"reasoningText": text}})
            # Unsigned reasoning, or signed by another provider (`gemini:`), is another
            # provider's; Claude would refuse it. Claude's signatures travel untagged, on
            # Bedrock as on Anthropic's API: both are Claude's.
    blocks += [_part(i, j, p) for j, p in enumerate(message.content) if _sent(p)]
    for k, call in enumerate(message.tool_calls):
        arguments = call.parsed_arguments(f"messages.{i}.tool_calls.{k}.arguments")
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}})
    return blocks


def _sent(part: Part) -> bool:
    return not isinstance(part, Text) or bool(part.text)  # Bedrock refuses a blank text block


def _part(i: int, j: int, part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"text": part.text}
    if part.url is not None or part.media_type not in _IMAGE_FORMATS:
        # Capabilities(image_urls=False) refuses these before a provider is called.
        raise InvalidContent(f"messages.{i}.content.{j}", "bedrock takes images as data only")
    return {"image": {"format": _IMAGE_FORMATS[part.media_type], "source": {"bytes": part.data}}}


def _tool_config(request: ChatRequest) -> dict[str, Any]:
    tools = []
    for tool in request.tools:
        spec: dict[str, Any] = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
        if tool.description:
            spec["description"] = tool.description
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    choice = request.tool_choice
    if isinstance(choice, NamedTool):
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


# Fields a ValidationException names, Converse's or the model's own (Claude's errors come back
# in its Messages API terms), and the request field each is. The first pattern that matches
# wins: the most specific first ("max_tokens must be greater than thinking.budget_tokens" is
# about the budget; "messages.1.content.0: ... `thinking` block" about that message).
_FIELDS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"budget_tokens"), "reasoning.budget_tokens"),
    (re.compile(r"outputConfig\.effort|output_config\.effort|\beffort\b"), "reasoning.effort"),
    (re.compile(r"\bmessages[.\[/]+(\d+)"), "messages"),
    (re.compile(r"additionalModelRequestFields|\bthinking\b"), "reasoning"),
    (re.compile(r"maxTokens|\bmax_tokens\b"), "max_tokens"),
    (re.compile(r"\btemperature\b"), "temperature"),
    (re.compile(r"topP|\btop_p\b"), "top_p"),
    (re.compile(r"stopSequences|stop_sequences"), "stop"),
    (re.compile(r"toolChoice|tool_choice"), "tool_choice"),
    (re.compile(r"toolConfig\.tools[.\[/]?(\d+)?|\btools[.\[/](\d+)"), "tools"),
]


def field_of(message: str, origins: list[int]) -> str | None:
    """The request field a ValidationException's message is about, when it says."""
    for pattern, field in _FIELDS:
        match = pattern.search(message)
        if match is None:
            continue
        index = next((g for g in match.groups() if g is not None), None)
        if field == "messages":
            if index is None or int(index) >= len(origins):
                return "messages"
            return f"messages.{origins[int(index)]}"
        return f"{field}.{index}" if index is not None else field
    return None
