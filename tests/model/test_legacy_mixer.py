"""Mixer list checks and legacy origins (seed 004) to AuthorizationPolicy and
RequestAuthentication, and the security.istio.io/v1 YAML printed for them."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from mizzen.api import parse_text
from mizzen.api.parse_mixer import build_mixer, check_mixer
from mizzen.api.resources import (
    AuthorizationPolicy,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    ClaimToHeader,
    JWTHeader,
    JWTRule,
    LegacyAuthenticationPolicy,
    LegacyTarget,
    MixerAction,
    MixerListChecker,
    MixerListEntry,
    MixerRule,
    ObjectMeta,
    PolicyTargetRef,
    RequestAuthentication,
    Service,
    ServicePort,
)
from mizzen.model.legacy_mixer import (
    MeshWorkload,
    MixerTranslation,
    modern_documents,
    translate_mixer,
)
from mizzen.model.legacy_origins import origins_to_modern

SEED = (
    Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    / "seeds"
    / "004_b60d42e7b0fa9090.txt"
)
needs_seed = pytest.mark.skipif(not SEED.is_file(), reason="shared seed not present")

NS = "tutorial"

# Seed 004, "Policy Enforcement", exactly as written there.
SEED_MIXER = """\
apiVersion: "config.istio.io/v1alpha2"
kind: listchecker
metadata:
  name: preferencewhitelist
spec:
  overrides: ["recommendation"]
  blacklist: false
---
apiVersion: "config.istio.io/v1alpha2"
kind: listentry
metadata:
  name: preferencesource
spec:
  value: source.labels["app"]
---
apiVersion: "config.istio.io/v1alpha2"
kind: rule
metadata:
  name: checkfromcustomer
spec:
  match: destination.labels["app"] == "preference"
  actions:
  - handler: preferencewhitelist.listchecker
    instances:
    - preferencesource.listentry
"""

Mixer = MixerListChecker | MixerListEntry | MixerRule


def load(
    text: str, ns: str = NS
) -> tuple[list[MixerListChecker], list[MixerListEntry], list[MixerRule]]:
    checkers, entries, rules = [], [], []
    for doc in yaml.safe_load_all(text):
        assert check_mixer(doc["kind"], doc.get("spec")) == []
        meta = doc["metadata"]
        obj = build_mixer(
            doc["kind"], ObjectMeta(meta["name"], meta.get("namespace", ns)), doc["spec"]
        )
        if isinstance(obj, MixerListChecker):
            checkers.append(obj)
        elif isinstance(obj, MixerListEntry):
            entries.append(obj)
        else:
            rules.append(obj)
    return checkers, entries, rules


def tutorial_pods(sa: str | None = None) -> list[MeshWorkload]:
    """The istio-tutorial pods; each app on its own ServiceAccount unless ``sa``."""

    def pod(name: str, app: str, **labels: str) -> MeshWorkload:
        return MeshWorkload(name, NS, {"app": app, **labels}, sa or app)

    return [
        pod("customer", "customer", version="v1"),
        pod("preference", "preference", version="v1"),
        pod("recommendation-v1", "recommendation", version="v1"),
        pod("recommendation-v2", "recommendation", version="v2"),
    ]


def one(
    text: str, workloads: Sequence[MeshWorkload] | None = None, **kwargs: Any
) -> MixerTranslation:
    checkers, entries, rules = load(text)
    (result,) = translate_mixer(
        checkers, entries, rules, tutorial_pods() if workloads is None else workloads, **kwargs
    )
    return result


def docs(objs: Sequence[AuthorizationPolicy | RequestAuthentication]) -> list[Any]:
    return list(yaml.safe_load_all(modern_documents(objs)))


def meta(name: str, ns: str = NS) -> ObjectMeta:
    return ObjectMeta(name, ns)


def allow(
    name: str, selector: dict[str, str] | None, *sources: AuthzSource, ns: str = NS
) -> AuthorizationPolicy:
    rules = (AuthzRule(sources=sources),) if sources else ()
    return AuthorizationPolicy(meta(name, ns), "ALLOW", rules, selector)


def deny(
    name: str, selector: dict[str, str] | None, *sources: AuthzSource, ns: str = NS
) -> AuthorizationPolicy:
    return AuthorizationPolicy(meta(name, ns), "DENY", (AuthzRule(sources=sources),), selector)


def whitelist(
    overrides: str = '["recommendation"]',
    value: str = 'source.labels["app"]',
    match: str = 'destination.labels["app"] == "preference"',
    extra: str = "",
) -> str:
    """The seed's three resources with parts replaced."""
    return f"""\
kind: listchecker
metadata: {{name: preferencewhitelist}}
spec:
  overrides: {overrides}
{extra}---
kind: listentry
metadata: {{name: preferencesource}}
spec:
  value: {yaml.safe_dump(value, default_style='"').strip()}
---
kind: rule
metadata: {{name: checkfromcustomer}}
spec:
  match: {yaml.safe_dump(match, default_style='"').strip()}
  actions:
  - handler: preferencewhitelist.listchecker
    instances: [preferencesource.listentry]
"""


def load_seed_text(text: str) -> str:
    # check_mixer/build_mixer take the spec; apiVersion is the loader's business.
    return "\n".join(line for line in text.splitlines() if not line.startswith("apiVersion"))


