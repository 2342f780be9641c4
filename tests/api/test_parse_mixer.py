"""Mixer list checker documents (config.istio.io/v1alpha2): shape checks with
paths from the document root, refusals of what cannot be translated, and the
model objects built from the old and the Istio 1.1+ generic forms."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mizzen.api.parse_mixer import (
    MIXER_GROUP,
    MIXER_KINDS,
    NOT_TRANSLATED,
    REMOVED,
    EntrySource,
    MixerMatch,
    build_mixer,
    check_mixer,
    parse_entry_value,
    parse_match,
    reference_problem,
    untranslated_reason,
)
from mizzen.api.resources import (
    MixerAction,
    MixerListChecker,
    MixerListEntry,
    MixerRule,
    ObjectMeta,
)

SEED = (
    Path(os.environ.get("MIZZEN_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    / "seeds"
    / "004_b60d42e7b0fa9090.txt"
)

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

# The same whitelist in Istio 1.1+ generic form.
GENERIC_MIXER = """\
apiVersion: config.istio.io/v1alpha2
kind: handler
metadata:
  name: preferencewhitelist
spec:
  compiledAdapter: listchecker
  params:
    overrides: ["recommendation"]
    blacklist: false
---
apiVersion: config.istio.io/v1alpha2
kind: instance
metadata:
  name: preferencesource
spec:
  compiledTemplate: listentry
  params:
    value: source.labels["app"]
