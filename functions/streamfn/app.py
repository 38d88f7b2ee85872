"""The ASGI app, the same on uvicorn and in Lambda."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import cache
from importlib.resources import files
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import HTMLResponse, Response

from streamfn import __version__
from streamfn.accounting import Accountant, Accounted, identity, request_id
from streamfn.content import InvalidContent
from streamfn.dialects import native
from streamfn.dialects.native import ChatBody, ChatQuery
from streamfn.errors import error_response, on_http_error, on_validation_error
from streamfn.guard import Timeouts
from streamfn.limits import BodySizeLimit
from streamfn.providers import ProviderRegistry, ProviderSpec, UnknownProviderError
from streamfn.providers.registry import builtin_specs, default_provider
from streamfn.request import Limits, check
from streamfn.settings import Settings
from streamfn.stores import open_store
from streamfn.streaming import stream_chat
from streamfn.usage import Tally, UsageStore

logger = logging.getLogger(__name__)


@cache
def _demo_page() -> str:
    return (files("streamfn") / "static" / "index.html").read_text(encoding="utf-8")


def _deadline(request: Request, margin_s: float) -> float | None:
    """In Lambda, when the stream must have ended: the invocation deadline less a margin.

    Lambda is never told that a function URL's client left, so a stream runs until it ends or
    the invocation is killed; ending it first leaves time for a `timeout` event and the usage
    record. The Lambda context is in the scope under Mangum's key, `aws.context`.
    """
    context = request.scope.get("aws.context")
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.time() + float(remaining()) / 1000 - margin_s


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

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            try:
                await registry.aclose()
            finally:
                await accountant.aclose()

    app = FastAPI(title="streamfn", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.providers = registry
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization", "last-event-id"],
        )

    limits = Limits(
        max_images=settings.max_images,
        max_image_bytes=settings.max_image_bytes,
        max_tokens_cap=settings.max_tokens_cap,
    )

    async def start(body: ChatBody, request: Request) -> Response:
        try:
            spec = registry.spec(body.provider)
        except UnknownProviderError as exc:
            return error_response(400, "unknown_provider", str(exc), known=exc.known)
        try:
            chat = body.to_request(model=body.model or spec.default_model, limits=limits)
            check(chat, limits)
            spec.capabilities.check(chat, spec.name)
        except InvalidContent as exc:
            return error_response(400, "bad_request", exc.message, param=exc.param)
        timeouts = Timeouts(
            first_token_s=settings.first_token_timeout_s,
            idle_s=settings.idle_timeout_s,
            total_s=settings.total_timeout_s,
            deadline=_deadline(request, settings.deadline_margin_s),
        )
        tally = Tally(request_id(request), identity(request), spec.name, chat)
        response = await stream_chat(
            registry.get(spec.name),
            tally,
            request,
            dialect=native.events,
            timeouts=timeouts,
            retry_ms=settings.retry_ms,
            keepalive_s=settings.keepalive_s,
        )
        return Accounted(response, tally, accountant)

    @app.post("/chat/stream", response_class=Response)
    async def chat_stream_post(body: ChatBody, request: Request) -> Response:
        """Stream a chat completion as Server-Sent Events."""
        return await start(body, request)

    @app.get("/chat/stream", response_class=Response)
    async def chat_stream_get(query: Annotated[ChatQuery, Query()], request: Request) -> Response:
        """The same stream for `EventSource`, which can only GET."""
        if "last-event-id" in request.headers:
            # EventSource reconnects after every stream ends, sending the last id it saw. A
            # generation cannot be resumed and must not be paid for twice: 204 tells
            # EventSource to stop reconnecting (WHATWG HTML, "event stream interpretation").
            return Response(status_code=204)
        return await start(query.to_body(), request)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/providers")
    async def list_providers() -> dict[str, Any]:
        """The configured providers, their default models, and the default provider."""
        return {
            "default": registry.default,
            "providers": [
                {"name": s.name, "default_model": s.default_model} for s in registry.specs
            ],
        }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(_demo_page())

    return app
