"""The ASGI app, the same on uvicorn and in Lambda."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import cache
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode

import anyio
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import HTMLResponse, JSONResponse, Response

from streamfn import __version__, memory
from streamfn.accounting import Accountant, owner, request_id
from streamfn.auth import AuthMiddleware, open_gate
from streamfn.connection import abortable
from streamfn.controls import NO_CONTROLS
from streamfn.dialects import Dialect, aisdk, anthropic, native, openai
from streamfn.dialects.native import ChatBody, ChatQuery, TokenBody
from streamfn.errors import (
    control_character,
    http_error,
    on_validation_error,
    validation_message,
)
from streamfn.limits import BodySizeLimit
from streamfn.openapi import (
    BODY,
    GATE,
    NATIVE_EVENTS,
    STREAM_WHY,
    UNNAMED,
    AllowedMethods,
    refusals,
    responses,
)
from streamfn.origins import CORS, CrossOrigin, Origins
from streamfn.pipeline import Pipeline, Refused
from streamfn.providers import ProviderRegistry, ProviderSpec
from streamfn.providers.registry import builtin_specs, default_provider, unreachable
from streamfn.resume import STREAM_ID, LogUnavailable, open_log, position
from streamfn.resume.http import Resumes
from streamfn.resume.live import Streams
from streamfn.routes import anthropic as anthropic_api
from streamfn.routes import responses as responses_api
from streamfn.settings import Settings
from streamfn.stored import open_responses
from streamfn.stores import open_store
from streamfn.streaming import Completion
from streamfn.usage import UsageStore

logger = logging.getLogger(__name__)


async def _prepare_database(settings: Settings) -> None:
    """Make or migrate the fleet's database schema at start-up; serving goes on if it cannot
    (what needs the database answers 503 until it can)."""
    if settings.database_url is None:
        return
    from streamfn.postgres import DatabaseUnavailable, database

    try:
        await database(settings.database_url.get_secret_value()).execute("SELECT 1")
    except DatabaseUnavailable as exc:
        logger.error("the database cannot be reached at start-up: %s", exc)


@cache
def _static(name: str) -> str:
    return (files("streamfn") / "static" / name).read_text(encoding="utf-8")


# A stream's or a chat's id in a path: a log key, and a header's value (streamfn.controls).
PathId = Annotated[str, Path(pattern=NO_CONTROLS)]
# A stream's id as streamfn makes them and clients may choose them: never `token`, so that
# `/chat/stream/token` (a concrete path, matched first) is no stream's.
StreamPathId = Annotated[str, Path(pattern=STREAM_ID)]


async def _unchecked() -> None:
    return None


def _dialect(request: Request) -> Dialect:
    """The protocol of the route `request` was meant for, to answer its errors in kind."""
    return _dialect_of(request.url.path)


def _dialect_of(path: str) -> Dialect:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return anthropic.DIALECT
    return openai.DIALECT if path.startswith("/v1/") else native.DIALECT


def _refusal(
    path: str, status: int, type: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return _dialect_of(path).error(status, type, message, headers=headers)


def _spends(path: str) -> bool:
    """The routes that reach a provider or a caller's streams (and /v1/models, as OpenAI's API
    asks a key for it)."""
    return path.startswith(("/chat/stream", "/api/chat", "/v1/"))


async def on_invalid_body(request: Request, exc: Exception) -> Response:
    """A body that did not validate: OpenAI's clients get OpenAI's 400, ours a 422 with
    FastAPI's `detail` list."""
    assert isinstance(exc, RequestValidationError)
    dialect = _dialect(request)
    if dialect is native.DIALECT:
        return await on_validation_error(request, exc)
    if (refused := control_character(exc.errors())) is not None:
        return dialect.error(400, "bad_request", refused[0], param=refused[1])
    message, param = validation_message(request, exc.errors())
    return dialect.error(400, "invalid_request", message, param=param)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status, type, message = http_error(exc)
    return _dialect(request).error(status, type, message, headers=exc.headers)


