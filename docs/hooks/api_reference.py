"""The routes' API reference, written at build time from the app's own OpenAPI document.

A mkdocs hook (mkdocs.yml `hooks:`): `on_files` adds `reference/api.md`, rendered here from
`create_app(...).openapi()`, and `reference/openapi.json`, the document itself. Nothing about a
route is written twice: its paths, parameters, bodies, statuses and SSE events are what the app
declares, and tests/unit/test_docs.py checks that every operation is on the page.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

PAGE = "reference/api.md"
DOCUMENT = "reference/openapi.json"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
# Operations without a tag are the service's own routes. The tags' order on the page: streamfn's
# own protocol first; a tag not listed here comes after these, in the document's order.
UNTAGGED = "Service"
TAG_ORDER = ("streamfn", "OpenAI API", "Anthropic API", "Vercel AI SDK", UNTAGGED)

Schema = Mapping[str, Any]


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document. The settings do not change it; the stores are pointed at a
    scratch directory all the same, so that building the docs touches nothing of the user's."""
    from streamfn.app import create_app
    from streamfn.settings import Settings

    with tempfile.TemporaryDirectory(prefix="streamfn-docs-") as scratch:
        settings = Settings(
            usage_records=False,
            keys_db=Path(scratch) / "keys.sqlite3",
            streams_db=Path(scratch) / "streams.sqlite3",
            usage_db=Path(scratch) / "usage.sqlite3",
        )
        return create_app(settings).openapi()


def operations(document: Schema) -> Iterator[tuple[str, str, Schema]]:
    """(METHOD, path, operation) for every operation, in the document's order."""
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def anchor(method: str, path: str) -> str:
    """The operation's anchor on the page: `post-chat-stream`, `get-v1-responses-id`."""
    words = "".join(c if c.isalnum() else "-" for c in f"{method}-{path}".lower())
    return "-".join(w for w in words.split("-") if w)


class Names:
    """Display names and anchors of the components' schemas: the class name alone where it is
    unique (`ChatBody`), else with its module (`native.ChatBody`, `aisdk.ChatBody`)."""

    def __init__(self, schemas: Mapping[str, Schema]) -> None:
        short = [key.split("__")[-1] for key in schemas]
        self._names = {
            key: (name if short.count(name) == 1 else ".".join(key.split("__")[-2:]))
            for key, name in zip(schemas, short, strict=True)
        }

    def name(self, key: str) -> str:
        return self._names.get(key, key)

    def anchor(self, key: str) -> str:
        return "schema-" + self.name(key).lower().replace(".", "-").replace("_", "-")

    def link(self, ref: str) -> str:
        key = ref.rsplit("/", 1)[-1]
        return f"[{self.name(key)}](#{self.anchor(key)})"


def cell(text: object) -> str:
    """Text fit for one table cell: one line, its pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def type_of(schema: Schema, names: Names) -> str:
    """A schema as a short type: `string`, `list of [TextPart](#...)`, `"auto" | "none"` (its
    pipes are escaped by `cell` where it goes into a table)."""
    if "$ref" in schema:
        return names.link(schema["$ref"])
    for key, joiner in (("anyOf", " or "), ("oneOf", " or "), ("allOf", " and ")):
        if key in schema:
            return joiner.join(type_of(s, names) for s in schema[key])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " | ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(type_of({**schema, "type": k}, names) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return "list of " + type_of(items, names) if items else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return "map of string to " + type_of(schema["additionalProperties"], names)
    if kind == "object" and "properties" in schema:
        return f"object `{shape(schema, names)}`"
    if kind is None:
        return "any"
    return f"{kind} ({schema['format']})" if "format" in schema else str(kind)


def shape(schema: Schema, names: Names, depth: int = 0) -> str:
    """An inline object's fields as a compact skeleton, `{"error": {"type", "message"}}`."""
    properties = schema.get("properties")
    if not properties or depth > 2:
        return type_of({k: v for k, v in schema.items() if k != "properties"}, names)
    fields = []
    for field, sub in properties.items():
        if sub.get("type") == "object" and "properties" in sub:
            fields.append(f'"{field}": {shape(sub, names, depth + 1)}')
        else:
            fields.append(f'"{field}"')
    return "{" + ", ".join(fields) + "}"


def constraints(schema: Schema) -> str:
    """A field's bounds, pattern and default, as a short note."""
    notes = []
    for key, label in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
        ("minLength", "length ≥"),
        ("maxLength", "length ≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
    ):
        if key in schema:
            notes.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        notes.append(f"pattern `{schema['pattern']}`")
    if "default" in schema:
        notes.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(notes)