RECOMMENDATION = "cluster.local/ns/tutorial/sa/recommendation"
SEED_POLICY = allow(
    "checkfromcustomer-preferencewhitelist",
    {"app": "preference"},
    AuthzSource(principals=(RECOMMENDATION,)),
)
SEED_YAML = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "checkfromcustomer-preferencewhitelist", "namespace": "tutorial"},
    "spec": {
        "selector": {"matchLabels": {"app": "preference"}},
        "action": "ALLOW",
        "rules": [{"from": [{"source": {"principals": [RECOMMENDATION]}}]}],
    },
}


# ---------------------------------------------------------------------------
# Seed 004


def test_seed_whitelist_becomes_one_allow_policy() -> None:
    result = one(load_seed_text(SEED_MIXER))
    assert result.refusal == ""
    assert result.policies == (SEED_POLICY,)
    assert docs(result.policies) == [SEED_YAML]
    notes = " ".join(result.notes)
    assert "403 with body `RBAC: access denied`" in notes
    assert (
        "`PERMISSION_DENIED:preferencewhitelist.listchecker.tutorial:<value> is not whitelisted`"
        in notes
    )
    assert "ALLOW policy: it refuses every request to the selected workloads" in notes
    assert "mutual-TLS identity" in notes


@needs_seed
def test_seed_file_whitelist_translates() -> None:
    blocks = re.split(r"^~~~[ \t]*$", SEED.read_text(encoding="utf-8"), flags=re.M)[1::2]
    (block,) = [b for b in blocks if "kind: listchecker" in b]
    assert one(load_seed_text(block)).policies == (SEED_POLICY,)


def test_seed_whitelist_with_every_pod_on_default_is_refused() -> None:
    result = one(load_seed_text(SEED_MIXER), tutorial_pods(sa="default"))
    assert result.policies == ()
    assert result.refusal == (
        "rule tutorial/checkfromcustomer, actions[0]: listchecker preferencewhitelist allows"
        ' only callers with source.labels["app"] in [recommendation], but an'
        " AuthorizationPolicy tells callers apart only by their ServiceAccount:"
        " ServiceAccount tutorial/default is used by recommendation-v1 (app=recommendation)"
        " and recommendation-v2 (app=recommendation), which are listed, and by customer"
        " (app=customer) and preference (app=preference), so allowing it would also let in"
        " customer and preference. Give recommendation-v1 and recommendation-v2 a"
        " ServiceAccount of their own (spec.serviceAccountName in the pod template) and"
        " apply again; nothing of this rule is enforced until then."
    )
    assert result.notes == ()


def test_shared_account_in_another_namespace_does_not_matter() -> None:
    pods = [*tutorial_pods(), MeshWorkload("other", "shop", {"app": "other"}, "recommendation")]
    assert one(load_seed_text(SEED_MIXER), pods).policies == (SEED_POLICY,)


def test_trust_domain_is_a_parameter() -> None:
    result = one(load_seed_text(SEED_MIXER), trust_domain="example.org")
    assert result.policies[0].rules[0].sources[0].principals == (
        "example.org/ns/tutorial/sa/recommendation",
    )


def test_listed_pods_of_other_namespaces_are_callers_too() -> None:
    pods = [*tutorial_pods(), MeshWorkload("rec", "shop", {"app": "recommendation"}, "rec")]
    result = one(load_seed_text(SEED_MIXER), pods)
    assert result.policies[0].rules[0].sources[0].principals == (
        "cluster.local/ns/shop/sa/rec",
        RECOMMENDATION,
    )


# ---------------------------------------------------------------------------
# Blacklists, IPs, principals, namespaces


def test_blacklist_becomes_deny() -> None:
    result = one(whitelist('["customer"]', extra="  blacklist: true\n"))
    assert result.policies == (
        deny(
            "checkfromcustomer-preferencewhitelist",
            {"app": "preference"},
            AuthzSource(principals=("cluster.local/ns/tutorial/sa/customer",)),
        ),
    )
    notes = " ".join(result.notes)
    assert "<value> is blacklisted`" in notes
    assert "not refused even when listed" in notes
    assert "ALLOW policy" not in notes


def test_blacklist_sharing_an_account_is_refused_too() -> None:
    pods = [*tutorial_pods(), MeshWorkload("batch", NS, {"app": "batch"}, "customer")]
    result = one(whitelist('["customer"]', extra="  blacklist: true\n"), pods)
    assert result.policies == ()
    assert "so refusing it would also refuse batch." in result.refusal


@pytest.mark.parametrize("value", ["source.ip", 'source.ip | ip("0.0.0.0")'])
def test_source_ip_becomes_ip_blocks(value: str) -> None:
    text = whitelist('["10.57.0.0/16", "192.168.1.7"]', value, extra="  entryType: IP_ADDRESSES\n")
    result = one(text)
    assert result.policies == (
        allow(
            "checkfromcustomer-preferencewhitelist",
            {"app": "preference"},
            AuthzSource(ip_blocks=("10.57.0.0/16", "192.168.1.7")),
        ),
    )
    assert docs(result.policies)[0]["spec"]["rules"] == [
        {"from": [{"source": {"ipBlocks": ["10.57.0.0/16", "192.168.1.7"]}}]}
    ]
    assert "mutual-TLS" not in " ".join(result.notes)


