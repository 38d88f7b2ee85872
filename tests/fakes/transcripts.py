"""Byte-exact upstream transcripts of tool calls and reasoning, one per wire behaviour.

Each is the body a provider's server really sends (OpenAI and compatible servers' SSE chunks,
Anthropic's Messages events, Ollama's NDJSON), written out byte for byte, including the ways
real servers deviate from the reference: they are what the provider tests replay.
"""

from __future__ import annotations

# --- OpenAI chat.completion.chunk ------------------------------------------------------------
# The envelope of every chunk; only `choices` (and the last chunk's `usage`) vary.
_HEAD = '{"id":"chatcmpl-7","object":"chat.completion.chunk","created":1764000000,"model":"m",'


def _oai(choice: str) -> bytes:
    return f'data: {_HEAD}"choices":[{choice}]}}\n\n'.encode()


def _oai_delta(delta: str, finish: str = "null") -> bytes:
    return _oai(f'{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}')


OAI_USAGE = (
    f'data: {_HEAD}"choices":[],"usage":{{"prompt_tokens":30,"completion_tokens":12,'
    '"total_tokens":42,"prompt_tokens_details":{"cached_tokens":8},'
    '"completion_tokens_details":{"reasoning_tokens":5}}}\n\n'
).encode()
OAI_DONE = b"data: [DONE]\n\n"

# OpenAI's own form: id, type and name in a call's first fragment, arguments after it by index;
# two parallel calls.
OPENAI_PARALLEL_CALLS = [
    _oai_delta(
        '{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_w",'
        '"type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null}'
    ),
    _oai_delta('{"tool_calls":[{"index":0,"function":{"arguments":"{\\"ci"}}]}'),
    _oai_delta('{"tool_calls":[{"index":0,"function":{"arguments":"ty\\": \\"Paris\\"}"}}]}'),
    _oai_delta(
        '{"tool_calls":[{"index":1,"id":"call_t","type":"function",'
        '"function":{"name":"get_time","arguments":""}}]}'
    ),
    _oai_delta('{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}'),
    _oai_delta("{}", '"tool_calls"'),
    OAI_USAGE,
    OAI_DONE,
]

# Servers that leave `index` out: one call in flight at a time, continuation by position.
OPENAI_NO_INDEX = [
    _oai_delta(
        '{"role":"assistant","tool_calls":[{"id":"call_a","type":"function",'
        '"function":{"name":"get_weather","arguments":"{\\"city\\""}}]}'
    ),
    _oai_delta('{"tool_calls":[{"function":{"arguments":": \\"Oslo\\"}"}}]}'),
    _oai_delta("{}", '"tool_calls"'),
    OAI_USAGE,
    OAI_DONE,
]

# Ollama's OpenAI-compatible endpoint: every parallel call whole, each at index 0.
OPENAI_OLLAMA_INDEX_ZERO = [
    _oai_delta(
        '{"role":"assistant","content":"","tool_calls":[{"id":"call_1","index":0,'
        '"type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Rome\\"}"}}]}'
    ),
    _oai_delta(
        '{"role":"assistant","content":"","tool_calls":[{"id":"call_2","index":0,'
        '"type":"function","function":{"name":"get_weather","arguments":"{\\"city\\":\\"Lima\\"}"}}]}'
    ),
    _oai_delta('{"role":"assistant","content":""}', '"tool_calls"'),
    OAI_USAGE,
    OAI_DONE,
]

# An id restated as "" on every later fragment (and the name as ""), and two calls whose
# indices collide, told apart by id: one continues by restating its id.
OPENAI_EMPTY_IDS_AND_COLLISIONS = [
    _oai_delta(
        '{"tool_calls":[{"index":0,"id":"call_x","type":"function",'
        '"function":{"name":"get_weather","arguments":""}}]}'
    ),
    _oai_delta('{"tool_calls":[{"index":0,"id":"","function":{"name":"","arguments":"{\\"c"}}]}'),
    _oai_delta(
        '{"tool_calls":[{"index":0,"id":"call_y","type":"function",'
        '"function":{"name":"get_time","arguments":"{\\"tz\\":"}}]}'
    ),
    _oai_delta('{"tool_calls":[{"index":0,"id":"call_x","function":{"arguments":"ity\\":1}"}}]}'),
    _oai_delta('{"tool_calls":[{"index":0,"id":"call_y","function":{"arguments":"\\"UTC\\"}"}}]}'),
    _oai_delta("{}", '"tool_calls"'),
    OAI_USAGE,
    OAI_DONE,
]

