"""The ASGI app, the same on uvicorn and in Lambda."""

from __future__ import annotations

import logging
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
from streamfn.accounting import Accountant
from streamfn.dialects import native
from streamfn.dialects.native import ChatBody, ChatQuery
from streamfn.errors import on_http_error, on_validation_error
from streamfn.limits import BodySizeLimit
from streamfn.pipeline import Pipeline, Refused
from streamfn.providers import ProviderRegistry, ProviderSpec
from streamfn.providers.registry import builtin_specs, default_provider
from streamfn.settings import Settings
from streamfn.stores import open_store
from streamfn.usage import UsageStore

logger = logging.getLogger(__name__)


@cache
def _demo_page() -> str:
    return (files("streamfn") / "static" / "index.html").read_text(encoding="utf-8")


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

    pipeline = Pipeline(settings, registry, accountant)

    async def native_chat(body: ChatBody, request: Request) -> Response:
        try:
            spec, model = pipeline.resolve(body.provider, body.model)
            chat = pipeline.admit(spec, lambda limits: body.to_request(model=model, limits=limits))
        except Refused as exc:
            return exc.response(native.DIALECT)
        return await pipeline.stream(
            request, spec, chat, dialect=native.DIALECT, encode=native.events
        )

    @app.post("/chat/stream", response_class=Response)
    async def chat_stream_post(body: ChatBody, request: Request) -> Response:
        """Stream a chat completion as Server-Sent Events."""
        return await native_chat(body, request)

    @app.get("/chat/stream", response_class=Response)
    async def chat_stream_get(query: Annotated[ChatQuery, Query()], request: Request) -> Response:
        """The same stream for `EventSource`, which can only GET."""
        if "last-event-id" in request.headers:
            # EventSource reconnects after every stream ends, sending the last id it saw. A
            # generation cannot be resumed and must not be paid for twice: 204 tells
            # EventSource to stop reconnecting (WHATWG HTML, "event stream interpretation").
            return Response(status_code=204)
        return await native_chat(query.to_body(), request)

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
