"""What ``apply`` says beyond accepted/refused: legacy policies as they read
today, and DestinationRule TLS settings that are not built yet. Resources
come from YAML through the real parser."""

from __future__ import annotations

import yaml

from mizzen.api import parse_text
from mizzen.api.meshconfig import MeshConfig
from mizzen.api.resources import PeerAuthentication, Resource
from mizzen.mesh.notes import apply_notes, mixer_refusals

SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 8080}]
"""

POLICY = """\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: reviews-mtls, namespace: shop}
spec:
  targets: [{name: reviews}]
  peers: [{mtls: {}}]
"""

NAMESPACE_POLICY = """\
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: shop}
spec:
  peers: [{mtls: {mode: PERMISSIVE}}]
"""

MESH_POLICY = """\
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata: {name: default}
spec:
  peers: [{mtls: {}}]
"""

DESTINATION_RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 9080}
      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}
    - port: {number: 9081}
      tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}
      portLevelSettings:
      - port: {number: 9080}
        tls: {mode: SIMPLE}
"""

QUIET_RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: shop}
spec:
  host: ratings
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {tls: {mode: DISABLE}}
  - name: v2
    labels: {version: v2}
"""


def load(*docs: str) -> tuple[Resource, ...]:
    result = parse_text("---\n".join(docs), "apply.yaml")
    assert not result.errors, result.errors
    return result.resources


def _modern(note: str) -> list[PeerAuthentication]:
    """The YAML after the first line of a legacy note, read back by Mizzen."""
    head, _, body = note.partition("\n")
    assert head.endswith("enforced as this PeerAuthentication; write it instead:"), head
    assert yaml.safe_load(body)["apiVersion"] == "security.istio.io/v1"
    result = parse_text(body, "modern.yaml")
    assert not result.errors and not result.warnings, (result.errors, result.warnings)
    objs = [r.obj for r in result.resources if isinstance(r.obj, PeerAuthentication)]
    assert len(objs) == len(result.resources)
    return objs


def test_targeted_policy_note_holds_the_modern_yaml() -> None:
    stored = load(SERVICE, POLICY)
    (note,) = apply_notes(stored[1:], stored, MeshConfig())
    assert note.startswith("apply.yaml:1: Policy shop/reviews-mtls: enforced as this")
    (pa,) = _modern(note)
    assert (pa.meta.namespace, pa.meta.name) == ("shop", "reviews-mtls-reviews")
    assert dict(pa.selector or {}) == {"app": "reviews"}
    assert pa.mode == "STRICT"


def test_namespace_policy_note() -> None:
    stored = load(NAMESPACE_POLICY)
    (note,) = apply_notes(stored, stored, MeshConfig())
    assert note.startswith("apply.yaml:0: Policy shop/default: enforced as this")
    (pa,) = _modern(note)
    assert (pa.meta.namespace, pa.meta.name, pa.mode) == ("shop", "default", "PERMISSIVE")
    assert pa.selector is None


def test_mesh_policy_lands_in_the_meshs_root_namespace() -> None:
    stored = load(MESH_POLICY)
    (note,) = apply_notes(stored, stored, MeshConfig(root_namespace="mesh-root"))
    assert note.startswith("apply.yaml:0: MeshPolicy default: enforced as this")
    (pa,) = _modern(note)
    assert (pa.meta.namespace, pa.meta.name, pa.mode) == ("mesh-root", "default", "STRICT")


def test_policy_whose_service_is_missing_says_so_and_offers_no_yaml() -> None:
    stored = load(POLICY)
    (note,) = apply_notes(stored, stored, MeshConfig())
    assert note.startswith("apply.yaml:0: Policy shop/reviews-mtls: ")
    assert "shop/reviews, which does not exist" in note
    assert "apiVersion" not in note


def test_only_applied_resources_get_notes() -> None:
    stored = load(SERVICE, POLICY, DESTINATION_RULE)
    assert apply_notes(stored[:1], stored, MeshConfig()) == []
    assert apply_notes((), stored, MeshConfig()) == []


def test_destination_rule_origination_is_not_built_yet_with_the_field_path() -> None:
    stored = load(DESTINATION_RULE)
    notes = apply_notes(stored, stored, MeshConfig())
    label = "apply.yaml:0: DestinationRule shop/reviews"
    tail = (
        " (TLS origination with your own certificates) is not built yet: this traffic is "
        "sent without TLS; use ISTIO_MUTUAL inside the mesh"
    )
    assert notes == [
        f"{label}: spec.trafficPolicy.tls.mode: SIMPLE{tail}",
        f"{label}: spec.trafficPolicy.portLevelSettings[0].tls.mode: MUTUAL{tail}",
        f"{label}: spec.subsets[1].trafficPolicy.tls.mode: MUTUAL{tail}",
        f"{label}: spec.subsets[1].trafficPolicy.portLevelSettings[0].tls.mode: SIMPLE{tail}",
    ]


def test_istio_mutual_and_disable_are_quiet() -> None:
    stored = load(QUIET_RULE)
    assert apply_notes(stored, stored, MeshConfig()) == []


def _deployment(name: str, app: str, service_account: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: tutorial}}
spec:
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}}}}}
    spec:
      serviceAccountName: {service_account}
      containers: [{{name: c, image: x, command: [sleep]}}]
"""


