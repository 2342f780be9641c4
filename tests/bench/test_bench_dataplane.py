"""The data-plane benchmark: hey's output, the round statistics, one tiny real run."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from mizzen.api.load import load_paths
from mizzen.api.resources import AuthorizationPolicy, RequestAuthentication
from mizzen.bench.dataplane import (
    ASSETS,
    CLIENT_PRINCIPAL,
    DATA_PATH_HANDSHAKES,
    PAIRS,
    VARIANTS,
    Bench,
    HeyOutputError,
    HeyResult,
    Measurement,
    Sizes,
    Target,
    added_spread,
    aggregate,
    authz_counters,
    bare_bootstrap,
    bearer,
    bench_workdir,
    count_stat,
    describe_defaults,
    describe_transport,
    hey_argv,
    measure_rounds,
    overlay_skipped,
    parse_hey,
    redact,
    render,
    render_authz_overlay,
    run_dataplane,
    spread,
    summarize,
    summary_lines,
    table,
)
from mizzen.bench.jwtkeys import (
    ISSUER,
    JwtMaterial,
    b64url_decode,
    make_jwt_material,
    sign_rs256,
)
from mizzen.bench.statictls import (
    downstream_tls_socket,
    outbound_sni,
    spiffe_id,
    upstream_tls_socket,
    write_static_mtls,
)

CLIENT_ID = "spiffe://cluster.local/ns/bench/sa/client"
SERVER_ID = "spiffe://cluster.local/ns/bench/sa/server"

# Captured from `hey -z 2s -c 16 -q 62.5` (hey 0.1.4, Debian) against the
# benchmark's nginx; tabs as hey prints them.
HEY_OK = """
Summary:
  Total:\t2.0097 secs
  Slowest:\t0.0024 secs
  Fastest:\t0.0000 secs
  Average:\t0.0003 secs
  Requests/sec:\t987.2112
  \n  Total data:\t2031616 bytes
  Size/request:\t1024 bytes

Response time histogram:
  0.000 [1]\t|
  0.000 [1051]\t|■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■■
  0.001 [587]\t|■■■■■■■■■■■■■■■■■■■■■■
  0.001 [221]\t|■■■■■■■■
  0.001 [87]\t|■■■
  0.001 [13]\t|
  0.001 [6]\t|
  0.002 [2]\t|
  0.002 [3]\t|
  0.002 [5]\t|
  0.002 [8]\t|


Latency distribution:
  10% in 0.0001 secs
  25% in 0.0002 secs
  50% in 0.0003 secs
  75% in 0.0004 secs
  90% in 0.0007 secs
  95% in 0.0008 secs
  99% in 0.0014 secs

Details (average, fastest, slowest):
  DNS+dialup:\t0.0000 secs, 0.0000 secs, 0.0024 secs
  DNS-lookup:\t0.0000 secs, 0.0000 secs, 0.0000 secs
  req write:\t0.0000 secs, 0.0000 secs, 0.0018 secs
  resp wait:\t0.0003 secs, 0.0000 secs, 0.0023 secs
  resp read:\t0.0000 secs, 0.0000 secs, 0.0007 secs

Status code distribution:
  [200]\t1984 responses



"""

# Captured from `hey -n 6 -c 2 -t 1 http://127.0.0.1:9/` (nothing listening).
HEY_REFUSED = """
Summary:
  Total:\t0.0007 secs
  Slowest:\t0.0000 secs
  Fastest:\t0.0000 secs
  Average:\t NaN secs
  Requests/sec:\t8596.1363
  \n

Response time histogram:


Latency distribution:

Details (average, fastest, slowest):
  DNS+dialup:\t NaN secs, 0.0000 secs, 0.0000 secs
  DNS-lookup:\t NaN secs, 0.0000 secs, 0.0000 secs
  req write:\t NaN secs, 0.0000 secs, 0.0000 secs
  resp wait:\t NaN secs, 0.0000 secs, 0.0000 secs
  resp read:\t NaN secs, 0.0000 secs, 0.0000 secs

Status code distribution:

Error distribution:
  [6]\tGet "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: connect: connection refused
