"""A Messages request that came in Anthropic's own protocol (`POST /v1/messages`), made ready
to send on to Anthropic as it came: what streamfn does not model (cache_control, metadata,
context_management, documents, server tools, betas, fields newer than streamfn) goes through
untouched, and the client's `anthropic-version` and `anthropic-beta` headers (and Claude Code's
`?beta=true`) with it, so that what the client asked for is what Anthropic reads.

Changed, as streamfn must: the model (the one routing resolved), `max_tokens` (bounded by
STREAMFN_MAX_TOKENS_CAP, and a thinking budget below it), `stream` (always, upstream). And two
things Anthropic would refuse that a client of streamfn may send: a `system`-role message among
`messages` (Claude Code's, for a model it does not know) joins `system`; a thinking block
another provider signed (a `gemini:` signature, `content.tag_signature`) or none did is left
out, as the translation leaves it out (Anthropic answers 400 to a signature not its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamfn.request import ChatRequest, NativeBody

# What count_tokens takes of a Messages body (the SDK's `message_count_tokens_params.py`).
_NOT_COUNTED = ("max_tokens", "stream", "stop_sequences", "temperature", "top_p", "top_k")


def anthropic_body(request: ChatRequest, *, count: bool = False) -> NativeBody | None:
    """`request`'s own Messages body, ready for Anthropic; None when it came in another
    protocol (then it is translated). `count`: for count_tokens, which counts the input."""
    native = request.native
    if native is None or native.protocol != "anthropic":
        return None
    body = dict(native.body)
    body["model"] = request.model
    if count:
        for name in _NOT_COUNTED:
            body.pop(name, None)
    else:
        body["stream"] = True
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
            _fit_budget(body, request.max_tokens)
    system = _blocks(body.get("system"))
    messages: list[Any] = []
    for message in body.get("messages") or ():
        if not isinstance(message, Mapping):
            messages.append(message)
        elif message.get("role") == "system":
            system += _blocks(message.get("content"))
        elif message.get("role") == "assistant" and isinstance(message.get("content"), list):
            content = [b for b in message["content"] if not _foreign_thinking(b)]
            if content:
                messages.append({**message, "content": content})
        else:
            messages.append(message)
    body["messages"] = messages
    if system:
        body["system"] = system
    return NativeBody("anthropic", body, native.headers, native.query)


def _blocks(content: Any) -> list[Any]:
    """A `system` (or a system-role message's content) as a list of blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


def _foreign_thinking(block: Any) -> bool:
    """A thinking block Anthropic did not sign: unsigned, or signed by another provider."""
    if not isinstance(block, Mapping) or block.get("type") != "thinking":
        return False
    signature = block.get("signature")
    return not isinstance(signature, str) or not signature or ":" in signature


def _fit_budget(body: dict[str, Any], max_tokens: int) -> None:
    """A thinking budget below `max_tokens`, which Anthropic requires: it may have been above a
    max_tokens lowered to the cap."""
    thinking = body.get("thinking")
    if not isinstance(thinking, Mapping) or thinking.get("type") != "enabled":
        return
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int) and budget >= max_tokens and max_tokens > 1024:
        body["thinking"] = {**thinking, "budget_tokens": max_tokens - 1}
