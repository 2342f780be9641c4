from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mizzen.runtime.errors import MeshBusyError, StateError
from mizzen.runtime.state import (
    DEFAULT_RUN_DIR,
    RUN_DIR_ENV,
    MeshLock,
    MeshState,
    PodState,
    ProcRef,
    is_locked,
    load_state,
    resolve_run_dir,
    save_state,
    used_slots,
)


def _state(name: str = "demo", slot: int = 3) -> MeshState:
    return MeshState(
        name=name,
        slot=slot,
        bridge=f"mz{slot}-br",
        host_ip="198.18.12.1",
        pod_cidr="198.18.12.0/22",
        service_cidr="198.19.12.0/22",
    )


def test_round_trip(tmp_path: Path) -> None:
    pod = PodState(
        name="web",
        namespace="default",
        index=0,
        netns="mz-demo.default.web",
        veth="mz3p0",
        ip="198.18.12.2",
        processes=(ProcRef(100, 5555, "app"),),
        sidecar_processes=(ProcRef(101, 5556, "envoy"),),
    )
    state = _state().with_pod(pod)
    state = MeshState(
        **{**state.__dict__, "control_plane": ProcRef(7, 1, "cp"), "info": {"a": "b"}}
    )
    save_state(tmp_path, state)
    assert load_state(tmp_path, "demo") == state
    assert state.pod("default", "web") == pod
    assert state.without_pod("default", "web").pods == ()


def test_missing_and_corrupt(tmp_path: Path) -> None:
    assert load_state(tmp_path, "nope") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "state.json").write_text('{"name": "bad", "slo')
    with pytest.raises(StateError, match="mizzen down"):
        load_state(tmp_path, "bad")


def test_save_is_atomic_rename(tmp_path: Path) -> None:
    path = save_state(tmp_path, _state())
    inode = os.stat(path).st_ino
    save_state(tmp_path, _state(slot=4))
    assert os.stat(path).st_ino != inode  # replaced, never rewritten under a reader
    assert json.loads(path.read_text())["slot"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_used_slots_skips_garbage(tmp_path: Path) -> None:
    save_state(tmp_path, _state("a", 0))
    save_state(tmp_path, _state("b", 5))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "state.json").write_text("garbage")
    assert used_slots(tmp_path) == {0, 5}
    assert used_slots(tmp_path / "missing") == set()


def test_run_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    assert resolve_run_dir() == DEFAULT_RUN_DIR
    monkeypatch.setenv(RUN_DIR_ENV, str(tmp_path))
    assert resolve_run_dir() == tmp_path
    assert resolve_run_dir("/x") == Path("/x")


def test_lock_refuses_second_holder(tmp_path: Path) -> None:
    with MeshLock.acquire(tmp_path, "demo"):
        assert is_locked(tmp_path, "demo")
        with pytest.raises(MeshBusyError, match=f"already up \\(pid {os.getpid()}\\)"):
            MeshLock.acquire(tmp_path, "demo")
    assert not is_locked(tmp_path, "demo")
    MeshLock.acquire(tmp_path, "demo").release()


def test_lock_is_not_inherited_by_children(tmp_path: Path) -> None:
    lock = MeshLock.acquire(tmp_path, "demo")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        lock.release()
        # The child must not keep the mesh locked after its parent let go.
        assert not is_locked(tmp_path, "demo")
    finally:
        child.kill()
        child.wait()
