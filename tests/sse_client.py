"""Reading a streamfn response with httpx and httpx-sse, a WHATWG-conformant SSE parser."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource


@dataclass
class Received:
    event: str
    data: str
    id: str
    retry: int | None
    at: float  # time.monotonic() when the parser produced the event


async def read_events(response: httpx.Response) -> list[Received]:
    return [
        Received(sse.event, sse.data, sse.id, sse.retry, time.monotonic())
        async for sse in EventSource(response).aiter_sse()
    ]


async def stream(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> tuple[httpx.Response, list[Received]]:
    """POST `body` (or GET with `params`) and read every event until the stream ends."""
    request = (
        client.build_request("POST", url, json=body, headers=headers)
        if body is not None
        else client.build_request("GET", url, params=params or None, headers=headers)
    )
    response = await client.send(request, stream=True)
    try:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response, await read_events(response)
        await response.aread()
        return response, []
    finally:
        await response.aclose()


def text_of(events: list[Received]) -> str:
    return "".join(e.data for e in events if e.event == "token")


def user(content: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}], **extra}


async def leave_after_tokens(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], tokens: int = 2
) -> float:
    """POST `body`, read `tokens` token events, then drop the connection; when it was dropped."""
    seen = 0
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            seen += line == "event: token"
            if seen == tokens:
                break
    return time.monotonic()