"""


# --- hey --------------------------------------------------------------------------------


def test_parse_hey_summary() -> None:
    result = parse_hey(HEY_OK)
    assert result.requests_per_s == pytest.approx(987.2112)
    assert result.percentiles_ms[50] == pytest.approx(0.3)
    assert result.percentiles_ms[90] == pytest.approx(0.7)
    assert result.percentiles_ms[99] == pytest.approx(1.4)
    assert sorted(result.percentiles_ms) == [10, 25, 50, 75, 90, 95, 99]
    assert result.statuses == {200: 1984}
    assert result.errors == {}
    assert result.requests == 1984 and result.failed == 0


def test_parse_hey_errors_and_bad_statuses() -> None:
    refused = parse_hey(HEY_REFUSED)
    assert refused.percentiles_ms == {}
    assert refused.statuses == {}
    assert refused.errors == {
        'Get "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: connect: connection refused': 6
    }
    assert refused.failed == 6
    mixed = parse_hey(
        HEY_OK.replace("[200]\t1984 responses", "[200]\t10 responses\n  [503]\t2 responses")
    )
    assert mixed.statuses == {200: 10, 503: 2}
    assert mixed.requests == 12 and mixed.failed == 2


def test_parse_hey_rejects_other_text() -> None:
    with pytest.raises(HeyOutputError, match="Requests/sec"):
        parse_hey("flag provided but not defined: -x\nUsage: hey [options...] <url>\n")


def test_hey_argv_splits_the_total_rate_over_workers() -> None:
    argv = hey_argv("/usr/bin/hey", "http://a/", 3, 16, 1000)
    assert argv == ["/usr/bin/hey", "-z", "3s", "-c", "16", "-t", "5", "-q", "62.5", "http://a/"]
    assert "-q" not in hey_argv("hey", "http://a/", 0.5, 4, None)
    assert "-H" not in hey_argv("hey", "http://a/", 0.5, 4, 100)


def test_hey_argv_sends_headers_before_the_url() -> None:
    argv = hey_argv("hey", "http://a/", 3, 4, 1000, ["Authorization: Bearer x.y.z", "X-A: 1"])
    assert argv == [
        *["hey", "-z", "3s", "-c", "4", "-t", "5", "-q", "250"],
        *["-H", "Authorization: Bearer x.y.z", "-H", "X-A: 1", "http://a/"],
    ]
    assert redact(argv)[-4] == "Authorization: Bearer <JWT>"
    assert redact(argv)[-2:] == ["X-A: 1", "http://a/"]


# --- statistics --------------------------------------------------------------------------


def test_spread_is_median_with_min_and_max() -> None:
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([1.0, 2.0]) == {"median": 1.5, "min": 1.0, "max": 2.0}
    with pytest.raises(ValueError):
        spread([])


def test_added_is_per_round_then_median() -> None:
    # Rounds: (1.0-0.5, 3.0-0.6, 2.0-1.4): the median of differences (0.6),
    # not the difference of medians (2.0-0.6 = 1.4).
    assert added_spread([1.0, 3.0, 2.0], [0.5, 0.6, 1.4]) == {
        "median": 0.6,
        "min": 0.5,
        "max": 2.4,
    }
    with pytest.raises(ValueError):
        added_spread([1.0], [1.0, 2.0])


def _hey(p50: float, p90: float, p99: float, n: int = 1000) -> HeyResult:
    return HeyResult(n / 1.0, {50: p50, 90: p90, 99: p99}, {200: n}, {})


def _measurements() -> list[Measurement]:
    # Per round: p50 of direct, then of each proxied variant; p90 is p50 + 0.1.
    out = []
    names = ("bare-envoy", "bare-envoy-mtls", "mesh-mtls", "mesh-plaintext", "mesh-authz")
    rounds = [
        (0.2, dict(zip(names, (0.6, 0.7, 0.9, 0.8, 1.0), strict=True))),
        (0.3, dict(zip(names, (0.6, 0.8, 1.1, 1.0, 1.3), strict=True))),
        (0.2, dict(zip(names, (0.8, 0.9, 1.0, 0.9, 1.1), strict=True))),
    ]
    cpu = dict(zip(names, (0.1, 0.12, 0.15, 0.13, 0.18), strict=True))
    private = dict(zip(names, (10.0, 11.0, 15.0, 13.0, 16.0), strict=True))
    for rnd, (d, proxied) in enumerate(rounds, 1):
        out.append(Measurement(rnd, 1000, "direct", _hey(d, d, d), {}, {}, {}))
        for variant, v in proxied.items():
            out.append(
                Measurement(
                    rnd,
                    1000,
                    variant,
                    _hey(v, v + 0.1, v + 1),
                    {"client": cpu[variant], "server": cpu[variant]},
                    {"client": 20.0 + rnd, "server": 21.0},
                    {"client": private[variant], "server": private[variant]},
                )
            )
    return out


def test_aggregate_rows_and_summary() -> None:
    ms = _measurements()
    results = [aggregate(ms, 1000, v) for v in VARIANTS]
    by = {r["variant"]: r for r in results}
    direct, bare, mesh = by["direct"], by["bare-envoy"], by["mesh-mtls"]
    assert "added_p90_ms" not in direct and "sidecar_cpu_s_per_1000" not in direct
    assert direct["p50_ms"] == {"median": 0.2, "min": 0.2, "max": 0.3}
    # bare p90 - direct p90 per round: 0.5, 0.4, 0.7
    assert bare["added_p90_ms"] == {"median": 0.5, "min": 0.4, "max": 0.7}
    assert mesh["added_p90_ms"] == {"median": 0.9, "min": 0.8, "max": 0.9}
    assert by["bare-envoy-mtls"]["added_p90_ms"]["median"] == pytest.approx(0.6)
    assert by["mesh-plaintext"]["added_p90_ms"]["median"] == pytest.approx(0.8)
    # (0.15 + 0.15) s over 1000 requests
    assert mesh["sidecar_cpu_s_per_1000"]["median"] == pytest.approx(0.3)
    assert mesh["by_proxy"]["client"]["cpu_s_per_1000"]["median"] == pytest.approx(0.15)
    assert bare["sidecar_rss_mb"] == {"median": 43.0, "min": 42.0, "max": 44.0}
    assert mesh["errors"] == 0 and mesh["requests"] == 3000

    summary = summarize(results)
    assert summary["pairs"]["mesh_over_bare"] == ["mesh-mtls", "bare-envoy-mtls"]
    assert summary["pairs"]["mesh_plaintext_over_bare"] == ["mesh-plaintext", "bare-envoy"]
    # the key figure: mesh-mtls 0.9 over bare-envoy-mtls 0.6
    assert summary["mesh_over_bare_added_p90"] == {"1000": 1.5, "max": 1.5}
    assert summary["mesh_over_bare_cpu_s_per_1000"]["1000"] == 1.25
    assert summary["mesh_over_bare_private_mb"]["1000"] == pytest.approx(1.36)
    assert summary["mesh_plaintext_over_bare_added_p90"] == {"1000": 1.6, "max": 1.6}
    assert summary["mesh_plaintext_over_bare_cpu_s_per_1000"]["1000"] == 1.3
    assert summary["bare_mtls_over_bare_added_p90"]["1000"] == 1.2
    assert summary["mesh_added_p90_ms"] == {"1000": 0.9}
    assert summary["added_p90_ms_by_variant"]["mesh-plaintext"] == {"1000": 0.8}
    # mesh-authz over mesh-mtls: added p90 per round 0.9, 1.1, 1.0 → 1.0 over 0.9
    assert summary["pairs"]["mesh_authz_over_mesh"] == ["mesh-authz", "mesh-mtls"]
    assert by["mesh-authz"]["added_p90_ms"]["median"] == pytest.approx(1.0)
    assert summary["mesh_authz_over_mesh_added_p90"] == {"1000": 1.11, "max": 1.11}
    assert summary["mesh_authz_over_mesh_cpu_s_per_1000"]["1000"] == 1.2
    assert summary["mesh_authz_over_mesh_private_mb"]["1000"] == pytest.approx(1.07)
    assert summary["added_p90_ms_by_variant"]["mesh-authz"] == {"1000": 1.0}

    shown = table(results, Sizes(rounds=3, seconds=10, rates=(1000,)))
    assert len(shown["rows"]) == 6 and all(len(r) == len(shown["columns"]) for r in shown["rows"])
    assert [r[2] for r in shown["rows"]] == list(VARIANTS)
    assert shown["rows"][3][6] == "0.900 ms (0.80–0.90)"
    assert shown["rows"][0][6] == "—"
    assert shown["rows"][5][2] == "mesh-authz"
    assert shown["rows"][5][6] == "1.000 ms (0.90–1.10)"
    caption = shown["caption"]
    assert len(caption) == 4
    assert caption[0].startswith("mesh-mtls vs bare-envoy-mtls (key figure) at 1000 rps:")
    assert "added p90 0.90 ms vs 0.60 ms = 1.50×" in caption[0]
    assert "CPU/1000 req 0.300 s vs 0.240 s = 1.25×" in caption[0]
    assert "private memory 30.0 MB vs 22.0 MB" in caption[0]
    assert caption[1].startswith("mesh-plaintext vs bare-envoy (both plaintext)")
    assert caption[3].startswith(
        "mesh-authz vs mesh-mtls (what one ALLOW policy and one RequestAuthentication cost) "
        "at 1000 rps:"
    )
    assert "added p90 1.00 ms vs 0.90 ms = 1.11×" in caption[3]
    assert "CPU/1000 req 0.360 s vs 0.300 s = 1.20×" in caption[3]
    json.dumps(shown)


def test_mesh_authz_is_compared_with_the_mesh_it_adds_to() -> None:
    assert ("mesh-authz", "mesh-mtls") in {(num, den) for _, num, den, _ in PAIRS}
    assert VARIANTS.index("mesh-authz") > VARIANTS.index("mesh-mtls")


def test_summary_without_some_variants_has_no_ratios() -> None:
    ms = [m for m in _measurements() if m.variant in ("direct", "bare-envoy", "mesh-mtls")]
    results = [aggregate(ms, 1000, v) for v in ("direct", "bare-envoy", "mesh-mtls")]
    summary = summarize(results)
    assert summary["mesh_over_bare_added_p90"] == {"max": None}
    assert summary["mesh_added_p90_ms"] == {"1000": 0.9}
    assert summary_lines(results) == []


class _Recorder(Bench):
    """A Bench whose hey only records what it was asked."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(contextlib.ExitStack(), tmp_path, "rec", lambda _: None)
        self.calls: list[tuple[str, str, int | None]] = []

    def hey(self, target: Target, seconds: float, connections: int, rate: int | None) -> HeyResult:
        self.calls.append((target.variant, f"{seconds:g}", rate))
        return _hey(1.0, 1.0, 1.0)