def test_ip_blacklist_becomes_deny_ip_blocks() -> None:
    text = whitelist(
        '["10.0.0.0/8"]', "source.ip", extra="  entryType: IP_ADDRESSES\n  blacklist: true\n"
    )
    result = one(text)
    assert result.policies == (
        deny(
            "checkfromcustomer-preferencewhitelist",
            {"app": "preference"},
            AuthzSource(ip_blocks=("10.0.0.0/8",)),
        ),
    )


def test_entry_type_must_fit_the_attribute() -> None:
    result = one(whitelist('["10.0.0.1"]', "source.ip"))
    assert result.policies == ()
    assert "set its entryType to IP_ADDRESSES" in result.refusal
    result = one(whitelist(extra="  entryType: IP_ADDRESSES\n", overrides='["10.0.0.1"]'))
    assert "set its entryType to STRINGS" in result.refusal


def test_case_insensitive_labels_are_folded() -> None:
    result = one(whitelist('["Recommendation"]', extra="  entryType: CASE_INSENSITIVE_STRINGS\n"))
    assert result.policies == (SEED_POLICY,)
    assert one(whitelist('["Recommendation"]')).policies == (
        allow("checkfromcustomer-preferencewhitelist", {"app": "preference"}),
    )


def test_principals_are_listed_as_they_are() -> None:
    text = whitelist(
        '["spiffe://cluster.local/ns/tutorial/sa/customer", "cluster.local/ns/a/sa/b"]',
        "source.principal",
    )
    assert one(text).policies[0].rules[0].sources == (
        AuthzSource(
            principals=("cluster.local/ns/tutorial/sa/customer", "cluster.local/ns/a/sa/b")
        ),
    )
    result = one(whitelist('["cluster.local/ns/*/sa/x"]', "source.user"))
    assert result.policies == ()
    assert "reads it as a wildcard" in result.refusal
    ci = whitelist('["a"]', "source.principal", extra="  entryType: CASE_INSENSITIVE_STRINGS\n")
    assert "matched exactly" in one(ci).refusal


def test_namespaces() -> None:
    result = one(
        whitelist(
            '["Tutorial", "shop"]',
            "source.namespace",
            extra="  entryType: CASE_INSENSITIVE_STRINGS\n",
        )
    )
    assert result.policies[0].rules[0].sources == (AuthzSource(namespaces=("tutorial", "shop")),)


def test_label_default_that_is_listed_is_refused() -> None:
    result = one(whitelist('["recommendation", "unknown"]', 'source.labels["app"] | "unknown"'))
    assert "callers outside the mesh" in result.refusal
    assert one(whitelist(value='source.labels["app"] | "unknown"')).policies == (SEED_POLICY,)


# ---------------------------------------------------------------------------
# Nobody listed, missing references


def test_whitelist_that_lists_nobody_allows_nothing() -> None:
    result = one(whitelist('["reviews"]'))
    assert result.policies == (
        allow("checkfromcustomer-preferencewhitelist", {"app": "preference"}),
    )
    assert docs(result.policies)[0]["spec"] == {
        "selector": {"matchLabels": {"app": "preference"}},
        "action": "ALLOW",
    }
    assert (
        'No caller has source.labels["app"] in [reviews] (listchecker'
        " tutorial/preferencewhitelist), so AuthorizationPolicy"
        " tutorial/checkfromcustomer-preferencewhitelist allows nothing"
    ) in " ".join(result.notes)
    assert one(whitelist("[]")).policies == result.policies


def test_blacklist_that_lists_nobody_makes_no_policy() -> None:
    result = one(whitelist('["reviews"]', extra="  blacklist: true\n"))
    assert result.policies == ()
    assert result.refusal == ""
    assert "refuses nobody now, so no AuthorizationPolicy was made" in " ".join(result.notes)


def test_missing_handler_and_instance_are_notes() -> None:
    checkers, entries, rules = load(load_seed_text(SEED_MIXER))
    (result,) = translate_mixer([], entries, rules, tutorial_pods())
    assert result.policies == ()
    assert result.refusal == ""
    assert result.notes == (
        "rule tutorial/checkfromcustomer, actions[0] uses handler"
        " 'preferencewhitelist.listchecker', which is not a listchecker Mizzen knows (it does"
        " not exist, or is of a kind Mizzen does not translate); that action is not enforced"
        " until the listchecker exists, as in Mixer.",
    )
    (result,) = translate_mixer(checkers, [], rules, tutorial_pods())
    assert result.policies == ()
    assert len(result.notes) == 2
    assert "uses instance 'preferencesource.listentry'" in result.notes[0]
    assert "has no listentry to check" in result.notes[1]


@pytest.mark.parametrize(
    ("handler", "instance", "found"),
    [
        ("preferencewhitelist", "preferencesource", True),
        ("preferencewhitelist.handler", "preferencesource.instance", True),
        ("preferencewhitelist.tutorial", "preferencesource.tutorial", True),
        ("preferencewhitelist.listchecker.tutorial", "preferencesource.listentry.tutorial", True),
        ("preferencewhitelist.listchecker.shop", "preferencesource.listentry", False),
        ("preferencewhitelist.denier", "preferencesource.listentry", False),
        ("preferencewhitelist.listchecker", "preferencesource.metric", False),
    ],
)
def test_references(handler: str, instance: str, found: bool) -> None:
    checkers, entries, (rule,) = load(load_seed_text(SEED_MIXER))
    rule = MixerRule(rule.meta, rule.match, (MixerAction(handler, (instance,)),))
    (result,) = translate_mixer(checkers, entries, [rule], tutorial_pods())
    assert (result.policies == (SEED_POLICY,)) is found


