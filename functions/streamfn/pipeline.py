"""The one request pipeline every client protocol's route goes through.

A route parses its protocol's body; then, the same for all of them: the provider and model are
resolved, the content admitted (checks that span fields, what the provider can take), the
provider's stream guarded and tallied, the answer streamed (or collected) in the protocol's
dialect, and the request's account settled. No route repeats any of it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from fnmatch import fnmatchcase

from starlette.requests import Request
from starlette.responses import Response

from streamfn.accounting import Accountant, Accounted, identity, owner, request_id
from streamfn.chunks import Finish, StreamChunk, StreamError, Usage
from streamfn.content import InvalidContent
from streamfn.dialects import Dialect, Encode
from streamfn.guard import Bounds, guard
from streamfn.observability import Trail
from streamfn.prices import Prices
from streamfn.providers import ProviderRegistry, ProviderSpec, UnknownProviderError
from streamfn.quotas import Exceeded, Quota, Quotas, Unavailable, from_settings
from streamfn.request import ChatRequest, Limits, check
from streamfn.resilience import RetryPolicy, candidate_names, first_success
from streamfn.resume import Head, LogUnavailable
from streamfn.resume.live import Streams
from streamfn.routing import Listed, ModelRoutes
from streamfn.settings import Settings
from streamfn.streaming import Completion, complete_response, stream_response
from streamfn.usage import Tally

logger = logging.getLogger("streamfn")

Ending = Callable[[Finish | StreamError], Awaitable[None]]
"""What a route does with a stream's final chunk before it is passed on (and so before its
client can see the end): the Responses API stores the response there."""


async def _ending(
    chunks: AsyncGenerator[StreamChunk, None], before_end: Ending
) -> AsyncGenerator[StreamChunk, None]:
    try:
        async for chunk in chunks:
            if isinstance(chunk, Finish | StreamError):
                await before_end(chunk)
            yield chunk
    finally:
        await chunks.aclose()


class Refused(Exception):
    """A request refused before it reaches a provider; the route renders it in its dialect."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.headers = headers

    def response(self, dialect: Dialect) -> Response:
        return dialect.error(
            self.status,
            self.type,
            self.message,
            param=self.param,
            retryable=self.status == 429,
            headers=self.headers,
        )


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


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        registry: ProviderRegistry,
        accountant: Accountant,
        streams: Streams,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.accountant = accountant
        self.streams = streams
        self.routes = ModelRoutes(
            settings.model_aliases, (Listed(s.name, s.models) for s in registry.specs)
        )
        self.quotas: Quotas = from_settings(settings)
        self.quota = Quota(
            settings.requests_per_minute,
            settings.concurrent_streams,
            settings.tokens_per_day,
            settings.budget_usd_per_day,
        )
        self.prices = Prices.from_settings(settings)
        self.prices.preload(spec.name for spec in registry.specs)
        self._unpriced: set[str] = set()  # models admitted on a budget without a price
        self.limits = Limits(
            max_images=settings.max_images,
            max_image_bytes=settings.max_image_bytes,
            max_tokens_cap=settings.max_tokens_cap,
            max_messages=settings.max_messages,
            max_input_chars=settings.max_input_chars,
        )

    def resolve(self, provider: str | None, model: str | None) -> tuple[ProviderSpec, str]:
        """The provider (the default when None) and the model (its default when None)."""
        try:
            spec = self.registry.spec(provider)
        except UnknownProviderError as exc:
            raise Refused(400, "unknown_provider", str(exc), "provider") from None
        model = model or spec.default_model
        if not self.allows(spec.name, model):
            raise Refused(
                403,
                "forbidden",
                f"{spec.name}/{model} is not allowed here (STREAMFN_ALLOWED_MODELS)",
                "model",
            )
        if spec.models is not None and model not in spec.models:
            raise Refused(
                400,
                "unknown_model",
                f"{spec.name} has no model {model!r}; its models: {', '.join(spec.models)}",
                "model",
            )
        return spec, model

    def allows(self, provider: str, model: str) -> bool:
        """Whether `provider/model` matches STREAMFN_ALLOWED_MODELS (all do when it is empty)."""
        patterns = self.settings.allowed_models
        return not patterns or any(fnmatchcase(f"{provider}/{model}", p) for p in patterns)

    def route(self, name: str | None) -> tuple[ProviderSpec, str]:
        """A model name as the OpenAI and Anthropic APIs' clients give it: an alias
        (STREAMFN_MODEL_ALIASES), `provider/model`, a provider's name (its default model), or a
        bare model (the provider that has it, else the default provider's); see
        `streamfn.routing`."""
        return self.resolve(*self.routes.target(name))

    def admit(self, spec: ProviderSpec, build: Callable[[Limits], ChatRequest]) -> ChatRequest:
        """The request `build` makes, once it passes every check; else `Refused`, naming the
        field."""
        try:
            chat = build(self.limits)
            check(chat, self.limits)
            spec.capabilities.check(chat, spec.name)
        except InvalidContent as exc:
            raise Refused(400, "bad_request", exc.message, exc.param) from None
        return chat

    @staticmethod
    def key_allows(request: Request, provider: str, model: str) -> bool:
        """Whether the caller's API key may use `provider/model` (`keys create --models`);
        a key without such a list, or no key, may use any."""
        admitted = request.scope.get("streamfn.identity")
        patterns = admitted.limits.get("models") if admitted is not None else None
        return not patterns or any(fnmatchcase(f"{provider}/{model}", p) for p in patterns)

    async def _lease(self, request: Request, tally: Tally) -> None:
        """Hold the caller's limits for this request; `Refused` with a 429 when one is reached
        (`budget_exceeded` for a budget), and with a 403 for a model a key is not allowed.
        The tally prices the request from here on."""
        provider, model = tally.provider, tally.request.model
        if not self.key_allows(request, provider, model):
            raise Refused(403, "forbidden", f"this API key may not use {provider}/{model}", "model")
        tally.prices = self.prices
        await self.prices.prepare(provider, model)  # genai-prices' data, loaded once
        admitted = request.scope.get("streamfn.identity")
        quota = self.quota.overridden(admitted.limits) if admitted is not None else self.quota
        if quota.unlimited:
            return
        chat = tally.request
        input_tokens = Usage.estimate(chat.prompt_text(), "").input_tokens
        reserve = input_tokens + (chat.max_tokens or 0)
        reserve_usd = None
        if quota.budget_usd is not None:
            # What it could cost at most: input, and max_tokens of output (the cap when it
            # asked for none; with no cap, its input only).
            reserve_usd = self.prices.most(
                provider, model, input_tokens, chat.max_tokens or 0, at=tally.started_at
            )
            if reserve_usd is None and f"{provider}/{model}" not in self._unpriced:
                self._unpriced.add(f"{provider}/{model}")
                logger.warning(
                    "%s/%s has no known price (STREAMFN_PRICES can give it one): requests to "
                    "it are admitted on a budget without reserving anything, and cost nothing "
                    "there",
                    provider,
                    model,
                )
        try:
            lease = await self.quotas.acquire(owner(request), quota, reserve, reserve_usd)
        except Exceeded as exc:
            retry_after = str(max(1, math.ceil(exc.retry_after_s)))
            raise Refused(
                429, exc.type, exc.message, headers={"Retry-After": retry_after}
            ) from None
        except Unavailable as exc:
            logger.error("limits store unavailable (%s): refusing rather than not counting", exc)
            raise Refused(
                503,
                "unavailable",
                "limits cannot be checked just now",
                headers={"Retry-After": "1"},
            ) from None
        tally.hold(lease)

    def _candidates(
        self, request: Request, spec: ProviderSpec, chat: ChatRequest, fallbacks: Sequence[str]
    ) -> list[tuple[ProviderSpec, ChatRequest]]:
        """`spec` with `chat`, then each fallback that exists, is allowed here and for the
        caller's key, and can take this request (the others are skipped, and logged)."""
        out = [(spec, chat)]
        for name in candidate_names(fallbacks, self.settings.fallbacks, spec.name, chat.model):
            try:
                other, model = self.route(name)
                moved = replace(chat, model=model)
                other.capabilities.check(moved, other.name)
            except (Refused, InvalidContent) as exc:
                logger.info("fallback %s skipped: %s", name, exc.message)
                continue
            if not self.key_allows(request, other.name, model):
                logger.info("fallback %s skipped: the caller's key may not use it", name)
                continue
            out.append((other, moved))
        return out

    async def _start(
        self,
        request: Request,
        spec: ProviderSpec,
        chat: ChatRequest,
        fallbacks: Sequence[str],
        before_end: Ending | None = None,
        *,
        trail: Trail,
    ) -> tuple[Tally, AsyncGenerator[StreamChunk, None]]:
        tally = Tally(
            request_id(request),
            identity(request),
            spec.name,
            chat,
            keep_text=self.settings.log_content,
        )
        await self._lease(request, tally)
        candidates = self._candidates(request, spec, chat, fallbacks)
        settings = self.settings
        deadline = _deadline(request, settings.deadline_margin_s)

        def open_attempt(index: int, first_token_s: float) -> AsyncGenerator[StreamChunk, None]:
            spec, chat = candidates[index]
            trail.started(index, spec.name, chat.model)
            bounds = Bounds(
                first_token_s=first_token_s,
                idle_s=settings.idle_timeout_s,
                total_s=settings.total_timeout_s,
                deadline=deadline,
                max_chars=settings.max_stream_bytes,
            )
            return guard(self.registry.get(spec.name).stream(chat), bounds)

        def served(index: int) -> None:
            tally.provider, tally.request = candidates[index][0].name, candidates[index][1]
            tally.served = True

        chunks = first_success(
            len(candidates),
            open_attempt,
            RetryPolicy(settings.upstream_retries, max_wait_s=settings.retry_max_wait_s),
            settings.first_token_timeout_s,
            served,
            on_failed=trail.failed,
        )
        self.accountant.open(tally, trail)
        observed = tally.observe(chunks)
        if tally.lease is None and before_end is None:
            return tally, observed

        async def end(chunk: Finish | StreamError) -> None:
            await self.accountant.release(tally)
            if before_end is not None:
                await before_end(chunk)

        return tally, _ending(observed, end)

    async def stream(
        self,
        request: Request,
        spec: ProviderSpec,
        chat: ChatRequest,
        *,
        dialect: Dialect,
        encode: Encode,
        fallbacks: Sequence[str] = (),
        stream_id: str | None = None,
        chat_id: str | None = None,
        before_end: Ending | None = None,
    ) -> Response:
        """`chat`'s answer from `spec`'s provider (or a fallback's), streamed as `encode`'s
        events: resumable by its caller as stream `stream_id` (by default the request's id),
        and as the AI SDK chat `chat_id`'s latest. `before_end` is awaited with the final
        chunk before `encode` sees it (a producer encodes each chunk before it asks for the
        next, so `encode` has seen every earlier one)."""
        try:
            await self._unused(stream_id)
            trail = Trail(spec.name, chat.model, streamed=True, conversation=chat_id)
            tally, chunks = await self._start(
                request, spec, chat, fallbacks, before_end, trail=trail
            )
        except Refused as exc:
            return exc.response(dialect)
        head = self._head(request, stream_id, chat_id, tally)
        response = await stream_response(
            self.streams.start(head, chunks, encode),
            request,
            dialect=dialect,
            retry_ms=self.settings.retry_ms,
            keepalive_s=self.settings.keepalive_s,
            write_timeout_s=self.settings.write_timeout_s,
            early_commit_s=self.settings.early_commit_s,
        )
        return Accounted(response, tally, self.accountant, trail)

    async def _unused(self, stream_id: str | None) -> None:
        """`Refused` (409) for a `stream_id` already taken; 503 when that cannot be told."""
        if stream_id is None:
            return
        try:
            taken = await self.streams.head(stream_id) is not None
        except LogUnavailable:
            raise Refused(
                503,
                "unavailable",
                "the stream log cannot be reached just now, so stream_id cannot be checked: "
                "try again shortly, or leave stream_id out",
                "stream_id",
                headers={"Retry-After": "1"},
            ) from None
        if taken:
            raise Refused(
                409,
                "conflict",
                f"stream {stream_id} exists: resume it with GET /chat/stream/{stream_id}, or "
                "start a new stream with a new id",
                "stream_id",
            )

    def _head(
        self, request: Request, stream_id: str | None, chat_id: str | None, tally: Tally
    ) -> Head:
        """A new stream's head, with its usage record as opened."""
        settings = self.settings
        now = time.time()
        # By then it has ended: its total timeout, a grace period, and time to write its end.
        ends_by = now + settings.total_timeout_s + settings.resume_grace_s + 60
        return Head(
            id=stream_id or request_id(request),
            owner=owner(request),
            chat=chat_id,
            started_at=now,
            ends_by=min(ends_by, _deadline(request, 0) or ends_by),
            record=tally.opening().to_json() if self.accountant.store is not None else None,
        )

    async def complete(
        self,
        request: Request,
        spec: ProviderSpec,
        chat: ChatRequest,
        *,
        dialect: Dialect,
        render: Callable[[Completion], Response],
        fallbacks: Sequence[str] = (),
    ) -> Response:
        """`chat`'s whole answer in one response, rendered by `render`."""
        try:
            trail = Trail(spec.name, chat.model, streamed=False)
            tally, chunks = await self._start(request, spec, chat, fallbacks, trail=trail)
        except Refused as exc:
            return exc.response(dialect)
        response = await complete_response(chunks, request, dialect=dialect, render=render)
        response.headers.update(tally.usage_headers())
        return Accounted(response, tally, self.accountant, trail)
