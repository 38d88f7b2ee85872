"""`gemini`: the Gemini API (generativelanguage.googleapis.com), streamed over httpx2.

Wire format: `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` with the key in
`x-goog-api-key` (https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent),
the body a `GenerateContentRequest` (`body`). The answer is SSE whose every event is one
`GenerateContentResponse` JSON object: `candidates[0].content.parts[]` (text, `thought: true`
parts, whole `functionCall`s, any of them with a `thoughtSignature`), `usageMetadata` on every
chunk (the latest wins), `finishReason` on the last; no terminator. A refused prompt is a lone
chunk with `promptFeedback.blockReason` and no candidates. Failures are
`{"error": {"code", "message", "status", "details"}}`, as the body of an error status, or as an
event after the 200 (which google-genai's `_api_client.py` raises as `APIError` too). `reading`
turns chunks into `StreamChunk`s, `body` builds the request, `provider` holds the client.

Why not the google-genai SDK: it builds a pydantic `GenerateContentResponse` per chunk, after
parsing each event's JSON twice and dumping it once; measured on a typical text chunk
(google-genai 3.6.1, CPython 3.11, this machine) that is 419 us a chunk against 2.5 us for
`orjson.loads` and the few dict reads done here, some 170 times the CPU per token, where the
benchmark allows the OpenAI provider's 1.2 times. Its import takes 0.9 s, and it brings
google-auth. The Gemini REST API is small: the request is plain JSON, the stream is SSE that
`providers.sse_reader` already reads, the errors are one shape. So the provider speaks it over
its own httpx2 client: one per process, `STREAMFN_UPSTREAM_CONNECTIONS` connections, streamfn's
timeouts, no retries (`streamfn.resilience` retries and falls back).

Configuration follows google-genai's own variables: the key in `GEMINI_API_KEY` (or
`GOOGLE_API_KEY`), the base URL in `GOOGLE_GEMINI_BASE_URL` (google/genai/_base_url.py), the API
version `v1beta` after it, as the SDK puts it. Vertex AI (`GOOGLE_GENAI_USE_VERTEXAI`) is not
served: it authenticates with OAuth access tokens from Application Default Credentials, which
google-auth refreshes with blocking calls, and has its own URLs and regions.
"""

from __future__ import annotations

from streamfn.providers.gemini.provider import GeminiProvider

__all__ = ["GeminiProvider"]