def test_every_round_measures_every_variant_at_every_rate(tmp_path: Path) -> None:
    bench = _Recorder(tmp_path)
    targets = [Target(v, "ns", "http://x/") for v in VARIANTS]
    sizes = Sizes(rounds=2, seconds=3, rates=(100, 200), high=False)
    measured = measure_rounds(bench, targets, [100, 200], sizes, lambda _: None)
    expected = [(r, rate, v) for r in (1, 2) for rate in (100, 200) for v in VARIANTS]
    assert [(m.round, m.rate, m.variant) for m in measured] == expected
    assert bench.calls == [(v, "3", rate) for _, rate, v in expected]


def test_describe_defaults_ignores_the_bootstrap_extension_list() -> None:
    dump = {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                "bootstrap": {"node": {"extensions": [{"name": "envoy.transport_sockets.tls"}]}},
            },
            {
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [
                    {"access_log": [{"name": "envoy.access_loggers.stdout"}]},
                    {"http_filters": [{"name": "envoy.filters.http.router"}]},
                ],
            },
        ]
    }
    out = describe_defaults(json.dumps(dump), ["envoy", "--concurrency", "2"])
    assert "plaintext between sidecars (no mTLS yet)" in out
    assert "HTTP filters: router" in out
    assert any("stdout" in line for line in out)
    assert any("no stats access logger" in line for line in out)
    assert any("--concurrency 2" in line for line in out)


