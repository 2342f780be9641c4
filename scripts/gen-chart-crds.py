#!/usr/bin/env python3
"""Regenerate charts/mizzen/crds/ from Mizzen's validator schemas.

Helm installs a chart's crds/ folder verbatim (never templated), so the CRDs
are generated once and committed; tests/kube/test_chart.py fails when they
are stale. Run from the checkout: `.venv/bin/python scripts/gen-chart-crds.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mizzen.kube.crds import chart_crd_files


def main() -> int:
    folder = Path(__file__).resolve().parent.parent / "charts" / "mizzen" / "crds"
    folder.mkdir(parents=True, exist_ok=True)
    files = chart_crd_files()
    for stale in sorted(set(p.name for p in folder.glob("*.yaml")) - set(files)):
        (folder / stale).unlink()
        print(f"removed {stale}")
    for name, text in sorted(files.items()):
        (folder / name).write_text(text, encoding="utf-8")
        print(f"wrote {folder / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
