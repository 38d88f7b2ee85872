"""`ollama`: `/api/chat` over httpx, the whole conversation, NDJSON read line by line.

Wire format (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion):
one JSON object a line, `{"message": {"role", "content"}, "done": false}`, then a last line with
`"done": true`, `done_reason`, `prompt_eval_count` and `eval_count`. A failure is an HTTP status
with `{"error": "..."}`, or such a line mid-stream. Ollama has no SDK of its own in our
dependencies: its HTTP API is small and httpx is already here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlsplit

import httpx

from streamfn.chunks import Finish, StreamChunk, TextDelta, Usage
from streamfn.providers import upstream
from streamfn.request import ChatRequest

NAME = "ollama"


def base_url(host: str) -> str:
    """OLLAMA_HOST as Ollama reads it: `host`, `host:port` or a URL; port 11434 by default."""
    url = host if "://" in host else f"http://{host}"
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 11434)
    hostname = parts.hostname or "127.0.0.1"
    if hostname == "0.0.0.0":  # a listen address: reach it on loopback
        hostname = "127.0.0.1"
    return f"{parts.scheme}://{hostname}:{port}{parts.path.rstrip('/')}"


class OllamaProvider:
    def __init__(
        self,
        *,
        host: str,
        api_key: str | None,
        total_timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self._api_key = api_key
        self._client = httpx.AsyncClient(
            base_url=base_url(host),
            headers={"authorization": f"Bearer {api_key}"} if api_key else None,
            timeout=httpx.Timeout(total_timeout_s, connect=connect_timeout_s),
        )

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        options: dict[str, Any] = {}
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        payload = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "options": options,
        }
        text: list[str] = []
        try:
            # Leaving this block, however it is left, closes the response and its connection.
            async with self._client.stream("POST", "/api/chat", json=payload) as response:
                if response.status_code >= 400:
                    body = await response.aread()
                    yield upstream.error_for_status(
                        NAME,
                        response.status_code,
                        upstream.redact(_error_text(body), [self._api_key]),
                        retry_after_s=upstream.retry_after(response.headers),
                    )
                    return
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    try:
                        data = json.loads(line)
                    except ValueError:
                        yield upstream.malformed(NAME, f"not JSON: {line[:80]!r}")
                        return
                    if not isinstance(data, dict):
                        yield upstream.malformed(NAME, f"not an object: {line[:80]!r}")
                        return
                    if "error" in data:
                        detail = upstream.redact(str(data["error"]), [self._api_key])
                        yield upstream.unreachable(NAME, f"error mid-stream: {detail}")
                        return
                    content = (data.get("message") or {}).get("content")
                    if content:
                        text.append(content)
                        yield TextDelta(content)
                    if data.get("done"):
                        yield Finish(
                            "length" if data.get("done_reason") == "length" else "stop",
                            _usage(data, request, "".join(text)),
                        )
                        return
        except httpx.TimeoutException:
            yield upstream.timed_out(NAME)
            return
        except httpx.TransportError:
            yield upstream.unreachable(
                NAME, f"the connection to {self._client.base_url} failed or broke"
            )
            return
        yield upstream.truncated(NAME)

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:200]
    return str(data.get("error", "")) if isinstance(data, dict) else str(data)[:200]


def _usage(done: dict[str, Any], request: ChatRequest, output: str) -> Usage:
    prompt, generated = done.get("prompt_eval_count"), done.get("eval_count")
    if isinstance(prompt, int) and isinstance(generated, int):
        return Usage(prompt, generated)
    # Ollama leaves prompt_eval_count out when the prompt was cached.
    estimate = Usage.estimate("\n".join(m.content for m in request.messages), output)
    return Usage(
        prompt if isinstance(prompt, int) else estimate.input_tokens,
        generated if isinstance(generated, int) else estimate.output_tokens,
        estimated=True,
    )