def _dump(clusters: list[dict[str, Any]], listeners: list[dict[str, Any]]) -> str:
    return json.dumps(
        {
            "configs": [
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
                    "bootstrap": {"extensions": [{"name": "envoy.transport_sockets.tls"}]},
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                    "dynamic_active_clusters": [{"cluster": c} for c in clusters],
                },
                {
                    "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                    "dynamic_listeners": [
                        {"name": li["name"], "active_state": {"listener": li}} for li in listeners
                    ],
                },
            ]
        }
    )


def test_describe_transport_finds_tls_in_the_named_resources_only() -> None:
    cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    listener = "type.googleapis.com/envoy.config.listener.v3.Listener"
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {}}
    auto = {
        "@type": cluster,
        "name": "outbound|80||server.bench.svc.cluster.local",
        "transport_socket_matches": [{"name": "tlsMode-istio", "transport_socket": tls}],
    }
    plain = {"@type": cluster, "name": "outbound|80||server.bench.svc.cluster.local"}
    other = {"@type": cluster, "name": "outbound|80||other.bench.svc.cluster.local"}
    inbound = {"@type": listener, "name": "virtualInbound", "filter_chains": [{}]}
    host = "server.bench.svc.cluster.local"
    assert describe_transport(_dump([auto], []), "cluster", host) == "TLS configured"
    assert describe_transport(_dump([plain, other], [inbound]), "cluster", host) == "plaintext"
    assert describe_transport(_dump([other], []), "cluster", host) == "not found"
    # the bootstrap's extension list mentions TLS whether used or not
    assert describe_transport(_dump([], [inbound]), "listener", "virtualInbound") == "plaintext"


def test_count_stat_sums_matching_counters() -> None:
    stats = (
        "cluster.upstream.ssl.handshake: 4\n"
        "listener.198.18.0.2_15007.ssl.handshake: 5\n"
        "listener.198.18.0.2_15007.ssl.handshake_x: 7\n"
        "listener.198.18.0.2_15007.ssl.ciphers.TLS_AES_128_GCM_SHA256: 5\n"
    )
    assert count_stat(stats, re.compile(r".*\.ssl\.handshake")) == 9
    assert count_stat("", re.compile(".*")) == 0


def test_authz_counters_of_the_inbound_connection_manager() -> None:
    stats = (
        "http.inbound_0.0.0.0_80.jwt_authn.allowed: 17032\n"
        "http.inbound_0.0.0.0_80.jwt_authn.denied: 5\n"
        "http.inbound_0.0.0.0_80.jwt_authn.jwt_cache_miss: 5895\n"
        "http.inbound_0.0.0.0_80.rbac.allowed: 17027\n"
        "http.inbound_0.0.0.0_80.rbac.shadow_allowed: 3\n"
        "http.outbound_0.0.0.0_80.rbac.allowed: 99\n"
    )
    assert authz_counters(stats) == {
        "jwt_authn.allowed": 17032,
        "jwt_authn.denied": 5,
        "jwt_authn.jwt_cache_hit": 0,
        "jwt_authn.jwt_cache_miss": 5895,
        "rbac.allowed": 17027,
        "rbac.denied": 0,
    }


