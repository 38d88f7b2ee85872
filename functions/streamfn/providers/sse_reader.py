"""Reading an upstream's Server-Sent Events from raw bytes, a whole network read at a time.

The provider SDKs parse the stream themselves, but then build a pydantic object per chunk, which
was most of streamfn's cost per token (a profile at full upstream speed: over half the CPU in
`openai._models.construct_type`). Anthropic's SDK still builds its requests and maps its
errors (OpenAI-compatible servers are sent theirs directly: `providers.openai_http`); the
providers read the body with this. It is written here, not taken from httpx-sse or the SDKs'
decoders, because those work an event (and a line) per Python call through async iterators,
while this takes whatever bytes one read brought and returns all the events in them, which is
what lets a slow reader be caught up with in one step.

Framing per the WHATWG event-stream interpretation
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end at CRLF, LF or CR; a blank line dispatches the event; `data` lines join with LF; one
leading space after the colon is dropped; comments and unknown fields are ignored.
"""

from __future__ import annotations


class SSEReader:
    __slots__ = ("_data", "_event", "_tail")

    def __init__(self) -> None:
        self._tail = b""
        self._event = ""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        """The events completed by `chunk`, as (event name, "message" when none; data)."""
        buffer = self._tail + chunk if self._tail else chunk
        lines = buffer.splitlines(keepends=True)
        # The last line is incomplete unless it ended; one ending in CR may yet be a CRLF.
        if lines and (not lines[-1].endswith((b"\n", b"\r")) or lines[-1].endswith(b"\r")):
            self._tail = lines.pop()
        else:
            self._tail = b""
        events: list[tuple[str, bytes]] = []
        data = self._data
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if data:
                    events.append((self._event or "message", b"\n".join(data)))
                    data.clear()
                self._event = ""
                continue
            name, colon, value = line.partition(b":")
            if not colon:
                value = b""
            elif value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                self._event = value.decode("utf-8", "replace")
        return events
