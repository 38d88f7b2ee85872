"""What a conversation holds beyond plain text: parts, images, tool calls, reasoning, tools.

These are the internal values every client protocol parses into and every provider translates
from. They carry no wire format of their own.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast, get_args

Role: TypeAlias = Literal["system", "user", "assistant", "tool"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

# The first bytes of each accepted image type, so that a data URL claiming to be an image is one.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and b"WEBP" at offset 8, checked below
}

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*?);base64,")


class InvalidContent(ValueError):
    """A request that is well formed JSON but cannot be served; `param` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Image:
    """An image: an `https:` URL the provider fetches itself, or inline bytes (base64)."""

    media_type: str | None  # known for inline images; a URL's may be unknown
    url: str | None = None
    data: str | None = None  # base64, already checked to decode to an image of `media_type`

    @property
    def data_url(self) -> str:
        """The image as a URL: its own, or a `data:` URL for inline bytes."""
        if self.url is not None:
            return self.url
        return f"data:{self.media_type};base64,{self.data}"

    @property
    def size(self) -> int:
        """Bytes of inline data (0 for a URL)."""
        return len(self.data) * 3 // 4 if self.data else 0


Part: TypeAlias = Text | Image


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: `arguments` is a JSON text (an object, when the model got it
    right). `signature` is Gemini's `thoughtSignature` on the call's part, which Gemini wants
    back with the call on the next turn (https://ai.google.dev/gemini-api/docs/thought-signatures);
    no other provider has one, or is sent one."""

    id: str
    name: str
    arguments: str
    signature: str | None = None

    def parsed_arguments(self, param: str) -> dict[str, Any]:
        """The arguments as an object, for providers that take them parsed."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise InvalidContent(param, f"{param}: arguments must be a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class Reasoning:
    """A block of the model's reasoning, as a provider needs it back on the next turn.

    `signature` makes a block verifiable (Anthropic's thinking blocks; Gemini's thought
    signatures, tagged `gemini:`, on thought parts and on text parts, where the block's text is
    empty); `redacted` is an encrypted block with no readable text (Anthropic's
    `redacted_thinking`). A block with neither is plain reasoning text (DeepSeek's
    `reasoning_content`).
    """

    text: str = ""
    signature: str | None = None
    redacted: str | None = None

    def signed_by(self, provider: str | None) -> str | None:
        """This block's signature as `provider` issued it (None: Anthropic's, untagged), or
        None when the block is not signed by that provider. See `tag_signature`."""
        if self.signature is None:
            return None
        issuer, colon, native = self.signature.partition(":")
        if not colon:
            return self.signature if provider is None else None
        return native if issuer == provider else None


def tag_signature(provider: str, signature: str) -> str:
    """A reasoning signature of `provider`'s, as it travels through clients: behind the
    provider's name and a colon (`gemini:<signature>`).

    A signature is verified only by the provider that issued it, and another provider refuses
    it (Anthropic answers 400 to a signature it did not make), so a conversation that moves
    between providers must not hand one's signature to the other. Anthropic's travel untagged,
    as they always have; every signature is base64, which has no colon, so a tag cannot be
    mistaken for one."""
    return f"{provider}:{signature}"


@dataclass(frozen=True, slots=True)
class Message:
    """One turn: text and images; an assistant's tool calls and reasoning; a tool's result."""

    role: Role
    content: tuple[Part, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None  # role "tool": the call this is the result of
    reasoning: tuple[Reasoning, ...] = ()

    @classmethod
    def of(cls, role: Role, text: str) -> Message:
        return cls(role, (Text(text),) if text else ())

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.content if isinstance(p, Text))

    @property
    def images(self) -> tuple[Image, ...]:
        return tuple(p for p in self.content if isinstance(p, Image))


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is a JSON Schema for an object."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """Structured output: the answer's text is JSON, an object of `schema` (`json_schema`) or
    any JSON object (`json_object`). `param` is the field the client gave it in, for a 400 from a
    provider that cannot honour it."""

    kind: Literal["json_schema", "json_object"]
    param: str
    schema: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None
    strict: bool | None = None

    @classmethod
    def parse(cls, value: object, param: str, *, flat: bool) -> OutputFormat | None:
        """OpenAI's format object: Chat Completions' `response_format` (the schema under
        `json_schema`) or, `flat`, the Responses API's `text.format` (beside `type`); None
        for plain text."""
        if not isinstance(value, dict):
            raise InvalidContent(param, f"{param} must be an object")
        kind = value.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            return cls("json_object", param)
        if kind != "json_schema":
            raise InvalidContent(
                f"{param}.type", f"{param}.type is text, json_object or json_schema"
            )
        where = param if flat else f"{param}.json_schema"
        spec = value if flat else value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidContent(where, f"{where} needs a name and a schema object")
        name, description, strict = spec.get("name"), spec.get("description"), spec.get("strict")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise InvalidContent(f"{where}.name", "a name of up to 64 of a-z, A-Z, 0-9, _ and -")
        if not isinstance(description, str | None) or not isinstance(strict, bool | None):
            raise InvalidContent(where, f"{where}: description is a string, strict a boolean")
        return cls("json_schema", param, spec.get("schema", {}), name, description, strict)


@dataclass(frozen=True, slots=True)
class NamedTool:
    """`tool_choice` forcing one function."""

    name: str


ToolChoice: TypeAlias = Literal["auto", "none", "required"] | NamedTool

Effort: TypeAlias = Literal["minimal", "low", "medium", "high", "xhigh", "max"]
EFFORTS: tuple[str, ...] = get_args(Effort)  # from least to most


@dataclass(frozen=True, slots=True)
class ReasoningOption:
    """How much the model should reason: an effort level, or a token budget (not both)."""

    effort: Effort | None = None
    budget_tokens: int | None = None

    def fit(self, budgets: bool, efforts: frozenset[str]) -> ReasoningOption:
        """This option as a provider that takes only `efforts` (and budgets, if `budgets`) can
        take it: a budget as the effort it is closest to, an effort as the nearest lower one it
        has (else its least), so that a client protocol's reasoning reaches any provider."""
        effort = self.effort
        if self.budget_tokens is not None:
            if budgets:
                return self
            budget = self.budget_tokens
            effort = "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"
        if effort is None or effort in efforts or not efforts:
            return ReasoningOption(effort=effort) if effort else self
        rank = EFFORTS.index(effort)
        lower = [e for e in EFFORTS[:rank] if e in efforts]
        nearest = lower[-1] if lower else next(e for e in EFFORTS if e in efforts)
        return ReasoningOption(effort=cast("Effort", nearest))


def image_from_url(url: str, *, param: str, max_bytes: int) -> Image:
    """An `Image` from an `https:` URL or a base64 `data:` URL, checked."""
    if url.startswith("https://"):
        return Image(media_type=None, url=url)
    match = _DATA_URL.match(url)
    if match is None:
        if url.startswith("data:"):
            raise InvalidContent(param, f"{param}: a data URL must be data:<type>;base64,<data>")
        raise InvalidContent(param, f"{param}: an image URL must be https: or a base64 data: URL")
    media_type = match["type"].lower()
    if media_type not in IMAGE_TYPES:
        raise InvalidContent(
            param, f"{param}: {media_type} is not an accepted image type ({', '.join(IMAGE_TYPES)})"
        )
    data = url[match.end() :]
    if len(data) * 3 // 4 > max_bytes:
        raise InvalidContent(
            param, f"{param}: the image exceeds {max_bytes} bytes (STREAMFN_MAX_IMAGE_BYTES)"
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidContent(param, f"{param}: the data URL is not valid base64") from None
    if not _looks_like(media_type, raw):
        raise InvalidContent(param, f"{param}: the data is not a {media_type} image")
    return Image(media_type=media_type, data=data)


def _looks_like(media_type: str, raw: bytes) -> bool:
    if not raw.startswith(_MAGIC[media_type]):
        return False
    return media_type != "image/webp" or raw[8:12] == b"WEBP"
