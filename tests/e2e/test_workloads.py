"""The workload kinds real manifests are made of, on the local runtime:
a StatefulSet behind a headless Service (stable pod names, ordinal start),
Jobs that complete or fail after their backoffLimit, a bare Pod, and what
the runtime does not run (a CronJob) named with the reason."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import command_deployment, injected_namespace, mizzen, poll, running_mesh

APPS = Path(__file__).resolve().parent / "apps"
NS = "wl"
SLEEP = ["python3", "-c", "import time; time.sleep(86400)"]


def _job(name: str, code: str, backoff: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "run", "command": ["python3", "-c", code]}],
                }
            },
        },
    }


def manifest() -> list[dict[str, Any]]:
    web = {"app": "web"}
    return [
        injected_namespace(NS),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "clusterIP": "None",
                "selector": web,
                "ports": [{"name": "http", "port": 8080}],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": NS},
            "spec": {
                "serviceName": "web",
                "replicas": 3,
                "selector": {"matchLabels": web},
                "template": {
                    "metadata": {"labels": web},
                    "spec": {
                        "containers": [
                            {
                                "name": "echo",
                                "command": ["python3", str(APPS / "echo.py"), "8080"],
                                "ports": [{"containerPort": 8080}],
                            }
                        ]
                    },
                },
            },
        },
        command_deployment(NS, "client", SLEEP),
        # Pods reach each other by name over mTLS, as in an Istio namespace
        # locked down this way.
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": NS},
            "spec": {"mtls": {"mode": "STRICT"}},
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "solo", "namespace": NS},
            "spec": {"containers": [{"name": "main", "command": SLEEP}]},
        },
        _job("answer", "print('result: 42')", 6),
        _job("broken", "import sys; print('trying'); sys.exit(3)", 2),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": NS},
            "data": {"mode": "local"},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "nightly", "namespace": NS},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {}}},
        },
    ]


@pytest.fixture(scope="module")
def mesh_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    directory = tmp_path_factory.mktemp("workloads")
    with running_mesh(manifest(), "workloads", directory) as name:
        yield name, directory


def pods(mesh: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(mizzen("get", "pods", "--name", mesh, "-o", "json").stdout)
    return {row["name"]: row for row in rows if row["namespace"] == NS}


def in_client(mesh: str, code: str, *args: str) -> Any:
    out = mizzen("exec", f"{NS}/client-0", "--name", mesh, "--", sys.executable, "-c", code, *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


RESOLVE = """
import json, socket, sys
print(json.dumps(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 8080)})))
"""
FETCH = """
import json, sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
print(opener.open(sys.argv[1], timeout=5).read().decode())
"""


def test_stateful_set_pods_start_in_ordinal_order(mesh_dir: tuple[str, Path]) -> None:
    mesh, _ = mesh_dir
    found = pods(mesh)
    web = [found[f"web-{i}"] for i in range(3)]
    assert all(p["ready"] and p["kind"] == "StatefulSet" for p in web), web
    # Each started after the one before it was ready: strictly younger.
    ages = [p["age"] for p in web]
    assert ages[0] > ages[1] > ages[2], ages


def test_headless_service_resolves_to_every_ready_pod(mesh_dir: tuple[str, Path]) -> None:
    mesh, _ = mesh_dir
    found = pods(mesh)
    expected = sorted(found[f"web-{i}"]["ip"] for i in range(3))
    assert in_client(mesh, RESOLVE, "web") == expected
    assert in_client(mesh, RESOLVE, f"web.{NS}.svc.cluster.local") == expected


def test_stateful_pods_answer_to_their_stable_names(mesh_dir: tuple[str, Path]) -> None:
    mesh, _ = mesh_dir
    found = pods(mesh)
    for name in ("web-1.web", f"web-2.web.{NS}.svc.cluster.local"):
        (address,) = in_client(mesh, RESOLVE, name)
        assert address == found[name.split(".")[0]]["ip"], name
        answer = in_client(mesh, FETCH, f"http://{name}:8080/")
        assert answer["pod"] == name.split(".")[0], answer
        # Through both sidecars over mTLS: the server's names the caller.
        xfcc = answer["headers"].get("x-forwarded-client-cert", "")
        assert f"URI=spiffe://cluster.local/ns/{NS}/sa/default" in xfcc, answer


def test_each_stateful_pod_reaches_another_by_name(mesh_dir: tuple[str, Path]) -> None:
    mesh, _ = mesh_dir
    for pod in ("web-0", "web-1", "web-2"):
        out = mizzen(
            "exec",
            f"{NS}/{pod}",
            "--name",
            mesh,
            "--",
            sys.executable,
            "-c",
            FETCH,
            "http://web-1.web:8080/",
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["pod"] == "web-1", (pod, out.stdout)


def test_jobs_complete_or_fail_after_their_backoff_limit(mesh_dir: tuple[str, Path]) -> None:
    mesh, _ = mesh_dir

    def settled() -> bool:
        found = pods(mesh)
        return found["answer-0"]["status"] == "Completed" and found["broken-0"]["status"] == (
            "Failed"
        )

    poll(settled, 60, "the Jobs' pods Completed and Failed")
    found = pods(mesh)
    assert found["broken-0"]["restarts"] == 2, found["broken-0"]  # backoffLimit: 3 runs
    assert not found["answer-0"]["ready"]
    log = mizzen("logs", f"{NS}/answer-0", "--name", mesh).stdout
    assert "result: 42" in log
    runs = mizzen("logs", f"{NS}/broken-0", "--name", mesh).stdout.count("trying")
    assert runs == 3, runs
    assert found["solo"]["ready"] and found["solo"]["kind"] == "Pod"


def test_what_is_not_run_is_named_with_the_reason(mesh_dir: tuple[str, Path]) -> None:
    mesh, directory = mesh_dir
    stderr = (directory / "up.stderr").read_text()
    assert f"CronJob {NS}/nightly: not run locally yet" in stderr, stderr
    skipped = json.loads(mizzen("get", "skipped", "--name", mesh, "-o", "json").stdout)
    assert [(s["kind"], s["name"]) for s in skipped] == [("CronJob", f"{NS}/nightly")], skipped
    table = mizzen("get", "skipped", "--name", mesh).stdout
    assert "CronJob" in table and "nothing schedules its Jobs" in table


def test_reapplying_with_new_replicas_leaves_the_other_pods_alone(
    mesh_dir: tuple[str, Path],
) -> None:
    mesh, directory = mesh_dir
    before = pods(mesh)
    stateful = next(d for d in manifest() if d["kind"] == "StatefulSet")

    def scale(replicas: int) -> None:
        stateful["spec"]["replicas"] = replicas
        path = directory / f"web-{replicas}.yaml"
        path.write_text(yaml.safe_dump(stateful))
        out = mizzen("apply", "-f", str(path), "--name", mesh)
        assert out.returncode == 0, out.stderr

    scale(4)
    poll(lambda: pods(mesh).get("web-3", {}).get("ready") is True, 60, "web-3 ready")
    scale(2)
    poll(lambda: "web-2" not in pods(mesh), 60, "web-2 and web-3 gone")
    after = pods(mesh)
    assert "web-3" not in after
    for name in ("web-0", "web-1"):  # the same processes all along
        assert after[name]["ip"] == before[name]["ip"]
        assert after[name]["age"] > before[name]["age"] and after[name]["restarts"] == 0


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "workloads" / "statefulset.yaml"


def test_the_example_manifest_runs_whole(tmp_path_factory: pytest.TempPathFactory) -> None:
    """examples/workloads/statefulset.yaml, as a new user runs it: every pod
    of it runs, and the CronJob is named as skipped, with why."""
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    directory = tmp_path_factory.mktemp("example")
    with running_mesh(docs, "wl-example", directory) as mesh:
        rows = json.loads(mizzen("get", "pods", "--name", mesh, "-o", "json").stdout)
        found = {r["name"]: r for r in rows if r["namespace"] == "default"}
        assert sorted(found) == ["toolbox", "web-0", "web-1"], found
        assert all(r["ready"] for r in found.values()), found
        poll(
            lambda: "hello from a ConfigMap" in mizzen("logs", "toolbox", "--name", mesh).stdout,
            30,
            "the toolbox reading its ConfigMap file",
        )
        fetch = "import urllib.request as u; print(u.urlopen('http://web-1.web:8080/').status)"
        out = mizzen("exec", "toolbox", "--name", mesh, "--", "python3", "-c", fetch)
        assert out.stdout.strip() == "200", out.stderr
        assert "CronJob nightly-report: not run locally yet" in (
            (directory / "up.stderr").read_text()
        )
