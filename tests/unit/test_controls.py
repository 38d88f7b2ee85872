"""The one check of header values written from client input (streamfn.controls)."""

from __future__ import annotations

import re

import pytest

from streamfn.controls import NO_CONTROLS, UnsafeHeaderValue, describe, header_value


@pytest.mark.parametrize("value", ["echo/gpt-4o-mini", "a b", "llama3.1:8b", "x" * 256, ""])
def test_a_clean_value_is_written_as_it_is(value: str) -> None:
    assert header_value(value, name="x-streamfn-served-by") == value
    assert describe(value) is None
    assert re.fullmatch(NO_CONTROLS, value)


@pytest.mark.parametrize("char", ["\r", "\n", "\x00", "\t", "\x1b", "\x7f", "\x85", "\x9f"])
def test_a_control_character_is_refused(char: str) -> None:
    with pytest.raises(UnsafeHeaderValue, match=r"x-stream-id holds a control character \(U\+"):
        header_value(f"echo{char}x-injected: 1", name="x-stream-id")
    assert describe(f"ab{char}") == (
        f"holds a control character (U+{ord(char):04X} at character 2): ids, names and models "
        "may not"
    )
    assert not re.fullmatch(NO_CONTROLS, f"ab{char}")


def test_beyond_ascii_is_percent_encoded_as_latin_1_headers_cannot_hold_it() -> None:
    assert header_value("echo/模型", name="x-streamfn-served-by") == "echo/%E6%A8%A1%E5%9E%8B"
    assert header_value("café", name="x") == "caf%C3%A9"
    # Printable ASCII, a percent sign included, is never touched.
    assert header_value("50%/a", name="x") == "50%/a"
