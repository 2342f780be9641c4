"""`down`: remove everything a mesh created, from state AND from discovery.

State can be missing or stale after a crash, so objects are also found by
name: namespaces ``mz-<mesh>.*`` (and the processes inside them), links whose
ifalias is ``mizzen:<mesh>``, /etc/netns/mz-<mesh>.* directories. Every step
is idempotent and independent: a failure is recorded and the rest goes on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mizzen.runtime import network, processes
from mizzen.runtime.addresses import link_alias, netns_prefix, validate_mesh_name
from mizzen.runtime.dns import ETC_NETNS, remove_pod_dns
from mizzen.runtime.errors import MeshRuntimeError, StateError
from mizzen.runtime.state import MeshState, ProcRef, load_state, mesh_dir, resolve_run_dir


@dataclass(frozen=True)
class TeardownReport:
    mesh: str
    processes: tuple[int, ...] = ()
    netns: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    etc_dirs: tuple[str, ...] = ()
    run_dir_removed: bool = False
    errors: tuple[str, ...] = ()

    @property
    def removed_anything(self) -> bool:
        return bool(
            self.processes or self.netns or self.links or self.etc_dirs or self.run_dir_removed
        )

    def summary(self) -> str:
        if not self.removed_anything and not self.errors:
            return f"mesh {self.mesh!r}: nothing to remove"
        parts = [
            f"{len(self.processes)} processes",
            f"{len(self.netns)} namespaces",
            f"{len(self.links)} links",
            f"{len(self.etc_dirs)} /etc/netns dirs",
        ]
        text = f"mesh {self.mesh!r}: removed {', '.join(parts)}"
        if self.errors:
            text += f"; {len(self.errors)} errors: {self.errors[0]}"
        return text


def _recorded_procs(state: MeshState | None) -> list[ProcRef]:
    if state is None:
        return []
    refs = [r for p in state.pods for r in (*p.processes, *p.sidecar_processes)]
    refs += list(state.host_processes)
    if state.control_plane is not None:
        refs.append(state.control_plane)
    return refs


def _discover_etc_dirs(prefix: str, etc_netns: Path) -> list[str]:
    if not etc_netns.is_dir():
        return []
    return sorted(p.name for p in etc_netns.iterdir() if p.name.startswith(prefix))


def _kill_in_netns(netns: Sequence[str], timeout: float) -> set[int]:
    """Stop every process in netns; repeat while new ones appear (forks)."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout + 5.0
    while True:
        pids = [pid for ns in netns for pid in processes.pids_in_netns(ns)]
        if not pids:
            return killed
        killed.update(processes.stop_many(pids, timeout))
        if time.monotonic() >= deadline:
            return killed


def _pids_mentioning(marker: str) -> list[int]:
    """Processes whose command line names marker (the mesh's run dir): the
    way to find host-network processes, such as the ingress gateway's Envoy,
    when the state file is lost or they were started by a crashed parent."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def down(
    name: str,
    run_dir: Path | str | None = None,
    *,
    etc_netns: Path = ETC_NETNS,
    timeout: float = 5.0,
) -> TeardownReport:
    """Tear mesh `name` down; safe to repeat; returns what was removed."""
    validate_mesh_name(name)
    rdir = resolve_run_dir(run_dir)
    errors: list[str] = []
    try:
        state = load_state(rdir, name)
    except StateError as exc:
        state = None
        errors.append(str(exc))

    prefix = netns_prefix(name)
    all_netns = network.list_netns()
    netns = sorted(
        {n for n in all_netns if n.startswith(prefix)}
        | {p.netns for p in (state.pods if state else ()) if p.netns in all_netns}
    )

    killed: set[int] = set(processes.stop_many(_recorded_procs(state), timeout))
    killed |= _kill_in_netns(netns, timeout)
    marker = f"{mesh_dir(rdir, name)}/"
    killed |= set(processes.stop_many(_pids_mentioning(marker), timeout))

    removed_netns = []
    for ns in netns:
        try:
            if network.remove_pod(ns):
                removed_netns.append(ns)
        except MeshRuntimeError as exc:
            errors.append(str(exc))

    alias = link_alias(name)
    links = network.list_links()
    wanted = {link.name for link in links if link.alias == alias}
    if state is not None:
        by_name = {link.name: link for link in links}
        for candidate in [state.bridge, *(p.veth for p in state.pods)]:
            link = by_name.get(candidate)
            # Empty alias: we crashed between creating the link and naming it.
            if link is not None and link.alias in (alias, ""):
                wanted.add(candidate)
    removed_links = []
    # Veths first, then bridges (deleting a bridge with ports works, but this
    # keeps the report honest about what existed).
    for link_name in sorted(wanted, key=lambda n: n.endswith("-br")):
        if network.delete_link(link_name):
            removed_links.append(link_name)

    etc = set(_discover_etc_dirs(prefix, etc_netns))
    if state is not None:
        etc |= {p.netns for p in state.pods}
    removed_etc = [d for d in sorted(etc) if remove_pod_dns(d, etc_netns)]

    d = mesh_dir(rdir, name)
    run_removed = d.exists()
    if run_removed:
        shutil.rmtree(d, ignore_errors=True)
        if d.exists():
            errors.append(f"could not remove {d}: remove it by hand")
            run_removed = False

    for ns in netns:
        if ns in network.list_netns():
            errors.append(f"namespace {ns} is still there: run `ip netns pids {ns}` and kill them")

    return TeardownReport(
        mesh=name,
        processes=tuple(sorted(killed)),
        netns=tuple(removed_netns),
        links=tuple(removed_links),
        etc_dirs=tuple(removed_etc),
        run_dir_removed=run_removed,
        errors=tuple(errors),
    )
