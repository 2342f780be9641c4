"""A real Kubernetes control plane with a Mizzen node, driven as a user does:
`mizzen cluster up`, kubectl, `mizzen cluster down`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl are
the ones `make kube-tools` builds from their Go modules; the pods run in
network namespaces on the node bridge.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import mesh_name, poll
from kube_helpers import MIZZEN, Cluster, running_cluster

pytestmark = pytest.mark.kube

ECHO = Path(__file__).parent / "apps" / "echo.py"


def _echo_manifest(namespace: str, replicas: int) -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: {namespace}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: echo}}
  template:
    metadata:
      labels: {{app: echo}}
    spec:
      containers:
      - name: echo
        image: python:3.11
        command: ["python3", "{ECHO}", "8080"]
        env:
        - name: MY_NODE
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: {namespace}
spec:
  selector: {{app: echo}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_cluster("kc") as running:
        yield running


def _container_env(cluster: Cluster, pod: str) -> dict[str, str]:
    """The environment of the pod's echo process, read from /proc."""
    namespace, name = pod.split("/")
    netns = f"mz-{cluster.name}.{namespace}.{name}"
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    for pid in pids.stdout.split():
        if "echo.py" in Path(f"/proc/{pid}/cmdline").read_text():
            raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            return dict(e.decode().split("=", 1) for e in raw if b"=" in e)
    raise AssertionError(f"no echo process in {netns}")


FETCH = """
import json, sys, urllib.request
seen = [json.loads(urllib.request.urlopen(sys.argv[1], timeout=5).read())["pod"]
        for _ in range(int(sys.argv[2]))]
print(json.dumps(seen))
"""


def _pods_answering(cluster: Cluster, client: str, url: str, n: int) -> set[str]:
    out = cluster.mizzen("exec", client, "--", sys.executable, "-c", FETCH, url, str(n))
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_node_registers_and_reports_ready(cluster: Cluster) -> None:
    nodes = cluster.get("nodes")["items"]
    assert [n["metadata"]["name"] for n in nodes] == [f"mizzen-{cluster.name}"]
    ready = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"
    lease = cluster.get("lease", "-n", "kube-node-lease", f"mizzen-{cluster.name}")
    assert lease["spec"]["holderIdentity"] == f"mizzen-{cluster.name}"
    version = json.loads(cluster.kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


def test_deployment_runs_on_the_node_and_follows_scaling(cluster: Cluster) -> None:
    ns = "echo"
    cluster.kubectl("apply", "-f", "-", stdin=_echo_manifest(ns, 2))
    poll(lambda: len(cluster.ready_pods(ns)) == 2, 90, "2 echo pods Ready")
    pods = cluster.ready_pods(ns)
    assert {p["spec"]["nodeName"] for p in pods} == {f"mizzen-{cluster.name}"}
    ips = {p["status"]["podIP"] for p in pods}

    def slice_addresses() -> set[str]:
        slices = cluster.get("endpointslices", "-n", ns)["items"]
        return {
            a
            for s in slices
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
            for a in e["addresses"]
        }

    poll(lambda: slice_addresses() == ips, 30, "EndpointSlice lists both pods")
    names = {p["metadata"]["name"] for p in pods}
    client = f"{ns}/{sorted(names)[0]}"
    # Through the ClusterIP (the node's kube-proxy role) by the Service's name.
    poll(
        lambda: _pods_answering(cluster, client, "http://echo/", 20) == names,
        30,
        "both pods answer behind the Service",
    )
    assert _container_env(cluster, client)["MY_NODE"] == f"mizzen-{cluster.name}"

    cluster.kubectl("scale", "-n", ns, "deployment/echo", "--replicas=3")
    poll(lambda: len(cluster.ready_pods(ns)) == 3, 60, "a third pod Ready")
    all_names = {p["metadata"]["name"] for p in cluster.ready_pods(ns)}
    poll(
        lambda: (
            _pods_answering(cluster, client, "http://echo.echo.svc.cluster.local/", 40) == all_names
        ),
        30,
        "the new pod gets traffic",
    )

    cluster.kubectl("scale", "-n", ns, "deployment/echo", "--replicas=1")
    poll(lambda: len(cluster.get("pods", "-n", ns)["items"]) == 1, 60, "two pods deleted")
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert left.count(f"mz-{cluster.name}.{ns}.") == 1


def test_down_leaves_nothing_behind() -> None:
    name = mesh_name("kd")
    up = subprocess.run(
        [*MIZZEN, "cluster", "up", "--name", name], capture_output=True, text=True, timeout=300
    )
    assert up.returncode == 0, up.stderr
    run_dir = Path("/run/mizzen") / name
    assert (run_dir / "kubeconfig").exists()
    assert (run_dir / "kube" / "pki" / "ca.key").stat().st_mode & 0o777 == 0o600
    pids = subprocess.run(
        ["pgrep", "-f", f"/run/mizzen/{name}/"], capture_output=True, text=True
    ).stdout.split()
    assert len(pids) >= 4  # etcd, apiserver, controller manager, scheduler
    down = subprocess.run(
        [*MIZZEN, "cluster", "down", "--name", name], capture_output=True, text=True, timeout=120
    )
    assert down.returncode == 0, down.stderr
    assert not run_dir.exists()
    assert subprocess.run(["pgrep", "-f", f"/run/mizzen/{name}/"]).returncode == 1
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"mizzen:{name}" not in links
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"mz-{name}." not in netns
    assert not list(Path("/etc/netns").glob(f"mz-{name}.*"))  # the pods' hosts files