"""

TUTORIAL = ObjectMeta("x", "tutorial")


def _build(text: str, ns: str = "tutorial") -> list[object]:
    out = []
    for doc in yaml.safe_load_all(text):
        assert doc["apiVersion"] == f"{MIXER_GROUP}/v1alpha2"
        assert check_mixer(doc["kind"], doc.get("spec")) == []
        out.append(build_mixer(doc["kind"], ObjectMeta(doc["metadata"]["name"], ns), doc["spec"]))
    return out


SEED_OBJECTS = [
    MixerListChecker(ObjectMeta("preferencewhitelist", "tutorial"), ("recommendation",)),
    MixerListEntry(ObjectMeta("preferencesource", "tutorial"), 'source.labels["app"]'),
    MixerRule(
        ObjectMeta("checkfromcustomer", "tutorial"),
        'destination.labels["app"] == "preference"',
        (MixerAction("preferencewhitelist.listchecker", ("preferencesource.listentry",)),),
    ),
]


def test_seed_documents_build() -> None:
    assert _build(SEED_MIXER) == SEED_OBJECTS


@pytest.mark.skipif(not SEED.is_file(), reason="shared seed not present")
def test_seed_text_is_the_one_in_the_seed() -> None:
    blocks = re.split(r"^~~~[ \t]*$", SEED.read_text(encoding="utf-8"), flags=re.M)[1::2]
    (block,) = [b for b in blocks if "kind: listchecker" in b]
    assert block.strip("\n") == SEED_MIXER.strip("\n")


def test_generic_handler_and_instance_build_the_same_objects() -> None:
    assert _build(GENERIC_MIXER) == SEED_OBJECTS[:2]


def test_kinds() -> None:
    assert MIXER_GROUP == "config.istio.io"
    assert set(MIXER_KINDS) == {"listchecker", "listentry", "rule", "handler", "instance"}


def test_listchecker_fields_and_defaults() -> None:
    spec = {
        "overrides": ["10.0.0.0/8", "192.168.1.7"],
        "blacklist": True,
        "entryType": "IP_ADDRESSES",
        "cachingInterval": "300s",
        "cachingUseCount": 10000,
        "refreshInterval": "60s",
        "ttl": "300s",
    }
    assert check_mixer("listchecker", spec) == []
    assert build_mixer("listchecker", TUTORIAL, spec) == MixerListChecker(
        TUTORIAL, ("10.0.0.0/8", "192.168.1.7"), True, "IP_ADDRESSES"
    )
    assert check_mixer("listchecker", None) == []
    assert build_mixer("listchecker", TUTORIAL, None) == MixerListChecker(TUTORIAL)


def test_rule_without_match_and_with_generic_references() -> None:
    spec = {"actions": [{"handler": "wl", "instances": ["src", "ip.instance.other"], "name": "a"}]}
    assert check_mixer("rule", spec) == []
    assert build_mixer("rule", TUTORIAL, spec) == MixerRule(
        TUTORIAL, "", (MixerAction("wl", ("src", "ip.instance.other")),)
    )


# ---------------------------------------------------------------------------
# Refusals and shape errors


def _one(kind: str, spec: Any) -> tuple[str, str]:
    problems = check_mixer(kind, spec)
    assert len(problems) == 1, problems
    return problems[0]


def test_provider_url_is_refused() -> None:
    path, message = _one("listchecker", {"providerUrl": "http://lists/x", "overrides": ["a"]})
    assert path == "spec.providerUrl"
    assert message == (
        "a list fetched from 'http://lists/x' cannot be translated: Mixer (config.istio.io) was"
        " removed in Istio 1.8, and an AuthorizationPolicy must name its callers when it is"
        " written. Copy the list into overrides (and remove providerUrl), or write an"
        " AuthorizationPolicy (security.istio.io/v1) yourself"
    )


def test_regex_lists_are_refused() -> None:
    path, message = _one("listchecker", {"entryType": "REGEX", "overrides": ["v.*"]})
    assert path == "spec.entryType"
    assert message.startswith("REGEX lists cannot be translated")
    assert "entryType STRINGS" in message


def test_case_insensitive_strings_are_accepted() -> None:
    assert check_mixer("listchecker", {"entryType": "CASE_INSENSITIVE_STRINGS"}) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"overide": ["a"]}, ("spec.overide", "unknown field; did you mean overrides?")),
        ({"blacklist": "no"}, ("spec.blacklist", "must be true or false, got string")),
        (
            {"entryType": "STRING"},
            (
                "spec.entryType",
                "must be one of STRINGS, CASE_INSENSITIVE_STRINGS, IP_ADDRESSES, REGEX;"
                " got 'STRING'",
            ),
        ),
        ({"overrides": "a"}, ("spec.overrides", "must be a list, got string")),
        ({"overrides": ["a", 3]}, ("spec.overrides[1]", "must be a string, got integer")),
        ({"cachingUseCount": -1}, ("spec.cachingUseCount", "must be at least 0, got -1")),
        (
            {"ttl": "5 minutes"},
            ("spec.ttl", "invalid duration '5 minutes'; use a value like 60s, 1.5s or 300ms"),
        ),
        (
            {"entryType": "IP_ADDRESSES", "overrides": ["10.0.0.1", "10.0.0.300"]},
            ("spec.overrides[1]", "'10.0.0.300' is not an IP address or CIDR range"),
        ),
    ],
)
def test_listchecker_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    assert check_mixer("listchecker", spec) == [expected]


def test_bare_ipv6_override_is_refused_with_the_fix() -> None:
    path, message = _one("listchecker", {"entryType": "IP_ADDRESSES", "overrides": ["fd00::1"]})
    assert path == "spec.overrides[0]"
    assert "as the network fd00::1/32" in message
    assert "fd00::1/128" in message
    spec = {"entryType": "IP_ADDRESSES", "overrides": ["fd00::/64", "10.1.2.3/16"]}
    assert check_mixer("listchecker", spec) == []


def test_spec_must_be_an_object() -> None:
    assert check_mixer("listentry", ["x"]) == [("spec", "must be an object, got list")]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ("spec.value", "required")),
        ({"valu": "source.ip"}, ("spec.valu", "unknown field; did you mean value?")),
        (
            {"value": 'request.headers["x-user"]'},
            (
                "spec.value",
                "request.headers cannot be translated: write an AuthorizationPolicy with a when"
                " condition on request.headers[<name>] instead (it checks HTTP requests only)",
            ),
        ),
        (
            {"value": "source.labels['app']"},
            ("spec.value", 'strings are written in double quotes ("..."), not single quotes'),
        ),
    ],
)
def test_listentry_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    problems = check_mixer("listentry", spec)
    assert expected in problems


def test_listentry_error_lists_the_translatable_values() -> None:
    path, message = _one("listentry", {"value": "origin.ip"})
    assert path == "spec.value"
    assert message == (
        "'origin.ip' cannot be translated: only source.labels[\"<key>\"], source.ip,"
        " source.principal, source.user or source.namespace (optionally with a default, as"
        ' in source.ip | ip("0.0.0.0")) map to an AuthorizationPolicy source'
    )


def test_rule_errors_have_paths() -> None:
    spec = {
        "match": 'source.labels["app"] == "customer"',
        "actions": [
            {"handler": "preferencewhitelist.listchecker", "instance": ["a"]},
            {"handler": "deny.denier", "instances": ["a.listchecker"]},
        ],
        "requestHeaderOperations": [{"name": "x", "values": ["y"]}],
    }
    assert check_mixer("rule", spec) == [
        ("spec.actions[0].instance", "unknown field; did you mean instances?"),
    ]
    del spec["actions"][0]["instance"]  # type: ignore[attr-defined]
    problems = dict(check_mixer("rule", spec))
    assert set(problems) == {
        "spec.requestHeaderOperations",
        "spec.match",
        "spec.actions[1].handler",
        "spec.actions[1].instances[0]",
    }
    assert problems["spec.match"] == (
        '\'source.labels["app"] == "customer"\' cannot be translated: conditions on the caller'
        " belong in the listentry and listchecker (or in the from/when of an"
        " AuthorizationPolicy), not in the rule's match"
    )
    assert problems["spec.actions[1].handler"] == (
        f"'deny.denier' names a denier, which is not translated: {NOT_TRANSLATED['denier']}"
    )
    assert problems["spec.actions[1].instances[0]"] == (
        "'a.listchecker' names a listchecker, not a listentry instance; write name,"
        " name.listentry, name.namespace or name.listentry.namespace"
    )
    assert "VirtualService" in problems["spec.requestHeaderOperations"]


def test_rule_sampling_and_missing_handler() -> None:
    problems = check_mixer("rule", {"sampling": {}, "actions": [{"instances": ["a"]}]})
    assert problems == [("spec.actions[0].handler", "required")]
    path, message = _one("rule", {"sampling": {"random": {}}})
    assert path == "spec.sampling"
    assert message.startswith("sampling applied to telemetry only")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"params": {}}, ("spec.compiledAdapter", "required (listchecker)")),
        (
            {"compiledAdapter": "denier", "params": {"status": {"code": 7}}},
            ("spec.compiledAdapter", NOT_TRANSLATED["denier"]),
        ),
        (
            {"adapter": "my-grpc-adapter", "connection": {"address": "x:1"}},
            ("spec.adapter", NOT_TRANSLATED["adapter"]),
        ),
        (
            {"compiledAdapter": "listchecker", "params": {"overide": ["x"]}},
            ("spec.params.overide", "unknown field; did you mean overrides?"),
        ),
        (
            {"compiledAdapter": "listchecker", "params": {"providerUrl": "http://x"}},
            ("spec.params.providerUrl", None),
        ),
        (
            {"compiledAdapter": "listchecker", "param": {}},
            ("spec.param", "unknown field; did you mean params?"),
        ),
        ({"compiledAdapter": "listchecker", "params": []}, ("spec.params", None)),
    ],
)
def test_handler_errors(spec: dict[str, Any], expected: tuple[str, str | None]) -> None:
    path, message = _one("handler", spec)
    assert path == expected[0]
    if expected[1] is not None:
        assert message == expected[1]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"compiledTemplate": "metric", "params": {"value": "1"}},
            ("spec.compiledTemplate", NOT_TRANSLATED["metric"]),
        ),
        (
            {"compiledTemplate": "listentry", "params": {"value": "source.uid"}},
            (
                "spec.params.value",
                "source.uid cannot be translated: list the callers' pod labels (source.labels)"
                " or principals instead",
            ),
        ),
        ({"compiledTemplate": "listentry", "params": {}}, ("spec.params.value", "required")),
    ],
)
def test_instance_errors(spec: dict[str, Any], expected: tuple[str, str]) -> None:
    assert check_mixer("instance", spec) == [expected]


def test_other_kinds_get_their_reason() -> None:
    assert check_mixer("denier", {"status": {"code": 7}}) == [("kind", NOT_TRANSLATED["denier"])]
    assert check_mixer("somethingelse", {})[0][0] == "kind"
    assert untranslated_reason("memquota", {}) == NOT_TRANSLATED["memquota"]
    assert (
        untranslated_reason("handler", {"compiledAdapter": "prometheus"})
        == (NOT_TRANSLATED["prometheus"])
    )
    assert (
        untranslated_reason("instance", {"compiledTemplate": "logentry"})
        == (NOT_TRANSLATED["logentry"])
    )
    assert untranslated_reason("handler", {"compiledAdapter": "listchecker"}) is None
    assert untranslated_reason("listchecker", {}) is None
    assert "Mixer" in (untranslated_reason("unknownkind", {}) or "")


@pytest.mark.parametrize("kind", sorted(NOT_TRANSLATED))
def test_every_reason_says_mixer_is_gone_and_what_to_do(kind: str) -> None:
    reason = NOT_TRANSLATED[kind]
    assert reason.startswith(REMOVED + "; ")
    assert "Istio 1.8" in reason
    assert kind not in MIXER_KINDS


@pytest.mark.parametrize(
    "kind",
    [
        "denier",
        "memquota",
        "quota",
        "metric",
        "prometheus",
        "stdio",
        "checknothing",
        "attributemanifest",
        "QuotaSpec",
        "QuotaSpecBinding",
        "HTTPAPISpec",
        "HTTPAPISpecBinding",
        "logentry",
        "kubernetesenv",
        "rbac",
        "opa",
    ],
)
def test_well_known_kinds_have_a_reason(kind: str) -> None:
    assert kind in NOT_TRANSLATED


# ---------------------------------------------------------------------------
# Match grammar, entry values and references


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("", MixerMatch({})),
        ("true", MixerMatch({})),
        ('destination.labels["app"] == "preference"', MixerMatch({"app": "preference"})),
        (
            '"v1" == destination.labels["version"]&&destination.labels["app"]=="reviews"',
            MixerMatch({"version": "v1", "app": "reviews"}),
        ),
        (
            'destination.labels["app"] == "x" && destination.namespace == "shop"',
            MixerMatch({"app": "x"}, "shop"),
        ),
        ('destination.namespace == "shop"', MixerMatch({}, "shop")),
        (
            'destination.labels["app"] == "x" && destination.labels["app"] == "x"',
            MixerMatch({"app": "x"}),
        ),
    ],
)
def test_match_grammar(expr: str, expected: MixerMatch) -> None:
    assert parse_match(expr) == expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ('destination.labels["app"] == "a" || destination.labels["app"] == "b"', "one rule per"),
        ('destination.labels["app"] != "a"', "!= cannot be translated"),
        ('destination.service.name == "ratings"', "by its pod labels"),
        ('destination.service == "ratings.default.svc.cluster.local"', "by its pod labels"),
        ('context.protocol == "tcp"', "HTTP and TCP alike"),
        ('request.headers["x"] == "y"', "to/when conditions"),
        ('destination.labels["app"] == "a" && destination.labels["app"] == "b"', "never matches"),
        ('destination.namespace == "a" && destination.namespace == "b"', "never matches"),
        ('destination.namespace == "Shop"', "not a valid DNS label"),
        ('destination.labels["app"] == "a b"', "label value"),
        ("destination.labels['app'] == 'a'", "double quotes"),
        ('destination.labels["app"] == "a', "closing double quote"),
        ('destination.labels["app"] == "a\\"b"', "escapes"),
        ('match(destination.labels["app"], "a*")', "function calls"),
        ('destination.labels["app"]', "is not a comparison"),
        ('destination.labels["app"] == "a" &&', "both sides"),
        ('destination.labels["app"] == destination.labels["b"]', "with a string"),
    ],
)
def test_match_refusals(expr: str, fragment: str) -> None:
    result = parse_match(expr)
    assert isinstance(result, str)
    assert fragment in result


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('source.labels["app"]', EntrySource("source.labels", "app")),
        (
            'source.labels[ "version" ] | "unknown"',
            EntrySource("source.labels", "version", "unknown"),
        ),
        ("source.ip", EntrySource("source.ip")),
        ('source.ip | ip("0.0.0.0")', EntrySource("source.ip", default="0.0.0.0")),
        ("source.principal", EntrySource("source.principal")),
        ("source.user", EntrySource("source.user")),
        ("source.namespace", EntrySource("source.namespace")),
    ],
)
def test_entry_values(expr: str, expected: EntrySource) -> None:
    assert parse_entry_value(expr) == expected


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("source.labels", "needs a label key"),
        ('source.labels["a b"]', "label key"),
        ('source.labels["app"] | ip("0.0.0.0")', "must be a string"),
        ('source.ip | "x"', "must be an address"),
        ('source.ip | ip("nope")', "not an IP address"),
        ('source.principal | "x"', "no identity"),
        ('destination.labels["app"]', "rule's match"),
        ('request.auth.claims["sub"]', "RequestAuthentication"),
        ('source.ip["x"]', "cannot be translated"),
        ("source.address", "cannot be translated"),
    ],
)
def test_entry_value_refusals(expr: str, fragment: str) -> None:
    result = parse_entry_value(expr)
    assert isinstance(result, str)
    assert fragment in result


@pytest.mark.parametrize(
    "ref",
    [
        "wl",
        "wl.listchecker",
        "wl.handler",
        "wl.other-ns",
        "wl.listchecker.other-ns",
        "wl.handler.x",
    ],
)
def test_handler_references(ref: str) -> None:
    assert reference_problem(ref, handler=True) is None


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("", "is not a handler reference"),
        ("a..b", "is not a handler reference"),
        ("a.b.c.d", "is not a handler reference"),
        ("a.Shop", "namespace part is invalid"),
        ("a.prometheus", "Telemetry API"),
        ("a.listentry", "not a listchecker handler"),
        ("a.rule.ns", "not a listchecker handler"),
    ],
)
def test_bad_handler_references(ref: str, fragment: str) -> None:
    problem = reference_problem(ref, handler=True)
    assert problem is not None
    assert fragment in problem


def test_instance_references() -> None:
    assert reference_problem("src.listentry", handler=False) is None
    assert reference_problem("src.instance.ns", handler=False) is None
    assert "metric" in (reference_problem("requestcount.metric", handler=False) or "")