def create_app(
    settings: Settings | None = None,
    *,
    providers: Iterable[ProviderSpec] | None = None,
    usage_store: UsageStore | None = None,
) -> FastAPI:
    """Build the app. `providers` replaces the built-in providers and `usage_store` the store
    that settings choose (tests bring their own)."""
    settings = settings or Settings()
    specs = list(providers) if providers is not None else builtin_specs(settings)
    registry = ProviderRegistry(specs, default=default_provider(settings, specs))
    accountant = Accountant(settings, usage_store or open_store(settings))
    gate = open_gate(settings)
    streams = Streams(
        open_log(settings),
        grace_s=settings.resume_grace_s,
        timeout_s=settings.usage_write_timeout_s,
        prompt_end=settings.lambda_mode(),
        on_interrupted=accountant.interrupted,
    )
    kept = responses_api.StoredResponses(
        open_responses(settings, ttl_s=settings.responses_ttl_s), settings.responses_ttl_s
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            # anyio loads its asyncio backend on first use, which the upstream connections
            # (httpcore) and a stream's settling make: loaded here, the first stream's first
            # token does not wait on an import (about 35 ms, a snapshot's worth with SnapStart).
            anyio.Event()
            await registry.prepare()
            await streams.prepare()
            await kept.prepare()
            await _prepare_database(settings)
            memory.freeze_start_up()
            yield
        finally:
            try:
                await registry.aclose()
            finally:
                try:
                    await streams.aclose()
                    if kept.store is not None:
                        await kept.store.aclose()
                    await accountant.aclose()
                finally:
                    await gate.aclose()

    # FastAPIOffline serves Swagger UI's and ReDoc's files itself: /docs works with no network.
    app = FastAPIOffline(
        title="streamfn",
        version=__version__,
        lifespan=lifespan,
        description="Stream LLM responses token by token over Server-Sent Events: streamfn's "
        "own events, OpenAI's Chat Completions and Responses APIs, Anthropic's Messages API, and "
        "the Vercel AI SDK's UI message stream.",
        # OpenTelemetry: each request's HTTP server span, continuing an incoming traceparent
        # (on every route), when OTLP export is on (streamfn.telemetry).
        telemetry=accountant.telemetry.http(),
    )
    abortable(app)
    app.state.settings = settings
    app.state.providers = registry
    app.state.telemetry = accountant.telemetry  # streamfn.observability.flush finds it here
    app.add_exception_handler(RequestValidationError, on_invalid_body)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, render=_refusal)
    app.add_middleware(AuthMiddleware, gate=gate, render=_refusal, protected=_spends)
    app.add_middleware(
        CrossOrigin, origins=Origins(settings.cors_origins), render=_refusal, protected=_spends
    )
    app.add_middleware(AllowedMethods, router=app.router, render=_refusal)
    app.add_middleware(responses_api.NoWebSockets)
    if (hosts := settings.hosts()) is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS.allow_methods,
            allow_headers=CORS.allow_headers,
            expose_headers=CORS.expose_headers,
            max_age=CORS.max_age_s,
        )

    pipeline = Pipeline(settings, registry, accountant, streams)

    resumes = Resumes(streams, settings)
    anthropic_api.add_routes(app, pipeline)
    responses_api.add_routes(app, pipeline, kept)

    async def native_chat(body: ChatBody, request: Request) -> Response:
        try:
            spec, model = pipeline.resolve(body.provider, body.model)
            chat = pipeline.admit(spec, lambda limits: body.to_request(model=model, limits=limits))
        except Refused as exc:
            return exc.response(native.DIALECT)
        return await pipeline.stream(
            request,
            spec,
            chat,
            dialect=native.DIALECT,
            encode=native.events,
            fallbacks=body.fallbacks,
            stream_id=body.stream_id,
        )

    @app.post(
        "/chat/stream",
        response_class=Response,
        responses=responses(events=NATIVE_EVENTS),
        tags=["streamfn"],
    )
    async def chat_stream_post(body: ChatBody, request: Request) -> Response:
        """Stream a chat completion as Server-Sent Events."""
        return await native_chat(body, request)

    async def _known(id: str) -> bool:
        """Whether stream `id` exists; True when the log cannot tell (resuming says 503)."""
        try:
            return await streams.head(id) is not None
        except LogUnavailable:
            return True

    @app.get(
        "/chat/stream",
        response_class=Response,
        responses={
            **responses(events=NATIVE_EVENTS, body=False),
            204: {"description": "An EventSource reconnecting after the end: stop"},
        },
        tags=["streamfn"],
    )
    async def chat_stream_get(query: Annotated[ChatQuery, Query()], request: Request) -> Response:
        """The same stream for `EventSource`, which can only GET. EventSource reconnects on
        its own with the last id it saw (`<stream>:<n>`): that resumes the stream."""
        last = request.headers.get("last-event-id")
        id, after = position(last)
        id = id or query.stream_id
        admitted = request.scope.get("streamfn.identity")
        if id is not None and (last is not None or await _known(id)):
            # A stream it cannot find (expired, or resume is off): 204 stops EventSource
            # cleanly, where a 404 would fire its error handler.
            return await resumes.resume(request, id, after, native.DIALECT, unknown=204)
        if last is not None or (admitted is not None and admitted.resume_only):
            # Nothing it names can be resumed, and a generation must not be paid for twice:
            # 204 tells EventSource to stop reconnecting (WHATWG HTML, "event stream
            # interpretation").
            return Response(status_code=204)
        return await native_chat(query.to_body(), request)

    @app.get(
        "/chat/stream/{id}",
        response_class=Response,
        responses={
            **responses(events=NATIVE_EVENTS, body=False),
            204: {"description": "Nothing left to send: the stream ended before that event"},
            **refusals(403, 404, why=STREAM_WHY),
        },
        tags=["streamfn"],
    )
    async def chat_stream_resume(
        id: StreamPathId, request: Request, after: Annotated[int | None, Query(ge=0)] = None
    ) -> Response:
        """Resume stream `id` (the `X-Stream-Id` of its response): the events after
        `Last-Event-ID` (or `?after=N`; none: from the start), then the rest live."""
        _, at = position(request.headers.get("last-event-id"), str(after or 0))
        return await resumes.resume(request, id, at, native.DIALECT)

    @app.post(
        "/chat/stream/{id}/stop",
        status_code=202,
        responses={
            **refusals(*GATE, *BODY, 404, why=STREAM_WHY),
        },
        tags=["streamfn"],
    )
    async def chat_stream_stop(id: StreamPathId, request: Request) -> Response:
        """End stream `id` now: its upstream request is cancelled, and its readers get a last
        `error` event of type `stopped`. (Leaving no longer does, with resume on.)"""
        return await resumes.stop(request, id, native.DIALECT)

    @app.post(
        "/v1/chat/completions",
        response_class=Response,
        responses=responses(events=UNNAMED, openai=True, json_too=True),
        tags=["OpenAI API"],
    )
    async def openai_chat_completions(body: openai.CompletionBody, request: Request) -> Response:
        """OpenAI's Chat Completions API, streaming or not. `model` is `provider/model`, a
        provider's name (its default model), or a model of the default provider."""
        try:
            spec, model = pipeline.route(body.model)
            chat = pipeline.admit(spec, lambda limits: body.to_request(model=model, limits=limits))
        except Refused as exc:
            return exc.response(openai.DIALECT)
        id = f"chatcmpl-{request_id(request)}"
        # OpenRouter's `models`: tried in order; `model` first, whether or not it is listed.
        fallbacks = [m for m in body.models or () if m != body.model]
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            encode = openai.ChunkEncoder(id=id, model=body.model, include_usage=include_usage)
            return await pipeline.stream(
                request, spec, chat, dialect=openai.DIALECT, encode=encode, fallbacks=fallbacks
            )

        def render(result: Completion) -> Response:
            return JSONResponse(openai.completion(result, id=id, model=body.model))

        return await pipeline.complete(
            request, spec, chat, dialect=openai.DIALECT, render=render, fallbacks=fallbacks
        )

    @app.get("/v1/models", tags=["OpenAI API"], responses=refusals(401, 403, openai=True))
    async def openai_models() -> dict[str, Any]:
        """The configured providers' default models, as `provider/model` ids: a list both
        OpenAI's SDKs and Anthropic's read (`models.list()`), each entry with both APIs'
        fields."""
        ids = [
            (s.name, f"{s.name}/{model}")
            for s in registry.specs
            for model in (s.models or (s.default_model,))
            if pipeline.allows(s.name, model)
        ]
        return {
            "object": "list",
            "data": [
                {
                    "id": id,
                    "object": "model",
                    "created": 0,
                    "owned_by": provider,
                    # Anthropic's ModelInfo (the anthropic SDK's types/model_info.py).
                    "type": "model",
                    "display_name": id,
                    "created_at": "1970-01-01T00:00:00Z",
                    "lifecycle": "active",
                }
                for provider, id in ids
            ],
            # Anthropic's page of a list.
            "has_more": False,
            "first_id": ids[0][1] if ids else None,
            "last_id": ids[-1][1] if ids else None,
        }

    @app.post(
        "/api/chat",
        response_class=Response,
        responses=responses(events=UNNAMED),
        tags=["Vercel AI SDK"],
    )
    async def aisdk_chat(body: aisdk.ChatBody, request: Request) -> Response:
        """The AI SDK's UI message stream, for `useChat` and its `DefaultChatTransport`."""
        try:
            spec, model = pipeline.resolve(body.provider, body.model)
            chat = pipeline.admit(spec, lambda limits: body.to_request(model=model, limits=limits))
        except Refused as exc:
            return exc.response(aisdk.DIALECT)
        encode = aisdk.PartEncoder(
            message_id=body.response_message_id(f"msg-{request_id(request)}"),
            provider=spec.name,
            model=model,
        )
        return await pipeline.stream(
            request,
            spec,
            chat,
            dialect=aisdk.DIALECT,
            encode=encode,
            fallbacks=body.fallbacks,
            chat_id=body.id,
        )

    @app.get(
        "/api/chat/{chat_id}/stream",
        response_class=Response,
        responses={
            **responses(events=UNNAMED, body=False),
            204: {"description": "No stream of this chat is running"},
        },
        tags=["Vercel AI SDK"],
    )
    async def aisdk_resume(chat_id: PathId, request: Request) -> Response:
        """The AI SDK's `resumeStream()` (`useChat({ resume: true })`): the chat's running
        stream, replayed whole from its `start` (same `messageId`), then live; 204 when none
        is running."""
        return await resumes.chat(request, chat_id, aisdk.DIALECT)

    @app.post(
        "/api/chat/{chat_id}/stop",
        status_code=202,
        responses={
            **refusals(*GATE, *BODY),
            **refusals(
                404, why={404: "The chat has no stream (or it is older than the log keeps)"}
            ),
        },
        tags=["Vercel AI SDK"],
    )
    async def aisdk_stop(chat_id: PathId, request: Request) -> Response:
        """Stop the chat's latest stream, as `POST /chat/stream/{id}/stop` does: for `useChat`
        with `resume`, whose own `stop()` only drops the connection."""
        return await resumes.stop_chat(request, chat_id, aisdk.DIALECT)

    @app.post("/chat/stream/token", tags=["streamfn"], responses=refusals(*GATE, *BODY))
    async def stream_token(query: TokenBody, request: Request) -> dict[str, Any]:
        """A single-use token, valid for a minute, for `GET /chat/stream` with exactly these
        fields: what `EventSource` (which cannot send headers) streams with when auth is on.
        `url` is the GET to open, relative to this server."""
        fields = query.model_dump(exclude_none=True, exclude={"token"})
        token, lifetime = None, None
        if gate.tokens is not None:
            # Its caller is the owner of the streams it starts, and may resume them with it.
            token, lifetime = await gate.tokens.mint(owner(request), fields)
            fields["token"] = token
        return {"token": token, "expires_in": lifetime, "url": f"chat/stream?{urlencode(fields)}"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if (prometheus := accountant.telemetry.prometheus) is not None:
        from streamfn.observability.prometheus import refusal as metrics_refusal

        @app.get("/metrics", response_class=Response, include_in_schema=False)
        async def metrics(request: Request) -> Response:
            """Prometheus' scrape (STREAMFN_METRICS=prometheus): with a streamfn credential
            when auth is on, else from this machine only."""
            refused = await metrics_refusal(request, gate, _refusal)
            return refused or prometheus.scrape(request.headers.get("accept"))

    @app.get("/providers")
    async def list_providers() -> dict[str, Any]:
        """The configured providers, their default models, and the default provider.

        `reachable` is false (with a `detail`) for a provider at an address of its own where
        nothing answers, like an Ollama that is not running; null where it is not checked."""
        specs = registry.specs
        found = await asyncio.gather(
            *(unreachable(s.address) if s.address else _unchecked() for s in specs)
        )
        listed = []
        for spec, why in zip(specs, found, strict=True):
            entry: dict[str, Any] = {"name": spec.name, "default_model": spec.default_model}
            entry["reachable"] = None if spec.address is None else why is None
            if why:
                entry["detail"] = why
            listed.append(entry)
        return {"default": registry.default, "providers": listed}

    # The chat page runs its own origin's script and styles and nothing else: no inline script,
    # no event handler attribute, no eval, no plugin, no frame. What a model writes is escaped
    # and sanitized before it reaches the DOM (static/markdown.js); should anything get past
    # that, this is what keeps it from running (issue #27). Trusted Types make every string
    # HTML sink (innerHTML, document.write, a script's text) throw unless the string went
    # through DOMPurify's policy, the one policy allowed. Attached images are data: URLs.
    page_policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types dompurify",
        ]
    )
    page_headers = {"content-security-policy": page_policy, "x-content-type-options": "nosniff"}

    # HEAD too: Claude Code checks that its base URL answers before it sends a request.
    @app.api_route(
        "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"), headers=page_headers)

    @app.get("/streamfn.js", include_in_schema=False)
    async def javascript_client() -> Response:
        """streamfn's JavaScript client, an ES module (see README, "JavaScript client")."""
        return Response(_static("streamfn.js"), media_type="text/javascript; charset=utf-8")

    # The page's own files, beside it at the root (the page names them relatively). The
    # Markdown bundle is built from web/ (make bundle) and committed.
    page_files = {
        "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
        "/markdown.js": ("markdown.js", "text/javascript; charset=utf-8"),
        "/chat.css": ("chat.css", "text/css; charset=utf-8"),
        "/favicon.svg": ("favicon.svg", "image/svg+xml"),
        # What a browser asks for on any page that names no icon (/docs, /healthz).
        "/favicon.ico": ("favicon.svg", "image/svg+xml"),
    }

    async def page_file(request: Request) -> Response:
        name, media_type = page_files[request.scope["route"].path]
        return Response(
            _static(name), media_type=media_type, headers={"x-content-type-options": "nosniff"}
        )

    for path in page_files:
        app.add_api_route(path, page_file, methods=["GET"], include_in_schema=False)

    return app
