"""The OpenAI Responses API's routes: `POST /v1/responses`, `GET` and `DELETE
/v1/responses/{id}` (streamfn.dialects.responses has the protocol; streamfn.stored the store).

A request chains from a stored response (`previous_response_id`: its context, input and output,
come before the new input) or refers to stored items (`item_reference`, which the AI SDK sends
for reasoning it was given); both are the caller's own responses only, as `GET` and `DELETE`
are: another identity's, an expired one and one that never was are all 404. A response made
with `store: true` is stored before its last event is sent, so that a client that chains from
it at once finds it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from streamfn.accounting import owner, request_id
from streamfn.chunks import Finish, StreamError
from streamfn.controls import NO_CONTROLS
from streamfn.dialects import responses
from streamfn.dialects.openai import DIALECT
from streamfn.dialects.responses_request import Item, ResponsesBody, expand
from streamfn.openapi import RESPONSES_EVENTS, refusals
from streamfn.openapi import responses as documented
from streamfn.pipeline import Pipeline, Refused
from streamfn.response_ids import response_of
from streamfn.stored import ResponseStore, Stored, StoredUnavailable
from streamfn.streaming import Completion

logger = logging.getLogger(__name__)

# A response's id in a path: a store key.
ResponseId = Annotated[str, Path(pattern=NO_CONTROLS, max_length=256)]
# How long a stored response's end gives the stream's start and first write (`store`).
_FIRST_WRITES_S = 0.001
WHY = {404: "No stored response of the caller's has this id (or it has expired)"}


def _unavailable(exc: StoredUnavailable) -> Refused:
    logger.error("the response store is unavailable: %s", exc)
    return Refused(
        503,
        "unavailable",
        "stored responses cannot be reached just now",
        headers={"Retry-After": "1"},
    )


def _not_found(id: str, param: str | None = None) -> Refused:
    what = "Previous response" if param == "previous_response_id" else "Response"
    return Refused(404, "not_found", f"{what} with id '{id}' not found.", param)


class StoredResponses:
    """The store as the routes use it: the records they keep, found only for their owner."""

    def __init__(self, store: ResponseStore | None, ttl_s: float) -> None:
        self.store = store
        self._ttl_s = ttl_s

    async def prepare(self) -> None:
        """Open the store at start-up; serving goes on if it cannot be reached (what needs it
        answers 503 until it can)."""
        if self.store is None:
            return
        try:
            await self.store.prepare()
        except StoredUnavailable as exc:
            logger.error("stored responses cannot be reached at start-up: %s", exc)

    async def _record(self, id: str, who: str, param: str | None = None) -> dict[str, Any]:
        if self.store is None:
            raise _not_found(id, param)
        try:
            stored = await self.store.get(id, who)
        except StoredUnavailable as exc:
            raise _unavailable(exc) from None
        if stored is None:
            raise _not_found(id, param)
        record: dict[str, Any] = json.loads(stored.body)
        return record

    async def response(self, id: str, who: str) -> dict[str, Any]:
        response: dict[str, Any] = (await self._record(id, who))["response"]
        return response

    async def context(self, body: ResponsesBody, who: str) -> list[Item]:
        """What the request goes on from: the previous response's context and output, then
        its input with each `item_reference` replaced by the item it names."""
        items: list[Item] = []
        if body.previous_response_id is not None:
            record = await self._record(body.previous_response_id, who, "previous_response_id")
            items = [*record["context"], *record["output"]]
        found: dict[str, Item] = {}
        records: dict[str, dict[str, Any]] = {}
        for i, item_id in enumerate(body.references()):
            response_id = response_of(item_id)
            if response_id is None:
                raise _not_found(item_id, f"input.{i}.id")
            if response_id not in records:
                records[response_id] = await self._record(response_id, who, f"input.{i}.id")
            output = records[response_id]["output"]
            item = next((o for o in output if o.get("id") == item_id), None)
            if item is None:
                raise _not_found(item_id, f"input.{i}.id")
            found[item_id] = item
        return [*items, *expand(body.items(), found)]

    async def put(
        self, response: dict[str, Any], shown: dict[str, Any], context: list[Item], who: str
    ) -> None:
        """Keep `response` (as its client was `shown` it, for GET; its output whole, reasoning
        signed, for a chain), after `context`; a store that cannot be reached loses it (logged),
        not the answer."""
        if self.store is None:
            return
        record = {"response": shown, "output": response["output"], "context": context}
        # ASCII: a lone surrogate a client sent (in metadata, say) is kept, not a failed write.
        body = json.dumps(record)
        stored = Stored(response["id"], who, float(response["created_at"]), body)
        try:
            await self.store.put(stored, ttl_s=self._ttl_s)
        except StoredUnavailable as exc:
            logger.error("response %s was not stored: %s", response["id"], exc)

    async def delete(self, id: str, who: str) -> None:
        if self.store is None:
            raise _not_found(id)
        try:
            deleted = await self.store.delete(id, who)
        except StoredUnavailable as exc:
            raise _unavailable(exc) from None
        if not deleted:
            raise _not_found(id)


class NoWebSockets:
    """Codex's WebSocket transport (a GET with `Upgrade: websocket` to /v1/responses before its
    first POST, for OpenAI's own provider or one with `supports_websockets`) is not served, and
    said so with a 426, on which Codex goes over HTTP at once for the rest of its session (to a
    404 or a 405 it retries the handshake for about 7 s first). Ahead of routing: GET is no
    route of /v1/responses'."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/responses":
            upgrade = next((v for k, v in scope["headers"] if k == b"upgrade"), b"")
            if upgrade.lower() == b"websocket":
                message = "WebSockets are not served here: POST /v1/responses over HTTP"
                refusal = DIALECT.error(426, "upgrade_required", message)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def add_routes(app: FastAPI, pipeline: Pipeline, kept: StoredResponses) -> None:
    """The Responses API's routes on `app`."""

    @app.post(
        "/v1/responses",
        response_class=Response,
        responses=documented(events=RESPONSES_EVENTS, openai=True, json_too=True),
        tags=["OpenAI API"],
    )
    async def create_response(body: ResponsesBody, request: Request) -> Response:
        """OpenAI's Responses API, streaming or not, over any provider. `model` as on
        `/v1/chat/completions`; `store` (the default) keeps the response for `GET`,
        `previous_response_id` and `item_reference`s, for STREAMFN_RESPONSES_TTL_S."""
        who = owner(request)
        try:
            items = await kept.context(body, who)
            spec, model = pipeline.route(body.model)
            capabilities = spec.capabilities
            chat = pipeline.admit(
                spec,
                lambda limits: body.to_request(
                    model=model,
                    limits=limits,
                    items=items,
                    native=capabilities.responses,
                    budgets=capabilities.reasoning_budget,
                    efforts=capabilities.efforts,
                ),
            )
        except Refused as exc:
            return exc.response(DIALECT)
        rid = request_id(request)
        stores = body.store and kept.store is not None
        skeleton = responses.skeleton(body, id=f"resp_{rid}", created_at=time.time())
        skeleton["store"] = stores  # false where nothing is kept (Lambda without a table)
        encoder = responses.ResponseEncoder(
            skeleton, rid=rid, encrypted=responses.include_encrypted(body)
        )
        if body.stream:

            async def store(chunk: Finish | StreamError) -> None:
                # The stored response is built, serialized and written before the last event
                # goes out, but not before the first: an answer that came in one upstream read
                # (one short reply) would otherwise have its first token wait on that work,
                # while the response's start and first write are still being scheduled. A
                # millisecond lets them go first; only the end of the stream waits for it.
                await asyncio.sleep(_FIRST_WRITES_S)
                response = encoder.final(chunk)
                await kept.put(response, encoder.shown(response), items, who)

            return await pipeline.stream(
                request,
                spec,
                chat,
                dialect=DIALECT,
                encode=encoder,
                before_end=store if stores else None,
            )
        made: list[dict[str, Any]] = []

        def render(result: Completion) -> Response:
            made.append(responses.complete(encoder, result))
            return JSONResponse(encoder.shown(made[0]))

        response = await pipeline.complete(request, spec, chat, dialect=DIALECT, render=render)
        if made and stores:
            await kept.put(made[0], encoder.shown(made[0]), items, who)
        return response

    @app.get(
        "/v1/responses/{id}",
        tags=["OpenAI API"],
        responses=refusals(401, 403, 404, 422, 503, openai=True, why=WHY),
    )
    async def get_response(id: ResponseId, request: Request) -> Response:
        """A stored response of the caller's, as its last event had it."""
        try:
            return JSONResponse(await kept.response(id, owner(request)))
        except Refused as exc:
            return exc.response(DIALECT)

    @app.delete(
        "/v1/responses/{id}",
        tags=["OpenAI API"],
        responses=refusals(401, 403, 404, 422, 503, openai=True, why=WHY),
    )
    async def delete_response(id: ResponseId, request: Request) -> Response:
        """Delete a stored response of the caller's."""
        try:
            await kept.delete(id, owner(request))
        except Refused as exc:
            return exc.response(DIALECT)
        return JSONResponse({"id": id, "object": "response.deleted", "deleted": True})
