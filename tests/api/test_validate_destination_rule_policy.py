"""DestinationRule trafficPolicy: Mizzen refuses what istiod refuses, and
only that (istiod's validateTrafficPolicy and the functions it calls).

Each table row is a policy; it is placed at every level a policy of its kind
can sit (the rule's trafficPolicy, a subset's, a portLevelSettings entry) and
loaded as a whole document, so each refusal is checked with file, resource
and field path.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mizzen.api import parse_text
from mizzen.api.validate_crd import check_spec
from mizzen.api.validate_istio import check_destination_rule

FILE = "dr.yaml"
RESOURCE = "DestinationRule prod/reviews"
SHARED = Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
SAMPLES = SHARED / "istio-samples"
CRDS = SHARED / "istio-api" / "customresourcedefinitions.gen.yaml"

Policy = dict[str, Any]

# Where a policy can sit: (name, prefix of the paths under it).
TOP = ("top", "spec.trafficPolicy")
SUBSET = ("subset", "spec.subsets[0].trafficPolicy")
PORT = ("port", "spec.trafficPolicy.portLevelSettings[0]")
PORT_FIELDS = {"loadBalancer", "connectionPool", "outlierDetection", "tls"}


def _spec(policy: Policy, where: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"host": "reviews.prod.svc.cluster.local"}
    if where == "top":
        spec["trafficPolicy"] = policy
    elif where == "subset":
        spec["subsets"] = [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": policy}]
    else:
        spec["trafficPolicy"] = {"portLevelSettings": [{"port": {"number": 9080}, **policy}]}
    return spec


def _document(spec: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "prod"},
        "spec": spec,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def _places(policy: Policy) -> list[tuple[str, str]]:
    return [TOP, SUBSET, PORT] if set(policy) <= PORT_FIELDS else [TOP, SUBSET]


def _path(prefix: str, rel: str) -> str:
    return f"{prefix}.{rel}" if rel else prefix


def _tls(**fields: Any) -> Policy:
    return {"tls": fields}


def _pool(group: str, **fields: Any) -> Policy:
    return {"connectionPool": {group: fields}}


def _outlier(**fields: Any) -> Policy:
    return {"outlierDetection": fields}


def _hash(**fields: Any) -> Policy:
    return {"loadBalancer": {"consistentHash": fields}}


def _locality(**fields: Any) -> Policy:
    return {"loadBalancer": {"localityLbSetting": fields}}


def _warmup(**fields: Any) -> Policy:
    return {"loadBalancer": {"warmup": {"duration": "30s", **fields}}}


CERT = {"clientCertificate": "/etc/certs/client.pem", "privateKey": "/etc/certs/key.pem"}
TUNNEL = {"targetHost": "proxy.example.com", "targetPort": 3128}
OUTLIER = {"outlierDetection": {"consecutive5xxErrors": 5}}

# (id, policy, path under the policy, a part of the message). Schema-valid
# policies that istiod refuses; each row holds one mistake.
SEMANTIC: list[tuple[str, Policy, str, str]] = [
    # -- connectionPool
    ("pool-empty", {"connectionPool": {}}, "connectionPool", "at least one field"),
    *[
        (
            f"http-{name}-negative",
            _pool("http", **{name: -1}),
            f"connectionPool.http.{name}",
            "must not be negative, got -1",
        )
        for name in (
            "http1MaxPendingRequests",
            "http2MaxRequests",
            "maxRequestsPerConnection",
            "maxRetries",
            "maxConcurrentStreams",
        )
    ],
    (
        "tcp-maxConnections-negative",
        _pool("tcp", maxConnections=-1),
        "connectionPool.tcp.maxConnections",
        "must not be negative",
    ),
    (
        "tcp-maxConnections-int32",
        _pool("tcp", maxConnections=2**31),
        "connectionPool.tcp.maxConnections",
        "32-bit integer",
    ),
    (
        "upgrade-with-client-protocol",
        _pool("http", h2UpgradePolicy="UPGRADE", useClientProtocol=True),
        "connectionPool.http.useClientProtocol",
        "use client protocol must not be true when h2UpgradePolicy is UPGRADE",
    ),
    (
        "http-idleTimeout-sub-ms",
        _pool("http", idleTimeout="1500us"),
        "connectionPool.http.idleTimeout",
        "only durations to ms precision",
    ),
    (
        "tcp-connectTimeout-sub-ms",
        _pool("tcp", connectTimeout="10.5ms"),
        "connectionPool.tcp.connectTimeout",
        "only durations to ms precision",
    ),
    (
        "tcp-maxConnectionDuration-sub-ms",
        _pool("tcp", maxConnectionDuration="1001us"),
        "connectionPool.tcp.maxConnectionDuration",
        "ms precision",
    ),
    (
        "tcp-idleTimeout-negative",
        _pool("tcp", idleTimeout="-1s"),
        "connectionPool.tcp.idleTimeout",
        "at least 1ms",
    ),
    (
        "tcp-idleTimeout-sub-ms",
        _pool("tcp", idleTimeout="1500us"),
        "connectionPool.tcp.idleTimeout",
        "ms precision",
    ),
    (
        "tcp-idleTimeout-not-a-duration",
        _pool("tcp", idleTimeout="later"),
        "connectionPool.tcp.idleTimeout",
        "invalid duration 'later'",
    ),
    (
        "keepalive-time-sub-ms",
        _pool("tcp", tcpKeepalive={"time": "1.0005s"}),
        "connectionPool.tcp.tcpKeepalive.time",
        "ms precision",
    ),
    (
        "keepalive-interval-sub-ms",
        _pool("tcp", tcpKeepalive={"interval": "2500us"}),
        "connectionPool.tcp.tcpKeepalive.interval",
        "ms precision",
    ),
    # -- outlierDetection
    (
        "outlier-interval-sub-ms",
        _outlier(interval="1.5ms"),
        "outlierDetection.interval",
        "ms precision",
    ),
    (
        "outlier-baseEjectionTime-sub-ms",
        _outlier(baseEjectionTime="30.000001s"),
        "outlierDetection.baseEjectionTime",
        "ms precision",
    ),
    (
        "local-origin-without-split",
        _outlier(consecutiveLocalOriginFailures=5),
        "outlierDetection.consecutiveLocalOriginFailures",
        "split external local origin errors is false",
    ),
    (
        "local-origin-with-split-false",
        _outlier(consecutiveLocalOriginFailures=1, splitExternalLocalOriginErrors=False),
        "outlierDetection.consecutiveLocalOriginFailures",
        "splitExternalLocalOriginErrors: true",
    ),
    (
        "maxEjectionPercent-over-100",
        _outlier(maxEjectionPercent=101),
        "outlierDetection.maxEjectionPercent",
        "between 0 and 100",
    ),
    (
        "minHealthPercent-negative",
        _outlier(minHealthPercent=-1),
        "outlierDetection.minHealthPercent",
        "between 0 and 100",
    ),
    (
        "consecutiveErrors-int32",
        _outlier(consecutiveErrors=-(2**31) - 1),
        "outlierDetection.consecutiveErrors",
        "32-bit integer",
    ),
    # -- loadBalancer.consistentHash
    (
        "cookie-name-empty",
        _hash(httpCookie={"name": ""}),
        "loadBalancer.consistentHash.httpCookie.name",
        "name required for HttpCookie",
    ),
    (
        "cookie-ttl-not-a-duration",
        _hash(httpCookie={"name": "user", "ttl": "forever"}),
        "loadBalancer.consistentHash.httpCookie.ttl",
        "invalid duration",
    ),
    (
        "minimumRingSize-with-ringHash",
        _hash(httpHeaderName="x-user", minimumRingSize=1024, ringHash={}),
        "loadBalancer.consistentHash.minimumRingSize",
        "only one of minimumRingSize or maglev/ringHash",
    ),
    (
        "minimumRingSize-with-maglev",
        _hash(useSourceIp=True, minimumRingSize=1024, maglev={"tableSize": 65537}),
        "loadBalancer.consistentHash.minimumRingSize",
        "maglev is set",
    ),
    (
        "maglev-without-tableSize",
        _hash(useSourceIp=True, maglev={}),
        "loadBalancer.consistentHash.maglev.tableSize",
        "tableSize must be set for maglev",
    ),
    (
        "maglev-tableSize-zero",
        _hash(useSourceIp=True, maglev={"tableSize": 0}),
        "loadBalancer.consistentHash.maglev.tableSize",
        "must be set",
    ),
    (
        "maglev-tableSize-even",
        _hash(useSourceIp=True, maglev={"tableSize": 65536}),
        "loadBalancer.consistentHash.maglev.tableSize",
        "tableSize must be a prime number for maglev, got 65536",
    ),
    (
        "maglev-tableSize-odd-composite",
        _hash(useSourceIp=True, maglev={"tableSize": 9}),
        "loadBalancer.consistentHash.maglev.tableSize",
        "prime number",
    ),
    (
        "maglev-tableSize-too-large",
        _hash(useSourceIp=True, maglev={"tableSize": 5000011}),
        "loadBalancer.consistentHash.maglev.tableSize",
        "less than 5000011",
    ),
    # -- loadBalancer.localityLbSetting
    (
        "distribute-and-failover",
        _locality(
            distribute=[{"from": "us-east/*", "to": {"us-east/*": 100}}],
            failover=[{"from": "us-east", "to": "us-west"}],
        ),
        "loadBalancer.localityLbSetting",
        "can not simultaneously specify 'distribute' and 'failover'",
    ),
    (
        "distribute-zero-weight",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-east/a": 100, "us-east/b": 0}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-east/b]",
        "locality weight must be in range [1, 100], got 0",
    ),
    (
        "distribute-weight-over-100",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-east/a": 101}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-east/a]",
        "range [1, 100]",
    ),
    (
        "distribute-total-not-100",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-east/a": 50, "us-west/*": 40}}]),
        "loadBalancer.localityLbSetting.distribute[0].to",
        "total locality weight 90 != 100",
    ),
    (
        "distribute-to-empty",
        _locality(distribute=[{"from": "us-east/*", "to": {}}]),
        "loadBalancer.localityLbSetting.distribute[0].to",
        "total locality weight 0 != 100",
    ),
    (
        "distribute-from-missing",
        _locality(distribute=[{"to": {"us-east/*": 100}}]),
        "loadBalancer.localityLbSetting.distribute[0].from",
        "must not contain empty region/zone/subzone info",
    ),
    (
        "distribute-from-empty-zone",
        _locality(distribute=[{"from": "us-east//rack1", "to": {"us-east/*": 100}}]),
        "loadBalancer.localityLbSetting.distribute[0].from",
        "empty region/zone/subzone",
    ),
    (
        "distribute-from-wildcard-in-middle",
        _locality(distribute=[{"from": "us-east/*/rack1", "to": {"us-east/*": 100}}]),
        "loadBalancer.localityLbSetting.distribute[0].from",
        "wildcard '*' may appear once",
    ),
    (
        "distribute-from-wildcard-region",
        _locality(distribute=[{"from": "*/zone1", "to": {"us-east/*": 100}}]),
        "loadBalancer.localityLbSetting.distribute[0].from",
        "wildcard",
    ),
    (
        "distribute-from-two-wildcards",
        _locality(distribute=[{"from": "us-*/*", "to": {"us-east/*": 100}}]),
        "loadBalancer.localityLbSetting.distribute[0].from",
        "wildcard",
    ),
    (
        "distribute-to-wildcard-in-middle",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-*/zone1": 100}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-*/zone1]",
        "wildcard",
    ),
    (
        "distribute-from-twice",
        _locality(
            distribute=[
                {"from": "us-east/zone1", "to": {"us-east/*": 100}},
                {"from": "us-east/zone1", "to": {"us-west/*": 100}},
            ]
        ),
        "loadBalancer.localityLbSetting.distribute[1].from",
        "overlaps with a locality listed before it",
    ),
    (
        "distribute-from-inside-earlier-wildcard",
        _locality(
            distribute=[
                {"from": "us-east/*", "to": {"us-east/*": 100}},
                {"from": "us-east/zone1", "to": {"us-west/*": 100}},
            ]
        ),
        "loadBalancer.localityLbSetting.distribute[1].from",
        "overlaps",
    ),
    (
        "distribute-from-after-star",
        _locality(
            distribute=[
                {"from": "*", "to": {"us-east/*": 100}},
                {"from": "us-west", "to": {"us-west/*": 100}},
            ]
        ),
        "loadBalancer.localityLbSetting.distribute[1].from",
        "overlaps with '*'",
    ),
    (
        "distribute-to-zone-inside-wildcard",
        # istiod walks the map in a random order: refused whichever comes first.
        _locality(distribute=[{"from": "us-east/*", "to": {"us-east/a": 50, "us-east/*": 50}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-east/a]",
        "overlaps",
    ),
    (
        "distribute-to-zone-inside-region",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-east": 50, "us-east/a": 50}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-east/a]",
        "overlaps",
    ),
    (
        "distribute-to-subzone-inside-wildcard",
        _locality(distribute=[{"from": "us-east/*", "to": {"r/z/s": 30, "r/z/*": 70}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[r/z/s]",
        "overlaps",
    ),
    (
        "distribute-to-star-and-more",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-west": 50, "*": 50}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-west]",
        "overlaps with '*'",
    ),
    (
        "failover-same-region",
        _locality(failover=[{"from": "us-east", "to": "us-east"}]),
        "loadBalancer.localityLbSetting.failover[0]",
        "locality lb failover settings must specify different regions",
    ),
    (
        "failover-empty-entry",
        _locality(failover=[{}]),
        "loadBalancer.localityLbSetting.failover[0]",
        "different regions",
    ),
    (
        "failover-from-zone",
        _locality(failover=[{"from": "us-east/zone1", "to": "us-west"}]),
        "loadBalancer.localityLbSetting.failover[0].from",
        "locality lb failover only specify region",
    ),
    (
        "failover-to-zone",
        _locality(failover=[{"from": "us-east", "to": "us-west/zone2"}]),
        "loadBalancer.localityLbSetting.failover[0].to",
        "only specify region",
    ),
    (
        "failover-to-wildcard",
        _locality(failover=[{"from": "us-east", "to": "us-*"}]),
        "loadBalancer.localityLbSetting.failover[0].to",
        "should not contain '*' wildcard",
    ),
    (
        "failover-from-wildcard",
        _locality(failover=[{"from": "*", "to": "us-west"}]),
        "loadBalancer.localityLbSetting.failover[0].from",
        "'*' wildcard",
    ),
    (
        "failover-with-region-priority",
        _locality(
            failover=[{"from": "us-east", "to": "us-west"}],
            failoverPriority=["topology.istio.io/network", "topology.kubernetes.io/region"],
        ),
        "loadBalancer.localityLbSetting.failoverPriority[1]",
        "can not simultaneously set 'failover' and topology label",
    ),
    (
        "failover-with-subzone-priority",
        _locality(
            failover=[{"from": "us-east", "to": "us-west"}],
            failoverPriority=["topology.istio.io/subzone"],
        ),
        "loadBalancer.localityLbSetting.failoverPriority[0]",
        "topology label",
    ),
    # -- loadBalancer.warmup
    (
        "warmup-aggression-below-1",
        _warmup(aggression=0.5),
        "loadBalancer.warmup.aggression",
        "aggression should be greater than or equal to 1",
    ),
    (
        "warmup-aggression-zero",
        _warmup(aggression=0),
        "loadBalancer.warmup.aggression",
        "greater than or equal to 1, got 0",
    ),
    (
        "warmup-duration-sub-ms",
        {"loadBalancer": {"warmup": {"duration": "1500us"}}},
        "loadBalancer.warmup.duration",
        "ms precision",
    ),
    # -- tls
    (
        "credentialName-and-caCertificates",
        _tls(mode="SIMPLE", credentialName="db-cred", caCertificates="/etc/certs/ca.pem"),
        "tls.caCertificates",
        "cannot specify client certificates or CA certificate or CA CRL if credentialName is set",
    ),
    (
        "credentialName-and-clientCertificate",
        _tls(mode="MUTUAL", credentialName="db-cred", **CERT),
        "tls.clientCertificate",
        "credentialName is set",
    ),
    (
        "credentialName-and-privateKey",
        _tls(mode="MUTUAL", credentialName="db-cred", **CERT),
        "tls.privateKey",
        "credentialName is set",
    ),
    (
        "credentialName-and-caCrl",
        _tls(mode="SIMPLE", credentialName="db-cred", caCrl="/etc/certs/crl.pem"),
        "tls.caCrl",
        "credentialName is set",
    ),
    (
        "simple-skip-verify-with-ca",
        _tls(mode="SIMPLE", insecureSkipVerify=True, caCertificates="/etc/certs/ca.pem"),
        "tls.caCertificates",
        "when insecureSkipVerify is set true",
    ),
    (
        "simple-skip-verify-with-credentialName",
        _tls(mode="SIMPLE", insecureSkipVerify=True, credentialName="db-cred"),
        "tls.credentialName",
        "insecureSkipVerify",
    ),
    (
        "simple-skip-verify-with-sans",
        _tls(mode="SIMPLE", insecureSkipVerify=True, subjectAltNames=["db.example.com"]),
        "tls.subjectAltNames",
        "insecureSkipVerify",
    ),
    (
        "mutual-skip-verify-with-ca",
        _tls(mode="MUTUAL", insecureSkipVerify=True, caCertificates="/etc/ca.pem", **CERT),
        "tls.caCertificates",
        "insecureSkipVerify",
    ),
    (
        "mutual-skip-verify-with-sans",
        _tls(mode="MUTUAL", insecureSkipVerify=True, credentialName="c", subjectAltNames=["a"]),
        "tls.subjectAltNames",
        "insecureSkipVerify",
    ),
    (
        "mutual-without-client-certificate",
        _tls(mode="MUTUAL", privateKey="/etc/certs/key.pem"),
        "tls.clientCertificate",
        "required for MUTUAL mode unless credentialName is set",
    ),
    (
        "mutual-without-private-key",
        _tls(mode="MUTUAL", clientCertificate="/etc/certs/client.pem"),
        "tls.privateKey",
        "required for MUTUAL mode",
    ),
]

# Rows of the same shape for what only a whole TrafficPolicy holds (so not a
# portLevelSettings entry).
POLICY_LEVEL: list[tuple[str, Policy, str, str]] = [
    ("policy-empty", {}, "", "traffic policy must have at least one field"),
    ("policy-empty-port-list", {"portLevelSettings": []}, "", "at least one field"),
    # Unknown fields are pruned by the API server: nothing is left.
    ("policy-unknown-field-only", {"loadBalancing": {"simple": "RANDOM"}}, "", "at least one"),
    (
        "tunnel-and-proxyProtocol",
        {"tunnel": TUNNEL, "proxyProtocol": {"version": "V2"}},
        "",
        "tunnel and proxyProtocol must not be set together",
    ),
    (
        "tunnel-protocol",
        {"tunnel": {**TUNNEL, "protocol": "GET"}},
        "tunnel.protocol",
        'tunnel protocol must be "CONNECT" or "POST"',
    ),
    (
        "tunnel-host",
        {"tunnel": {**TUNNEL, "targetHost": "proxy_1.example.com"}},
        "tunnel.targetHost",
        "tunnel target host must be valid FQDN or IP address",
    ),
    (
        "tunnel-host-numeric-tld",
        {"tunnel": {**TUNNEL, "targetHost": "10.0.0.256"}},
        "tunnel.targetHost",
        "all-numeric",
    ),
    (
        "tunnel-port-zero",
        {"tunnel": {**TUNNEL, "targetPort": 0}},
        "tunnel.targetPort",
        "between 1 and 65535",
    ),
    (
        "retryBudget-interval-not-a-duration",
        {"retryBudget": {"percent": 20, "budgetInterval": "soon"}},
        "retryBudget.budgetInterval",
        "invalid duration",
    ),
    (
        "port-policy-without-port",
        {"portLevelSettings": [{"tls": {"mode": "ISTIO_MUTUAL"}}]},
        "portLevelSettings[0].port",
        "portTrafficPolicy must have valid port",
    ),
    (
        "port-policy-without-fields",
        {"portLevelSettings": [{"port": {"number": 9080}}]},
        "portLevelSettings[0]",
        "port traffic policy must have at least one field",
    ),
    (
        "port-policy-empty-pool",
        {"portLevelSettings": [{"port": {"number": 9080}, "connectionPool": {}}]},
        "portLevelSettings[0].connectionPool",
        "connection pool must have at least one field",
    ),
    (
        "port-policy-second-entry",
        {
            "portLevelSettings": [
                {"port": {"number": 9080}, "tls": {"mode": "ISTIO_MUTUAL"}},
                {"port": {"number": 9443}, "tls": {"mode": "MUTUAL"}},
            ]
        },
        "portLevelSettings[1].tls.clientCertificate",
        "required for MUTUAL mode",
    ),
]

# Refused by the CRD schema itself (OpenAPI oneOf, bounds, CEL), before
# istiod's checks run.
SCHEMA: list[tuple[str, Policy, str, str]] = [
    (
        "simple-and-consistentHash",
        {"loadBalancer": {"simple": "ROUND_ROBIN", "consistentHash": {"useSourceIp": True}}},
        "loadBalancer",
        "only one of simple, consistentHash may be set",
    ),
    (
        "two-hash-keys",
        _hash(httpHeaderName="x-user", httpQueryParameterName="user"),
        "loadBalancer.consistentHash",
        "only one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName",
    ),
    (
        "ringHash-and-maglev",
        _hash(useSourceIp=True, ringHash={}, maglev={"tableSize": 65537}),
        "loadBalancer.consistentHash",
        "only one of ringHash, maglev",
    ),
    (
        "cookie-without-name",
        _hash(httpCookie={"ttl": "10s"}),
        "loadBalancer.consistentHash.httpCookie.name",
        "required",
    ),
    (
        "maglev-negative",
        _hash(useSourceIp=True, maglev={"tableSize": -1}),
        "loadBalancer.consistentHash.maglev.tableSize",
        "at least 0",
    ),
    (
        "distribute-negative-weight",
        _locality(distribute=[{"from": "us-east/*", "to": {"us-east/a": -1}}]),
        "loadBalancer.localityLbSetting.distribute[0].to[us-east/a]",
        "between 0 and 4294967295",
    ),
    (
        "connectTimeout-under-1ms",
        _pool("tcp", connectTimeout="500us"),
        "connectionPool.tcp.connectTimeout",
        "greater than 1ms",
    ),
    ("interval-zero", _outlier(interval="0s"), "outlierDetection.interval", "greater than 1ms"),
    (
        "baseEjectionTime-not-a-duration",
        _outlier(baseEjectionTime="30"),
        "outlierDetection.baseEjectionTime",
        "invalid duration",
    ),
    (
        "warmupDurationSecs-zero",
        {"loadBalancer": {"simple": "ROUND_ROBIN", "warmupDurationSecs": "0s"}},
        "loadBalancer.warmupDurationSecs",
        "greater than 1ms",
    ),
    (
        "http2KeepAlive-interval-zero",
        _pool("http", http2KeepAlive={"interval": "0s"}),
        "connectionPool.http.http2KeepAlive.interval",
        "greater than 1ms",
    ),
    (
        "warmup-without-duration",
        {"loadBalancer": {"warmup": {"aggression": 2}}},
        "loadBalancer.warmup.duration",
        "required",
    ),
    (
        "warmup-minimumPercent-over-100",
        _warmup(minimumPercent=101),
        "loadBalancer.warmup.minimumPercent",
        "between 0 and 100",
    ),
    (
        "warmup-aggression-negative",
        _warmup(aggression=-1),
        "loadBalancer.warmup.aggression",
        "at least 0",
    ),
    ("tls-mode", _tls(mode="STRICT"), "tls.mode", "must be one of DISABLE, SIMPLE"),
    (
        "http-error-code",
        _outlier(outlierDetectionHttpErrorCodes=[503, 600]),
        "outlierDetection.outlierDetectionHttpErrorCodes[1]",
        "between 100 and 599",
    ),
    (
        "tunnel-without-port",
        {"tunnel": {"targetHost": "proxy.example.com"}},
        "tunnel.targetPort",
        "required",
    ),
]

# Policies istiod accepts, including some a stricter validator might refuse.
VALID: list[tuple[str, Policy]] = [
    ("simple", {"loadBalancer": {"simple": "ROUND_ROBIN"}}),
    ("empty-parts", {"loadBalancer": {}, "outlierDetection": {}, "tls": {}}),
    ("pool-tcp-only", {"connectionPool": {"tcp": {}}}),
    ("pool-http-only", {"connectionPool": {"http": {}}}),
    (
        "pool-full",
        {
            "connectionPool": {
                "tcp": {
                    "maxConnections": 100,
                    "connectTimeout": "30ms",
                    "maxConnectionDuration": "1h",
                    "idleTimeout": "2.5s",
                    "tcpKeepalive": {"probes": 3, "time": "7200s", "interval": "75s"},
                },
                "http": {
                    "http1MaxPendingRequests": 0,
                    "http2MaxRequests": 2**31 - 1,
                    "maxRequestsPerConnection": 10,
                    "maxRetries": 3,
                    "idleTimeout": "1m30s",
                    "h2UpgradePolicy": "UPGRADE",
                    "useClientProtocol": False,
                    "maxConcurrentStreams": 100,
                },
            }
        },
    ),
    # 0s turns the TCP idle timeout off; istiod skips anything under 1ms.
    ("tcp-idleTimeout-zero", _pool("tcp", idleTimeout="0s")),
    ("tcp-idleTimeout-sub-ms", _pool("tcp", idleTimeout="500us")),
    ("tcp-idleTimeout-negative-sub-ms", _pool("tcp", idleTimeout="-500us")),
    # Either keepalive setting alone is fine.
    ("http2KeepAlive-interval-only", _pool("http", http2KeepAlive={"interval": "30s"})),
    ("http2KeepAlive-timeout-only", _pool("http", http2KeepAlive={"timeout": "5s"})),
    ("http2KeepAlive-empty", _pool("http", http2KeepAlive={})),
    ("tcpKeepalive-time-only", _pool("tcp", tcpKeepalive={"time": "60s"})),
    ("tcpKeepalive-probes-only", _pool("tcp", tcpKeepalive={"probes": 9})),
    ("client-protocol-without-upgrade", _pool("http", useClientProtocol=True)),
    (
        "client-protocol-do-not-upgrade",
        _pool("http", h2UpgradePolicy="DO_NOT_UPGRADE", useClientProtocol=True),
    ),
    ("upgrade-without-client-protocol", _pool("http", h2UpgradePolicy="UPGRADE")),
    ("ms-durations", _outlier(interval="1ms", baseEjectionTime="2.001s")),
    ("outlier-percent-bounds", _outlier(maxEjectionPercent=100, minHealthPercent=0)),
    # Deprecated; istiod only warns, whatever the value.
    ("consecutiveErrors-negative", _outlier(consecutiveErrors=-1)),
    (
        "local-origin-with-split",
        _outlier(consecutiveLocalOriginFailures=5, splitExternalLocalOriginErrors=True),
    ),
    ("local-origin-zero-without-split", _outlier(consecutiveLocalOriginFailures=0)),
    ("error-codes", _outlier(outlierDetectionHttpErrorCodes=[500, 503])),
    (
        "cookie-repeated-attribute",
        _hash(
            httpCookie={
                "name": "user",
                "ttl": "0s",
                "path": "/",
                "attributes": [
                    {"name": "SameSite", "value": "Strict"},
                    {"name": "SameSite", "value": "Lax"},
                    {"name": "Secure"},
                ],
            }
        ),
    ),
    ("cookie-without-ttl", _hash(httpCookie={"name": "user"})),
    ("hash-without-key", _hash(ringHash={"minimumRingSize": 1024})),
    ("minimumRingSize-alone", _hash(httpHeaderName="x-user", minimumRingSize=1024)),
    ("maglev-one", _hash(useSourceIp=True, maglev={"tableSize": 1})),
    ("maglev-two", _hash(useSourceIp=True, maglev={"tableSize": 2})),
    ("maglev-65537", _hash(httpQueryParameterName="u", maglev={"tableSize": 65537})),
    ("maglev-largest-prime", _hash(useSourceIp=True, maglev={"tableSize": 4999999})),
    (
        "warmupDurationSecs-random",
        {"loadBalancer": {"simple": "RANDOM", "warmupDurationSecs": "10s"}},
    ),
    (
        "warmupDurationSecs-hash",
        {"loadBalancer": {"consistentHash": {}, "warmupDurationSecs": "1m"}},
    ),
    ("warmup", _warmup(aggression=1, minimumPercent=10)),
    ("warmup-aggressive", _warmup(aggression=2.5, minimumPercent=100)),
    ("locality-disabled", _locality(enabled=False)),
    (
        "distribute",
        _locality(
            distribute=[
                {"from": "us-west/zone1/*", "to": {"us-west/zone1/*": 80, "us-west/zone2/*": 20}},
                {"from": "us-west/zone2/*", "to": {"us-west/zone1/*": 20, "us-west/zone2/*": 80}},
            ]
        ),
    ),
    ("distribute-from-star", _locality(distribute=[{"from": "*", "to": {"us-east": 100}}])),
    (
        "distribute-from-zones",
        _locality(
            distribute=[
                {"from": "us-east/zone1", "to": {"us-east/zone1": 100}},
                {"from": "us-east/zone2", "to": {"us-east/*": 60, "us-west": 40}},
            ]
        ),
    ),
    # istiod reads `from` in order: a wildcard after what it covers passes.
    (
        "distribute-from-wildcard-last",
        _locality(
            distribute=[
                {"from": "us-east/zone1", "to": {"us-east/zone1": 100}},
                {"from": "us-east/*", "to": {"us-east/*": 100}},
            ]
        ),
    ),
    ("distribute-wildcard-suffix", _locality(distribute=[{"from": "us-*", "to": {"us-*": 100}}])),
    # SplitN(locality, "/", 3): a subzone may itself hold '/'.
    (
        "distribute-deep-subzone",
        _locality(distribute=[{"from": "r/z/s/x", "to": {"r/z/s/x": 100}}]),
    ),
    (
        "distribute-with-failoverPriority",
        _locality(
            distribute=[{"from": "us-east/*", "to": {"us-east/*": 100}}],
            failoverPriority=["topology.kubernetes.io/region"],
        ),
    ),
    (
        "failover",
        {
            **_locality(
                failover=[
                    {"from": "us-east", "to": "eu-west"},
                    {"from": "us-west", "to": "us-east"},
                ]
            ),
            **OUTLIER,
        },
    ),
    # Without outlierDetection istiod only warns.
    ("failover-without-outlier", _locality(failover=[{"from": "us-east", "to": "eu-west"}])),
    (
        "failover-with-other-priority",
        _locality(
            failover=[{"from": "us-east", "to": "eu-west"}],
            failoverPriority=["topology.istio.io/network", "topology.kubernetes.io/region=us"],
        ),
    ),
    ("failoverPriority-topology", _locality(failoverPriority=["topology.kubernetes.io/zone"])),
    ("zoneAware", {"loadBalancer": {"zoneAwareLbSetting": {"enabled": True, "minClusterSize": 3}}}),
    ("tls-disable-with-certificates", _tls(mode="DISABLE", credentialName="c", **CERT)),
    # istiod does not look at the certificate fields next to ISTIO_MUTUAL.
    (
        "istio-mutual-with-certificates",
        _tls(mode="ISTIO_MUTUAL", credentialName="c", caCertificates="/etc/ca.pem", **CERT),
    ),
    ("istio-mutual-skip-verify", _tls(mode="ISTIO_MUTUAL", insecureSkipVerify=True)),
    ("simple-files", _tls(mode="SIMPLE", caCertificates="/etc/ca.pem", sni="db.example.com")),
    ("simple-credential", _tls(mode="SIMPLE", credentialName="c", subjectAltNames=["db"])),
    ("mutual-files", _tls(mode="MUTUAL", caCertificates="/etc/ca.pem", caCrl="/etc/crl", **CERT)),
    ("mutual-credential", _tls(mode="MUTUAL", credentialName="c", sni="db.example.com")),
    # In MUTUAL mode credentialName may carry only the client certificate.
    (
        "mutual-credential-skip-verify",
        _tls(mode="MUTUAL", credentialName="c", insecureSkipVerify=True),
    ),
    (
        "simple-skip-verify",
        _tls(mode="SIMPLE", insecureSkipVerify=True, subjectAltNames=[], caCertificates=""),
    ),
    ("skip-verify-false", _tls(mode="SIMPLE", insecureSkipVerify=False, caCertificates="/ca.pem")),
    ("retryBudget-only", {"retryBudget": {"percent": 20, "minRetryConcurrency": 3}}),
    ("retryBudget-interval", {"retryBudget": {"budgetInterval": "10s"}}),
    ("proxyProtocol-only", {"proxyProtocol": {}}),
    ("tunnel", {"tunnel": {"protocol": "POST", "targetHost": "10.0.0.1", "targetPort": 8080}}),
    ("tunnel-ipv6", {"tunnel": {"targetHost": "fd00::1", "targetPort": 443}}),
    ("tunnel-fqdn-dot", {"tunnel": {"protocol": "CONNECT", **TUNNEL, "targetHost": "proxy.io."}}),
    # istiod neither requires a port number nor refuses a repeated one.
    (
        "port-numbers-repeated-or-unset",
        {
            "portLevelSettings": [
                {"port": {"number": 9080}, "loadBalancer": {"simple": "RANDOM"}},
                {"port": {"number": 9080}, "tls": {"mode": "ISTIO_MUTUAL"}},
                {"port": {}, "connectionPool": {"tcp": {"maxConnections": 1}}},
                {"port": {"number": 0}, "outlierDetection": {}},
            ]
        },
    ),
]


def _load(policy: Policy, where: str) -> Any:
    return parse_text(_document(_spec(copy.deepcopy(policy), where)), FILE)


def _assert_refused(policy: Policy, where: str, path: str, part: str) -> None:
    result = _load(policy, where)
    assert result.resources == ()
    found = [e for e in result.errors if e.path == path and part in e.message]
    assert found, [str(e) for e in result.errors]
    # The file, the resource and the field are all named.
    assert str(found[0]).startswith(f"{FILE}:0: {RESOURCE}: {path}: ")


def _cases(rows: list[tuple[str, Policy, str, str]], places: Any = None) -> list[Any]:
    return [
        pytest.param(policy, where, _path(prefix, rel), part, id=f"{name}@{where}")
        for name, policy, rel, part in rows
        for where, prefix in (places or _places(policy))
    ]


@pytest.mark.parametrize(("policy", "where", "path", "part"), _cases(SEMANTIC))
def test_istiod_refuses_policy_part(policy: Policy, where: str, path: str, part: str) -> None:
    _assert_refused(policy, where, path, part)


@pytest.mark.parametrize(
    ("policy", "where", "path", "part"), _cases(POLICY_LEVEL, places=[TOP, SUBSET])
)
def test_istiod_refuses_traffic_policy(policy: Policy, where: str, path: str, part: str) -> None:
    _assert_refused(policy, where, path, part)


@pytest.mark.parametrize(("policy", "where", "path", "part"), _cases(SCHEMA))
def test_crd_schema_refuses(policy: Policy, where: str, path: str, part: str) -> None:
    _assert_refused(policy, where, path, part)


@pytest.mark.parametrize(
    ("policy", "where"),
    [
        pytest.param(policy, where, id=f"{name}@{where}")
        for name, policy in VALID
        for where, _ in _places(policy)
    ],
)
def test_istiod_accepts(policy: Policy, where: str) -> None:
    result = _load(policy, where)
    assert [str(e) for e in result.errors] == []
    assert len(result.resources) == 1


# ---------------------------------------------------------------------------
# Which layer refuses: istiod's rows pass the CRD schema (ours, and Istio's
# own openAPIV3Schema where it is at hand), the schema rows do not.


@functools.cache
def _istio_spec_schema() -> dict[str, Any] | None:
    if not CRDS.exists():
        return None
    for crd in yaml.load_all(CRDS.read_text(), Loader=yaml.CSafeLoader):
        if crd and crd["spec"]["names"]["kind"] == "DestinationRule":
            version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
            schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
            return schema
    return None


ALL_REFUSED = [*SEMANTIC, *POLICY_LEVEL]


@pytest.mark.parametrize(
    "policy", [pytest.param(p, id=name) for name, p, _, _ in ALL_REFUSED if name != "policy-empty"]
)
def test_istiod_rows_pass_the_crd_schema(policy: Policy) -> None:
    spec = _spec(copy.deepcopy(policy), "top")
    problems: list[tuple[str, str]] = []
    check_spec("DestinationRule", spec, problems)
    assert problems == []
    schema = _istio_spec_schema()
    if schema is not None:
        assert jsonschema.Draft4Validator(schema).is_valid(spec)


@pytest.mark.parametrize("policy", [pytest.param(p, id=name) for name, p, _, _ in SCHEMA])
def test_schema_rows_fail_the_crd_schema(policy: Policy) -> None:
    problems: list[tuple[str, str]] = []
    check_spec("DestinationRule", _spec(copy.deepcopy(policy), "top"), problems)
    assert problems


def test_tables_cover_the_named_cases() -> None:
    ids = {row[0] for row in [*SEMANTIC, *POLICY_LEVEL, *SCHEMA]}
    assert len(SEMANTIC) >= 60 and len(VALID) >= 50
    for wanted in (
        "credentialName-and-caCertificates",
        "simple-skip-verify-with-ca",
        "failover-same-region",
        "distribute-zero-weight",
        "distribute-total-not-100",
        "maglev-tableSize-even",
        "local-origin-without-split",
        "upgrade-with-client-protocol",
        "pool-empty",
        "minimumRingSize-with-ringHash",
        "two-hash-keys",
        "simple-and-consistentHash",
    ):
        assert wanted in ids


# ---------------------------------------------------------------------------
# Istio's own samples and analyzer inputs: every DestinationRule in them is
# accepted by istiod, and stays accepted here.


def _drop_nulls(value: Any) -> Any:
    # As the API server does before anything validates.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _sample_rules() -> list[Any]:
    if not SAMPLES.is_dir():
        return []
    found = []
    for path in sorted(SAMPLES.rglob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue
        for n, doc in enumerate(docs):
            items = (
                doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            )
            for item in items or []:
                if isinstance(item, dict) and item.get("kind") == "DestinationRule":
                    name = f"{path.relative_to(SAMPLES)}:{n}:{item['metadata']['name']}"
                    found.append(pytest.param(_drop_nulls(item.get("spec") or {}), id=name))
    return found


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="shared Istio samples not present")
@pytest.mark.parametrize("spec", _sample_rules())
def test_istio_sample_rules_are_accepted(spec: dict[str, Any]) -> None:
    problems: list[tuple[str, str]] = []
    check_spec("DestinationRule", spec, problems)
    assert problems == []
    assert check_destination_rule(spec) == []


def test_samples_hold_rules_with_traffic_policies() -> None:
    if not SAMPLES.is_dir():
        pytest.skip("shared Istio samples not present")
    specs = [p.values[0] for p in _sample_rules()]
    assert len(specs) >= 20
    assert sum(1 for s in specs if s.get("trafficPolicy")) >= 10
