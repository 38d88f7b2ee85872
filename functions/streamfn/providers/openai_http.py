"""Requests to an OpenAI-compatible server (Chat Completions, Responses): a JSON body posted
over httpx2, the response streamed, a failed status read as the official SDK reads it.

Sent directly, not through the openai SDK: its package imports every type it has (about 190 ms
of a Lambda cold start, measured with the template's settings) and builds each request through
its option and header layers (about 0.3 ms of CPU a request, `make bench`'s 2a), for bodies
that streamfn builds in the wire's shape and streams it reads raw (`providers.sse_reader`).
What the SDK did for these calls is here: the base URL (OpenAI's own by default), the bearer
key, `OpenAI-Organization` and `OpenAI-Project` from OPENAI_ORG_ID and OPENAI_PROJECT_ID for
OpenAI's API, its `Accept` header, and a failed status's `{"error": {"message"}}` body
(openai-python `_client.py`, `_make_status_error`: the `error` object when there is one, else
the body; `_base_client.py`: the text itself when it is not JSON). Retries are
streamfn.resilience's, as they were with the SDK's set to none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
import orjson

from streamfn import __version__
from streamfn.chunks import StreamError
from streamfn.providers import upstream
from streamfn.providers.pool import streaming_client

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIHTTP:
    """One server's client: its connection pool serves every request of the process."""

    def __init__(
        self,
        *,
        name: str,
        api_key: str | None,
        base_url: str | None,
        total_timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        organization: str | None = None,
        project: str | None = None,
    ) -> None:
        self.name = name
        self._api_key = api_key
        self._base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        headers = {
            "accept": "application/json",
            "content-type": "application/json",
            "user-agent": f"streamfn/{__version__}",
        }
        # Servers that need no key (llama.cpp, vLLM without --api-key) are sent none.
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        if organization:
            headers["openai-organization"] = organization
        if project:
            headers["openai-project"] = project
        self._client = streaming_client(
            headers=headers,
            total_timeout_s=total_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )

    async def open(self, path: str, body: Mapping[str, Any]) -> httpx2.Response | StreamError:
        """`body` posted to `path` (`/chat/completions`), its response open to be streamed (the
        caller closes it), or what went wrong as a `StreamError`."""
        try:
            content = orjson.dumps(body)
        except orjson.JSONEncodeError as exc:  # an integer past 64 bits in a passed-through body
            return StreamError("bad_request", f"the request cannot be sent: {exc}", retryable=False)
        request = self._client.build_request("POST", self._base + path, content=content)
        try:
            response = await self._client.send(request, stream=True)
        except httpx2.TimeoutException:
            return upstream.timed_out(self.name)
        except httpx2.TransportError:
            return upstream.unreachable(self.name, "the connection failed or broke")
        if response.status_code < 400:
            return response
        try:
            raw = await response.aread()
        except httpx2.TransportError:
            raw = b""  # the status is the error; its body broke off
        finally:
            await response.aclose()
        return self._status_error(response.status_code, raw, response.headers)

    def _status_error(self, status: int, raw: bytes, headers: Mapping[str, str]) -> StreamError:
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        error = body.get("error", body) if isinstance(body, dict) else body
        detail = error.get("message") if isinstance(error, dict) else error
        return upstream.error_for_status(
            self.name,
            status,
            self.redact(str(detail or "")),
            retry_after_s=upstream.retry_after(headers),
        )

    def redact(self, text: str) -> str:
        """`text`, from this server, fit for a client: the key removed, cut to length."""
        return upstream.redact(text, [self._api_key])

    async def aclose(self) -> None:
        await self._client.aclose()