def test_references_across_namespaces() -> None:
    checker = MixerListChecker(meta("wl", "lists"), ("recommendation",))
    entry = MixerListEntry(meta("src", "lists"), 'source.labels["app"]')
    rule = MixerRule(meta("r"), "", (MixerAction("wl.listchecker.lists", ("src.lists",)),))
    (result,) = translate_mixer([checker], [entry], [rule], tutorial_pods())
    assert result.policies == (allow("r-wl", None, AuthzSource(principals=(RECOMMENDATION,))),)


# ---------------------------------------------------------------------------
# Scope: namespaces and the root namespace


def rule_in(
    ns: str, match: str, name: str = "r"
) -> tuple[MixerListChecker, MixerListEntry, MixerRule]:
    return (
        MixerListChecker(meta("wl", ns), ("recommendation",)),
        MixerListEntry(meta("src", ns), 'source.labels["app"]'),
        MixerRule(meta(name, ns), match, (MixerAction("wl", ("src",)),)),
    )


@pytest.mark.parametrize(
    ("ns", "match", "policy_ns", "selector"),
    [
        (NS, "", NS, None),
        (NS, 'destination.namespace == "tutorial"', NS, None),
        ("istio-system", "", "istio-system", None),
        ("istio-system", 'destination.labels["app"] == "x"', "istio-system", {"app": "x"}),
        (
            "istio-system",
            'destination.namespace == "shop" && destination.labels["a"] == "b"',
            "shop",
            {"a": "b"},
        ),
    ],
)
def test_scope(ns: str, match: str, policy_ns: str, selector: dict[str, str] | None) -> None:
    checker, entry, rule = rule_in(ns, match)
    (result,) = translate_mixer([checker], [entry], [rule], tutorial_pods())
    assert result.policies == (
        allow("r-wl", selector, AuthzSource(principals=(RECOMMENDATION,)), ns=policy_ns),
    )


def test_rule_of_a_namespace_never_saw_another_namespace() -> None:
    checker, entry, rule = rule_in(NS, 'destination.namespace == "shop"')
    (result,) = translate_mixer([checker], [entry], [rule], tutorial_pods())
    assert result.policies == ()
    assert result.refusal == ""
    assert result.notes == (
        "rule tutorial/r requires destination.namespace == 'shop', but a rule outside"
        " istio-system only ever saw requests to workloads of its own namespace 'tutorial':"
        " it never matched, so nothing was made from it.",
    )
    (result,) = translate_mixer([checker], [entry], [rule], tutorial_pods(), root_namespace=NS)
    assert result.policies[0].meta.namespace == "shop"


def test_untranslatable_match_is_a_refusal() -> None:
    checker, entry, rule = rule_in(NS, 'source.labels["app"] == "x"')
    (result,) = translate_mixer([checker], [entry], [rule], tutorial_pods())
    assert result.refusal.startswith(
        'rule tutorial/r: its match \'source.labels["app"] == "x"\' cannot be translated:'
    )


# ---------------------------------------------------------------------------
# Several actions, instances and rules


def test_each_action_gives_its_own_policy() -> None:
    checkers = [
        MixerListChecker(meta("wl"), ("recommendation",)),
        MixerListChecker(meta("ips"), ("10.0.0.0/8",), blacklist=True, entry_type="IP_ADDRESSES"),
    ]
    entries = [
        MixerListEntry(meta("src"), 'source.labels["app"]'),
        MixerListEntry(meta("ip"), "source.ip"),
    ]
    rule = MixerRule(
        meta("r"),
        'destination.labels["app"] == "preference"',
        (MixerAction("wl", ("src",)), MixerAction("ips", ("ip",))),
    )
    (result,) = translate_mixer(checkers, entries, [rule], tutorial_pods())
    selector = {"app": "preference"}
    assert result.policies == (
        allow("r-wl", selector, AuthzSource(principals=(RECOMMENDATION,))),
        deny("r-ips", selector, AuthzSource(ip_blocks=("10.0.0.0/8",))),
    )


def test_same_blacklist_twice_gets_the_action_index() -> None:
    checker = MixerListChecker(meta("bl"), ("customer", "shop"), blacklist=True)
    entry = MixerListEntry(meta("src"), 'source.labels["app"]')
    entry2 = MixerListEntry(meta("ns"), "source.namespace")
    rule = MixerRule(meta("r"), "", (MixerAction("bl", ("src",)), MixerAction("bl", ("ns",))))
    (result,) = translate_mixer([checker], [entry, entry2], [rule], tutorial_pods())
    assert result.policies == (
        deny("r-bl", None, AuthzSource(principals=("cluster.local/ns/tutorial/sa/customer",))),
        deny("r-bl-1", None, AuthzSource(namespaces=("customer", "shop"))),
    )


