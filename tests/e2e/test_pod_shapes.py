"""Pods as Kubernetes shapes them, on the local runtime: init containers in
order before the rest, containers sharing the pod's network (a helper
reaching the app on localhost), env from ConfigMaps, Secrets and the pod's
own fields, workingDir, and deletion with preStop and the grace period."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import injected_namespace, mizzen, poll, running_mesh

from mizzen.mesh.layout import MeshLayout

APPS = Path(__file__).resolve().parent / "apps"
NS = "shapes"
GRACE_S = 3


def _py(name: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": ["python3", "-c", code], **extra}


STAMP = "import time; print('{0}', time.time(), flush=True)"
HELPER = """
import time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for _ in range(100):
    try:
        body = opener.open('http://localhost:8080/', timeout=2).read().decode()
        print('helper got', body, flush=True)
        break
    except OSError:
        time.sleep(0.2)
time.sleep(86400)
"""
DUMP = """
import json, os, time
keys = ('GREETING', 'PASSWORD', 'MY_POD', 'MY_IP', 'MY_APP', 'CFG_mode', 'EXPANDED')
print(json.dumps({'env': {k: os.environ.get(k) for k in keys}, 'cwd': os.getcwd(),
                  'started': time.time()}), flush=True)
time.sleep(86400)
"""
READER = """
import json, os, time
last = None
while True:
    seen = {}
    for path in ('/scratch/out.txt', '/etc/app/greeting', '/etc/podinfo/app', '/etc/creds/pw'):
        try:
            seen[path] = open(path).read()
        except OSError as e:
            seen[path] = 'error: ' + e.strerror
    try:
        open('/etc/app/new', 'w')
        seen['writable'] = True
    except OSError:
        seen['writable'] = False
    if seen != last:
        print(json.dumps(seen), flush=True)
        last = seen
    time.sleep(0.2)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, lambda *_: print('term', flush=True))
print('running', flush=True)
while True:
    time.sleep(0.1)
