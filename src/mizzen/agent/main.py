"""The per-pod agent: prepare as root, drop to uid 1337, run Envoy and health.

Why the two phases: the agent's own traffic (to the control plane, to Envoy's
admin) must not be captured by the pod's iptables rules, which exempt uid
1337, and Envoy should be a child of an unprivileged process. But the Python
interpreter and the mizzen sources may live under a 0700 home directory that
uid 1337 cannot read. So, as root, the agent resolves (and if needed copies)
the Envoy binary, creates its work directory and imports every module it will
need; only then does it switch to uid 1337 and write the bootstrap, start
Envoy and serve ``/healthz/ready``.

Files in the work directory:

    bootstrap.json   the Envoy bootstrap
    envoy.log        Envoy's stdout and stderr
    admin.address    Envoy's bound admin address (written by Envoy)
    health.port      the bound health port (useful with --health-port 0)

With an identity (the local mesh always gives one) the agent also gets the
workload certificate before Envoy starts and keeps it fresh (``certs``),
serving it to Envoy over SDS (``sds``); no key ever touches the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mizzen.agent.appprobes import AppProbe, app_probe_handler
from mizzen.agent.bootstrap import (
    BootstrapError,
    BootstrapOptions,
    render_bootstrap_json,
    validate_options,
)
from mizzen.agent.certs import CaClient, CertificateManager
from mizzen.agent.envoy import (
    PROXY_GID,
    PROXY_UID,
    EnvoyCommand,
    EnvoyError,
    EnvoyProcess,
    ensure_binary_for,
    makedirs_reachable,
    parent_death_wrapper,
    resolve_envoy_binary,
    start_envoy,
    unreachable_reason,
)
from mizzen.agent.health import (
    HealthServer,
    ReadinessMonitor,
    admin_from_file,
    check_envoy,
    fixed_admin,
)
from mizzen.agent.sds import SdsServer, SecretStore
from mizzen.api.meshconfig import DEFAULT_SECRET_TTL_S, DEFAULT_TRUST_DOMAIN
from mizzen.ca.identity import spiffe_id

log = logging.getLogger("mizzen.agent")

BOOTSTRAP_FILE = "bootstrap.json"
ENVOY_LOG_FILE = "envoy.log"
ADMIN_ADDRESS_FILE = "admin.address"
HEALTH_PORT_FILE = "health.port"

# Modules that code after the privilege drop may import lazily. Loading them
# while still root means a 0700 interpreter directory cannot break us later.
_PRELOAD = (
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.utf_8",
    "encodings.idna",
    "stringprep",
    "unicodedata",
    "concurrent.futures.thread",
    "asyncio.unix_events",
    "asyncio.selector_events",
    "asyncio.base_subprocess",
    "json.decoder",
    "json.encoder",
    "subprocess",
    "selectors",
    "threading",
    "traceback",
    "linecache",
    "tokenize",
    "logging.handlers",
)


class AgentError(RuntimeError):
    """A problem that stops the agent, phrased for the user."""


@dataclass(frozen=True)
class IdentityConfig:
    """Where the workload certificate comes from.

    ``token_file`` is the pod's credential and ``trust_bundle_file`` the
    mesh's root certificates (which also authenticate the control plane);
    both are read while the agent is still root, so that no other pod's
    agent (same uid 1337) could read them later.
    """

    ca_address: str  # host:port of the certificate service (15012)
    trust_bundle_file: Path
    token_file: Path
    sds_socket: str  # an abstract socket name (no "@"), or a file path starting with "/"
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    ttl_s: float = DEFAULT_SECRET_TTL_S


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``mizzen agent`` needs; built by the CLI."""

    bootstrap: BootstrapOptions
    workdir: Path
    health_address: str = "0.0.0.0"
    health_port: int = 15021
    concurrency: int = 2
    envoy_binary: Path | None = None
    envoy_bin_dir: Path | None = None
    drop_privileges: bool = True
    proxy_uid: int = PROXY_UID
    proxy_gid: int = PROXY_GID
    envoy_log_level: str = "warning"
    stop_timeout_s: float = 5.0
    identity: IdentityConfig | None = None
    # Rewritten app probes, served on status_port (Istio's 15020).
    app_probers: Mapping[str, tuple[AppProbe, float]] = field(default_factory=dict)
    status_port: int = 15020