def test_data_path_handshakes_leave_out_control_plane_connections() -> None:
    stats = (
        "cluster.outbound|80||server.bench.svc.cluster.local.ssl.handshake: 3\n"
        "cluster.outbound|80|v1|server.bench.svc.cluster.local.ssl.handshake: 1\n"
        "cluster.outbound|80||other.bench.svc.cluster.local.ssl.handshake: 50\n"
        "cluster.upstream.ssl.handshake: 2\n"
        "cluster.xds-grpc.ssl.handshake: 1\n"
        "listener.0.0.0.0_15006.ssl.handshake: 4\n"
        "listener.198.18.0.2_15007.ssl.handshake: 5\n"
        "listener.0.0.0.0_15012.ssl.handshake: 70\n"
    )
    assert count_stat(stats, DATA_PATH_HANDSHAKES["client"]) == 6
    assert count_stat(stats, DATA_PATH_HANDSHAKES["server"]) == 9


def test_bare_bootstraps_of_the_mtls_pair(tmp_path: Path) -> None:
    files = write_static_mtls(tmp_path, {"client": CLIENT_ID, "server": SERVER_ID})
    sni = outbound_sni("server.bench.svc.cluster.local", 80)
    assert sni == "outbound_.80_._.server.bench.svc.cluster.local"
    client = bare_bootstrap(
        ("127.0.0.1", 15002),
        ("198.18.0.2", 15007),
        upstream_tls=upstream_tls_socket(files["client"], sni, SERVER_ID),
    )
    server = bare_bootstrap(
        ("198.18.0.2", 15007),
        ("127.0.0.1", 80),
        downstream_tls=downstream_tls_socket(files["server"]),
    )
    up = client["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
    assert up["@type"].endswith("UpstreamTlsContext") and up["sni"] == sni
    common = up["common_tls_context"]
    assert common["alpn_protocols"] == ["istio"]
    assert common["tls_params"] == {
        "tls_minimum_protocol_version": "TLSv1_2",
        "tls_maximum_protocol_version": "TLSv1_3",
    }
    assert common["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": SERVER_ID}}
    ]
    assert common["tls_certificates"][0]["private_key"] == {"filename": str(files["client"].key)}
    assert "listener_filters" not in client["static_resources"]["listeners"][0]

    listener = server["static_resources"]["listeners"][0]
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    (chain,) = listener["filter_chains"]
    assert chain["filter_chain_match"] == {"transport_protocol": "tls"}
    down = chain["transport_socket"]["typed_config"]
    assert down["@type"].endswith("DownstreamTlsContext")
    assert down["require_client_certificate"] is True
    assert down["common_tls_context"]["alpn_protocols"] == ["h2", "http/1.1"]
    assert down["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": str(files["server"].root)}
    }
    hcm = chain["filters"][0]["typed_config"]
    assert hcm["forward_client_cert_details"] == "APPEND_FORWARD"
    assert hcm["set_current_client_cert_details"] == {"subject": True, "dns": True, "uri": True}
    assert "transport_socket" not in server["static_resources"]["clusters"][0]
    for boot in (client, server):
        assert boot["admin"]["address"]["socket_address"]["port_value"] == 0


