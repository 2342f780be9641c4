"""The iptables adapter with a fake runner: exact commands, error reporting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from mizzen.capture.iptables import CaptureError, Completed, install, uninstall
from mizzen.capture.rules import CaptureConfig, render

INSTALLED = """\
*nat
:PREROUTING ACCEPT [0:0]
:ISTIO_OUTPUT - [0:0]
-A OUTPUT -p tcp -j ISTIO_OUTPUT
COMMIT
"""


@dataclass
class FakeRunner:
    saved: str = "*nat\nCOMMIT\n"
    fail_restore: str | None = None
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], stdin: str | None) -> Completed:
        self.calls.append((list(argv), stdin))
        if "iptables-save" in argv:
            return Completed(0, self.saved, "")
        if self.fail_restore is not None:
            return Completed(1, "", self.fail_restore)
        return Completed(0, "", "")


def test_install_runs_restore_in_the_netns() -> None:
    runner = FakeRunner()
    config = CaptureConfig()
    install("mzcap-x", config, runner=runner)
    assert runner.calls == [
        (["ip", "netns", "exec", "mzcap-x", "iptables-save", "-t", "nat"], None),
        (["ip", "netns", "exec", "mzcap-x", "iptables-restore", "--noflush"], render(config)),
    ]


def test_install_replaces_earlier_capture() -> None:
    runner = FakeRunner(saved=INSTALLED)
    install("mzcap-x", CaptureConfig(), runner=runner)
    removal = runner.calls[1][1]
    assert removal is not None and "-D OUTPUT -p tcp -j ISTIO_OUTPUT" in removal
    assert runner.calls[2][1] == render(CaptureConfig())


def test_uninstall_reports_whether_anything_was_there() -> None:
    assert uninstall("mzcap-x", runner=FakeRunner()) is False
    assert uninstall("mzcap-x", runner=FakeRunner(saved=INSTALLED)) is True


def test_failure_carries_stderr_and_hint() -> None:
    stderr = "iptables-restore: line 9 failed: Permission denied (you must be root)\n"
    runner = FakeRunner(fail_restore=stderr)
    with pytest.raises(CaptureError) as info:
        install("mzcap-x", CaptureConfig(), runner=runner)
    err = info.value
    assert err.netns == "mzcap-x"
    assert "line 9 failed" in err.stderr
    assert "root" in err.hint
    assert "line 9 failed" in str(err) and "hint:" in str(err)


@pytest.mark.parametrize("name", ["", "a/b", "..", "."])
def test_bad_netns_name_runs_nothing(name: str) -> None:
    runner = FakeRunner()
    with pytest.raises(ValueError):
        install(name, CaptureConfig(), runner=runner)
    assert runner.calls == []
