"""The mesh on a real Kubernetes control plane, as a user drives it with
kubectl: the webhook injects the pods, the control plane in the istiod pods
watches the API and configures their sidecars.

One cluster for the module (`mizzen cluster up` installs Mizzen and waits
for its control plane); each test works in namespaces of its own.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import injected_namespace, poll
from kube_helpers import Cluster, running_cluster
from test_akka_pekko_mesh import (
    CLIENT,
    INBOUND_SOURCE,
    SEEDS,
    compose,
    delta,
    seed_deployment,
    shared_dir,
    traffic,
)

from mizzen.api.parse import parse_text
from mizzen.ca.authority import self_signed_root
from mizzen.cluster.tools import bin_dir
from mizzen.kube.client import Credentials

pytestmark = pytest.mark.kube

ECHO = Path(__file__).parent / "apps" / "echo.py"
NS = "routing"

FETCH = """
import json, sys, urllib.request
seen = [json.loads(urllib.request.urlopen(sys.argv[1], timeout=5).read())["pod"]
        for _ in range(int(sys.argv[2]))]
print(json.dumps(seen))
"""

ADMIN_GET = """
import sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:15000" + sys.argv[1], timeout=5).read().decode())
"""


def _echo(name: str, labels: dict[str, str], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "echo",
                            "image": "python:3.11",
                            "command": ["python3", str(ECHO), "8080"],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 2,
                            },
                        }
                    ]
                },
            },
        },
    }


def _routing_manifest() -> list[dict[str, Any]]:
    return [
        injected_namespace(NS),
        _echo("echo-v1", {"app": "echo", "version": "v1"}),
        _echo("echo-v2", {"app": "echo", "version": "v2"}),
        _echo("client", {"app": "client"}),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {
                "selector": {"app": "echo"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "echo", "namespace": NS},
            "spec": {
                "host": "echo",
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}},
                ],
            },
        },
        _virtual_service("v2"),
    ]


def _virtual_service(subset: str, uri_regex: str | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {"route": [{"destination": {"host": "echo", "subset": subset}}]}
    if uri_regex is not None:
        route["match"] = [{"uri": {"regex": uri_regex}}]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "echo", "namespace": NS},
        "spec": {"hosts": ["echo"], "http": [route]},
    }


def _dump(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def _seconds(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


class Routing:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def pods(self, selector: str) -> list[str]:
        return sorted(p["metadata"]["name"] for p in self.cluster.ready_pods(NS, selector))

    @property
    def client(self) -> str:
        return f"{NS}/{self.pods('app=client')[0]}"

    def answers(self, n: int = 20, url: str = "http://echo/") -> list[str]:
        out = self.cluster.mizzen(
            "exec", self.client, "--", sys.executable, "-c", FETCH, url, str(n)
        )
        assert out.returncode == 0, out.stderr
        seen: list[str] = json.loads(out.stdout)
        return seen

    def admin(self, pod: str, path: str) -> str:
        out = self.cluster.mizzen("exec", pod, "--", sys.executable, "-c", ADMIN_GET, path)
        assert out.returncode == 0, out.stderr
        return out.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster("km", tmp_path_factory.mktemp("cluster-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def routing(cluster: Cluster) -> Routing:
    cluster.kubectl("apply", "-f", "-", stdin=_dump(_routing_manifest()))
    cluster.wait_ready(NS, 3, 180)
    return Routing(cluster)


def test_injected_pods_follow_the_virtual_service_and_scaling(
    cluster: Cluster, routing: Routing
) -> None:
    pods = cluster.get("pods", "-n", NS)["items"]
    for pod in pods:
        spec = pod["spec"]
        assert [c["name"] for c in spec["initContainers"]] == ["istio-init"]
        assert [c["name"] for c in spec["containers"]] == ["echo", "istio-proxy"]
        assert spec["nodeName"] == f"mizzen-{cluster.name}"
        conditions = {c["type"]: c for c in pod["status"]["conditions"]}
        took = _seconds(
            pod["metadata"]["creationTimestamp"], conditions["Ready"]["lastTransitionTime"]
        )
        print(f"pod {pod['metadata']['name']}: created -> Ready (sidecar ready) in {took:.0f} s")

    echo_ips = {p["status"]["podIP"] for p in cluster.ready_pods(NS, "app=echo")}

    def sliced() -> set[str]:
        slices = cluster.get("endpointslices", "-n", NS, "-l", "kubernetes.io/service-name=echo")
        return {
            a
            for s in slices["items"]
            for e in s.get("endpoints") or []
            if e.get("conditions", {}).get("ready")
            for a in e["addresses"]
        }

    poll(lambda: sliced() == echo_ips, 30, "the EndpointSlice lists both echo pods")

    (v2,) = routing.pods("version=v2")
    # kube-proxy alone would spread over v1 and v2: only the sidecar's route
    # sends everything to v2.
    poll(lambda: set(routing.answers()) == {v2}, 60, "every request answered by v2")
    assert set(routing.answers(40)) == {v2}

    cluster.kubectl("scale", "-n", NS, "deployment/echo-v2", "--replicas=2")
    poll(lambda: len(routing.pods("version=v2")) == 2, 120, "a second v2 pod Ready")
    both = set(routing.pods("version=v2"))
    poll(lambda: set(routing.answers(40)) == both, 60, "the new v2 pod gets traffic")
    assert set(routing.answers(40)) <= both


def test_invalid_virtual_service_is_refused_and_the_old_one_keeps_serving(
    cluster: Cluster, routing: Routing
) -> None:
    bad = _dump([_virtual_service("v1", uri_regex="((")])
    refused = cluster.run_kubectl("apply", "-f", "-", stdin=bad)
    assert refused.returncode != 0
    (error,) = parse_text(bad, "vs.yaml").errors  # what `mizzen apply` says
    assert f"{error.resource}: {error.path}: {error.message}" in refused.stderr, refused.stderr
    assert "denied the request" in refused.stderr
    stored = cluster.get("virtualservice", "-n", NS, "echo")
    assert stored["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v2"
    assert set(routing.answers()) == set(routing.pods("version=v2"))


def _kubectl_as(cluster: Cluster, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl with nothing but ``token`` (the admin kubeconfig's client
    certificate would win over it)."""
    admin = Credentials.from_kubeconfig(Path("/run/mizzen") / cluster.name / "kubeconfig")
    assert admin.ca_file is not None
    return subprocess.run(
        [
            str(bin_dir() / "kubectl"),
            *("--kubeconfig", "/dev/null", "--server", admin.server),
            *("--certificate-authority", admin.ca_file, "--token", token),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_control_plane_has_only_the_rbac_the_manifests_grant(cluster: Cluster) -> None:
    istiod = cluster.ready_pods("istio-system", "app=istiod")
    assert len(istiod) == 2
    assert {p["spec"]["serviceAccountName"] for p in istiod} == {"istiod"}
    token = cluster.kubectl("create", "token", "istiod", "-n", "istio-system").strip()
    allowed = _kubectl_as(cluster, token, "get", "virtualservices,pods,services", "-A")
    assert allowed.returncode == 0, allowed.stderr
    for forbidden in (
        ("delete", "pods", "-n", "istio-system", "--all"),
        ("create", "namespace", "not-for-istiod"),
        ("get", "deployments", "-A"),
    ):
        out = _kubectl_as(cluster, token, *forbidden)
        assert out.returncode != 0, f"{forbidden} was allowed"
        assert (
            "Forbidden" in out.stderr and "system:serviceaccount:istio-system:istiod" in out.stderr
        )


def _service(i: int, port: int) -> dict[str, Any]:
    # No pod has this label: a cluster in every proxy, no endpoint.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i}", "namespace": NS},
        "spec": {"selector": {"app": f"none-{i}"}, "ports": [{"name": "http", "port": port}]},
    }


def _process_ids(netns: str, word: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    found = []
    for pid in out.stdout.split():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if word.encode() in cmdline:
            found.append(int(pid))
    return found


def _host_process(cluster: Cluster, binary: str) -> tuple[int, str] | None:
    """(pid, command line) of one of the cluster's own host processes."""
    out = subprocess.run(
        ["pgrep", "-a", "-f", f"/run/mizzen/{cluster.name}/"], capture_output=True, text=True
    )
    for line in out.stdout.splitlines():
        pid, _, cmdline = line.partition(" ")
        if Path(cmdline.split()[0]).name == binary:
            return int(pid), cmdline
    return None


def _etcd_request(cluster: Cluster, path: str, body: dict[str, Any]) -> Any:
    found = _host_process(cluster, "etcd")
    assert found is not None, "no etcd"
    cmdline = found[1]
    flag = next(a for a in cmdline.split() if a.startswith("--listen-client-urls="))
    url = flag.split("=", 1)[1].split(",")[0]
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _restart_api_server(cluster: Cluster) -> None:
    found = _host_process(cluster, "kube-apiserver")
    assert found is not None, "no kube-apiserver"
    os.kill(found[0], signal.SIGKILL)

    def restarted() -> bool:
        now = _host_process(cluster, "kube-apiserver")
        return now is not None and now[0] != found[0]

    poll(restarted, 60, "a new kube-apiserver")
    poll(
        lambda: cluster.run_kubectl("get", "--raw", "/readyz").returncode == 0,
        90,
        "the restarted API server ready",
    )


def test_dropped_watches_and_relists_lose_no_update(cluster: Cluster, routing: Routing) -> None:
    """Changes made while the control plane cannot watch (its processes
    stopped, the API server killed under them, etcd compacted past their
    resume point) all reach the proxies once it watches again.

    The changes are to Services: while the control plane is stopped its
    webhooks cannot answer, so the API server (failurePolicy Fail) refuses
    Istio resources, as it should."""
    made = 0

    def apply(*docs: dict[str, Any]) -> None:
        nonlocal made
        cluster.kubectl("apply", "-f", "-", stdin=_dump(list(docs)))
        made += len(docs)

    def holds(wanted: dict[int, int | None]) -> Callable[[], bool]:
        """Whether the client's proxy has svc-i's cluster on that port
        (None: no cluster for svc-i at all)."""

        def check() -> bool:
            text = routing.admin(routing.client, "/clusters")
            for i, port in wanted.items():
                host = f"svc-{i}.{NS}.svc.cluster.local::"
                present = {p for p in (80, 81) if f"outbound|{p}||{host}" in text}
                if present != ({port} if port else set()):
                    return False
            return True

        return check

    apply(_service(1, 80), _service(2, 80), _service(3, 80))
    poll(holds({1: 80, 2: 80, 3: 80}), 60, "the first 3 services in the client's proxy")

    istiod = [p["metadata"]["name"] for p in cluster.ready_pods("istio-system", "app=istiod")]
    namespaces = [cluster.netns("istio-system", pod) for pod in istiod]
    discovery = [pid for netns in namespaces for pid in _process_ids(netns, "discovery")]
    assert len(discovery) == 2, discovery

    def while_not_watching(change: Callable[[], None]) -> None:
        for pid in discovery:
            os.kill(pid, signal.SIGSTOP)
        try:
            # First cut the watches, so that no event of the change waits in
            # a socket buffer: only a resumed watch or a relist can bring it.
            drop_watches()
            change()
        finally:
            for pid in discovery:
                os.kill(pid, signal.SIGCONT)

    def drop_watches() -> None:
        # Destroy the control plane's connections to the API server (the
        # kubernetes Service, port 443): every watch breaks mid-stream.
        for netns in namespaces:
            subprocess.run(
                ["ip", "netns", "exec", netns, "ss", "-K", "-tn", "dport = 443"], check=True
            )

    def logs() -> str:
        return "".join(cluster.mizzen("logs", f"istio-system/{pod}").stdout for pod in istiod)

    # A dropped watch: it resumes from the last resource version it saw.
    while_not_watching(lambda: apply(_service(4, 80)))
    poll(holds({4: 80}), 90, "the service made while the watch was down")
    assert "services: watch from" in logs()
    assert "relisting" not in logs(), "a dropped watch should resume, not relist"

    # A forced relist: etcd compacted past every resume point and the API
    # server restarted under the watches.
    def changes_then_compaction() -> None:
        nonlocal made
        apply(_service(5, 80), _service(2, 81))
        cluster.kubectl("delete", "service", "-n", NS, "svc-1")
        made += 1
        revision = _etcd_request(cluster, "/v3/kv/range", {"key": "AA=="})["header"]["revision"]
        _etcd_request(cluster, "/v3/kv/compaction", {"revision": revision, "physical": True})
        # Its watch cache would still serve the old resource versions.
        _restart_api_server(cluster)

    while_not_watching(changes_then_compaction)
    poll(holds({1: None, 2: 81, 3: 80, 4: 80, 5: 80}), 90, f"all {made} changes in the proxy")
    assert made == 7
    assert "services: resource version" in logs() and "relisting" in logs()


@pytest.mark.parametrize("flavor", sorted(SEEDS))
def test_akka_and_pekko_seed_annotations(cluster: Cluster, flavor: str) -> None:
    seeds = shared_dir() / "seeds"
    found = sorted(seeds.glob(SEEDS[flavor])) if seeds.is_dir() else []
    if not found:
        pytest.skip(f"{flavor} seed {SEEDS[flavor]} not found in {seeds} (set MIZZEN_SHARED)")
    docs, ports = compose(seed_deployment(found[0].read_text()), flavor)
    cluster.kubectl("apply", "-f", "-", stdin=_dump(docs))
    cluster.wait_ready(flavor, 3, 180)
    pods = {p["metadata"]["name"]: p for p in cluster.ready_pods(flavor)}

    # The annotations reached istio-init's arguments and the capture rules.
    for pod in pods.values():
        (init,) = pod["spec"]["initContainers"]
        args = init["args"]
        assert args[args.index("-b") + 1] == str(ports.http), args
        assert args[args.index("-o") + 1] == f"{ports.remoting},{ports.management}", args
        rules = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                cluster.netns(flavor, pod["metadata"]["name"]),
                "iptables-save",
            ],
            capture_output=True,
            text=True,
        ).stdout
        assert f"--dport {ports.http} -j ISTIO_IN_REDIRECT" in rules, rules
        for port in (ports.remoting, ports.management):
            assert f"--dport {port} -j RETURN" in rules, rules

    a, b = sorted(pods)[:2]
    a_ip, b_ip = (pods[p]["status"]["podIP"] for p in (a, b))

    def run(pod: str, *steps: str) -> list[Any]:
        out = cluster.mizzen("exec", f"{flavor}/{pod}", "--", sys.executable, str(CLIENT), *steps)
        assert out.returncode == 0, out.stderr
        result: list[Any] = json.loads(out.stdout)
        return result

    # 8080 through both sidecars: B's app sees B's sidecar (127.0.0.6).
    a0, b0 = run(a, "stats")[0], run(b, "stats")[0]
    (rest,) = run(a, f"http=http://{b_ip}:{ports.http}/rest")
    a1, b1 = run(a, "stats")[0], run(b, "stats")[0]
    assert rest["status"] == 200 and rest["body"]["peer"] == INBOUND_SOURCE, rest
    assert delta(traffic(a0), traffic(a1)).get(
        f"http.outbound_0.0.0.0_{ports.http}.downstream_rq_total"
    ), "A's sidecar did not take the REST request"
    assert delta(traffic(b0), traffic(b1)).get(f"cluster.inbound|{ports.http}||.upstream_rq_total")

    # Remoting and management bypass both: B's app sees A's own address and
    # no sidecar counter moves.
    answers = run(
        a,
        f"tcp={b_ip}:{ports.remoting}",
        f"http=http://{b_ip}:{ports.management}/management",
    )
    a2, b2 = run(a, "stats")[0], run(b, "stats")[0]
    assert [r["body"]["peer"] for r in answers] == [a_ip, a_ip], answers
    assert delta(traffic(a1), traffic(a2)) == {}, "A's sidecar saw cluster traffic"
    assert delta(traffic(b1), traffic(b2)) == {}, "B's sidecar saw cluster traffic"


