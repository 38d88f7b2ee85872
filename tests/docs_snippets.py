"""The code blocks of README.md and docs/, and what the tests do with each.

A block's kind is said by an HTML comment on the line just above its fence, which neither GitHub
nor mkdocs shows:

    <!-- snippet: skip REASON -->   not run here, and why (needs an AWS account, ...)
    <!-- snippet: output -->        the output of the block above it, compared with what that
                                    block printed (32-hex stream and request ids aside)
    <!-- snippet: run K=V ... -->   run (as unmarked sh, python and js blocks are), against a
                                    server whose environment has these settings; `key=VAR`
                                    makes an API key and hands it to the block as $VAR
    <!-- snippet: settings -->      a sh block of variables and `make run`s: each `make run` is
                                    the settings it would start with, which `Settings` must
                                    accept and `create_app` build
    <!-- snippet: post PATH -->     a JSON body, POSTed to the server's PATH
    <!-- snippet: codex-config -->  Codex's config.toml: its model provider is called, as Codex
                                    would, with its model

Unmarked `sh`, `python` and `js` blocks are run, `json`, `toml` and `yaml` blocks parsed; any
other unmarked block fails the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
# The base URL the snippets use, replaced by the test server's.
BASE = "http://127.0.0.1:8000"

RUN_LANGUAGES = {"sh": "sh", "bash": "sh", "python": "python", "js": "js", "javascript": "js"}
PARSE_LANGUAGES = {"json", "toml", "yaml"}
KINDS = {"skip", "output", "run", "settings", "post", "codex-config"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")
_MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, from 1
    language: str
    text: str
    markers: tuple[str, ...]  # the `snippet:` comments just above the fence

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        """What the tests do with it: a KINDS word, `parse`, or `` (nothing: a failure)."""
        if self.markers:
            return self.markers[0].split()[0]
        if self.language in RUN_LANGUAGES:
            return "run"
        return "parse" if self.language in PARSE_LANGUAGES else ""

    @property
    def argument(self) -> str:
        """What follows the marker's word: a reason, settings, a path."""
        return self.markers[0].partition(" ")[2].strip() if self.markers else ""


def blocks_of(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the markers above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        markers = []
        above = i - 1
        while above >= 0 and _COMMENT.match(lines[above]):
            if marker := _MARKER.match(lines[above]):
                markers.append(marker["body"])
            above -= 1
        end = i + 1
        while end < len(lines) and not re.fullmatch(
            rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[end]
        ):
            end += 1
        assert end < len(lines), f"{path.relative_to(ROOT)}:{i + 1}: a fence never closed"
        body = [line.removeprefix(indent) for line in lines[i + 1 : end]]
        language = info.split()[0] if info else ""
        found.append(Block(path, i + 1, language, "\n".join(body) + "\n", tuple(markers)))
        i = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks_of(path)]


def problems(blocks: list[Block]) -> list[str]:
    """What is wrong with how the blocks are marked; empty when every block is run, parsed or
    marked with a reason."""
    found = []
    previous: Block | None = None
    for block in blocks:
        kind = block.kind
        if len(block.markers) > 1:
            found.append(f"{block.where}: one snippet marker per block, not {block.markers}")
        elif not kind:
            found.append(
                f"{block.where}: a {block.language or 'plain'} block the tests do not run: run "
                "it, or mark it <!-- snippet: skip REASON -->"
            )
        elif block.markers and kind not in KINDS:
            found.append(f"{block.where}: unknown snippet kind {kind!r} (one of {sorted(KINDS)})")
        elif kind == "skip" and len(block.argument.split()) < 3:
            found.append(f"{block.where}: `skip` needs a reason, in a few words")
        elif kind == "output" and (
            previous is None or previous.path != block.path or previous.kind != "run"
        ):
            found.append(f"{block.where}: an output block follows the run block it shows")
        elif kind == "run" and block.language not in RUN_LANGUAGES:
            found.append(f"{block.where}: cannot run a {block.language or 'plain'} block")
        elif kind == "settings" and block.language != "sh":
            found.append(f"{block.where}: a settings block is sh")
        elif kind == "post" and (block.language != "json" or not block.argument.startswith("/")):
            found.append(f"{block.where}: `post /path` takes a JSON block")
        elif kind == "codex-config" and block.language != "toml":
            found.append(f"{block.where}: a codex-config block is toml")
        previous = block
    return found


def with_output(blocks: list[Block]) -> list[tuple[Block, Block | None]]:
    """The blocks the tests run, each with the output block that follows it, if any."""
    runnable = {"run", "parse", "settings", "post", "codex-config"}
    pairs = []
    for i, block in enumerate(blocks):
        if block.kind in runnable:
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            shown = after if after is not None and after.kind == "output" else None
            pairs.append((block, shown))
    return pairs


def run_settings(block: Block) -> dict[str, str]:
    """The `K=V` settings of a `run` marker (`key=VAR` aside)."""
    pairs = (word.partition("=") for word in block.argument.split())
    return {name: value for name, _, value in pairs if name != "key"}


def key_variable(block: Block) -> str | None:
    """The variable a `run key=VAR` block expects an API key in."""
    for word in block.argument.split():
        name, _, value = word.partition("=")
        if name == "key":
            return value
    return None


def normalized(output: str) -> str:
    """Output as the docs show it: ids aside, trailing blanks aside."""
    text = re.sub(r"\b[0-9a-f]{32}\b", "<id>", output)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())
