"""Benchmark results: one JSON document and one markdown report per run.

Each suite returns a JSON-ready dict with at least ``suite``, ``commands``
and ``table`` (``title``, ``columns``, ``rows`` of preformatted strings, and
optionally ``caption``: lines that sum the table up, shown under it); this
module only assembles and renders them, it measures nothing.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count() or 0,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def assemble(
    suites: Sequence[Mapping[str, Any]], argv: Sequence[str], seconds: float
) -> dict[str, Any]:
    return {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "invocation": " ".join(argv),
        "duration_s": round(seconds, 1),
        "suites": list(suites),
    }


def rich_table(table: Mapping[str, Any]) -> Table:
    caption = "\n".join(str(line) for line in table.get("caption", ())) or None
    out = Table(
        title=str(table.get("title", "")),
        header_style="bold",
        caption=caption,
        caption_justify="left",
    )
    for column in table["columns"]:
        out.add_column(str(column))
    for row in table["rows"]:
        out.add_row(*(str(cell) for cell in row))
    return out


def markdown_table(table: Mapping[str, Any]) -> str:
    columns = [str(c) for c in table["columns"]]
    lines = [
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def markdown(report: Mapping[str, Any]) -> str:
    m = report["machine"]
    parts = [
        "# Mizzen benchmark report",
        "",
        f"Generated {report['generated']} by `{report['invocation']}` in {report['duration_s']} s "
        f"on {m['cores']} cores ({m['platform']}, Python {m['python']}).",
        "Variants of a suite ran interleaved in one run; figures are medians over rounds "
        "with (min–max) spread.",
    ]
    for suite in report["suites"]:
        parts += ["", f"## {suite['suite']}", ""]
        if "table" in suite:
            parts += [f"**{suite['table'].get('title', '')}**", "", markdown_table(suite["table"])]
            if suite["table"].get("caption"):
                parts += ["", "Summary:", ""] + [f"- {line}" for line in suite["table"]["caption"]]
        for key in ("defaults", "notes"):
            if suite.get(key):
                parts += ["", f"{key.capitalize()}:", ""] + [f"- {item}" for item in suite[key]]
        if suite.get("profile"):
            profile = suite["profile"]
            parts += ["", f"Profile ({profile.get('file', '')}), top costs:", ""]
            parts += [f"- {name}: {share}" for name, share in profile.get("top", [])]
        if suite.get("commands"):
            parts += ["", "Commands:", "", "```", *suite["commands"], "```"]
    return "\n".join(parts) + "\n"


def write(report: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / "latest.json"
    md_path = directory / "latest.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path
