"""Persistent state of a running mesh: /run/mizzen/<name>/state.json + lock.

The state is what `down` needs after a crash; it is rewritten atomically
(temp file + rename) so a reader sees the old or the new file, never half.
`down` still copes with a missing or corrupt file by discovering objects by
name (see teardown.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mizzen.runtime.errors import MeshBusyError, StateError

DEFAULT_RUN_DIR = Path("/run/mizzen")
RUN_DIR_ENV = "MIZZEN_RUN_DIR"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
STATE_VERSION = 1


def resolve_run_dir(run_dir: Path | str | None = None) -> Path:
    """Explicit argument, else $MIZZEN_RUN_DIR, else /run/mizzen."""
    if run_dir is not None:
        return Path(run_dir)
    env = os.environ.get(RUN_DIR_ENV)
    return Path(env) if env else DEFAULT_RUN_DIR


def mesh_dir(run_dir: Path, name: str) -> Path:
    return run_dir / name


@dataclass(frozen=True)
class ProcRef:
    """A process we started. start_time (clock ticks since boot, from
    /proc/PID/stat) tells it apart from an unrelated process that reused the
    pid after a crash."""

    pid: int
    start_time: int
    role: str = ""


@dataclass(frozen=True)
class PodState:
    name: str
    namespace: str
    index: int
    netns: str
    veth: str
    ip: str
    processes: tuple[ProcRef, ...] = ()
    sidecar_processes: tuple[ProcRef, ...] = ()


@dataclass(frozen=True)
class MeshState:
    name: str
    slot: int
    bridge: str
    host_ip: str
    pod_cidr: str
    service_cidr: str
    pods: tuple[PodState, ...] = ()
    control_plane: ProcRef | None = None
    # Host-network processes (ingress gateway, ...) recorded by role.
    host_processes: tuple[ProcRef, ...] = ()
    # Free-form facts for other layers (ingress ports, ...): strings only.
    info: Mapping[str, str] = field(default_factory=dict)
    version: int = STATE_VERSION

    def pod(self, namespace: str, name: str) -> PodState | None:
        for p in self.pods:
            if p.namespace == namespace and p.name == name:
                return p
        return None

    def with_pod(self, pod: PodState) -> MeshState:
        """Add pod, or replace the pod with the same namespace/name."""
        others = tuple(p for p in self.pods if (p.namespace, p.name) != (pod.namespace, pod.name))
        return replace(self, pods=(*others, pod))

    def without_pod(self, namespace: str, name: str) -> MeshState:
        return replace(
            self, pods=tuple(p for p in self.pods if (p.namespace, p.name) != (namespace, name))
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> MeshState:
        try:
            raw = json.loads(text)
            return _mesh_from_dict(raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"unreadable mesh state ({exc}): run `mizzen down` to clean up"
            ) from exc


def _proc(raw: Mapping[str, Any]) -> ProcRef:
    return ProcRef(pid=int(raw["pid"]), start_time=int(raw["start_time"]), role=str(raw["role"]))


def _mesh_from_dict(raw: Mapping[str, Any]) -> MeshState:
    pods = tuple(
        PodState(
            name=str(p["name"]),
            namespace=str(p["namespace"]),
            index=int(p["index"]),
            netns=str(p["netns"]),
            veth=str(p["veth"]),
            ip=str(p["ip"]),
            processes=tuple(_proc(x) for x in p["processes"]),
            sidecar_processes=tuple(_proc(x) for x in p["sidecar_processes"]),
        )
        for p in raw["pods"]
    )
    cp = raw.get("control_plane")
    return MeshState(
        name=str(raw["name"]),
        slot=int(raw["slot"]),
        bridge=str(raw["bridge"]),
        host_ip=str(raw["host_ip"]),
        pod_cidr=str(raw["pod_cidr"]),
        service_cidr=str(raw["service_cidr"]),
        pods=pods,
        control_plane=_proc(cp) if cp else None,
        host_processes=tuple(_proc(x) for x in raw.get("host_processes", ())),
        info={str(k): str(v) for k, v in raw.get("info", {}).items()},
        version=int(raw.get("version", STATE_VERSION)),
    )


def save_state(run_dir: Path, state: MeshState) -> Path:
    """Write state.json atomically; returns its path."""
    d = mesh_dir(run_dir, state.name)
    d.mkdir(parents=True, exist_ok=True, mode=0o755)
    path = d / STATE_FILE
    tmp = d / f".{STATE_FILE}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(state.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_state(run_dir: Path, name: str) -> MeshState | None:
    """The saved state, None if there is none; StateError if it is corrupt."""
    path = mesh_dir(run_dir, name) / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return MeshState.from_json(text)


def used_slots(run_dir: Path) -> set[int]:
    """Slots recorded by every mesh under run_dir (corrupt files are skipped:
    their bridge, if any, is still seen by the caller's link scan)."""
    slots: set[int] = set()
    if not run_dir.is_dir():
        return slots
    for path in run_dir.glob(f"*/{STATE_FILE}"):
        try:
            slots.add(int(json.loads(path.read_text(encoding="utf-8"))["slot"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return slots


class MeshLock:
    """An exclusive flock on /run/mizzen/<name>/lock held while a mesh is up.

    The fd is close-on-exec, so processes we spawn do not inherit the lock:
    when `up` dies the lock goes with it, even if its Envoys live on.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, run_dir: Path, name: str) -> MeshLock:
        d = mesh_dir(run_dir, name)
        d.mkdir(parents=True, exist_ok=True, mode=0o755)
        path = d / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise MeshBusyError(
                f"mesh {name!r} is already up (pid {holder}): run `mizzen down --name {name}` "
                "or choose another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> MeshLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(run_dir: Path, name: str) -> bool:
    """True when some live process holds the mesh's lock."""
    path = mesh_dir(run_dir, name) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def global_lock(run_dir: Path) -> Iterator[None]:
    """Serialises slot allocation between meshes sharing run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd = os.open(run_dir / ".slots.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
