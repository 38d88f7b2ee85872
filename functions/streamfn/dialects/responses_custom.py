"""The Responses API's custom (free-form) tools, for a provider that has only function tools.

A custom tool (openai-python's `types/responses/custom_tool_param.py`) takes its input as plain
text, unconstrained or in a grammar (`format`: `{"type": "text"}` or `{"type": "grammar",
"syntax": "lark" | "regex", "definition": ...}`), and the model calls it with a
`custom_tool_call` item whose `input` is that text (`response_custom_tool_call.py`); the
caller answers with a `custom_tool_call_output`. Codex offers its `apply_patch` tool so to the
models it knows as OpenAI's (gpt-5 and later).

Elsewhere such a tool is offered as a function of one string parameter, `input`, its grammar in
the parameter's description (no other provider takes a grammar), and the call's arguments are
unwrapped back into the item's `input`. A translated call's input is JSON-escaped text until
its arguments are whole, so it is streamed as one `custom_tool_call_input.delta` when the call
ends, followed by its `.done`, rather than fragment by fragment."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from streamfn.content import InvalidContent, Tool, ToolCall

INPUT = "input"  # the one parameter of the function a custom tool is offered as


def custom_tool(tool: dict[str, Any], at: str) -> Tool:
    """`tool`, a custom tool, as a function tool of one string parameter."""
    name = tool.get("name")
    if not isinstance(name, str):
        raise InvalidContent(f"{at}.name", "a custom tool needs a name")
    described = "The tool's input, as plain text."
    format = tool.get("format")
    if isinstance(format, dict) and format.get("type") == "grammar":
        syntax, definition = format.get("syntax"), format.get("definition")
        if not isinstance(definition, str) or not isinstance(syntax, str):
            raise InvalidContent(f"{at}.format", "a grammar format needs a syntax and definition")
        described = f"The tool's input, as plain text in this {syntax} grammar:\n{definition}"
    description = tool.get("description")
    parameters = {
        "type": "object",
        "properties": {INPUT: {"type": "string", "description": described}},
        "required": [INPUT],
        "additionalProperties": False,
    }
    return Tool(name, description if isinstance(description, str) else None, parameters)


def custom_names(tools: Iterable[Any]) -> frozenset[str]:
    """The names of the custom tools among a request's `tools`."""
    return frozenset(
        tool["name"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type") == "custom"
        and isinstance(tool.get("name"), str)
    )


def custom_call(item: dict[str, Any], call_id: str, at: str) -> ToolCall:
    """A `custom_tool_call` input item as the call of the function its tool is offered as."""
    name, text = item.get("name"), item.get(INPUT)
    if not isinstance(name, str) or not isinstance(text, str):
        raise InvalidContent(at, f"{at}: a custom_tool_call needs a name and an input")
    return ToolCall(call_id, name, json.dumps({INPUT: text}))


def custom_input(arguments: str) -> str:
    """The input a function call made as a custom tool's carries: its `input` argument; the
    arguments as they are when the model did not keep to the one parameter."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(parsed, dict) and isinstance(parsed.get(INPUT), str):
        return str(parsed[INPUT])
    return arguments