def test_static_mtls_material(tmp_path: Path) -> None:
    files = write_static_mtls(tmp_path / "tls", {"client": CLIENT_ID, "server": SERVER_ID})
    root = x509.load_pem_x509_certificate(files["client"].root.read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for role, spiffe in (("client", CLIENT_ID), ("server", SERVER_ID)):
        f = files[role]
        assert f.spiffe == spiffe and f.root == files["client"].root
        assert stat.S_IMODE(f.key.stat().st_mode) == 0o600
        assert stat.S_IMODE(f.cert.stat().st_mode) == 0o644
        leaf = x509.load_pem_x509_certificate(f.cert.read_bytes())
        leaf.verify_directly_issued_by(root)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.critical
        assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe]
        key = serialization.load_pem_private_key(f.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.curve.name == "secp256r1"
        assert key.public_key() == leaf.public_key()
    assert spiffe_id("bench", "client") == CLIENT_ID
    assert not list((tmp_path / "tls").glob("root-key*"))  # the root's key is never written


def _jwk_public_key(jwk: dict[str, str]) -> rsa.RSAPublicKey:
    n, e = (int.from_bytes(b64url_decode(jwk[k]), "big") for k in ("n", "e"))
    return rsa.RSAPublicNumbers(e, n).public_key()


def _verify(token: str, key: rsa.RSAPublicKey) -> dict[str, Any]:
    header, payload, signature = token.split(".")
    for part in (header, payload, signature):
        assert "=" not in part and "+" not in part and "/" not in part  # base64url, no padding
    key.verify(
        b64url_decode(signature),
        f"{header}.{payload}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    assert json.loads(b64url_decode(header)) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": "mizzen-bench",
    }
    claims: dict[str, Any] = json.loads(b64url_decode(payload))
    return claims


@pytest.fixture(scope="module")
def jwt_material() -> JwtMaterial:
    return make_jwt_material(now=1_700_000_000)


def test_the_token_verifies_against_the_jwks(jwt_material: JwtMaterial) -> None:
    (jwk,) = json.loads(jwt_material.jwks)["keys"]
    assert set(jwk) == {"kty", "n", "e", "kid", "alg"}
    assert (jwk["kty"], jwk["alg"], jwk["kid"], jwk["e"]) == (
        "RSA",
        "RS256",
        "mizzen-bench",
        "AQAB",
    )
    key = _jwk_public_key(jwk)
    assert key.public_numbers() == jwt_material.private_key.public_key().public_numbers()
    assert key.key_size == 2048
    claims = _verify(jwt_material.token, key)
    assert claims["iss"] == ISSUER == "bench@mizzen.test"
    assert claims["iat"] == 1_700_000_000 and claims["exp"] > claims["iat"] + 3600
    assert claims["sub"]


def test_the_tampered_token_fails_verification(jwt_material: JwtMaterial) -> None:
    key = _jwk_public_key(json.loads(jwt_material.jwks)["keys"][0])
    assert jwt_material.tampered != jwt_material.token
    assert jwt_material.tampered.split(".")[2] == jwt_material.token.split(".")[2]
    with pytest.raises(InvalidSignature):
        _verify(jwt_material.tampered, key)
    # a key of its own does not verify the bench's token either
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = sign_rs256(other, {"iss": ISSUER})
    with pytest.raises(InvalidSignature):
        _verify(forged, key)


def test_the_authz_overlay_renders_to_valid_istio_config(
    tmp_path: Path, jwt_material: JwtMaterial
) -> None:
    text = render_authz_overlay(jwt_material.jwks)
    assert "__" not in text
    path = tmp_path / "mesh-authz.yaml"
    path.write_text(text)
    loaded = load_paths([path])
    assert loaded.errors == () and loaded.skipped == ()
    by_kind = {r.key.kind: r.obj for r in loaded.resources}
    assert set(by_kind) == {"AuthorizationPolicy", "RequestAuthentication"}
    policy, authn = by_kind["AuthorizationPolicy"], by_kind["RequestAuthentication"]
    assert isinstance(policy, AuthorizationPolicy)
    assert isinstance(authn, RequestAuthentication)
    assert policy.action == "ALLOW"
    assert policy.selector == {"app": "server"}
    (rule,) = policy.rules
    (source,) = rule.sources
    assert source.principals == (CLIENT_PRINCIPAL,) == ("cluster.local/ns/bench/sa/default",)
    assert authn.selector == {"app": "server"}
    (jwt_rule,) = authn.jwt_rules
    assert jwt_rule.issuer == ISSUER
    assert json.loads(jwt_rule.jwks) == json.loads(jwt_material.jwks)
    with pytest.raises(ValueError, match="single quotes"):
        render_authz_overlay("{'keys': []}")


def test_mesh_yaml_pods_run_as_the_default_service_account() -> None:
    # CLIENT_PRINCIPAL assumes it: a serviceAccountName in mesh.yaml must change both.
    assert "serviceAccountName" not in (ASSETS / "mesh.yaml").read_text()


class _Probe(Bench):
    """A Bench whose hey answers from a table keyed by the Authorization header
    (or the URL for requests from the host), and whose admin returns a dump."""

    def __init__(self, tmp_path: Path, answers: dict[str, dict[int, int]], dump: str) -> None:
        super().__init__(contextlib.ExitStack(), tmp_path, "probe", lambda _: None)
        self.jwt = make_jwt_material()
        self.server_ips["mesh-authz"] = "198.18.0.9"
        self.answers = answers
        self.dump = dump

    def admin_get(self, variant: str, role: str, path: str) -> str:
        return self.dump

    def hey(self, target: Target, seconds: float, connections: int, rate: int | None) -> HeyResult:
        assert self.jwt is not None
        key = {
            (): "none",
            (bearer(self.jwt.tampered),): "tampered",
        }.get(target.headers, "valid")
        if not target.netns:
            key = "host"
        statuses = self.answers[key]
        return HeyResult(10.0, {}, statuses, {})


def _authz_dump(*extra: str) -> str:
    listener = {
        "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
        "name": "virtualInbound",
        "filters": ["envoy.filters.http.jwt_authn", "envoy.filters.http.rbac", *extra],
    }
    return json.dumps({"configs": [{"@type": "x.ListenersConfigDump", "listeners": [listener]}]})


def test_authz_check_passes_only_when_enforced(tmp_path: Path) -> None:
    target = Target("mesh-authz", "ns", "http://server/", {}, ("Authorization: Bearer t",))
    dump = _authz_dump(CLIENT_PRINCIPAL, ISSUER)
    good = {"none": {200: 5}, "tampered": {401: 5}, "host": {403: 5}}
    notes = _Probe(tmp_path, good, dump).authz_enforced(target)
    assert notes == [
        "no token: 5 × 200",
        "tampered token: 5 × 401",
        "no client identity (plaintext from the host): 5 × 403",
    ]
    unenforced = {**good, "tampered": {200: 5}}
    with pytest.raises(RuntimeError, match="tampered token should get 401"):
        _Probe(tmp_path, unenforced, dump).authz_enforced(target)
    required = {**good, "none": {401: 5}}
    with pytest.raises(RuntimeError, match="no token should get 200"):
        _Probe(tmp_path, required, dump).authz_enforced(target)
    open_door = {**good, "host": {200: 5}}
    with pytest.raises(RuntimeError, match=r"no client identity .* should get 403"):
        _Probe(tmp_path, open_door, dump).authz_enforced(target)
    with pytest.raises(RuntimeError, match=r"lacks .*cluster\.local/ns/bench/sa/default"):
        _Probe(tmp_path, good, _authz_dump(ISSUER)).authz_enforced(target)


def test_the_plaintext_overlay_is_valid_istio_config() -> None:
    loaded = load_paths([ASSETS / "mesh-plaintext.yaml"])
    assert loaded.errors == ()
    assert overlay_skipped() == [s.reason for s in loaded.skipped]
    kinds = {r.key.kind for r in loaded.resources} | {
        "PeerAuthentication" for s in loaded.skipped if "PeerAuthentication" in s.reason
    }
    assert kinds == {"PeerAuthentication", "DestinationRule"}


def test_templates_are_filled_completely() -> None:
    assert render("a __X__ b", {"X": "1"}) == "a 1 b"
    with pytest.raises(ValueError, match="__Y__"):
        render("__X__ __Y__", {"X": "1"})
    boot = bare_bootstrap(("127.0.0.1", 15001), ("198.18.0.2", 15006))
    assert "access_log" not in json.dumps(boot)


# --- one real run -------------------------------------------------------------------------


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "the data-plane benchmark needs root (network namespaces, iptables)"
    for tool in ("hey", "nginx", "ip", "iptables", "setpriv"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            return f"the data-plane benchmark needs {tool} (apt-get install -y hey nginx-light)"
    return None


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, bool):
        return []
    return [float(value)] if isinstance(value, int | float) else []


@pytest.mark.e2e
@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_tiny_real_run_is_well_formed() -> None:
    tiny = Sizes(rounds=1, seconds=1, rates=(200,), high=False)
    lines: list[str] = []
    report = run_dataplane(True, lines.append, sizes=tiny)

    json.dumps(report)
    assert report["suite"] == "dataplane"
    assert report["machine"]["cores"] >= 1
    for key in ("config", "commands", "defaults", "results", "summary", "table"):
        assert report[key], key
    assert any(" hey " in c or "/hey " in c for c in report["commands"])
    assert any("envoy" in c and "--concurrency 2" in c for c in report["commands"])
    results = {r["variant"]: r for r in report["results"]}
    assert sorted(results) == sorted(VARIANTS)
    for variant, row in results.items():
        assert row["rate_asked"] == 200 and row["errors"] == 0 and row["requests"] > 0
        absolute = {k: v for k, v in row.items() if not k.startswith("added_")}
        assert all(n >= 0 and math.isfinite(n) for n in _numbers(absolute)), variant
        for p in (50, 90, 99):
            assert set(row[f"p{p}_ms"]) == {"median", "min", "max"}
        if variant != "direct":
            assert set(row["added_p90_ms"]) == {"median", "min", "max"}
            assert set(row["by_proxy"]) == {"client", "server"}
            assert row["sidecar_rss_mb"]["median"] > 0
    summary = report["summary"]
    for pair in ("mesh_over_bare", "mesh_plaintext_over_bare", "mesh_authz_over_mesh"):
        assert set(summary[f"{pair}_added_p90"]) == {"200", "max"}, pair
        assert set(summary[f"{pair}_cpu_s_per_1000"]) == {"200", "max"}, pair
    assert len(report["table"]["rows"]) == len(VARIANTS)
    assert len(report["table"]["caption"]) == len(PAIRS) == 4
    notes = report["notes"]
    assert any(n.startswith("mesh-mtls: client sidecar's cluster") for n in notes)
    assert any(n.startswith("mesh-authz: client sidecar's cluster") for n in notes)
    assert any(n.startswith("mesh-authz checked before measuring, tampered token") for n in notes)
    counters = next(n for n in notes if n.startswith("mesh-authz server sidecar over the run"))
    assert "jwt_authn.denied 0" not in counters and "rbac.denied 0" not in counters
    assert not any("Bearer ey" in c for c in report["commands"])  # tokens are redacted
    assert any("Authorization: Bearer <JWT>" in c for c in report["commands"])
    assert "__JWKS__" not in report["config"]["mesh_authz_overlay"]
    assert any(n.startswith("mesh-plaintext: client sidecar's cluster") for n in notes)
    # The bare pair really handshook, and the plaintext one did not.
    handshakes = {
        n.split(", ", 1)[1].rsplit(":", 1)[0]: int(n.rsplit(": ", 1)[1])
        for n in notes
        if n.startswith("TLS handshakes between the proxies")
    }
    assert handshakes["bare-envoy-mtls server"] > 0 and handshakes["bare-envoy-mtls client"] > 0
    assert handshakes["bare-envoy server"] == 0 and handshakes["bare-envoy client"] == 0
    assert set(handshakes) >= {"mesh-mtls server", "mesh-plaintext client"}
    assert len(report["config"]["meshes"]) == 4
    assert report["config"]["variants"] == list(VARIANTS)


# Run inside the client pod: one TLS connection to the mTLS server Envoy with the
# client's certificate, one without; what each got back.
_TLS_PROBE = """
import json, socket, ssl, sys
host, port, root, cert, key = sys.argv[1:6]

def attempt(with_cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(root)
    ctx.set_alpn_protocols(["istio"])
    if with_cert:
        ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                peer = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
                tls.sendall(b"GET / HTTP/1.1\\r\\nHost: server\\r\\nConnection: close\\r\\n\\r\\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
                return {"peer": peer, "status": data.split(b"\\r\\n", 1)[0].decode()}
    except (OSError, ssl.SSLError) as exc:
        return {"error": repr(exc)}

print(json.dumps({"with": attempt(True), "without": attempt(False)}))
"""


@pytest.mark.e2e
@pytest.mark.skipif(_missing() is not None, reason=str(_missing()))
def test_the_bare_mtls_pair_speaks_mutual_tls() -> None:
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(bench_workdir())
        bench = Bench(stack, workdir, f"bt-{secrets.token_hex(3)}", lambda _: None)
        _direct, bare, bare_mtls = bench.up_raw()
        bench.wait_serving(bare_mtls)
        bench.wait_serving(bare)

        for role in ("client", "server"):
            assert stat.S_IMODE(bench.tls[role].key.stat().st_mode) == 0o600
        server_stats = bench.admin_get("bare-envoy-mtls", "server", "/stats")
        assert count_stat(server_stats, DATA_PATH_HANDSHAKES["server"]) > 0
        # counted on the listener (the handshakes are the server's, not its admin's)
        assert re.search(r"^listener\.[0-9._]+_15007\.ssl\.handshake: [1-9]", server_stats, re.M)
        client_stats = bench.admin_get("bare-envoy-mtls", "client", "/stats")
        assert count_stat(client_stats, DATA_PATH_HANDSHAKES["client"]) > 0
        # the plaintext pair does no TLS at all
        plain_stats = bench.admin_get("bare-envoy", "server", "/stats")
        assert count_stat(plain_stats, re.compile(r".*\.ssl\.handshake")) == 0

        # Plaintext straight to the server Envoy's port: no filter chain, closed.
        direct_plain = Target("plain", bare_mtls.netns, bench.mtls_server_url)
        refused = bench.hey(direct_plain, 0.5, 1, 20)
        assert refused.requests == 0 and sum(refused.errors.values()) > 0
        server_stats = bench.admin_get("bare-envoy-mtls", "server", "/stats")
        assert (
            count_stat(server_stats, re.compile(r"listener\..*_15007\.no_filter_chain_match")) > 0
        )

        # TLS with the client's certificate works and shows the server's identity;
        # TLS without one is refused.
        host, port = bench.mtls_server_url.removeprefix("http://").rstrip("/").split(":")
        files = bench.tls["client"]
        argv = ["ip", "netns", "exec", bare_mtls.netns, sys.executable, "-c", _TLS_PROBE]
        argv += [host, port, str(files.root), str(files.cert), str(files.key)]
        out = json.loads(
            subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
        )
        assert out["with"] == {"peer": [SERVER_ID], "status": "HTTP/1.1 200 OK"}
        assert not out["without"].get("status", "").startswith("HTTP/"), out["without"]
        server_stats = bench.admin_get("bare-envoy-mtls", "server", "/stats")
        assert count_stat(server_stats, re.compile(r"listener\..*\.ssl\.fail_verify_no_cert")) > 0
