"""Golden tests: see ``golden_harness`` for the case format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .envoy_check import bootstrap, validate
from .golden_harness import UPDATE_ENV, cases, dumps, from_json, read_case, translate_case


@pytest.mark.parametrize("name", cases())
def test_golden(name: str, tmp_path: Path) -> None:
    case = read_case(name)
    actual = translate_case(case, tmp_path)
    if os.environ.get(UPDATE_ENV) == "1":
        case.expected_path.write_text(dumps(actual))
    assert case.expected_path.exists(), f"no {case.expected_path.name}; run with {UPDATE_ENV}=1"
    assert json.loads(dumps(actual)) == json.loads(case.expected_path.read_text())


def test_golden_is_byte_stable(tmp_path: Path) -> None:
    for name in cases():
        case = read_case(name)
        assert dumps(translate_case(case, tmp_path)) == dumps(translate_case(case, tmp_path))


def test_golden_outputs_pass_envoy_validation(tmp_path: Path) -> None:
    expected = sorted(Path(__file__).parent.glob("golden/*.json"))
    assert expected, "no golden outputs to validate"
    bootstraps = {p.stem: bootstrap(from_json(json.loads(p.read_text()))) for p in expected}
    failures = validate(bootstraps, tmp_path)
    assert not failures, "\n\n".join(f"{name}:\n{error}" for name, error in failures.items())
