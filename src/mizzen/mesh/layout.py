"""Where a mesh keeps its files, as seen by the CLI and by the daemon."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mizzen.runtime import processes
from mizzen.runtime.addresses import validate_mesh_name
from mizzen.runtime.state import load_state, mesh_dir, resolve_run_dir


@dataclass(frozen=True)
class MeshLayout:
    name: str
    run_dir: Path

    @classmethod
    def load(cls, name: str, run_dir: Path | str | None = None) -> MeshLayout:
        validate_mesh_name(name)
        return cls(name, resolve_run_dir(run_dir))

    @property
    def dir(self) -> Path:
        return mesh_dir(self.run_dir, self.name)

    @property
    def control_socket(self) -> Path:
        return self.dir / "control.sock"

    @property
    def daemon_log(self) -> Path:
        return self.dir / "logs" / "controlplane.log"

    @property
    def bin_dir(self) -> Path:
        return self.dir / "bin"

    def log_path(self, namespace: str, pod: str, role: str) -> Path:
        # The runtime's naming: logs/<namespace>.<pod>.<role>.log
        return self.dir / "logs" / f"{namespace}.{pod}.{role}.log"

    def pod_dir(self, namespace: str, pod: str) -> Path:
        """The pod's volumes (volumes/<name>) and its containers' file
        system state (fs/<container>)."""
        return self.dir / "pods" / f"{namespace}.{pod}"

    def proxy_dir(self, namespace: str, pod: str) -> Path:
        return self.dir / "proxies" / f"{namespace}.{pod}"

    def daemon_alive(self) -> bool:
        try:
            state = load_state(self.run_dir, self.name)
        except Exception:
            return False
        return bool(state and state.control_plane and processes.alive(state.control_plane))