def fields_table(schema: Schema, names: Names) -> list[str]:
    """The properties of an object schema as a table, one row each."""
    required = set(schema.get("required", []))
    rows = ["| field | type | required | |", "|---|---|---|---|"]
    for field, sub in schema.get("properties", {}).items():
        note = cell(" ".join(p for p in (sub.get("description", ""), constraints(sub)) if p))
        rows.append(
            f"| `{field}` | {cell(type_of(sub, names))} | "
            f"{'yes' if field in required else ''} | {note} |"
        )
    return rows


def media_line(media: str, content: Schema, names: Names) -> str:
    """One media type of a body: its type, or for an event stream its events."""
    item = content.get("itemSchema")
    if item is not None:
        events = item.get("properties", {}).get("event", {})
        kinds = events.get("enum") or ([events["const"]] if "const" in events else [])
        listed = ", ".join(f"`{k}`" for k in kinds) if kinds else type_of(item, names)
        return f"`{media}`, events: {listed}"
    schema = content.get("schema")
    if schema is None:
        return f"`{media}`"
    if schema.get("type") == "object" and "properties" in schema:
        return f"`{media}`: `{shape(schema, names)}`"
    return f"`{media}`: {type_of(schema, names)}"


def operation_section(method: str, path: str, op: Schema, names: Names) -> list[str]:
    lines = [f"### `{method} {path}` {{#{anchor(method, path)}}}", ""]
    summary = op.get("summary")
    if summary:
        lines += [f"**{summary}.** {op.get('description', '')}".rstrip(), ""]
    elif op.get("description"):
        lines += [op["description"], ""]
    parameters = op.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | |", "|---|---|---|---|---|"]
        for p in parameters:
            sub = p.get("schema", {})
            note = " ".join(x for x in (p.get("description", ""), constraints(sub)) if x)
            lines.append(
                f"| `{p['name']}` | {p['in']} | {cell(type_of(sub, names))} | "
                f"{'yes' if p.get('required') else ''} | {cell(note)} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        required = " (required)" if body.get("required") else ""
        for media, content in body.get("content", {}).items():
            lines.append(f"Request body{required}: {media_line(media, content, names)}")
        lines.append("")
    lines += ["| status | | body |", "|---|---|---|"]
    responses = op.get("responses", {})
    for status, response in sorted(responses.items()):
        media = "<br>".join(media_line(m, c, names) for m, c in response.get("content", {}).items())
        lines.append(f"| {status} | {cell(response.get('description', ''))} | {cell(media)} |")
    return [*lines, ""]


def render(document: Schema) -> str:
    """The reference page's Markdown: every operation by tag, then every schema."""
    schemas = document.get("components", {}).get("schemas", {})
    names = Names(schemas)
    info = document.get("info", {})
    lines = [
        "# API reference",
        "",
        "<!-- Written by docs/hooks/api_reference.py from the app's OpenAPI document at build "
        "time: edit the routes, not this page. -->",
        "",
        f"{info.get('description', '')}",
        "",
        f"Generated from the app's OpenAPI {document.get('openapi', '')} document "
        f"([openapi.json](openapi.json), also served by every streamfn at `/openapi.json`, "
        "with Swagger UI at `/docs` and ReDoc at `/redoc`). How each protocol behaves is in "
        "the [client pages](../clients/index.md).",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, Schema]]] = {}
    for method, path, op in operations(document):
        by_tag.setdefault((op.get("tags") or [UNTAGGED])[0], []).append((method, path, op))
    order = {tag: i for i, tag in enumerate(TAG_ORDER)}
    for tag, ops in sorted(by_tag.items(), key=lambda item: order.get(item[0], len(order))):
        lines += [f"## {tag}", ""]
        for method, path, op in ops:
            lines += operation_section(method, path, op, names)
    lines += ["## Schemas", ""]
    for key in sorted(schemas, key=names.name):
        schema = schemas[key]
        lines += [f"### {names.name(key)} {{#{names.anchor(key)}}}", ""]
        if schema.get("description"):
            lines += [cell(schema["description"]), ""]
        if "properties" in schema:
            lines += fields_table(schema, names)
        else:
            lines.append(type_of(schema, names))
        lines.append("")
    return "\n".join(lines)


# mkdocs' hook API -----------------------------------------------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    document = openapi_document()
    files.append(File.generated(config, PAGE, content=render(document)))
    files.append(File.generated(config, DOCUMENT, content=json.dumps(document, indent=2)))
    return files