def test_kube_inject_of_bookinfo_passes_a_server_side_dry_run(cluster: Cluster) -> None:
    bookinfo = shared_dir() / "istio-samples" / "bookinfo" / "platform" / "kube" / "bookinfo.yaml"
    if not bookinfo.exists():
        pytest.skip(f"{bookinfo} not found (set MIZZEN_SHARED)")
    injected = subprocess.run(
        [sys.executable, "-m", "mizzen", "kube-inject", "-f", str(bookinfo)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert injected.returncode == 0, injected.stderr
    assert injected.stdout.count("name: istio-proxy") == 6  # six Deployments
    out = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=injected.stdout)
    assert "deployment.apps/productpage-v1 created (server dry run)" in out, out


def test_a_plug_in_ca_from_the_cacerts_secret(cluster: Cluster) -> None:
    """Last in the module: it changes the mesh's root for every later pod."""
    plugged, key = self_signed_root("cluster.local", datetime.now(UTC))
    root = plugged.root_pem
    # A root used directly as the signing CA: the chain is that root alone.
    files = {
        "ca-cert.pem": root,
        "ca-key.pem": key.decode(),
        "root-cert.pem": root,
        "cert-chain.pem": root,
    }
    args = [f"--from-literal={name}={text}" for name, text in files.items()]
    cluster.kubectl("create", "secret", "generic", "cacerts", "-n", "istio-system", *args)
    cluster.kubectl("rollout", "restart", "-n", "istio-system", "deployment/istiod")
    cluster.kubectl("rollout", "status", "-n", "istio-system", "deployment/istiod", "--timeout=50s")

    def published() -> bool:
        config_map = cluster.get("configmap", "-n", NS, "istio-ca-root-cert")
        return bool(config_map["data"]["root-cert.pem"] == root)

    poll(published, 60, "the plug-in root published as istio-ca-root-cert")
    bundle = cluster.get("mutatingwebhookconfiguration", "istio-sidecar-injector")
    assert base64.b64decode(bundle["webhooks"][0]["clientConfig"]["caBundle"]).decode() == root

    # A new pod trusts that root, gets its certificate from it and its
    # config over mutual TLS: it turns Ready only if all of that works.
    (old,) = cluster.ready_pods(NS, "app=client")
    cluster.kubectl("delete", "pod", "-n", NS, old["metadata"]["name"], "--wait=false")
    poll(
        lambda: (
            [p["metadata"]["name"] for p in cluster.ready_pods(NS, "app=client")]
            not in ([], [old["metadata"]["name"]])
        ),
        120,
        "a new client pod Ready with the plug-in CA",
    )
    (new,) = cluster.ready_pods(NS, "app=client")
    certs = json.loads(Routing(cluster).admin(f"{NS}/{new['metadata']['name']}", "/certs"))
    serials = {
        c["serial_number"].lower().lstrip("0")
        for entry in certs["certificates"]
        for c in entry["ca_cert"]
    }
    assert format(plugged.root_certs[0].serial_number, "x") in serials, certs
