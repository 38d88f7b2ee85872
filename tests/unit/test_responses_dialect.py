"""The Responses dialect's encoder on its own: what `final` makes without changing the stream,
a stream's will (a copy, kept small), and the same items streamed or not."""

from __future__ import annotations

import copy
import json
from typing import Any

from streamfn.chunks import Finish, StreamError, TextDelta, ToolCallDelta, ToolCallStart, Usage
from streamfn.content import ToolCall
from streamfn.dialects.responses import ResponseEncoder, ResponsesBody, complete, skeleton
from streamfn.streaming import Completion

TOOLS = [{"type": "function", "name": "f", "parameters": {"type": "object"}}]


def encoder() -> ResponseEncoder:
    body = ResponsesBody(model="echo", input="hi", tools=TOOLS)
    return ResponseEncoder(skeleton(body, id="resp_r1", created_at=0), rid="r1", encrypted=False)


def payloads(events: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events]


def test_final_closes_open_items_in_a_copy_and_the_stream_goes_on_the_same() -> None:
    encode = encoder()
    encode(TextDelta("a"))
    encode(ToolCallStart("c1", "f"))
    encode(ToolCallDelta("c1", '{"x":'))
    finish = Finish("tool_calls", Usage(2, 3))
    predicted = encode.final(finish)
    assert [o["type"] for o in predicted["output"]] == ["message", "function_call"]
    assert predicted["output"][1]["arguments"] == '{"x":'  # as far as it came
    # Nothing changed: the stream's own end makes the same response (but its completed_at).
    last = payloads(encode(finish))[-1]
    assert last["type"] == "response.completed"
    assert last["response"]["output"] == predicted["output"]
    assert last["response"]["usage"] == predicted["usage"]


def test_a_will_is_a_copy_and_small() -> None:
    encode = encoder()
    encode(TextDelta("some text"))
    will = payloads(copy.deepcopy(encode)(StreamError("interrupted", "lost", retryable=True)))
    assert [w["type"] for w in will] == ["error", "response.failed"]
    failed = will[1]["response"]
    assert (failed["status"], failed["output"], failed["tools"]) == ("failed", [], [])
    # The original goes on, its item still open and its numbering its own.
    events = payloads(encode(TextDelta(" more")))
    assert events[0]["delta"] == " more"
    assert events[0]["sequence_number"] == 5  # created, in_progress, added, part, delta: 0-4
    done = payloads(encode(Finish("stop", Usage(1, 2))))[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == "some text more"
    assert done["tools"] == TOOLS


def test_a_whole_answer_has_the_items_a_stream_would_have() -> None:
    call = ToolCall("c1", "f", '{"x": 1}')
    finish = Finish("tool_calls", Usage(2, 3))
    whole = complete(encoder(), Completion("text", (), (call,), finish))
    streamed = encoder()
    for chunk in (TextDelta("text"), ToolCallStart("c1", "f"), ToolCallDelta("c1", '{"x": 1}')):
        streamed(chunk)
    assert whole["output"] == streamed.final(finish)["output"]
