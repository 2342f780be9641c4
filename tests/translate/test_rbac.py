"""RBAC translation details, in memory: how Istio's value syntax becomes
Envoy matchers, and which rules survive on TCP chains."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from mizzen.api.resources import (
    AuthorizationPolicy,
    AuthzCondition,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    ObjectMeta,
)
from mizzen.translate.rbac import action_configs, http_rbac, network_rbac, policy_rules


def _policy(*rules: AuthzRule, action: Any = "ALLOW", dry_run: bool = False) -> AuthorizationPolicy:
    return AuthorizationPolicy(ObjectMeta("p", "foo"), action, rules, dry_run=dry_run)


def _claims(value: str) -> list[dict[str, Any]]:
    rule = AuthzRule(sources=(AuthzSource(request_principals=(value,)),))
    built = MessageToDict(
        policy_rules(_policy(rule), "cluster.local", tcp=False)["ns[foo]-policy[p]-rule[0]"]
    )
    ids = built["principals"][0]["andIds"]["ids"][0]["andIds"]["ids"]
    return [i["metadata"]["value"]["stringMatch"] for i in ids]


@pytest.mark.parametrize(
    ("value", "iss", "sub"),
    [
        ("*", {"safeRegex": {"regex": ".+"}}, {"safeRegex": {"regex": ".+"}}),
        ("iss/sub", {"exact": "iss"}, {"exact": "sub"}),
        ("a/b/sub", {"exact": "a/b"}, {"exact": "sub"}),
        ("*x/y", {"suffix": "x"}, {"exact": "y"}),
        ("*x", {"safeRegex": {"regex": ".+"}}, {"suffix": "x"}),
        ("x/*", {"exact": "x"}, {"safeRegex": {"regex": ".+"}}),
        ("x*", {"prefix": "x"}, {"safeRegex": {"regex": ".+"}}),
        ("iss*/sub", {"exact": "iss*"}, {"exact": "sub"}),  # a * only counts at the ends
        ("issuer", {"exact": "issuer"}, {"exact": ""}),  # no slash: empty subject
    ],
)
def test_request_principals_split_at_the_last_slash(value: str, iss: Any, sub: Any) -> None:
    assert _claims(value) == [iss, sub]


def test_a_leading_star_wins_over_a_trailing_one() -> None:
    rule = AuthzRule(operations=(AuthzOperation(paths=("*abc*",)),))
    built = MessageToDict(policy_rules(_policy(rule), "td", tcp=False)["ns[foo]-policy[p]-rule[0]"])
    path = built["permissions"][0]["andRules"]["rules"][0]["urlPath"]["path"]
    assert path == {"suffix": "abc*"}


def test_cluster_local_principals_mean_the_local_trust_domain() -> None:
    rule = AuthzRule(sources=(AuthzSource(principals=("cluster.local/ns/a/sa/b",)),))
    built = MessageToDict(
        policy_rules(_policy(rule), "example.org", tcp=False)["ns[foo]-policy[p]-rule[0]"]
    )
    ids = built["principals"][0]["andIds"]["ids"]
    assert ids == [
        {"authenticated": {"principalName": {"exact": "spiffe://example.org/ns/a/sa/b"}}}
    ]


def test_a_rule_with_an_unknown_condition_key_is_skipped() -> None:
    # istiod's validation lets `request.headersX[a]` through; its builder
    # (and Mizzen's) skips the rule instead of dropping the condition.
    odd = AuthzRule(when=(AuthzCondition("request.headersX[a]", ("v",)),))
    good = AuthzRule(operations=(AuthzOperation(methods=("GET",)),))
    assert list(policy_rules(_policy(odd, good), "td", tcp=False)) == ["ns[foo]-policy[p]-rule[1]"]


def test_http_only_fields_on_tcp_drop_allow_rules_and_widen_deny_rules() -> None:
    rule = AuthzRule(
        sources=(AuthzSource(namespaces=("bar",)),),
        operations=(AuthzOperation(methods=("GET",)),),
    )
    assert policy_rules(_policy(rule), "td", tcp=True) == {}
    deny = MessageToDict(
        policy_rules(_policy(rule, action="DENY"), "td", tcp=True)["ns[foo]-policy[p]-rule[0]"]
    )
    assert deny["permissions"] == [{"any": True}]
    assert "authenticated" in str(deny["principals"])


def test_allow_nothing_and_dry_run_filters() -> None:
    (allow,) = action_configs([_policy()], "td", tcp=False)
    message = MessageToDict(http_rbac(allow))
    assert message["rules"]["policies"]["ns[foo]-policy[p]-rule[0]"] == {
        "permissions": [{"notRule": {"any": True}}],
        "principals": [{"notId": {"any": True}}],
    }
    # A dry-run ALLOW whose only rule cannot hold on TCP still logs (an empty
    # shadow engine) and enforces nothing.
    rule = AuthzRule(operations=(AuthzOperation(methods=("GET",)),))
    (deny,) = action_configs([_policy(rule, action="ALLOW", dry_run=True)], "td", tcp=True)
    message = MessageToDict(network_rbac(deny))
    assert "rules" not in message
    assert message["shadowRules"] == {} or message["shadowRules"].get("policies") is None
    assert message["shadowRulesStatPrefix"] == "istio_dry_run_allow_"