# DeepSeek: reasoning in `reasoning_content`, then the answer.
OPENAI_REASONING_CONTENT = [
    _oai_delta('{"role":"assistant","content":null,"reasoning_content":""}'),
    _oai_delta('{"content":null,"reasoning_content":"Think"}'),
    _oai_delta('{"content":null,"reasoning_content":"ing."}'),
    _oai_delta('{"content":"Answer","reasoning_content":null}'),
    _oai_delta('{"content":"","reasoning_content":null}', '"stop"'),
    OAI_USAGE,
    OAI_DONE,
]

# vLLM 0.11+: reasoning in `reasoning`.
OPENAI_REASONING = [
    _oai_delta('{"role":"assistant","reasoning":"Think"}'),
    _oai_delta('{"reasoning":"ing."}'),
    _oai_delta('{"content":"Answer"}'),
    _oai_delta("{}", '"stop"'),
    OAI_USAGE,
    OAI_DONE,
]

# OpenRouter: `reasoning_details[]`, doubled as a plain `reasoning` string (which must not be
# counted twice); a signed text block, then an encrypted one.
OPENAI_REASONING_DETAILS = [
    _oai_delta(
        '{"role":"assistant","content":"","reasoning":"Think","reasoning_details":'
        '[{"type":"reasoning.text","text":"Think","format":"anthropic-claude-v1","index":0}]}'
    ),
    _oai_delta(
        '{"content":"","reasoning":"ing.","reasoning_details":'
        '[{"type":"reasoning.text","text":"ing.","format":"anthropic-claude-v1","index":0}]}'
    ),
    _oai_delta(
        '{"content":"","reasoning_details":[{"type":"reasoning.text","signature":"sig-1",'
        '"format":"anthropic-claude-v1","index":0}]}'
    ),
    _oai_delta(
        '{"content":"","reasoning_details":[{"type":"reasoning.encrypted","data":"ENC==",'
        '"format":"anthropic-claude-v1","index":1}]}'
    ),
    _oai_delta('{"content":"Answer"}'),
    _oai_delta('{"content":""}', '"stop"'),
    OAI_USAGE,
    OAI_DONE,
]


# --- Anthropic Messages ----------------------------------------------------------------------


def _ev(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


ANT_START = _ev(
    "message_start",
    '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    '"model":"claude-test","content":[],"stop_reason":null,"stop_sequence":null,"usage":'
    '{"input_tokens":30,"cache_creation_input_tokens":0,"cache_read_input_tokens":8,'
    '"output_tokens":1}}}',
)


def _ant_stop(index: int) -> bytes:
    return _ev("content_block_stop", f'{{"type":"content_block_stop","index":{index}}}')


def _ant_delta(index: int, delta: str) -> bytes:
    return _ev(
        "content_block_delta",
        f'{{"type":"content_block_delta","index":{index},"delta":{delta}}}',
    )


def _ant_end(stop_reason: str, usage: str) -> list[bytes]:
    return [
        _ev(
            "message_delta",
            f'{{"type":"message_delta","delta":{{"stop_reason":"{stop_reason}",'
            f'"stop_sequence":null}},"usage":{usage}}}',
        ),
        _ev("message_stop", '{"type":"message_stop"}'),
    ]


# Thinking (deltas, then its signature just before its stop), text, then a tool_use whose input
# streams as JSON fragments; `message_delta` comes twice with cumulative usage (keep the last).
ANTHROPIC_THINKING_TEXT_TOOL = [
    ANT_START,
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":0,'
        '"content_block":{"type":"thinking","thinking":"","signature":""}}',
    ),
    _ant_delta(0, '{"type":"thinking_delta","thinking":"Need the"}'),
    _ant_delta(0, '{"type":"thinking_delta","thinking":" weather."}'),
    _ant_delta(0, '{"type":"signature_delta","signature":"EqQBCgIYAh-sig"}'),
    _ant_stop(0),
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
    ),
    _ev("ping", '{"type": "ping"}'),
    _ant_delta(1, '{"type":"text_delta","text":"Checking."}'),
    _ant_stop(1),
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
        '"id":"toolu_01","name":"get_weather","input":{}}}',
    ),
    _ant_delta(2, '{"type":"input_json_delta","partial_json":""}'),
    _ant_delta(2, '{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}'),
    _ant_delta(2, '{"type":"input_json_delta","partial_json":"ris\\"}"}'),
    _ant_stop(2),
    *_ant_end("tool_use", '{"output_tokens":20}')[:1],
    _ev(
        "message_delta",
        '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},'
        '"usage":{"input_tokens":30,"cache_read_input_tokens":8,"output_tokens":25,'
        '"output_tokens_details":{"thinking_tokens":9}}}',
    ),
    _ev("message_stop", '{"type":"message_stop"}'),
]

