"""Authorization and end-user authentication in a real local mesh: mTLS
STRICT, real sidecars, real requests (Istio's security tasks, replayed).

Pods: ``manifests/authz.yaml`` (namespace ``authz``: httpbin, the callers
sleep and other, the ext-authz servers) and ``manifests/authz-tutorial.yaml``
(seed 004's customer, preference, recommendation). A JWKS server runs on the
host side of the mesh's bridge, reached through a ServiceEntry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import jwt_tokens
import pytest
from e2e_helpers import apply_text, delete_path, free_port, mesh_name, mizzen, steady

from mizzen.mesh import control
from mizzen.mesh.launcher import LaunchError, launch, stop, wait_ready

MANIFESTS = Path(__file__).resolve().parent / "manifests"
APPS = Path(__file__).resolve().parent / "apps"
NS = "authz"
HTTPBIN = f"httpbin.{NS}"
DENIED = "RBAC: access denied"
T = TypeVar("T")
MESH_CONFIG = f"""
extensionProviders:
- name: http-authz
  envoyExtAuthzHttp:
    service: ext-authz.{NS}.svc.cluster.local
    port: 8000
    includeRequestHeadersInCheck: ["x-ext-authz"]
    headersToDownstreamOnDeny: ["x-ext-authz-check-result"]
- name: grpc-authz
  envoyExtAuthzGrpc:
    service: ext-authz.{NS}.svc.cluster.local
    port: 9000
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = tmp_path_factory.mktemp("authz") / "mesh.yaml"
    config.write_text(MESH_CONFIG)
    manifests = [str(MANIFESTS / "authz.yaml"), str(MANIFESTS / "authz-tutorial.yaml")]
    layout = launch(mesh_name("authz"), manifests, free_port(), mesh_config=str(config))
    try:
        try:
            wait_ready(layout, timeout=240)
        except LaunchError as exc:
            raise AssertionError(str(exc)) from None
        yield layout
    finally:
        stop(layout)


# Runs inside a pod: one HTTP request with headers, the outcome as JSON.
_REQUEST = """
import http.client, json, sys
host, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
headers = json.loads(sys.argv[5])
try:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request(method, path, body=b"x" if method == "POST" else None, headers=headers)
    r = conn.getresponse()
    print(json.dumps({"status": r.status, "body": r.read().decode(errors="replace"),
                      "headers": {k.lower(): v for k, v in r.getheaders()}}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"""


