"""Anthropic's Messages API routes: `POST /v1/messages` and `POST /v1/messages/count_tokens`
(streamfn.dialects.anthropic has the protocol)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from streamfn.accounting import request_id
from streamfn.dialects import anthropic
from streamfn.openapi import ANTHROPIC_EVENTS, ANTHROPIC_STATUSES, BODY, GATE, refusals, responses
from streamfn.pipeline import Pipeline, Refused
from streamfn.providers import ProviderSpec
from streamfn.providers.base import TokenCounter
from streamfn.request import ChatRequest
from streamfn.streaming import Completion, error_response


def add_routes(app: FastAPI, pipeline: Pipeline) -> None:
    """The Messages API's routes on `app`."""
    registry = pipeline.registry

    def anthropic_chat(
        body: anthropic.CountBody, request: Request
    ) -> tuple[ProviderSpec, ChatRequest]:
        """A Messages body's provider and request; `Refused` in Anthropic's shape."""
        spec, model = pipeline.route(body.model)
        capabilities = spec.capabilities
        # The Anthropic provider is sent the body itself (providers.anthropic_native).
        headers = {k: v for k, v in request.headers.items() if k in anthropic.FORWARDED_HEADERS}
        beta = request.query_params.get("beta")
        chat = pipeline.admit(
            spec,
            lambda limits: body.to_request(
                model=model,
                limits=limits,
                native=spec.name == "anthropic",
                headers=headers,
                query={"beta": beta} if beta is not None else {},
                budgets=capabilities.reasoning_budget,
                efforts=capabilities.efforts,
            ),
        )
        return spec, chat

    @app.post(
        "/v1/messages",
        response_class=Response,
        responses=responses(events=ANTHROPIC_EVENTS, anthropic=True, json_too=True),
        tags=["Anthropic API"],
    )
    async def anthropic_messages(body: anthropic.MessagesBody, request: Request) -> Response:
        """Anthropic's Messages API, streaming or not, over any provider. `model` as on
        `/v1/chat/completions` (`provider/model`, an alias, `claude-*` to Anthropic); from
        Anthropic the body is passed on as it came, `anthropic-beta` and all."""
        try:
            spec, chat = anthropic_chat(body, request)
        except Refused as exc:
            return exc.response(anthropic.DIALECT)
        id = f"msg_{request_id(request)}"
        if body.stream:
            encode = anthropic.MessageEncoder(
                id=id, model=body.model, input_tokens=anthropic.estimate_input_tokens(chat)
            )
            return await pipeline.stream(
                request, spec, chat, dialect=anthropic.DIALECT, encode=encode
            )

        def render(result: Completion) -> Response:
            return JSONResponse(anthropic.message(result, id=id, model=body.model))

        return await pipeline.complete(
            request, spec, chat, dialect=anthropic.DIALECT, render=render
        )

    @app.post(
        "/v1/messages/count_tokens",
        tags=["Anthropic API"],
        responses={
            200: {
                "description": "The input's tokens: Anthropic's count from Anthropic, an "
                "estimate (`estimated: true`) from any other provider",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **refusals(*GATE, *BODY, 429, 503, 504, *ANTHROPIC_STATUSES, anthropic=True),
        },
    )
    async def anthropic_count_tokens(body: anthropic.CountBody, request: Request) -> Response:
        """The tokens of a Messages request's input: Anthropic's own count from Anthropic
        (its count_tokens); from any other provider an estimate, marked `"estimated": true`
        (four characters a token, 1,600 an image)."""
        try:
            spec, chat = anthropic_chat(body, request)
            if not pipeline.key_allows(request, spec.name, chat.model):
                model = f"{spec.name}/{chat.model}"
                raise Refused(403, "forbidden", f"this API key may not use {model}", "model")
        except Refused as exc:
            return exc.response(anthropic.DIALECT)
        provider = registry.get(spec.name)
        if not isinstance(provider, TokenCounter):
            estimate = anthropic.estimate_input_tokens(chat)
            return JSONResponse({"input_tokens": estimate, "estimated": True})
        counted = await provider.count_tokens(chat)
        if isinstance(counted, int):
            return JSONResponse({"input_tokens": counted})
        return error_response(anthropic.DIALECT, counted)