"""


def _pod() -> dict[str, Any]:
    def field(path: str) -> dict[str, Any]:
        return {"valueFrom": {"fieldRef": {"fieldPath": path}}}

    env = [
        {
            "name": "GREETING",
            "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}},
        },
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "MY_POD", **field("metadata.name")},
        {"name": "MY_IP", **field("status.podIP")},
        {"name": "MY_APP", **field("metadata.labels['app']")},
        {"name": "EXPANDED", "value": "$(GREETING) from $(MY_POD)"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "duo", "namespace": NS, "labels": {"app": "duo"}},
        "spec": {
            "terminationGracePeriodSeconds": GRACE_S,
            "initContainers": [
                _py("first", STAMP.format("init-1")),
                _py("second", STAMP.format("init-2")),
            ],
            "containers": [
                {
                    "name": "app",
                    "command": ["python3", str(APPS / "echo.py"), "8080"],
                    "ports": [{"containerPort": 8080}],
                    "lifecycle": {
                        "preStop": {"exec": {"command": ["python3", "-c", "print('prestop ran')"]}}
                    },
                },
                _py("helper", HELPER),
                _py(
                    "dump",
                    DUMP,
                    env=env,
                    envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
                    workingDir="/tmp",
                ),
                _py("stubborn", STUBBORN),
            ],
        },
    }


def _files_pod() -> dict[str, Any]:
    """Volumes at paths the host does not have: an emptyDir an init
    container fills, a ConfigMap and the downward API."""
    work = {"name": "scratch", "mountPath": "/scratch"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "files", "namespace": NS, "labels": {"app": "files"}},
        "spec": {
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "settings"}},
                {
                    "name": "creds",
                    "projected": {
                        "sources": [
                            {
                                "secret": {
                                    "name": "creds",
                                    "items": [{"key": "password", "path": "pw"}],
                                }
                            }
                        ]
                    },
                },
                {
                    "name": "podinfo",
                    "downwardAPI": {
                        "items": [
                            {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}}
                        ]
                    },
                },
            ],
            "initContainers": [
                _py(
                    "fill",
                    "open('/scratch/out.txt', 'w').write('made by init')",
                    volumeMounts=[work],
                )
            ],
            "containers": [
                _py(
                    "reader",
                    READER,
                    volumeMounts=[
                        work,
                        {"name": "config", "mountPath": "/etc/app"},
                        {"name": "podinfo", "mountPath": "/etc/podinfo"},
                        {"name": "creds", "mountPath": "/etc/creds"},
                    ],
                )
            ],
        },
    }


def _settings(greeting: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": NS},
        "data": {"greeting": greeting, "mode": "local"},
    }


def manifest() -> list[dict[str, Any]]:
    return [
        injected_namespace(NS),
        _settings("hello"),
        _files_pod(),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds", "namespace": NS},
            "stringData": {"password": "s3cret"},
        },
        _pod(),
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "blocked", "namespace": NS},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [_py("setup", "import sys; sys.exit(4)")],
                "containers": [_py("main", "import time; time.sleep(86400)")],
            },
        },
    ]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_mesh(manifest(), "shapes", tmp_path_factory.mktemp("shapes")) as name:
        yield name


def log(mesh: str, pod: str, role: str) -> str:
    path = MeshLayout.load(mesh).log_path(NS, pod, role)
    return path.read_text() if path.exists() else ""


def pods(mesh: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(mizzen("get", "pods", "--name", mesh, "-o", "json").stdout)
    return {row["name"]: row for row in rows if row["namespace"] == NS}


def _dump(mesh: str) -> dict[str, Any]:
    poll(lambda: bool(log(mesh, "duo", "dump").strip()), 30, "the dump container's output")
    found: dict[str, Any] = json.loads(log(mesh, "duo", "dump").splitlines()[0])
    return found


def test_init_containers_run_in_order_before_the_containers(mesh: str) -> None:
    first = float(log(mesh, "duo", "first").split()[1])
    second = float(log(mesh, "duo", "second").split()[1])
    assert first < second < _dump(mesh)["started"]
    assert pods(mesh)["duo"]["status"] == "Running"


def test_a_failing_init_container_fails_the_pod_under_never(mesh: str) -> None:
    poll(lambda: pods(mesh)["blocked"]["status"] == "Failed", 30, "blocked shown Failed")
    assert log(mesh, "blocked", "main") == ""  # never started


def test_containers_share_the_pods_network(mesh: str) -> None:
    poll(lambda: "helper got" in log(mesh, "duo", "helper"), 30, "the helper's answer")
    assert '"pod": "duo"' in log(mesh, "duo", "helper")


def test_env_from_config_maps_secrets_and_the_pods_fields(mesh: str) -> None:
    dump = _dump(mesh)
    assert dump["env"] == {
        "GREETING": "hello",
        "PASSWORD": "s3cret",
        "MY_POD": "duo",
        "MY_IP": pods(mesh)["duo"]["ip"],
        "MY_APP": "duo",
        "CFG_mode": "local",
        "EXPANDED": "hello from duo",
    }
    assert dump["cwd"] == "/tmp"


def _reader(mesh: str) -> dict[str, Any]:
    lines = log(mesh, "files", "reader").splitlines()
    return json.loads(lines[-1]) if lines else {}


def test_volumes_appear_at_their_mount_paths_and_follow_the_config_map(
    mesh: str, tmp_path: Path
) -> None:
    poll(lambda: bool(_reader(mesh)), 30, "the reader's first look")
    seen = _reader(mesh)
    assert seen["/scratch/out.txt"] == "made by init", seen
    assert seen["/etc/app/greeting"] == "hello", seen
    assert seen["/etc/podinfo/app"] == "files", seen
    assert seen["/etc/creds/pw"] == "s3cret", seen  # a Secret, projected
    assert seen["writable"] is False, seen  # ConfigMap volumes are read-only
    # Only the pod sees them: the host's file system is untouched.
    assert not Path("/scratch").exists() and not Path("/etc/app").exists()
    changed = tmp_path / "settings.yaml"
    changed.write_text(yaml.safe_dump(_settings("hello again")))
    out = mizzen("apply", "-f", str(changed), "--name", mesh)
    assert out.returncode == 0, out.stderr
    poll(
        lambda: _reader(mesh).get("/etc/app/greeting") == "hello again",
        30,
        "the re-applied ConfigMap in the mounted file",
    )


def test_deletion_runs_pre_stop_then_kills_after_the_grace_period(
    mesh: str, tmp_path: Path
) -> None:
    poll(lambda: "running" in log(mesh, "duo", "stubborn"), 30, "the stubborn container")
    only = tmp_path / "duo.yaml"
    only.write_text(yaml.safe_dump(_pod()))
    started = time.monotonic()
    out = mizzen("delete", "-f", str(only), "--name", mesh)
    took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "duo" not in pods(mesh)
    assert "prestop ran" in log(mesh, "duo", "app.prestop")
    # TERM was caught and ignored; KILL came when the grace period ended.
    assert "term" in log(mesh, "duo", "stubborn")
    assert GRACE_S - 0.5 <= took < GRACE_S + 10, took


def test_down_gives_pods_their_pre_stop_and_grace_period(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`mizzen down` stops pods as deletion does: preStop first, TERM, and
    KILL only when the grace period is over (markers go to a host folder:
    the mesh's own files are gone after down)."""
    marks = tmp_path_factory.mktemp("marks")
    trap = (
        "import signal, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: open('{marks}/term', 'w'))\n"
        "while True: time.sleep(0.1)\n"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "slow", "namespace": NS},
        "spec": {
            "terminationGracePeriodSeconds": GRACE_S,
            "containers": [
                _py(
                    "main",
                    trap,
                    lifecycle={
                        "preStop": {
                            "exec": {"command": ["python3", "-c", f"open('{marks}/prestop', 'w')"]}
                        }
                    },
                )
            ],
        },
    }
    with running_mesh([injected_namespace(NS), pod], "slowdown", marks) as name:
        started = time.monotonic()
        out = mizzen("down", "--name", name, timeout=120)
        took = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert (marks / "prestop").exists() and (marks / "term").exists()
    assert took >= GRACE_S - 0.5, took
