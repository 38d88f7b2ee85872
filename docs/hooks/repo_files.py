"""Files of the repository that the docs link to, published with the site.

The pages under docs/ are read on GitHub as well as on the built site, so they link to the
repository's own files (the chat page's screenshots in web/, infra/nginx/streamfn.conf) by
relative paths that leave docs/. mkdocs sees only docs/: this hook (mkdocs.yml `hooks:`) adds
each such file to the site under `_repo/` and points the page's link there, so both readings
work and `mkdocs build --strict` still finds every link.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

PREFIX = "_repo"
# BENCHMARKS.md (written by `make bench`, included whole by docs/benchmarks.md) links its plot
# as `bench/streams.png`, from the repository's root; included, the link is read from docs/.
INCLUDED = {"bench/streams.png": "bench/streams.png"}

# A Markdown link or image target, or an HTML src/href: `](target)`, `src="target"`.
LINK = re.compile(r"(\]\(|(?:src|href)=\")([^)\"#\s]+)")


def _outside(page_uri: str, target: str, docs: Path, root: Path) -> str | None:
    """The repository path `target` names from the page, if it leaves docs/ for a file."""
    if "://" in target or target.startswith(("/", "mailto:")):
        return None
    resolved = (docs / posixpath.dirname(page_uri) / target).resolve()
    if resolved.is_relative_to(docs) or not resolved.is_relative_to(root):
        return None
    return resolved.relative_to(root).as_posix() if resolved.is_file() else None


def _roots(config: Any) -> tuple[Path, Path]:
    docs = Path(config["docs_dir"]).resolve()
    return docs, Path(config["config_file_path"]).resolve().parent


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    docs, root = _roots(config)
    published: set[str] = set()
    for page in [f for f in files if f.src_uri.endswith(".md") and f.abs_src_path]:
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        for _, target in LINK.findall(text):
            path = _outside(page.src_uri, target, docs, root)
            if path is not None:
                published.add(path)
    for path in sorted(published):
        files.append(File.generated(config, f"{PREFIX}/{path}", abs_src_path=str(root / path)))
    for uri, path in INCLUDED.items():
        files.append(File.generated(config, uri, abs_src_path=str(root / path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:  # noqa: ARG001
    docs, root = _roots(config)
    uri = page.file.src_uri

    def relink(match: re.Match[str]) -> str:
        path = _outside(uri, match.group(2), docs, root)
        if path is None:
            return match.group(0)
        # mkdocs turns a Markdown link to a file into the file's URL, from the page's source;
        # raw HTML (`<img src=...>`) it leaves alone, so that one is relative to the page's URL.
        markdown = match.group(1) == "]("
        url = page.url
        here = posixpath.dirname(url) if not url.endswith("/") else url.rstrip("/")
        here = posixpath.dirname(uri) if markdown else here
        return match.group(1) + posixpath.relpath(f"{PREFIX}/{path}", here or ".")

    return LINK.sub(relink, markdown)