def request(
    layout: Any,
    pod: str,
    path: str = "/",
    *,
    method: str = "GET",
    host: str = HTTPBIN,
    port: int = 80,
    headers: dict[str, str] | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    """One request from inside ``pod`` (``{"status", "body", "headers"}``
    or ``{"error"}``)."""
    done = subprocess.run(
        [sys.executable, "-m", "mizzen", "exec", f"{namespace}/{pod}", "--name", layout.name,
         "--", "python3", "-c", _REQUEST,
         host, str(port), method, path, json.dumps(headers or {})],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines, done.stderr
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def status_of(result: dict[str, Any]) -> int | str:
    return result.get("status") or "refused"


def eventually(table: Callable[[], T], expected: T, what: str, deadline: float = 20) -> T:
    """Polls ``table()`` until it equals ``expected``; fails with the last one."""
    seen: list[T] = []

    def matches() -> bool:
        seen.append(table())
        return seen[-1] == expected

    try:
        steady(matches, deadline, what, times=2)
    except pytest.fail.Exception:
        raise AssertionError(f"{what}: expected {expected}\ngot {seen[-1:]}") from None
    return seen[-1]


def settle(layout: Any, expected: dict[tuple[str, str, str], int | str]) -> None:
    """Polls until every (pod, method, path) in ``expected`` gets its status."""

    def table() -> dict[tuple[str, str, str], int | str]:
        return {key: status_of(request(layout, key[0], key[2], method=key[1])) for key in expected}

    eventually(table, expected, "the request table")


def policy(name: str, spec: str, namespace: str = NS, annotations: str = "") -> str:
    meta = f"metadata:\n  name: {name}\n  namespace: {namespace}\n{annotations}"
    return f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n{meta}spec:\n{spec}"


def access_log(layout: Any, pod: str, namespace: str = NS) -> str:
    return (layout.proxy_dir(namespace, pod) / "envoy.log").read_text(errors="replace")


SELECT_HTTPBIN = "  selector:\n    matchLabels: {app: httpbin}\n"


def test_allow_nothing_denies_every_request(mesh: Any, tmp_path: Path) -> None:
    path = apply_text(mesh, tmp_path, "allow-nothing", policy("allow-nothing", SELECT_HTTPBIN))
    try:
        settle(mesh, {("sleep-0", "GET", "/get"): 403, ("other-0", "POST", "/post"): 403})
        answer = request(mesh, "sleep-0", "/anything")
        assert answer["body"] == DENIED
        # The server's log names why: no ALLOW policy matched.
        steady(
            lambda: "rbac_access_denied_matched_policy[none]" in access_log(mesh, "httpbin-0"),
            10,
            "the denial in the access log",
        )
    finally:
        delete_path(mesh, path)
    settle(mesh, {("sleep-0", "GET", "/get"): 200})


def test_allow_by_principal_and_method_and_deny_wins(mesh: Any, tmp_path: Path) -> None:
    allow = policy(
        "viewer",
        SELECT_HTTPBIN + "  action: ALLOW\n  rules:\n"
        "  - from:\n    - source:\n        principals: [cluster.local/ns/authz/sa/sleep]\n"
        "    to:\n    - operation:\n        methods: [GET]\n",
    )
    allowed = apply_text(mesh, tmp_path, "viewer", allow)
    try:
        settle(
            mesh,
            {
                ("sleep-0", "GET", "/get"): 200,
                ("sleep-0", "POST", "/post"): 403,
                ("other-0", "GET", "/get"): 403,
            },
        )
        # `mizzen get authz` shows what each workload enforces.
        shown = mizzen("get", "authz", "--name", mesh.name, "-o", "json")
        assert shown.returncode == 0, shown.stderr
        rows = [r for r in json.loads(shown.stdout) if r["workload"] == "httpbin-0"]
        assert [(r["action"], r["policy"], r["scope"]) for r in rows] == [
            ("ALLOW", "authz.viewer", "workload")
        ]
        # A broken update is refused with file, resource and field, and the
        # last good policy keeps serving.
        bad = tmp_path / "viewer-bad.yaml"
        bad.write_text(
            allow.replace(
                "principals: [cluster.local/ns/authz/sa/sleep]", "ipBlocks: [10.0.0.0/33]"
            )
        )
        answer = control.call(mesh.control_socket, {"op": "apply", "paths": [str(bad)]})
        assert any(
            "viewer-bad.yaml" in e
            and "AuthorizationPolicy authz/viewer" in e
            and "ipBlocks[0]" in e
            for e in answer["errors"]
        ), answer
        assert status_of(request(mesh, "other-0", "/get")) == 403
        assert status_of(request(mesh, "sleep-0", "/get")) == 200
        deny = policy(
            "deny-admin",
            SELECT_HTTPBIN + "  action: DENY\n  rules:\n"
            "  - to:\n    - operation:\n        paths: [/admin*]\n",
        )
        denied = apply_text(mesh, tmp_path, "deny-admin", deny)
        settle(mesh, {("sleep-0", "GET", "/admin/users"): 403, ("sleep-0", "GET", "/get"): 200})
        steady(
            lambda: (
                "rbac_access_denied_matched_policy[ns[authz]-policy[deny-admin]-rule[0]]"
                in access_log(mesh, "httpbin-0")
            ),
            10,
            "the DENY policy named in the access log",
        )
        delete_path(mesh, denied)
    finally:
        delete_path(mesh, allowed)
    settle(mesh, {("other-0", "GET", "/get"): 200})


def test_explicit_deny_and_header_conditions(mesh: Any, tmp_path: Path) -> None:
    # Istio's "explicit deny" task: deny GET, then only GET without x-token: admin.
    deny_get = policy(
        "deny-get",
        SELECT_HTTPBIN + "  action: DENY\n  rules:\n"
        "  - to:\n    - operation:\n        methods: [GET]\n        paths: [/get]\n",
    )
    path = apply_text(mesh, tmp_path, "deny-get", deny_get)
    settle(mesh, {("sleep-0", "GET", "/get"): 403, ("sleep-0", "POST", "/post"): 200})
    token_rule = policy(
        "deny-get",
        SELECT_HTTPBIN + "  action: DENY\n  rules:\n"
        "  - to:\n    - operation:\n        methods: [GET]\n"
        "    when:\n    - key: request.headers[x-token]\n      notValues: [admin]\n",
    )
    apply_text(mesh, tmp_path, "deny-get", token_rule)
    try:

        def token(value: str) -> int | str:
            return status_of(request(mesh, "sleep-0", "/get", headers={"x-token": value}))

        steady(lambda: token("admin") == 200, 20, "x-token: admin allowed")
        assert token("guest") == 403
        assert status_of(request(mesh, "sleep-0", "/get")) == 403
    finally:
        delete_path(mesh, path)


def test_tcp_allow_on_one_port_leaves_the_other_refused(mesh: Any, tmp_path: Path) -> None:
    tcp = policy(
        "tcp-9000",
        SELECT_HTTPBIN + "  rules:\n  - to:\n    - operation:\n        ports: ['9000']\n",
    )
    path = apply_text(mesh, tmp_path, "tcp", tcp)
    try:

        def on(port: int) -> int | str:
            return status_of(request(mesh, "sleep-0", "/", port=port))

        steady(lambda: on(9001) == "refused", 20, "port 9001 refused")
        assert on(9000) == 200
        assert on(80) == 403  # HTTP port: refused by RBAC with a 403
        # An ALLOW rule with an HTTP-only field cannot hold on TCP: dropped.
        http_only = policy(
            "tcp-9000",
            SELECT_HTTPBIN + "  rules:\n  - to:\n    - operation:\n"
            "        ports: ['9000']\n        methods: [GET]\n",
        )
        apply_text(mesh, tmp_path, "tcp", http_only)
        steady(lambda: on(9000) == "refused", 20, "HTTP-only rule dropped on TCP")
    finally:
        delete_path(mesh, path)
    steady(lambda: status_of(request(mesh, "sleep-0", "/", port=9001)) == 200, 20, "9001 open")


def request_authentication(rules: str) -> str:
    return (
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
        f"metadata:\n  name: jwt\n  namespace: {NS}\nspec:\n" + SELECT_HTTPBIN
        + f"  jwtRules:\n{rules}"
    )  # fmt: skip


def with_token(mesh: Any, token: str | None, path: str = "/headers") -> int | str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return status_of(request(mesh, "sleep-0", path, headers=headers))


def test_jwt_with_istios_sample_issuer_and_keys(mesh: Any, tmp_path: Path) -> None:
    jwks = jwt_tokens.JWKS_FILE.read_text().replace("\n", "")
    ra = request_authentication(
        f"  - issuer: {jwt_tokens.ISSUER}\n    jwks: '{jwks}'\n"
        "    outputClaimToHeaders:\n    - {header: x-jwt-sub, claim: sub}\n"
    )
    ra_path = apply_text(mesh, tmp_path, "ra", ra)
    demo, groups = jwt_tokens.load("demo"), jwt_tokens.load("groups-scope")
    try:
        steady(lambda: with_token(mesh, jwt_tokens.tampered(demo)) == 401, 20, "invalid token 401")
        assert with_token(mesh, "not-a-jwt") == 401
        assert with_token(mesh, None) == 200  # no token: authentication has nothing to check
        answer = request(mesh, "sleep-0", "/headers", headers={"Authorization": f"Bearer {demo}"})
        assert answer["status"] == 200
        seen = json.loads(answer["body"])["headers"]
        assert seen["x-jwt-sub"] == jwt_tokens.ISSUER
        assert "authorization" not in seen  # the token is not forwarded by default

        require = policy(
            "require-jwt",
            SELECT_HTTPBIN + "  rules:\n  - from:\n    - source:\n"
            f"        requestPrincipals: [{jwt_tokens.ISSUER}/{jwt_tokens.ISSUER}]\n",
        )
        ap_path = apply_text(mesh, tmp_path, "require", require)
        steady(lambda: with_token(mesh, None) == 403, 20, "a token is required")
        assert with_token(mesh, demo) == 200

        claims = policy(
            "require-jwt",
            SELECT_HTTPBIN + "  rules:\n  - from:\n    - source:\n"
            "        requestPrincipals: ['*']\n"
            "    when:\n    - key: request.auth.claims[groups]\n      values: [group1]\n",
        )
        apply_text(mesh, tmp_path, "require", claims)
        steady(lambda: with_token(mesh, demo) == 403, 20, "the groups claim is required")
        assert with_token(mesh, groups) == 200
        delete_path(mesh, ap_path)
    finally:
        delete_path(mesh, ra_path)


def test_jwt_keys_fetched_from_jwks_uri(mesh: Any, tmp_path: Path) -> None:
    host_ip = json.loads((mesh.dir / "state.json").read_text())["host_ip"]
    issuer = jwt_tokens.new_issuer("https://issuer.authz.test")
    keys = tmp_path / "jwks.json"
    keys.write_text(issuer.jwks_json)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(APPS / "jwks_server.py"), host_ip, str(port), str(keys)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stats_url = f"http://{host_ip}:{port}/stats"

    def fetches() -> int:
        try:
            with urllib.request.urlopen(stats_url, timeout=2) as r:
                return int(json.loads(r.read())["requests"])
        except OSError:
            return -1

    entry = (
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        f"metadata:\n  name: jwks\n  namespace: {NS}\nspec:\n"
        "  hosts: [jwks.authz.test]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n"
        f"  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n"
        f"  endpoints:\n  - address: {host_ip}\n"
    )
    ra = request_authentication(
        f"  - issuer: {issuer.issuer}\n    jwksUri: http://jwks.authz.test:{port}/keys/jwks.json\n"
    )
    try:
        steady(lambda: fetches() >= 0, 10, "the JWKS server listening")
        se_path = apply_text(mesh, tmp_path, "jwks-entry", entry)
        ra_path = apply_text(mesh, tmp_path, "ra-uri", ra)
        token = issuer.sign({"sub": "alice", "exp": 4_000_000_000})
        steady(lambda: with_token(mesh, token) == 200, 30, "a token verified with fetched keys")
        assert fetches() >= 1, "the sidecar fetched the key set from the JWKS server"
        assert with_token(mesh, jwt_tokens.tampered(token)) == 401
        # Istio's sample token: a key this issuer's set does not have.
        assert with_token(mesh, jwt_tokens.load("demo")) == 401
        delete_path(mesh, ra_path)
        delete_path(mesh, se_path)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_custom_external_authorizer_decides(mesh: Any, tmp_path: Path) -> None:
    def decided(provider: str) -> None:
        custom = policy(
            "ext-authz",
            SELECT_HTTPBIN + "  action: CUSTOM\n"
            f"  provider:\n    name: {provider}\n"
            "  rules:\n  - to:\n    - operation:\n        paths: [/headers]\n",
        )
        path = apply_text(mesh, tmp_path, f"custom-{provider}", custom)
        try:

            def ask(value: str, where: str = "/headers") -> dict[str, Any]:
                return request(mesh, "sleep-0", where, headers={"x-ext-authz": value})

            steady(lambda: status_of(ask("deny")) == 403, 20, f"{provider} denies")
            denied = ask("deny")
            assert "denied by ext_authz" in denied["body"], denied
            assert status_of(ask("allow")) == 200
            # Paths the CUSTOM rules do not match never reach the authorizer.
            assert status_of(ask("deny", "/get")) == 200
        finally:
            delete_path(mesh, path)

    decided("http-authz")
    decided("grpc-authz")
    settle(mesh, {("sleep-0", "GET", "/headers"): 200})


def test_dry_run_denies_nothing_and_logs_what_it_would_deny(mesh: Any, tmp_path: Path) -> None:
    dry = policy(
        "deny-dry",
        SELECT_HTTPBIN + "  action: DENY\n  rules:\n"
        "  - to:\n    - operation:\n        paths: [/dry-run-probe]\n",
        annotations='  annotations: {"istio.io/dry-run": "true"}\n',
    )
    path = apply_text(mesh, tmp_path, "dry", dry)
    try:
        marker = "dry-run-deny=ns[authz]-policy[deny-dry]-rule[0]"

        def logged() -> bool:
            assert status_of(request(mesh, "sleep-0", "/dry-run-probe")) == 200
            return marker in access_log(mesh, "httpbin-0")

        steady(logged, 20, "the would-be denial in the access log")
    finally:
        delete_path(mesh, path)


# Seed 004's Mixer whitelist: preference takes requests only from
# recommendation (source.labels["app"] against the list).
MIXER_WHITELIST = """\
apiVersion: config.istio.io/v1alpha2
kind: listchecker
metadata: {name: preferencewhitelist, namespace: tutorial}
spec:
  overrides: ["recommendation"]
  blacklist: false
---
apiVersion: config.istio.io/v1alpha2
kind: listentry
metadata: {name: preferencesource, namespace: tutorial}
spec:
  value: source.labels["app"]
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkfromcustomer, namespace: tutorial}
spec:
  match: destination.labels["app"] == "preference"
  actions:
  - handler: preferencewhitelist.listchecker
    instances:
    - preferencesource.listentry
"""
MODERN_WHITELIST = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: checkfromcustomer, namespace: tutorial}
spec:
  selector:
    matchLabels: {app: preference}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [cluster.local/ns/tutorial/sa/recommendation]
"""


def test_seed_004_whitelist_and_its_translation_agree(mesh: Any, tmp_path: Path) -> None:
    def table() -> dict[str, int | str]:
        calls = {
            "customer->preference": ("customer-0", "preference"),
            "recommendation->preference": ("recommendation-0", "preference"),
            "customer->recommendation": ("customer-0", "recommendation"),
        }
        return {
            name: status_of(
                request(mesh, pod, "/", host=f"{svc}.tutorial", port=8080, namespace="tutorial")
            )
            for name, (pod, svc) in calls.items()
        }

    expected = {
        "customer->preference": 403,
        "recommendation->preference": 200,
        "customer->recommendation": 200,
    }
    outcomes = {}
    for name, text in (("mixer", MIXER_WHITELIST), ("modern", MODERN_WHITELIST)):
        path = apply_text(mesh, tmp_path, name, text)
        if name == "mixer":
            # apply says what to write instead.
            answer = control.call(mesh.control_socket, {"op": "apply", "paths": [str(path)]})
            warnings = "\n".join(answer["warnings"])
            assert "Mixer" in warnings and "kind: AuthorizationPolicy" in warnings, warnings
            assert "cluster.local/ns/tutorial/sa/recommendation" in warnings, warnings
        try:
            outcomes[name] = eventually(table, expected, f"the {name} whitelist")
        finally:
            delete_path(mesh, path)
    assert outcomes["mixer"] == outcomes["modern"]