@dataclass(frozen=True)
class Prepared:
    """What the privileged phase hands to the unprivileged one."""

    envoy_binary: Path
    wrapper: tuple[str, ...]  # execs Envoy with a parent-death signal
    token: str = ""
    trust_bundle: bytes = b""


def preload_modules() -> None:
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def prepare(config: AgentConfig) -> Prepared:
    """The privileged phase (root, unless --no-drop): binary, work dir, imports."""
    try:
        validate_options(config.bootstrap)
    except BootstrapError as e:
        raise AgentError(str(e)) from None
    if config.concurrency < 1:
        raise AgentError("concurrency: must be at least 1")
    if not 0 <= config.health_port <= 65535:
        raise AgentError(f"health-port: must be 0..65535, not {config.health_port}")
    drop = config.drop_privileges
    if drop and os.geteuid() != 0:
        raise AgentError(
            f"the agent must start as root to switch to uid {config.proxy_uid}; "
            "pass --no-drop to run everything as the current user"
        )
    uid, gid = (config.proxy_uid, config.proxy_gid) if drop else (os.getuid(), os.getgid())
    workdir = Path(os.path.abspath(config.workdir))
    try:
        makedirs_reachable(workdir.parent)
        workdir.mkdir(mode=0o750, exist_ok=True)
        if drop:
            os.chown(workdir, uid, gid)
            os.chmod(workdir, 0o750)
    except OSError as e:
        raise AgentError(f"cannot create work directory {workdir}: {e}") from None
    reason = unreachable_reason(workdir, uid, gid, 7)
    if reason is not None:
        raise AgentError(
            f"uid {uid} cannot use work directory {workdir}: {reason}; "
            "choose a --workdir it can reach"
        )
    try:
        binary = resolve_envoy_binary(config.envoy_binary)
        if drop:
            binary = ensure_binary_for(binary, uid, gid, config.envoy_bin_dir or config.workdir)
    except EnvoyError as e:
        raise AgentError(str(e)) from None
    except OSError as e:
        raise AgentError(f"cannot prepare the Envoy binary: {e}") from None
    token, bundle = _read_identity(config.identity)
    preload_modules()
    return Prepared(
        envoy_binary=binary, wrapper=parent_death_wrapper(), token=token, trust_bundle=bundle
    )


def _read_identity(identity: IdentityConfig | None) -> tuple[str, bytes]:
    if identity is None:
        return "", b""
    try:
        token = identity.token_file.read_text().strip()
    except OSError as e:
        raise AgentError(
            f"cannot read the pod credential {identity.token_file}: {e.strerror}"
        ) from None
    try:
        bundle = identity.trust_bundle_file.read_bytes()
    except OSError as e:
        raise AgentError(
            f"cannot read the mesh root certificates {identity.trust_bundle_file}: {e.strerror}"
        ) from None
    if not token:
        raise AgentError(f"the pod credential {identity.token_file} is empty")
    return token, bundle


