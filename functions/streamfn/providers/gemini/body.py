"""A `ChatRequest` as the Gemini API's `GenerateContentRequest` JSON.

Field names as google-genai writes them for the Gemini API (google/genai/models.py,
`_GenerateContentParameters_to_mldev` and the `_to_mldev` converters under it): `contents` of
`{role: user | model, parts}`, `systemInstruction`, `tools[].functionDeclarations`,
`toolConfig.functionCallingConfig`, `generationConfig` (`temperature`, `topP`,
`maxOutputTokens`, `stopSequences`, `thinkingConfig`). Parts: `text`, `inlineData {mimeType,
data}`, `functionCall {id, name, args}`, `functionResponse {id, name, response}`, `thought`, and
`thoughtSignature` beside any of them.

Thought signatures (https://ai.google.dev/gemini-api/docs/thought-signatures) go back verbatim,
each on the part it came on: a call's on its `functionCall` part, a signed thought run as one
thought part, a text part's on the turn's text. Gemini 3 refuses the current turn (the model
turns after the last user message that is not function responses) when the first
`functionCall` of any of its steps has no signature; a call that has none, made by another
provider before the conversation moved to Gemini, gets the value the same page documents for
calls Gemini did not make, `skip_thought_signature_validator`. Signatures of another provider,
and unsigned reasoning text, are not sent: Gemini reads nothing from either.
"""

from __future__ import annotations

import json
import re
from typing import Any

from streamfn.content import Image, InvalidContent, Message, NamedTool, Text, Tool, ToolChoice
from streamfn.request import ChatRequest

NAME = "gemini"
# For a call Gemini did not sign (https://ai.google.dev/gemini-api/docs/thought-signatures, FAQ).
SKIP_VALIDATOR = "skip_thought_signature_validator"
# The models that check no signatures, to which the value above is not sent (the Vercel AI SDK
# sends it to Gemini 3 models only, packages/google: `isGemini3Model`).
_UNCHECKED = re.compile(r"(models/)?(gemini-[12][.-]|gemma-)")


def body(request: ChatRequest) -> dict[str, Any]:
    """The request body; `InvalidContent` for what Gemini cannot be sent."""
    out: dict[str, Any] = {"contents": contents(request)}
    system = "\n\n".join(m.text for m in request.messages if m.role == "system" and m.text)
    if system:
        out["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
        if (config := _calling_config(request.tool_choice)) is not None:
            out["toolConfig"] = {"functionCallingConfig": config}
    if generation := _generation_config(request):
        out["generationConfig"] = generation
    return out


def contents(request: ChatRequest) -> list[dict[str, Any]]:
    """The conversation as Gemini's `contents`: system messages go to `systemInstruction`, the
    results of one turn's calls become one user content of `functionResponse` parts (Gemini
    wants as many responses as the turn had calls), an assistant message a model content."""
    out: list[dict[str, Any]] = []
    messages = request.messages
    current = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    checked = _UNCHECKED.match(request.model) is None
    for i, message in enumerate(messages):
        if message.role == "system":
            continue
        if message.role == "tool":
            part = {
                "functionResponse": {
                    "id": message.tool_call_id,
                    "name": request.call_name(message.tool_call_id),
                    "response": _response(message.text),
                }
            }
            last = out[-1] if out else None
            if last and last["role"] == "user" and "functionResponse" in last["parts"][-1]:
                last["parts"].append(part)
            else:
                out.append({"role": "user", "parts": [part]})
            continue
        if message.role == "user":
            parts = [
                _user_part(part, f"messages.{i}.content.{j}")
                for j, part in enumerate(message.content)
                if not (isinstance(part, Text) and not part.text)
            ]
        else:
            parts = _model_parts(message, i, unsigned_first=checked and i > current)
        if parts:
            out.append({"role": "user" if message.role == "user" else "model", "parts": parts})
    return out


def _user_part(part: Text | Image, param: str) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"text": part.text}
    if part.data is None:
        # Capabilities(image_urls=False) refuses these before any call: `fileData` takes only
        # files uploaded to Gemini's Files API, not a URL of the web.
        raise InvalidContent(f"{param}.url", "gemini takes images as data: URLs only")
    return {"inlineData": {"mimeType": part.media_type, "data": part.data}}


def _model_parts(message: Message, i: int, *, unsigned_first: bool) -> list[dict[str, Any]]:
    """An assistant message's parts: signed thoughts, its text, then its calls."""
    parts: list[dict[str, Any]] = []
    text_signatures: list[str] = []
    for block in message.reasoning:
        signature = block.signed_by(NAME)
        if signature is None:
            continue  # unsigned, or another provider's
        if block.text:
            parts.append({"text": block.text, "thought": True, "thoughtSignature": signature})
        else:  # a text part's signature (the stream's last part, of empty text, may carry it)
            text_signatures.append(signature)
    if text := message.text:
        part: dict[str, Any] = {"text": text}
        if text_signatures:
            part["thoughtSignature"] = text_signatures.pop(0)
        parts.append(part)
    parts += [{"text": "", "thoughtSignature": s} for s in text_signatures]
    for k, call in enumerate(message.tool_calls):
        function = {
            "id": call.id,
            "name": call.name,
            "args": call.parsed_arguments(f"messages.{i}.tool_calls.{k}.arguments"),
        }
        part = {"functionCall": function}
        signature = call.signature
        if signature is None and k == 0 and unsigned_first:
            signature = SKIP_VALIDATOR
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _response(text: str) -> dict[str, Any]:
    """A tool's result as `functionResponse.response`, which is a JSON object: the result
    itself when it is one, else under `result`, as Google's function-calling guide puts it
    (https://ai.google.dev/gemini-api/docs/function-calling)."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"result": text}


def _declaration(tool: Tool) -> dict[str, Any]:
    # `parametersJsonSchema` takes the client's JSON Schema as it is; `parameters` would take
    # only Gemini's OpenAPI subset (google/genai/types.py, FunctionDeclaration).
    out: dict[str, Any] = {"name": tool.name, "parametersJsonSchema": tool.parameters}
    if tool.description:
        out["description"] = tool.description
    return out


def _calling_config(choice: ToolChoice | None) -> dict[str, Any] | None:
    """`functionCallingConfig` (FunctionCallingConfigMode in google/genai/types.py)."""
    if choice is None:
        return None
    if isinstance(choice, NamedTool):
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}


def _generation_config(request: ChatRequest) -> dict[str, Any]:
    out = request.sampling(
        max_tokens="maxOutputTokens", temperature="temperature", top_p="topP", stop="stopSequences"
    )
    option = request.reasoning
    if option is not None:
        # Thoughts are streamed only when asked for (`includeThoughts`); a level (Gemini 3's
        # thinkingLevel, ThinkingLevel in google/genai/types.py) or a budget, never both, which
        # Gemini refuses.
        thinking: dict[str, Any] = {"includeThoughts": True}
        if option.budget_tokens is not None:
            thinking["thinkingBudget"] = option.budget_tokens
        elif option.effort is not None:
            thinking["thinkingLevel"] = option.effort.upper()
        out["thinkingConfig"] = thinking
    if (wanted := request.output_format) is not None:
        # JSON output; a JSON Schema as it is, in `responseJsonSchema` (not `responseSchema`,
        # OpenAPI's subset): GenerationConfig.response_json_schema in google/genai/types.py.
        out["responseMimeType"] = "application/json"
        if wanted.schema is not None:
            out["responseJsonSchema"] = wanted.schema
    return out