# A redacted thinking block: its encrypted data in the start event, no deltas.
ANTHROPIC_REDACTED = [
    ANT_START,
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":0,'
        '"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix=="}}',
    ),
    _ant_stop(0),
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
    ),
    _ant_delta(1, '{"type":"text_delta","text":"Done."}'),
    _ant_stop(1),
    *_ant_end("end_turn", '{"output_tokens":7}'),
]

# max_tokens reached inside a tool's input: the JSON text is cut short.
ANTHROPIC_TOOL_CUT_AT_MAX_TOKENS = [
    ANT_START,
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use",'
        '"id":"toolu_02","name":"get_weather","input":{}}}',
    ),
    _ant_delta(0, '{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Par"}'),
    _ant_stop(0),
    *_ant_end("max_tokens", '{"output_tokens":16}'),
]

# A tool that takes no input: no input_json_delta at all.
ANTHROPIC_TOOL_WITHOUT_INPUT = [
    ANT_START,
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use",'
        '"id":"toolu_03","name":"get_time","input":{}}}',
    ),
    _ant_stop(0),
    *_ant_end("tool_use", '{"output_tokens":9}'),
]


# --- Ollama /api/chat ------------------------------------------------------------------------


def _ol(message: str, done: bool = False) -> bytes:
    return (
        f'{{"model":"qwen3","created_at":"2026-11-25T10:00:00.000Z","message":{message},'
        f'"done":{"true" if done else "false"}}}\n'
    ).encode()


OLLAMA_DONE = (
    b'{"model":"qwen3","created_at":"2026-11-25T10:00:01.000Z","message":{"role":"assistant",'
    b'"content":""},"done":true,"done_reason":"stop","total_duration":1,"prompt_eval_count":30,'
    b'"eval_count":12}\n'
)

# Thinking, then two whole tool calls in one line, arguments as objects (no ids: Ollama before
# 0.12 sends none), then done with done_reason "stop".
OLLAMA_THINKING_AND_CALLS = [
    _ol('{"role":"assistant","content":"","thinking":"Need"}'),
    _ol('{"role":"assistant","content":"","thinking":" both."}'),
    _ol(
        '{"role":"assistant","content":"","tool_calls":['
        '{"function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}},'
        '{"id":"call_o2","function":{"index":1,"name":"get_time","arguments":{}}}]}'
    ),
    OLLAMA_DONE,
]

# Thinking, then two parallel tool_use blocks.
ANTHROPIC_THINKING_TWO_TOOLS = [
    *ANTHROPIC_THINKING_TEXT_TOOL[:6],
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":1,"content_block":{"type":"tool_use",'
        '"id":"toolu_w","name":"get_weather","input":{}}}',
    ),
    _ant_delta(1, '{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Paris\\"}"}'),
    _ant_stop(1),
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use",'
        '"id":"toolu_t","name":"get_time","input":{}}}',
    ),
    _ant_stop(2),
    *_ant_end("tool_use", '{"output_tokens":40}'),
]

# The answer after the tool results.
ANTHROPIC_ANSWER = [
    ANT_START,
    _ev(
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    ),
    _ant_delta(0, '{"type":"text_delta","text":"18C and noon."}'),
    _ant_stop(0),
    *_ant_end("end_turn", '{"output_tokens":6}'),
]
OPENAI_ANSWER = [
    _oai_delta('{"role":"assistant","content":"18C and noon."}'),
    _oai_delta("{}", '"stop"'),
    OAI_USAGE,
    OAI_DONE,
]
OLLAMA_ANSWER = [_ol('{"role":"assistant","content":"18C and noon."}'), OLLAMA_DONE]