def drop_privileges(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good, with no supplementary groups."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise AgentError(f"could not switch to uid {uid} gid {gid}")


def _write(path: Path, text: str, mode: int = 0o640) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def serve(config: AgentConfig, prepared: Prepared, stop: asyncio.Event) -> int:
    """The unprivileged phase; returns the exit code once ``stop`` is set or Envoy dies."""
    workdir = Path(os.path.abspath(config.workdir))
    bootstrap_path = workdir / BOOTSTRAP_FILE
    admin_path = workdir / ADMIN_ADDRESS_FILE
    health_port_path = workdir / HEALTH_PORT_FILE
    for stale in (admin_path, health_port_path):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    _write(bootstrap_path, render_bootstrap_json(config.bootstrap))

    opts = config.bootstrap
    if opts.admin_port == 0:
        locate = admin_from_file(admin_path)
    else:
        host = "127.0.0.1" if opts.admin_address in ("0.0.0.0", "") else opts.admin_address
        locate = fixed_admin(host, opts.admin_port)
    monitor = ReadinessMonitor(lambda: check_envoy(locate))
    server = HealthServer(monitor)
    try:
        port = await server.start(config.health_address, config.health_port)
    except OSError as e:
        log.error(
            "cannot listen for health checks on %s:%d: %s",
            config.health_address,
            config.health_port,
            e,
        )
        return 1
    _write(health_port_path, f"{port}\n", 0o644)

    extras = _Extras()
    try:
        started = await _start_extras(config, prepared, monitor, stop, extras)
    except OSError as e:
        log.error("%s", e)
        started = False
    if not started:
        await extras.close()
        await server.close()
        return 0 if stop.is_set() else 1

    command = EnvoyCommand(
        binary=prepared.envoy_binary,
        bootstrap=bootstrap_path,
        admin_address_path=admin_path,
        concurrency=config.concurrency,
        log_level=config.envoy_log_level,
    )
    try:
        envoy = start_envoy(command, workdir / ENVOY_LOG_FILE, wrapper=prepared.wrapper)
    except OSError as e:
        await extras.close()
        await server.close()
        log.error("cannot start Envoy %s: %s", prepared.envoy_binary, e)
        return 1
    log.info(
        "Envoy pid %d started (uid %d); health on %s:%d/healthz/ready; logs in %s",
        envoy.pid,
        os.getuid(),
        config.health_address,
        port,
        envoy.log_path,
    )
    poller = asyncio.create_task(monitor.run())
    try:
        code = await _wait_stop_or_exit(stop, envoy)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        await envoy.stop_async(config.stop_timeout_s)
        await extras.close()
        await server.close()
    return code


@dataclass
class _Extras:
    """What runs beside Envoy when the pod has an identity or app probes."""

    sds: SdsServer | None = None
    rotation: asyncio.Task[None] | None = None
    status: HealthServer | None = None

    async def close(self) -> None:
        if self.rotation is not None:
            self.rotation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.rotation
        if self.sds is not None:
            await self.sds.stop()
        if self.status is not None:
            await self.status.close()


async def _start_extras(
    config: AgentConfig,
    prepared: Prepared,
    monitor: ReadinessMonitor,
    stop: asyncio.Event,
    extras: _Extras,
) -> bool:
    """The app probe server, then SDS with a first certificate; False when
    stopped before the certificate came. Raises OSError for a port or
    socket that cannot be bound.

    The probe server comes first: the runtime probes liveness through it,
    and a slow certificate must not get the app's containers restarted."""
    identity = config.identity
    opts = config.bootstrap
    if config.app_probers:
        extras.status = HealthServer(monitor, app_probe_handler(config.app_probers, opts.ips[0]))
        try:
            await extras.status.start(config.health_address, config.status_port)
        except OSError as e:
            raise OSError(
                f"cannot listen for app probes on {config.health_address}:"
                f"{config.status_port}: {e.strerror}"
            ) from None
    if identity is not None:
        store = SecretStore()
        extras.sds = SdsServer(store)
        await extras.sds.start(identity.sds_socket)
        manager = CertificateManager(
            CaClient(identity.ca_address, prepared.trust_bundle, prepared.token),
            spiffe_id(opts.namespace, opts.service_account, identity.trust_domain),
            identity.ttl_s,
            store,
            prepared.trust_bundle.decode(),
        )
        if await manager.obtain(stop) is None:
            return False
        extras.rotation = asyncio.create_task(manager.run(stop))
    return True


async def _wait_stop_or_exit(stop: asyncio.Event, envoy: EnvoyProcess) -> int:
    # Popen has no awaitable exit; poll it alongside the stop event.
    while not stop.is_set():
        rc = envoy.poll()
        if rc is not None:
            log.error(
                "Envoy exited unexpectedly with code %d; last lines of %s:\n%s",
                rc,
                envoy.log_path,
                envoy.log_tail(),
            )
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return 0


async def _run(config: AgentConfig, prepared: Prepared) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await serve(config, prepared, stop)


def run_agent(config: AgentConfig) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until Envoy dies (exit 1).

    Raises AgentError for problems found before Envoy starts.
    """
    # Fix the work directory before the chdir below can change its meaning.
    config = dataclasses.replace(config, workdir=Path(os.path.abspath(config.workdir)))
    prepared = prepare(config)
    if config.drop_privileges:
        drop_privileges(config.proxy_uid, config.proxy_gid)
    # The old working directory may be unreadable to uid 1337.
    os.chdir(os.path.abspath(config.workdir))
    return asyncio.run(_run(config, prepared))