WHITELIST = """\
apiVersion: config.istio.io/v1alpha2
kind: listchecker
metadata: {name: preferencewhitelist, namespace: tutorial}
spec: {overrides: [recommendation], blacklist: false}
---
apiVersion: config.istio.io/v1alpha2
kind: listentry
metadata: {name: preferencesource, namespace: tutorial}
spec: {value: 'source.labels["app"]'}
---
apiVersion: config.istio.io/v1alpha2
kind: rule
metadata: {name: checkfromcustomer, namespace: tutorial}
spec:
  match: destination.labels["app"] == "preference"
  actions:
  - handler: preferencewhitelist.listchecker
    instances: [preferencesource.listentry]
"""


def _resources(text: str) -> list[Resource]:
    result = parse_text(text, "t.yaml")
    assert not result.errors, result.errors
    return list(result.resources)


def test_a_mixer_whitelist_prints_its_authorization_policy() -> None:
    stored = _resources(
        _deployment("recommendation", "recommendation", "recommendation")
        + "---\n"
        + _deployment("customer", "customer", "customer")
        + "---\n"
        + WHITELIST
    )
    applied = [r for r in stored if r.gvk.group == "config.istio.io"]
    notes = "\n".join(apply_notes(applied, stored, MeshConfig()))
    assert "rule tutorial/checkfromcustomer" in notes
    printed = notes.split("write it instead:\n", 1)[1]
    policy = next(d for d in yaml.safe_load_all(printed) if d)
    assert policy["kind"] == "AuthorizationPolicy"
    assert policy["spec"]["selector"] == {"matchLabels": {"app": "preference"}}
    assert policy["spec"]["rules"] == [
        {"from": [{"source": {"principals": ["cluster.local/ns/tutorial/sa/recommendation"]}}]}
    ]
    assert mixer_refusals(applied, stored, MeshConfig()) == {}


def test_a_whitelist_identity_cannot_tell_apart_is_refused_whole() -> None:
    # customer shares recommendation's service account: the whitelist cannot
    # be enforced by identity without letting customer in too.
    stored = _resources(
        _deployment("recommendation", "recommendation", "shared")
        + "---\n"
        + _deployment("customer", "customer", "shared")
    )
    applied = _resources(WHITELIST)
    refused = mixer_refusals(applied, stored, MeshConfig())
    assert list(refused) == [r.key for r in applied if r.gvk.kind == "rule"]
    reason = next(iter(refused.values()))
    assert "shared" in reason and "serviceAccountName" in reason, reason


def test_authorization_notes_say_what_will_not_work() -> None:
    stored = _resources(
        """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint, namespace: shop}
spec:
  targetRefs: [{kind: Service, group: "", name: reviews}]
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  action: CUSTOM
  provider: {name: missing}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  jwtRules:
  - {issuer: a, jwksUri: "http://keys.example.test/jwks.json"}
  - {issuer: b}
"""
    )
    notes = apply_notes(stored, stored, MeshConfig())
    assert len(notes) == 4, notes
    assert "applies to no workload" in notes[0]
    assert "'missing' is not declared" in notes[1] and "denied" in notes[1]
    assert "spec.jwtRules[0].jwksUri" in notes[2] and "401" in notes[2]
    assert "spec.jwtRules[1]" in notes[3] and "OpenID discovery" in notes[3]
