"""A Lambda function URL's CORS, as the local function URL applies it.

AWS answers a function URL's preflight requests itself, from the URL's `Cors` settings, without
invoking the function; on other requests it adds the configured headers to the function's
response, in place of any `Access-Control-*` headers the function sent, so that a browser sees
one set (AWS Lambda developer guide, "Creating and managing Lambda function URLs", CORS; field
meanings from the API reference, `Cors`). The settings are read from template.yaml, parameters
resolved from their defaults or from the values given, as a deploy would resolve them. The
template's lists are streamfn.origins.CORS, the contract the app's own CORS keeps too
(tests/infra/test_template.py holds them equal); a `UrlCors` made here without the template
keeps it as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from streamfn.origins import CORS

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"


class _CloudFormation(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, kept as `{"Ref": ...}`-style dicts."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_CloudFormation.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """template.yaml as plain data, its CloudFormation tags as `{"Ref": ...}`-style dicts."""
    # A SafeLoader subclass: plain data and the CloudFormation tags, nothing executable.
    document: dict[str, Any] = yaml.load(path.read_text(), Loader=_CloudFormation)
    return document


@dataclass(frozen=True)
class UrlCors:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = CORS.allow_methods
    allow_headers: tuple[str, ...] = CORS.allow_headers
    expose_headers: tuple[str, ...] = CORS.expose_headers
    max_age: int = CORS.max_age_s
    allow_credentials: bool = False

    @classmethod
    def from_template(
        cls,
        path: Path = TEMPLATE,
        parameters: Mapping[str, str] | None = None,
        function: str = "StreamFunction",
    ) -> UrlCors | None:
        """The `Cors` of `function`'s FunctionUrlConfig, as the template has it (a list it
        leaves out is empty, as AWS takes it); None when it has none."""
        template = load_template(path)
        given = dict(parameters or {})
        defaults = {
            name: str(spec.get("Default", ""))
            for name, spec in (template.get("Parameters") or {}).items()
        }
        config = template["Resources"][function]["Properties"].get("FunctionUrlConfig") or {}
        cors = config.get("Cors")
        if not cors:
            return None

        def values(key: str) -> tuple[str, ...]:
            value = cors.get(key, [])
            if isinstance(value, dict) and "Ref" in value:
                value = given.get(value["Ref"], defaults.get(value["Ref"], "")).split(",")
            return tuple(str(v).strip() for v in value if str(v).strip())

        return cls(
            allow_origins=values("AllowOrigins"),
            allow_methods=tuple(m.upper() for m in values("AllowMethods")),
            allow_headers=tuple(h.lower() for h in values("AllowHeaders")),
            expose_headers=tuple(h.lower() for h in values("ExposeHeaders")),
            max_age=int(cors.get("MaxAge", 0)),
            allow_credentials=bool(cors.get("AllowCredentials", False)),
        )

    def _origin(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if "*" in self.allow_origins:
            return origin if self.allow_credentials else "*"
        return origin if origin in self.allow_origins else None

    def preflight(self, headers: Mapping[str, str]) -> list[tuple[str, str]] | None:
        """The headers of the answer to a preflight (an OPTIONS with an Origin and an
        Access-Control-Request-Method); None when `headers` are not a preflight's."""
        if "origin" not in headers or "access-control-request-method" not in headers:
            return None
        allowed = self._origin(headers["origin"])
        if allowed is None:
            return []  # answered, but with nothing that lets the browser go on
        out = [
            ("access-control-allow-origin", allowed),
            ("access-control-allow-methods", ", ".join(self.allow_methods or ("*",))),
            ("vary", "origin"),
        ]
        if self.allow_headers:
            out.append(("access-control-allow-headers", ", ".join(self.allow_headers)))
        if self.max_age:
            out.append(("access-control-max-age", str(self.max_age)))
        if self.allow_credentials:
            out.append(("access-control-allow-credentials", "true"))
        return out

    def response_headers(
        self, request: Mapping[str, str], response: Iterable[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        """`response`'s headers with the function's own CORS headers replaced by the URL's."""
        out = [(k, v) for k, v in response if not k.lower().startswith("access-control-")]
        allowed = self._origin(request.get("origin"))
        if allowed is None:
            return out
        out.append(("access-control-allow-origin", allowed))
        if self.expose_headers:
            out.append(("access-control-expose-headers", ", ".join(self.expose_headers)))
        if self.allow_credentials:
            out.append(("access-control-allow-credentials", "true"))
        out.append(("vary", "origin"))
        return out


def reserved_concurrency(
    path: Path = TEMPLATE,
    parameters: Mapping[str, str] | None = None,
    function: str = "StreamFunction",
) -> int | None:
    """`function`'s ReservedConcurrentExecutions as template.yaml sets it (a parameter's value
    or default); None when it has none."""
    template = load_template(path)
    value = template["Resources"][function]["Properties"].get("ReservedConcurrentExecutions")
    if isinstance(value, dict) and "Ref" in value:
        name = value["Ref"]
        given = dict(parameters or {})
        value = given.get(name, (template.get("Parameters") or {}).get(name, {}).get("Default"))
    return None if value in (None, "") else int(value)
