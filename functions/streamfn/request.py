"""The chat request: its wire forms (JSON body, query string) and the value providers receive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]

# Field constraints shared by the POST body and the GET query, so both reject the same input.
ProviderName = Annotated[str | None, Field(min_length=1, max_length=64)]
ModelName = Annotated[str | None, Field(min_length=1, max_length=256)]
MaxTokens = Annotated[int | None, Field(ge=1, le=1_000_000)]
Temperature = Annotated[float | None, Field(ge=0, le=2)]
TopP = Annotated[float | None, Field(gt=0, le=1)]


class Message(BaseModel):
    """One turn of the conversation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Role
    content: str


class ChatBody(BaseModel):
    """`POST /chat/stream`. Unknown fields are rejected so that a typo is an error, not a no-op."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1, max_length=1000)
    provider: ProviderName = None
    model: ModelName = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None
    stop: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=4)

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: object) -> object:
        # OpenAI accepts a single string as well as a list.
        return [value] if isinstance(value, str) else value


class ChatQuery(BaseModel):
    """`GET /chat/stream`, for `EventSource`, which cannot POST: one user message."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1)
    system: str | None = None
    provider: ProviderName = None
    model: ModelName = None
    max_tokens: MaxTokens = None
    temperature: Temperature = None
    top_p: TopP = None

    def to_body(self) -> ChatBody:
        messages = [Message(role="user", content=self.prompt)]
        if self.system:
            messages.insert(0, Message(role="system", content=self.system))
        return ChatBody(
            messages=messages,
            provider=self.provider,
            model=self.model,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a provider streams from: the body with the provider's model resolved."""

    messages: tuple[Message, ...]
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: ChatBody, *, model: str, max_tokens_cap: int | None) -> ChatRequest:
        max_tokens = body.max_tokens
        if max_tokens_cap is not None:
            max_tokens = min(max_tokens or max_tokens_cap, max_tokens_cap)
        return cls(
            messages=tuple(body.messages),
            model=model,
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=tuple(body.stop or ()),
        )

    def last_user_message(self) -> str | None:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return None
