"""Control characters in client input: refused wherever a value can reach a response header, a
log key or an upstream URL (issue #22: a line feed in `model` went raw into a header, and the
server dropped the response after the provider had been paid).

Request fields that can go there (models, providers, ids, tool names) carry `NO_CONTROLS` as
their schema pattern, so that the OpenAPI document states the rule and pydantic enforces it
before any provider is called; the routes answer a value refused for it with a 400 naming the
field. `header_value` is the one check every header the server writes from client input goes
through, behind those.
"""

from __future__ import annotations

import re
from urllib.parse import quote

# Unicode's control characters (category Cc): C0, DEL and C1. As a JSON Schema (ECMA-262)
# pattern, and one that pydantic's regex engine reads the same.
NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# What a header value may hold as it is: printable ASCII and the space (RFC 9110, 5.5).
_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))


def first_control(value: str) -> tuple[int, str] | None:
    """The position and the character of `value`'s first control character, if any."""
    found = _CONTROL.search(value)
    return None if found is None else (found.start(), found.group())


def describe(value: str) -> str | None:
    """What is wrong with `value` as an id, a name or a model, said plainly; None if nothing."""
    found = first_control(value)
    if found is None:
        return None
    at, char = found
    return (
        f"holds a control character (U+{ord(char):04X} at character {at}): ids, names and "
        "models may not"
    )


class UnsafeHeaderValue(ValueError):
    """A header value that would split the response or be refused by the server."""


def header_value(value: str, *, name: str) -> str:
    """`value` as header `name`'s value. `UnsafeHeaderValue` for a control character (CR, LF,
    NUL and the rest), which request validation refuses long before: a value that reaches
    here with one is a bug, and must not be written. Characters beyond ASCII (which Starlette
    cannot encode, as headers are Latin-1) are percent-encoded as UTF-8."""
    if (why := describe(value)) is not None:
        raise UnsafeHeaderValue(f"{name} {why}")
    return value if value.isascii() else quote(value, safe=_PRINTABLE)