def test_whitelist_instances_must_all_pass() -> None:
    checker = MixerListChecker(meta("wl"), ("recommendation", "v2"))
    entries = [
        MixerListEntry(meta("app"), 'source.labels["app"]'),
        MixerListEntry(meta("version"), 'source.labels["version"]'),
    ]
    pods = [
        MeshWorkload("recommendation-v1", NS, {"app": "recommendation", "version": "v1"}, "rec-v1"),
        MeshWorkload("recommendation-v2", NS, {"app": "recommendation", "version": "v2"}, "rec-v2"),
        MeshWorkload("customer", NS, {"app": "customer", "version": "v2"}, "customer"),
    ]
    rule = MixerRule(meta("r"), "", (MixerAction("wl", ("app", "version")),))
    (result,) = translate_mixer([checker], entries, [rule], pods)
    assert result.policies == (
        allow("r-wl", None, AuthzSource(principals=("cluster.local/ns/tutorial/sa/rec-v2",))),
    )


def test_blacklist_instances_each_refuse() -> None:
    checker = MixerListChecker(meta("bl"), ("customer", "v2"), blacklist=True)
    entries = [
        MixerListEntry(meta("app"), 'source.labels["app"]'),
        MixerListEntry(meta("version"), 'source.labels["version"]'),
    ]
    pods = [
        MeshWorkload("customer", NS, {"app": "customer", "version": "v1"}, "customer"),
        MeshWorkload("recommendation-v1", NS, {"app": "recommendation", "version": "v1"}, "v1"),
        MeshWorkload("recommendation-v2", NS, {"app": "recommendation", "version": "v2"}, "v2"),
    ]
    rule = MixerRule(meta("r"), "", (MixerAction("bl", ("app", "version", "app.listentry")),))
    (result,) = translate_mixer([checker], entries, [rule], pods)
    assert result.policies == (
        deny(
            "r-bl",
            None,
            AuthzSource(principals=("cluster.local/ns/tutorial/sa/customer",)),
            AuthzSource(principals=("cluster.local/ns/tutorial/sa/v2",)),
        ),
    )
    # recommendation-v1 shares the ServiceAccount of a listed version: refused.
    (result,) = translate_mixer([checker], entries, [rule], tutorial_pods())
    assert "ServiceAccount tutorial/recommendation is used by recommendation-v2" in result.refusal


def test_one_refused_action_refuses_the_whole_rule() -> None:
    checkers = [
        MixerListChecker(meta("ok"), ("10.0.0.0/8",), blacklist=True, entry_type="IP_ADDRESSES"),
        MixerListChecker(meta("remote"), provider_url="http://lists/x"),
        MixerListChecker(meta("regex"), ("a.*",), entry_type="REGEX"),
    ]
    entries = [
        MixerListEntry(meta("ip"), "source.ip"),
        MixerListEntry(meta("src"), 'source.labels["app"]'),
    ]
    rule = MixerRule(
        meta("r"),
        "",
        (
            MixerAction("ok", ("ip",)),
            MixerAction("remote", ("src",)),
            MixerAction("regex", ("src",)),
        ),
    )
    (result,) = translate_mixer(checkers, entries, [rule], tutorial_pods())
    assert result.policies == ()
    assert (
        "actions[1]: listchecker tutorial/remote fetches its list from 'http://lists/x'"
        in result.refusal
    )
    assert "actions[2]: listchecker tutorial/regex has entryType REGEX" in result.refusal
    assert result.notes == ()


def test_overlapping_whitelists_are_refused() -> None:
    c1, e1, r1 = rule_in(NS, 'destination.labels["app"] == "preference"', "first")
    c2 = MixerListChecker(meta("wl2"), ("customer",))
    r2 = MixerRule(
        meta("second"), 'destination.labels["version"] == "v1"', (MixerAction("wl2", ("src",)),)
    )
    results = translate_mixer([c1, c2], [e1], [r1, r2], tutorial_pods())
    assert [r.policies for r in results] == [(), ()]
    assert results[0].refusal == (
        "rule tutorial/first cannot be translated: its whitelist policy first-wl and the"
        " whitelist policy second-wl2 (from rule tutorial/second) may apply to the same"
        " workloads. Mixer let a request through only when every whitelist allowed it, while"
        " ALLOW policies add up (a caller allowed by either gets in). Merge the lists into one"
        " listchecker used by one rule, or write one AuthorizationPolicy that lists only the"
        " callers every whitelist allows; nothing of this rule is enforced until then."
    )
    assert "(from rule tutorial/first)" in results[1].refusal


@pytest.mark.parametrize(
    ("ns2", "match2", "overlap"),
    [
        (NS, 'destination.labels["app"] == "customer"', False),
        ("shop", 'destination.labels["app"] == "preference"', False),
        ("istio-system", 'destination.labels["app"] == "preference"', True),
        ("istio-system", 'destination.namespace == "shop"', False),
        (NS, "", True),
    ],
)
def test_whitelist_overlap(ns2: str, match2: str, overlap: bool) -> None:
    c1, e1, r1 = rule_in(NS, 'destination.labels["app"] == "preference"', "first")
    c2, e2, r2 = rule_in(ns2, match2, "second")
    if ns2 == NS:
        c2, e2 = MixerListChecker(meta("wl2"), ("customer",)), e1
        r2 = MixerRule(r2.meta, match2, (MixerAction("wl2", ("src",)),))
    results = translate_mixer([c1, c2], [e1, e2], [r1, r2], tutorial_pods())
    assert all(bool(r.refusal) is overlap for r in results)


