"""Files and folders to resources. The only module of ``mizzen.api`` that
reads files; it does so only when called."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from mizzen.api.errors import ConfigError, LoadResult
from mizzen.api.parse import parse_text
from mizzen.api.resources import Source

SUFFIXES = (".yaml", ".yml", ".json")


def load_paths(paths: Sequence[str | Path]) -> LoadResult:
    """Load files and (recursively) folders; folders contribute *.yaml, *.yml
    and *.json files in sorted order. Unreadable paths become errors."""
    result = LoadResult()
    for file, problem in _files(paths):
        if problem:
            result += LoadResult(errors=(ConfigError(Source(file, 0), "document", "", problem),))
            continue
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            result += LoadResult(
                errors=(ConfigError(Source(file, 0), "document", "", f"cannot read: {reason}"),)
            )
            continue
        result += parse_text(text, file)
    return result


def _files(paths: Sequence[str | Path]) -> Iterator[tuple[str, str]]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            for p in found:
                yield str(p), ""
        elif path.exists():
            yield str(path), ""
        else:
            yield str(path), "no such file or directory"
