"""The report writer: JSON and markdown from suite results (no measuring)."""

from __future__ import annotations

import json
from pathlib import Path

from mizzen.bench import report

SUITE = {
    "suite": "dataplane",
    "commands": ["hey -z 10s -c 8 -q 125 http://server/"],
    "defaults": ["plaintext between sidecars"],
    "table": {
        "title": "added latency",
        "columns": ["rate", "variant", "p90"],
        "rows": [["1000", "mesh", "0.41 ms (0.40–0.43)"]],
    },
}


def test_report_has_machine_commands_and_table(tmp_path: Path) -> None:
    full = report.assemble([SUITE], ["mizzen", "bench", "--quick"], 12.345)
    json_path, md_path = report.write(full, tmp_path)
    data = json.loads(json_path.read_text())
    assert data["machine"]["cores"] >= 1
    assert data["suites"][0]["table"]["rows"][0][1] == "mesh"
    text = md_path.read_text()
    assert "| rate | variant | p90 |" in text
    assert "| 1000 | mesh | 0.41 ms (0.40–0.43) |" in text
    assert "hey -z 10s -c 8 -q 125 http://server/" in text
    assert f"{data['machine']['cores']} cores" in text
    assert "mizzen bench --quick" in text


def test_rich_table_has_every_row() -> None:
    table = report.rich_table(SUITE["table"])
    assert table.row_count == 1 and len(table.columns) == 3


def test_caption_lines_follow_the_table(tmp_path: Path) -> None:
    suite = {
        **SUITE,
        "table": {**SUITE["table"], "caption": ["mesh-mtls vs bare-envoy-mtls: 1.10×"]},
    }
    full = report.assemble([suite], ["mizzen", "bench"], 1.0)
    _, md_path = report.write(full, tmp_path)
    text = md_path.read_text()
    assert text.index("| 1000 | mesh |") < text.index("- mesh-mtls vs bare-envoy-mtls: 1.10×")
    table = report.rich_table(suite["table"])
    assert table.caption == "mesh-mtls vs bare-envoy-mtls: 1.10×"
    assert report.rich_table(SUITE["table"]).caption is None