def test_two_whitelists_in_one_rule_are_refused() -> None:
    checkers = [
        MixerListChecker(meta("a"), ("recommendation",)),
        MixerListChecker(meta("b"), ("customer",)),
    ]
    entry = MixerListEntry(meta("src"), 'source.labels["app"]')
    rule = MixerRule(meta("r"), "", (MixerAction("a", ("src",)), MixerAction("b", ("src",))))
    (result,) = translate_mixer(checkers, [entry], [rule], tutorial_pods())
    assert result.policies == ()
    assert "its whitelist policies r-a and r-b may apply to the same workloads" in result.refusal


def test_a_blacklist_does_not_clash_with_a_whitelist() -> None:
    c1, e1, r1 = rule_in(NS, "", "first")
    c2 = MixerListChecker(meta("bl"), ("customer",), blacklist=True)
    r2 = MixerRule(meta("second"), "", (MixerAction("bl", ("src",)),))
    results = translate_mixer([c1, c2], [e1], [r1, r2], tutorial_pods())
    assert [p.action for r in results for p in r.policies] == ["ALLOW", "DENY"]


# ---------------------------------------------------------------------------
# Origins (legacy end-user JWT)

KEYCLOAK = "https://keycloak.tutorial:8080/auth/realms/istio"
SEED_JWT = JWTRule(
    issuer=KEYCLOAK,
    audiences=("preference",),
    jwks_uri=f"{KEYCLOAK}/protocol/openid-connect/certs",
)
PREFERENCE = Service(meta("preference"), (ServicePort(9000, "http", 8080),), {"app": "preference"})


def legacy(
    *targets: LegacyTarget,
    name: str = "preference-jwt",
    optional: bool = False,
    jwts: tuple[JWTRule, ...] = (SEED_JWT,),
    use_origin: bool = True,
) -> LegacyAuthenticationPolicy:
    return LegacyAuthenticationPolicy(
        meta(name), "Policy", "STRICT", targets, jwts, optional, use_origin
    )


def test_seed_origins_become_request_authentication_and_deny() -> None:
    objs, notes = origins_to_modern(legacy(LegacyTarget("preference", (9000,))), [PREFERENCE])
    selector = {"app": "preference"}
    assert objs == (
        RequestAuthentication(meta("preference-jwt-preference"), (SEED_JWT,), selector),
        AuthorizationPolicy(
            meta("preference-jwt-preference-require-jwt"),
            "DENY",
            (
                AuthzRule(
                    sources=(AuthzSource(not_request_principals=(f"{KEYCLOAK}/*",)),),
                    operations=(AuthzOperation(ports=("8080",)),),
                ),
            ),
            selector,
        ),
    )
    assert docs(objs) == [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "preference-jwt-preference", "namespace": "tutorial"},
            "spec": {
                "selector": {"matchLabels": {"app": "preference"}},
                "jwtRules": [
                    {
                        "issuer": KEYCLOAK,
                        "audiences": ["preference"],
                        "jwksUri": f"{KEYCLOAK}/protocol/openid-connect/certs",
                    }
                ],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "preference-jwt-preference-require-jwt", "namespace": "tutorial"},
            "spec": {
                "selector": {"matchLabels": {"app": "preference"}},
                "action": "DENY",
                "rules": [
                    {
                        "from": [{"source": {"notRequestPrincipals": [f"{KEYCLOAK}/*"]}}],
                        "to": [{"operation": {"ports": ["8080"]}}],
                    }
                ],
            },
        },
    ]
    text = " ".join(notes)
    assert "403 `RBAC: access denied`" in text
    assert "a port other than 8080 is now refused with 401" in text


@needs_seed
def test_seed_origins_fragment_through_the_loader() -> None:
    blocks = re.split(r"^~~~[ \t]*$", SEED.read_text(encoding="utf-8"), flags=re.M)[1::2]
    (fragment,) = [b for b in blocks if "origins:" in b]
    # The seed misspells principalBinding; the loader refuses that (tested in
    # tests/api), so the fragment is used with the intended field name.
    fragment = fragment.replace("principaBinding", "principalBinding")
    text = (
        "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\n"
        "metadata: {name: preference-jwt, namespace: tutorial}\n"
        + fragment.strip("\n")
        + "\n  targets:\n  - name: preference\n    ports:\n    - number: 9000\n"
    )
    result = parse_text(text, "seed.yaml")
    assert [str(e) for e in result.errors] == []
    (policy,) = [r.obj for r in result.resources]
    assert isinstance(policy, LegacyAuthenticationPolicy)
    objs, _ = origins_to_modern(policy, [PREFERENCE])
    expected, _ = origins_to_modern(legacy(LegacyTarget("preference", (9000,))), [PREFERENCE])
    assert objs == expected


def test_origins_without_targets_are_namespace_wide() -> None:
    objs, notes = origins_to_modern(legacy(name="default", use_origin=False), [])
    assert [(type(o).__name__, o.meta.name, o.meta.namespace, o.selector) for o in objs] == [
        ("RequestAuthentication", "default", NS, None),
        ("AuthorizationPolicy", "default-require-jwt", NS, None),
    ]
    deny_policy = objs[1]
    assert isinstance(deny_policy, AuthorizationPolicy)
    assert deny_policy.rules == (
        AuthzRule(sources=(AuthzSource(not_request_principals=(f"{KEYCLOAK}/*",)),)),
    )
    assert (
        "refuses every connection to a TCP port of every workload of namespace tutorial"
        in " ".join(notes)
    )


def test_mesh_policy_origins_go_to_the_root_namespace() -> None:
    mesh = LegacyAuthenticationPolicy(
        ObjectMeta("default", ""), "MeshPolicy", "STRICT", (), (SEED_JWT,)
    )
    objs, _ = origins_to_modern(mesh, [], root_namespace="mesh-root")
    assert [(o.meta.name, o.meta.namespace, o.selector) for o in objs] == [
        ("default", "mesh-root", None),
        ("default-require-jwt", "mesh-root", None),
    ]


def test_optional_origins_need_no_policy() -> None:
    objs, notes = origins_to_modern(legacy(optional=True, use_origin=False), [])
    assert objs == (RequestAuthentication(meta("preference-jwt"), (SEED_JWT,)),)
    assert notes == (
        "Policy tutorial/preference-jwt has originIsOptional: requests without a token still"
        " pass, as before; a request with an invalid token is now refused with 401, where"
        " Istio 1.x let it through.",
    )


def test_several_issuers_each_count() -> None:
    other = JWTRule(
        issuer="https://accounts.example.com", jwks_uri="https://accounts.example.com/k"
    )
    objs, _ = origins_to_modern(legacy(jwts=(SEED_JWT, other)), [])
    assert isinstance(objs[1], AuthorizationPolicy)
    assert objs[1].rules[0].sources[0].not_request_principals == (
        f"{KEYCLOAK}/*",
        "https://accounts.example.com/*",
    )


def test_no_origins_no_resources() -> None:
    assert origins_to_modern(legacy(jwts=(), use_origin=False), [PREFERENCE]) == ((), ())


def test_targets_that_cannot_be_mapped_are_notes() -> None:
    named = Service(meta("ratings"), (ServicePort(9080, "http", "http-port"),), {"app": "ratings"})
    headless = Service(meta("legacy"), (ServicePort(80),), None)
    objs, notes = origins_to_modern(
        legacy(
            LegacyTarget("missing"),
            LegacyTarget("legacy"),
            LegacyTarget("ratings", (9080,)),
            LegacyTarget("preference", ("grpc",)),
            LegacyTarget("preference", (9000,)),
            use_origin=False,
        ),
        [PREFERENCE, named, headless],
    )
    assert [o.meta.name for o in objs] == [
        "preference-jwt-preference",
        "preference-jwt-preference-require-jwt",
    ]
    text = " ".join(notes)
    assert "Service tutorial/missing, which does not exist" in text
    assert "Service tutorial/legacy, which has no selector" in text
    assert "named container port 'http-port'" in text
    assert "port named 'grpc' of Service tutorial/preference, which has no such port" in text
    assert "none of the ports listed for Service tutorial/ratings" in text


def test_whole_service_target_wins_over_ports() -> None:
    objs, _ = origins_to_modern(
        legacy(LegacyTarget("preference", (9000,)), LegacyTarget("preference"), use_origin=False),
        [PREFERENCE],
    )
    assert isinstance(objs[1], AuthorizationPolicy)
    assert objs[1].rules[0].operations == ()


# ---------------------------------------------------------------------------
# YAML printing


FULL_POLICY = AuthorizationPolicy(
    ObjectMeta("full", "shop", {"team": "a"}, {"note": "x"}),
    "DENY",
    (
        AuthzRule(
            sources=(
                AuthzSource(
                    principals=("p",),
                    not_principals=("np",),
                    request_principals=("rp",),
                    not_request_principals=("nrp",),
                    namespaces=("ns",),
                    not_namespaces=("nns",),
                    ip_blocks=("1.2.3.4",),
                    not_ip_blocks=("5.6.7.8/32",),
                    remote_ip_blocks=("9.9.9.9",),
                    not_remote_ip_blocks=("8.8.8.8",),
                ),
                AuthzSource(service_accounts=("sa",), not_service_accounts=("ns/sa",)),
            ),
            operations=(
                AuthzOperation(
                    hosts=("a.com",),
                    not_hosts=("b.com",),
                    ports=("80",),
                    not_ports=("8080",),
                    methods=("GET",),
                    not_methods=("POST",),
                    paths=("/a*",),
                    not_paths=("/b",),
                ),
            ),
            when=(AuthzCondition("request.headers[x]", ("yes",), ("no",)),),
        ),
        AuthzRule(),
    ),
    dry_run=True,
)


def test_printing_every_field() -> None:
    assert docs([FULL_POLICY]) == [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {
                "name": "full",
                "namespace": "shop",
                "labels": {"team": "a"},
                "annotations": {"note": "x", "istio.io/dry-run": "true"},
            },
            "spec": {
                "action": "DENY",
                "rules": [
                    {
                        "from": [
                            {
                                "source": {
                                    "principals": ["p"],
                                    "notPrincipals": ["np"],
                                    "requestPrincipals": ["rp"],
                                    "notRequestPrincipals": ["nrp"],
                                    "namespaces": ["ns"],
                                    "notNamespaces": ["nns"],
                                    "ipBlocks": ["1.2.3.4"],
                                    "notIpBlocks": ["5.6.7.8/32"],
                                    "remoteIpBlocks": ["9.9.9.9"],
                                    "notRemoteIpBlocks": ["8.8.8.8"],
                                }
                            },
                            {
                                "source": {
                                    "serviceAccounts": ["sa"],
                                    "notServiceAccounts": ["ns/sa"],
                                }
                            },
                        ],
                        "to": [
                            {
                                "operation": {
                                    "hosts": ["a.com"],
                                    "notHosts": ["b.com"],
                                    "ports": ["80"],
                                    "notPorts": ["8080"],
                                    "methods": ["GET"],
                                    "notMethods": ["POST"],
                                    "paths": ["/a*"],
                                    "notPaths": ["/b"],
                                }
                            }
                        ],
                        "when": [
                            {"key": "request.headers[x]", "values": ["yes"], "notValues": ["no"]}
                        ],
                    },
                    {},
                ],
            },
        }
    ]


CUSTOM = AuthorizationPolicy(
    meta("ext"),
    "CUSTOM",
    (AuthzRule(operations=(AuthzOperation(paths=("/admin",)),)),),
    target_refs=(
        PolicyTargetRef("Gateway", "gw", "gateway.networking.k8s.io"),
        PolicyTargetRef("Service", "svc"),
    ),
    provider="opa",
)
FULL_RA = RequestAuthentication(
    meta("jwt"),
    (
        JWTRule(
            issuer="iss",
            jwks='{"keys": []}',
            from_headers=(JWTHeader("Authorization", "Bearer "), JWTHeader("x-jwt")),
            from_params=("token",),
            from_cookies=("session",),
            forward_original_token=True,
            output_payload_to_header="x-payload",
            output_claim_to_headers=(ClaimToHeader("x-sub", "sub"),),
            timeout=1.5,
            space_delimited_claims=("roles",),
        ),
        JWTRule(issuer="other", timeout=0.25),
    ),
)


def test_printing_custom_target_refs_and_jwt_options() -> None:
    text = modern_documents([CUSTOM, FULL_RA])
    assert text.count("\n---\n") == 1
    assert docs([CUSTOM, FULL_RA]) == [
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "ext", "namespace": "tutorial"},
            "spec": {
                "targetRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
                    {"kind": "Service", "name": "svc"},
                ],
                "action": "CUSTOM",
                "provider": {"name": "opa"},
                "rules": [{"to": [{"operation": {"paths": ["/admin"]}}]}],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "RequestAuthentication",
            "metadata": {"name": "jwt", "namespace": "tutorial"},
            "spec": {
                "jwtRules": [
                    {
                        "issuer": "iss",
                        "jwks": '{"keys": []}',
                        "fromHeaders": [
                            {"name": "Authorization", "prefix": "Bearer "},
                            {"name": "x-jwt"},
                        ],
                        "fromParams": ["token"],
                        "fromCookies": ["session"],
                        "forwardOriginalToken": True,
                        "outputPayloadToHeader": "x-payload",
                        "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}],
                        "timeout": "1.5s",
                        "spaceDelimitedClaims": ["roles"],
                    },
                    {"issuer": "other", "timeout": "0.25s"},
                ]
            },
        },
    ]


def test_printing_keeps_strings_that_look_like_other_types() -> None:
    policy = allow(
        "p", {"enabled": "true", "version": "1.0"}, AuthzSource(namespaces=("yes", "null"))
    )
    (doc,) = docs([policy])
    assert doc["spec"]["selector"] == {"matchLabels": {"enabled": "true", "version": "1.0"}}
    assert doc["spec"]["rules"][0]["from"][0]["source"]["namespaces"] == ["yes", "null"]


def test_printing_nothing() -> None:
    assert modern_documents([]) == ""


def test_printed_documents_load_back_to_the_same_objects() -> None:
    seed = one(load_seed_text(SEED_MIXER)).policies
    origins, _ = origins_to_modern(legacy(LegacyTarget("preference", (9000,))), [PREFERENCE])
    namespace_wide, _ = origins_to_modern(legacy(use_origin=False), [])
    nothing = allow("nothing", {"app": "preference"})
    ips = allow("ips", None, AuthzSource(ip_blocks=("10.57.0.0/16", "192.168.1.7")))
    objs = [*seed, *origins, *namespace_wide, nothing, ips, CUSTOM, FULL_RA, FULL_POLICY]
    result = parse_text(modern_documents(objs), "modern.yaml")
    if result.skipped:
        pytest.skip("the loader does not read AuthorizationPolicy/RequestAuthentication yet")
    assert [str(e) for e in result.errors] == []
    # The loader keeps the dry-run annotation it read the flag from.
    annotations = {**FULL_POLICY.meta.annotations, "istio.io/dry-run": "true"}
    full = replace(FULL_POLICY, meta=replace(FULL_POLICY.meta, annotations=annotations))
    assert [r.obj for r in result.resources] == [*objs[:-1], full]
    # The only warning is istiod's about a DENY on HTTP-only attributes, which
    # the notes of the namespace-wide requirement explain.
    assert [w.resource for w in result.warnings] == [
        "AuthorizationPolicy tutorial/preference-jwt-require-jwt"
    ]
