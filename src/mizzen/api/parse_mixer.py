"""Mixer policy (``config.istio.io/v1alpha2``, Istio 1.0 to 1.7): shape checks
and builders for the one Mixer use that has a faithful modern form, the list
checker that white- or blacklists callers.

Accepted kinds (``MIXER_KINDS``):

- ``listchecker`` (a handler) and its Istio 1.1+ generic form, ``handler`` with
  ``compiledAdapter: listchecker`` and the same fields under ``params``;
  both build a ``MixerListChecker``;
- ``listentry`` (an instance) and ``instance`` with
  ``compiledTemplate: listentry``; both build a ``MixerListEntry``;
- ``rule``, which builds a ``MixerRule``.

``mizzen.model.legacy_mixer`` turns them into AuthorizationPolicies. Whatever
that translation could not reproduce exactly is refused here, at check time,
with the reason and what to write instead:

- a list fetched from ``providerUrl`` (its content is unknown until run time);
- ``entryType: REGEX`` (AuthorizationPolicy has no regular expressions);
- a bare IPv6 address in an ``IP_ADDRESSES`` list (Mixer appended ``/32`` to
  it, a 2^96-address network nobody meant);
- a listentry ``value`` other than the caller attributes below;
- a rule ``match`` outside the grammar below, header operations, sampling;
- a ``handler``/``instance`` of another adapter or template, and an action
  naming a handler or instance kind other than the list checker's.

Listentry values (``parse_entry_value``), each optionally followed by a
default, as Mixer wrote them (``source.ip | ip("0.0.0.0")``):

- ``source.labels["<key>"]`` (``| "<default>"``): the caller's pod label;
  STRINGS or CASE_INSENSITIVE_STRINGS (the label values are compared when
  translating, so case folding is exact);
- ``source.ip`` (``| ip("<address>")``): the caller's address; IP_ADDRESSES;
- ``source.principal`` / ``source.user``: the caller's mTLS identity
  ``<trust domain>/ns/<ns>/sa/<sa>``; STRINGS;
- ``source.namespace``: the caller's namespace; STRINGS or
  CASE_INSENSITIVE_STRINGS (namespaces are lower case, so folding is exact).

Whether the list checker's ``entryType`` suits the value is decided when both
are known, by the translation.

Rule ``match`` grammar (``parse_match``): terms joined by ``&&``, each

- ``destination.labels["<key>"] == "<value>"`` (the workload selector), or
- ``destination.namespace == "<ns>"`` (at most one);

operands may be written either way round; ``true`` or an empty match selects
every workload of the rule's namespace (of the mesh for a rule in Mixer's
configuration namespace, istio-system). Strings are Go strings in double
quotes, without escapes.

The tuning fields of the list checker (``cachingInterval``,
``cachingUseCount``, and ``refreshInterval``/``ttl``, which only mattered with
``providerUrl``) are type-checked and then have no effect: an
AuthorizationPolicy is evaluated in the proxy, with nothing to cache.

Handler and instance references in a rule are ``name``, ``name.kind``,
``name.namespace`` (for the generic kinds) or ``name.kind.namespace``, as
Mixer resolved them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mizzen.api.resources import (
    MixerAction,
    MixerListChecker,
    MixerListEntry,
    MixerRule,
    ObjectMeta,
)
from mizzen.api.validate_crd import (
    Arr,
    Bool,
    Int,
    Obj,
    Problems,
    Str,
    check,
    index,
    join,
    parse_duration,
    type_name,
)
from mizzen.api.validate_names import (
    dns_label_problem,
    is_cidr,
    is_ip,
    label_key_problem,
    label_value_problem,
)

__all__ = [
    "HANDLER_KINDS",
    "INSTANCE_KINDS",
    "MATCH_GRAMMAR",
    "MIXER_GROUP",
    "MIXER_KINDS",
    "MIXER_VERSIONS",
    "NOT_TRANSLATED",
    "REMOVED",
    "EntrySource",
    "MixerMatch",
    "build_mixer",
    "check_mixer",
    "deprecation_message",
    "parse_entry_value",
    "parse_match",
    "reference_problem",
    "untranslated_reason",
]

MIXER_GROUP = "config.istio.io"
MIXER_VERSIONS = ("v1alpha2",)
MIXER_KINDS = ("listchecker", "listentry", "rule", "handler", "instance")

REMOVED = "Mixer (config.istio.io) was removed in Istio 1.8"

# The kinds a generic handler/instance names in compiledAdapter/compiledTemplate,
# and the old-style kinds that a reference's middle part may name.
HANDLER_KINDS = frozenset({"listchecker", "handler"})
INSTANCE_KINDS = frozenset({"listentry", "instance"})

_POLICY = "an AuthorizationPolicy (security.istio.io/v1)"
_TELEMETRY = (
    f"{REMOVED}; the proxies report standard metrics themselves: configure them with the"
    " Telemetry API (telemetry.istio.io/v1)"
)
_LOGS = (
    f"{REMOVED}; configure access logs with the Telemetry API (telemetry.istio.io/v1)"
    " or meshConfig.accessLogFile"
)
_QUOTA = (
    f"{REMOVED}; rate-limit with Envoy instead: a local rate limit (EnvoyFilter"
    " envoy.filters.http.local_ratelimit) or a global rate-limit service"
)
_DENIER = (
    f"{REMOVED}; write {_POLICY} with action DENY and, in its rules, the condition of the"
    " Mixer rule"
)
_NOTHING = f"{REMOVED}; its job is built into the proxies, so there is nothing to write instead"
_EXT_AUTHZ = (
    f"{REMOVED}; run the check as an external authorizer: {_POLICY} with action CUSTOM and an"
    " ext_authz provider in meshConfig.extensionProviders"
)
_API_KEYS = (
    f"{REMOVED}; check JWTs with a RequestAuthentication (security.istio.io/v1), and API keys"
    f" with an external authorizer ({_POLICY} with action CUSTOM)"
)

# Well-known Mixer kinds (adapters, templates and the rest of the Mixer CRDs)
# that have no translation, with what to write instead.
NOT_TRANSLATED: Mapping[str, str] = {
    # access control
    "denier": _DENIER,
    "checknothing": _DENIER,
    "rbac": f"{REMOVED}; write {_POLICY}",
    "authorization": f"{REMOVED}; write {_POLICY}",
    "opa": _EXT_AUTHZ,
    "apigee": _EXT_AUTHZ,
    "servicecontrol": _EXT_AUTHZ,
    "servicecontrolreport": _EXT_AUTHZ,
    "apikey": _API_KEYS,
    "HTTPAPISpec": _API_KEYS,
    "HTTPAPISpecBinding": _API_KEYS,
    # quotas
    "memquota": _QUOTA,
    "redisquota": _QUOTA,
    "quota": _QUOTA,
    "QuotaSpec": _QUOTA,
    "QuotaSpecBinding": _QUOTA,
    # telemetry
    "metric": _TELEMETRY,
    "prometheus": _TELEMETRY,
    "statsd": _TELEMETRY,
    "dogstatsd": _TELEMETRY,
    "stackdriver": _TELEMETRY,
    "circonus": _TELEMETRY,
    "signalfx": _TELEMETRY,
    "cloudwatch": _TELEMETRY,
    "solarwinds": _TELEMETRY,
    "edge": _TELEMETRY,
    "logentry": _LOGS,
    "stdio": _LOGS,
    "fluentd": _LOGS,
    "tracespan": (
        f"{REMOVED}; configure tracing with the Telemetry API (telemetry.istio.io/v1)"
        " and meshConfig.extensionProviders"
    ),
    # plumbing
    "attributemanifest": _NOTHING,
    "kubernetesenv": _NOTHING,
    "kubernetes": _NOTHING,
    "noop": _NOTHING,
    "reportnothing": _NOTHING,
    "bypass": _NOTHING,
    "adapter": (
        f"{REMOVED}; out-of-process adapters are gone: use an external authorizer ({_POLICY}"
        " with action CUSTOM) or a WasmPlugin (extensions.istio.io/v1alpha1)"
    ),
    "template": (
        f"{REMOVED}; out-of-process adapters are gone: use an external authorizer ({_POLICY}"
        " with action CUSTOM) or a WasmPlugin (extensions.istio.io/v1alpha1)"
    ),
}

_GENERIC_REASON = (
    f"{REMOVED}; Mizzen translates only its list checker (listchecker, listentry and rule)"
    f" to {_POLICY}; write the modern resource for what this did instead"
)


def deprecation_message(kind: str) -> str:
    """The warning for an accepted Mixer kind."""
    return (
        f"{kind} ({MIXER_GROUP}/v1alpha2): {REMOVED}. Mizzen enforces this list checker as"
        f" {_POLICY}, the form to write instead"
    )


def untranslated_reason(kind: str, spec: Any) -> str | None:
    """Why a document of ``kind`` in the Mixer group is not translated, or None
    when it is one of the translated forms (it may still have errors: see
    ``check_mixer``). A ``handler``/``instance`` of another adapter or template
    gets that adapter's reason, so old and generic forms read the same."""
    if kind in NOT_TRANSLATED:
        return NOT_TRANSLATED[kind]
    if kind in ("handler", "instance"):
        body = spec if isinstance(spec, dict) else {}
        field = "compiledAdapter" if kind == "handler" else "compiledTemplate"
        wanted = "listchecker" if kind == "handler" else "listentry"
        named = body.get(field)
        if isinstance(named, str) and named and named != wanted:
            return NOT_TRANSLATED.get(named, _GENERIC_REASON)
        other = body.get("adapter" if kind == "handler" else "template")
        if isinstance(other, str) and other and not named:
            return NOT_TRANSLATED["adapter" if kind == "handler" else "template"]
        return None
    if kind in MIXER_KINDS:
        return None
    return _GENERIC_REASON


# ---------------------------------------------------------------------------
# Shapes (istio.policy.v1beta1 Rule/Handler/Instance, adapter.list.config.Params,
# the listentry template). Unknown fields are errors naming the closest field:
# these CRDs never pruned, and a misspelt field would change what is enforced.


def _duration(value: Any) -> str | None:
    if parse_duration(value) is None:
        return f"invalid duration {value!r}; use a value like 60s, 1.5s or 300ms"
    return None


_ENTRY_TYPES = ("STRINGS", "CASE_INSENSITIVE_STRINGS", "IP_ADDRESSES", "REGEX")

LISTCHECKER = Obj(
    {
        "providerUrl": Str(),
        "refreshInterval": Str(rules=(_duration,)),
        "ttl": Str(rules=(_duration,)),
        "cachingInterval": Str(rules=(_duration,)),
        "cachingUseCount": Int(0),
        "overrides": Arr(Str()),
        "entryType": Str(enum=_ENTRY_TYPES),
        "blacklist": Bool(),
    },
    closed=True,
)

LISTENTRY = Obj({"value": Str()}, required=("value",), closed=True)

_ANY_OBJECT = Obj({})  # an object whose content is checked (or refused) separately

HANDLER = Obj(
    {
        "name": Str(),
        "compiledAdapter": Str(),
        "adapter": Str(),
        "params": _ANY_OBJECT,
        "connection": _ANY_OBJECT,
    },
    closed=True,
)

INSTANCE = Obj(
    {
        "name": Str(),
        "compiledTemplate": Str(),
        "template": Str(),
        "params": _ANY_OBJECT,
        "attributeBindings": _ANY_OBJECT,
    },
    closed=True,
)

RULE = Obj(
    {
        "match": Str(),
        "actions": Arr(
            Obj(
                {"handler": Str(), "instances": Arr(Str()), "name": Str()},
                required=("handler",),
                closed=True,
            )
        ),
        "requestHeaderOperations": Arr(_ANY_OBJECT),
        "responseHeaderOperations": Arr(_ANY_OBJECT),
        "sampling": _ANY_OBJECT,
    },
    closed=True,
)


def check_mixer(kind: str, spec: Any) -> Problems:
    """Every problem of a Mixer document's ``spec``, as (path, message) with
    paths from the document root (``spec.overrides[0]``). Empty: ``build_mixer``
    may build it. ``spec`` may be None (no spec)."""
    out: Problems = []
    if kind not in MIXER_KINDS:
        out.append(("kind", untranslated_reason(kind, spec) or _GENERIC_REASON))
        return out
    body: Any = {} if spec is None else spec
    if not isinstance(body, dict):
        out.append(("spec", f"must be an object, got {type_name(body)}"))
        return out
    if kind == "listchecker":
        _check_listchecker(body, "spec", out)
    elif kind == "listentry":
        _check_listentry(body, "spec", out)
    elif kind == "handler":
        _check_handler(body, out)
    elif kind == "instance":
        _check_instance(body, out)
    else:
        _check_rule(body, out)
    return out


def _check_listchecker(body: Mapping[str, Any], path: str, out: Problems) -> None:
    before = len(out)
    check(LISTCHECKER, body, path, out)
    if len(out) > before:
        return
    url = body.get("providerUrl")
    if url:
        out.append(
            (
                join(path, "providerUrl"),
                f"a list fetched from {url!r} cannot be translated: {REMOVED}, and an"
                f" AuthorizationPolicy must name its callers when it is written. Copy the"
                f" list into overrides (and remove providerUrl), or write {_POLICY} yourself",
            )
        )
    entry_type = body.get("entryType") or "STRINGS"
    if entry_type == "REGEX":
        out.append(
            (
                join(path, "entryType"),
                "REGEX lists cannot be translated: AuthorizationPolicy matches exact values,"
                " prefixes (abc*) and suffixes (*abc) only. List the values (entryType"
                " STRINGS), or write an AuthorizationPolicy with prefix/suffix values",
            )
        )
    if entry_type == "IP_ADDRESSES":
        for i, value in enumerate(body.get("overrides") or ()):
            problem = _ip_override_problem(value)
            if problem:
                out.append((index(join(path, "overrides"), i), problem))


def _ip_override_problem(value: str) -> str | None:
    if "/" in value:
        return None if is_cidr(value) else f"{value!r} is not an IP address or CIDR range"
    if not is_ip(value):
        return f"{value!r} is not an IP address or CIDR range"
    if ipaddress.ip_address(value).version == 6:
        return (
            f"Mixer read the bare IPv6 address {value!r} as the network {value}/32 (it"
            f" appended /32 to every bare address), which is surely not what was meant;"
            f" write the range explicitly, for example {value}/128 for this address alone"
        )
    return None


def _check_listentry(body: Mapping[str, Any], path: str, out: Problems) -> None:
    before = len(out)
    check(LISTENTRY, body, path, out)
    if len(out) > before:
        return
    parsed = parse_entry_value(body["value"])
    if isinstance(parsed, str):
        out.append((join(path, "value"), parsed))


def _check_handler(body: Mapping[str, Any], out: Problems) -> None:
    before = len(out)
    check(HANDLER, body, "spec", out)
    if len(out) > before:
        return
    adapter = body.get("compiledAdapter")
    if body.get("adapter") or body.get("connection") is not None:
        where = "spec.adapter" if body.get("adapter") else "spec.connection"
        out.append((where, NOT_TRANSLATED["adapter"]))
        return
    if not adapter:
        out.append(("spec.compiledAdapter", "required (listchecker)"))
        return
    if adapter != "listchecker":
        out.append(("spec.compiledAdapter", NOT_TRANSLATED.get(adapter, _GENERIC_REASON)))
        return
    _check_listchecker(body.get("params") or {}, "spec.params", out)


def _check_instance(body: Mapping[str, Any], out: Problems) -> None:
    before = len(out)
    check(INSTANCE, body, "spec", out)
    if len(out) > before:
        return
    template = body.get("compiledTemplate")
    if body.get("template"):
        out.append(("spec.template", NOT_TRANSLATED["template"]))
        return
    if not template:
        out.append(("spec.compiledTemplate", "required (listentry)"))
        return
    if template != "listentry":
        out.append(("spec.compiledTemplate", NOT_TRANSLATED.get(template, _GENERIC_REASON)))
        return
    if body.get("attributeBindings"):
        out.append(
            (
                "spec.attributeBindings",
                "attribute bindings belong to out-of-process adapters and cannot be"
                " translated; remove them",
            )
        )
    _check_listentry(body.get("params") or {}, "spec.params", out)


def _check_rule(body: Mapping[str, Any], out: Problems) -> None:
    before = len(out)
    check(RULE, body, "spec", out)
    if len(out) > before:
        return
    for name in ("requestHeaderOperations", "responseHeaderOperations"):
        if body.get(name):
            out.append(
                (
                    join("spec", name),
                    "header operations of a Mixer rule cannot be translated to an"
                    " AuthorizationPolicy; set headers with a VirtualService"
                    " (http[].headers) instead, and remove this field",
                )
            )
    if body.get("sampling") is not None:
        out.append(
            (
                "spec.sampling",
                "sampling applied to telemetry only and has no modern form in a"
                " policy rule; remove it (sample traces with the Telemetry API)",
            )
        )
    match = parse_match(body.get("match") or "")
    if isinstance(match, str):
        out.append(("spec.match", match))
    for i, action in enumerate(body.get("actions") or ()):
        where = index("spec.actions", i)
        problem = reference_problem(action["handler"], handler=True)
        if problem:
            out.append((join(where, "handler"), problem))
        for j, ref in enumerate(action.get("instances") or ()):
            problem = reference_problem(ref, handler=False)
            if problem:
                out.append((index(join(where, "instances"), j), problem))


def reference_problem(ref: str, *, handler: bool) -> str | None:
    """What is wrong with a handler (or instance) reference of a rule action."""
    what = "handler" if handler else "instance"
    kinds = HANDLER_KINDS if handler else INSTANCE_KINDS
    wanted = "listchecker" if handler else "listentry"
    form = f"write name, name.{wanted}, name.namespace or name.{wanted}.namespace"
    parts = ref.split(".")
    if not ref or "" in parts or len(parts) > 3:
        return f"{ref!r} is not a {what} reference; {form}"
    if len(parts) == 1:
        return None
    middle = parts[1]
    if middle in kinds:
        if len(parts) == 3:
            return _namespace_problem(parts[2], form)
        return None
    if len(parts) == 2 and middle not in NOT_TRANSLATED and middle not in MIXER_KINDS:
        return _namespace_problem(middle, form)  # name.namespace
    if middle in NOT_TRANSLATED:
        return f"{ref!r} names a {middle}, which is not translated: {NOT_TRANSLATED[middle]}"
    return f"{ref!r} names a {middle}, not a {wanted} {what}; {form}"


def _namespace_problem(ns: str, form: str) -> str | None:
    problem = dns_label_problem(ns)
    return f"the namespace part is invalid: {problem}; {form}" if problem else None


# ---------------------------------------------------------------------------
# Builders: inputs have passed check_mixer.


def build_mixer(
    kind: str, meta: ObjectMeta, spec: Any
) -> MixerListChecker | MixerListEntry | MixerRule:
    body: Mapping[str, Any] = spec or {}
    if kind in ("listchecker", "handler"):
        params = body if kind == "listchecker" else (body.get("params") or {})
        return MixerListChecker(
            meta,
            overrides=tuple(params.get("overrides") or ()),
            blacklist=params.get("blacklist") is True,
            entry_type=params.get("entryType") or "STRINGS",
            provider_url=params.get("providerUrl") or "",
        )
    if kind in ("listentry", "instance"):
        params = body if kind == "listentry" else (body.get("params") or {})
        return MixerListEntry(meta, value=params["value"])
    if kind == "rule":
        return MixerRule(
            meta,
            match=body.get("match") or "",
            actions=tuple(
                MixerAction(a["handler"], tuple(a.get("instances") or ()))
                for a in body.get("actions") or ()
            ),
        )
    raise ValueError(f"not a translated Mixer kind: {kind}")


# ---------------------------------------------------------------------------
# Rule match expressions


@dataclass(frozen=True)
class MixerMatch:
    """What a translatable rule ``match`` selects: workloads with all of
    ``labels``, in ``namespace`` when it is set."""

    labels: Mapping[str, str]
    namespace: str | None = None


MATCH_GRAMMAR = (
    'a match translates when it is destination.labels["<key>"] == "<value>" terms,'
    ' optionally with one destination.namespace == "<ns>", joined by &&'
    " (or empty, for every workload of the rule's namespace)"
)

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"[^"]*")
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<op>==|!=|&&|\|\||[\[\]()!|,<>=])
      | (?P<other>\S)
    )""",
    re.X,
)

_Token = tuple[Literal["string", "ident", "op", "other"], str]

# Attributes people matched on in Mixer rules, with what to write instead.
_MATCH_HINTS: Mapping[str, str] = {
    "source": (
        "conditions on the caller belong in the listentry and listchecker (or in the"
        " from/when of an AuthorizationPolicy), not in the rule's match"
    ),
    "destination.service": (
        "select the destination by its pod labels instead, for example"
        ' destination.labels["app"] == "reviews"'
    ),
    "request": (
        "request attributes cannot narrow which workloads a list applies to; write an"
        " AuthorizationPolicy with to/when conditions instead"
    ),
    "context": (
        "the list check applies to HTTP and TCP alike in the translation, as it did in"
        " Mixer; remove this term or write an AuthorizationPolicy with to.operation.ports"
    ),
}


def _hint(attribute: str) -> str:
    for prefix, hint in _MATCH_HINTS.items():
        if attribute == prefix or attribute.startswith(prefix + "."):
            return hint
    return f"write an AuthorizationPolicy (security.istio.io/v1) for it instead; {MATCH_GRAMMAR}"


def _tokens(text: str) -> list[_Token] | str:
    out: list[_Token] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing blanks can fail, and they were stripped
            break
        group = m.lastgroup
        value = m.group(group or "other")
        if group == "other":
            if value == "'":
                return 'strings are written in double quotes ("..."), not single quotes'
            if value == '"':
                return "a string is missing its closing double quote"
            return f"unexpected character {value!r}; {MATCH_GRAMMAR}"
        if group == "string" and "\\" in value:
            return f"escapes in strings are not supported: {value}"
        kind: Literal["string", "ident", "op", "other"] = (
            "string" if group == "string" else "ident" if group == "ident" else "op"
        )
        out.append((kind, value))
        pos = m.end()
    return out


def parse_match(expr: str) -> MixerMatch | str:
    """The workloads a rule's ``match`` selects, or why it cannot translate."""
    tokens = _tokens(expr)
    if isinstance(tokens, str):
        return tokens
    if not tokens or tokens == [("ident", "true")]:
        return MixerMatch({})
    for kind, value in tokens:
        if kind == "op" and value == "||":
            return (
                "|| cannot be translated: a rule becomes one policy whose selector requires"
                " every label; write one rule per alternative"
            )
        if kind == "op" and value in ("!", "!="):
            return (
                f"{value} cannot be translated: a workload selector only requires labels to"
                f" be equal; {MATCH_GRAMMAR}"
            )
        if kind == "op" and value in ("(", ")", ","):
            return f"function calls and parentheses cannot be translated; {MATCH_GRAMMAR}"
        if kind == "op" and value in ("|", "<", ">", "="):
            return f"{value!r} cannot be translated; {MATCH_GRAMMAR}"
    labels: dict[str, str] = {}
    namespace: str | None = None
    for term in _split(tokens, "&&"):
        parsed = _term(term)
        if isinstance(parsed, str):
            return parsed
        attribute, key, value = parsed
        if attribute == "destination.namespace":
            if namespace is not None and namespace != value:
                return (
                    f"destination.namespace is compared with both {namespace!r} and"
                    f" {value!r}, so the rule never matches; keep one"
                )
            problem = dns_label_problem(value)
            if problem:
                return f"destination.namespace: {problem}"
            namespace = value
            continue
        problem = label_key_problem(key) or label_value_problem(value)
        if problem:
            return f'destination.labels["{key}"]: {problem}'
        if labels.get(key, value) != value:
            return (
                f'destination.labels["{key}"] is compared with both {labels[key]!r} and'
                f" {value!r}, so the rule never matches; keep one"
            )
        labels[key] = value
    return MixerMatch(labels, namespace)


def _split(tokens: list[_Token], op: str) -> list[list[_Token]]:
    parts: list[list[_Token]] = [[]]
    for token in tokens:
        if token == ("op", op):
            parts.append([])
        else:
            parts[-1].append(token)
    return parts


def _term(term: list[_Token]) -> tuple[str, str, str] | str:
    """(attribute, label key or "", value) of one ``a == b`` term."""
    text = _text(term)
    if not term:
        return f"&& needs a condition on both sides; {MATCH_GRAMMAR}"
    eq = [i for i, t in enumerate(term) if t == ("op", "==")]
    if len(eq) != 1:
        first = next((v for k, v in term if k == "ident"), "")
        if first and first != "destination.labels" and first != "true":
            return f"{text!r} cannot be translated: {_hint(first)}"
        return f"{text!r} is not a comparison; {MATCH_GRAMMAR}"
    left, right = term[: eq[0]], term[eq[0] + 1 :]
    if len(left) == 1 and left[0][0] == "string":
        left, right = right, left
    if not (len(right) == 1 and right[0][0] == "string"):
        return f"{text!r} must compare an attribute with a string; {MATCH_GRAMMAR}"
    value = right[0][1][1:-1]
    attribute = _attribute(left)
    if attribute is None:
        return f"{text!r} cannot be translated; {MATCH_GRAMMAR}"
    name, key = attribute
    if name == "destination.namespace" and key is None:
        return name, "", value
    if name == "destination.labels" and key is not None:
        return name, key, value
    return f"{text!r} cannot be translated: {_hint(name)}"


def _text(tokens: list[_Token]) -> str:
    out = ""
    for _, value in tokens:
        if out and value not in ("[", "]") and not out.endswith("["):
            out += " "
        out += value
    return out


def _attribute(tokens: list[_Token]) -> tuple[str, str | None] | None:
    """``ident`` or ``ident["key"]``."""
    if len(tokens) == 1 and tokens[0][0] == "ident":
        return tokens[0][1], None
    if (
        len(tokens) == 4
        and tokens[0][0] == "ident"
        and tokens[1] == ("op", "[")
        and tokens[2][0] == "string"
        and tokens[3] == ("op", "]")
    ):
        return tokens[0][1], tokens[2][1][1:-1]
    return None


# ---------------------------------------------------------------------------
# Listentry values

SourceAttribute = Literal[
    "source.labels", "source.ip", "source.principal", "source.user", "source.namespace"
]


@dataclass(frozen=True)
class EntrySource:
    """The caller attribute a listentry checks: ``label`` is the key of
    ``source.labels``; ``default`` the value Mixer used when the attribute was
    missing (``| "..."``), None when none was written."""

    attribute: SourceAttribute
    label: str = ""
    default: str | None = None

    def __str__(self) -> str:
        return f'source.labels["{self.label}"]' if self.label else self.attribute


ENTRY_VALUES = (
    'source.labels["<key>"], source.ip, source.principal, source.user or source.namespace'
)

_ENTRY_HINTS: Mapping[str, str] = {
    "request.headers": (
        "write an AuthorizationPolicy with a when condition on request.headers[<name>]"
        " instead (it checks HTTP requests only)"
    ),
    "request.auth": (
        "write a RequestAuthentication and an AuthorizationPolicy on requestPrincipals or"
        " request.auth.claims[...] instead"
    ),
    "destination": (
        "a listentry names the caller; select the destination workloads in the rule's match instead"
    ),
    "source.uid": "list the callers' pod labels (source.labels) or principals instead",
    "source.name": "list the callers' pod labels (source.labels) or principals instead",
    "source.workload": "list the callers' pod labels (source.labels) or principals instead",
    "source.service": "list the callers' pod labels (source.labels) or principals instead",
}

_SIMPLE: Mapping[str, SourceAttribute] = {
    "source.ip": "source.ip",
    "source.principal": "source.principal",
    "source.user": "source.user",
    "source.namespace": "source.namespace",
}

_ENTRY = re.compile(
    r"""^\s*(?P<attr>[A-Za-z_][A-Za-z0-9_.]*)
        (?:\s*\[\s*(?P<key>"[^"]*")\s*\])?
        \s*(?:\|\s*(?P<default>"[^"]*"|ip\(\s*"[^"]*"\s*\)))?
        \s*$""",
    re.X,
)


def parse_entry_value(expr: str) -> EntrySource | str:
    """The caller attribute of a listentry ``value``, or why it cannot translate."""
    m = _ENTRY.match(expr)
    unsupported = (
        f"{expr.strip()!r} cannot be translated: only {ENTRY_VALUES} (optionally with a"
        ' default, as in source.ip | ip("0.0.0.0")) map to an AuthorizationPolicy source'
    )
    if m is None:
        if "'" in expr:
            return 'strings are written in double quotes ("..."), not single quotes'
        return unsupported
    attr, key, default = m.group("attr"), m.group("key"), m.group("default")
    if attr == "source.labels":
        if key is None:
            return 'source.labels needs a label key: source.labels["app"]'
        label = key[1:-1]
        problem = label_key_problem(label)
        if problem:
            return problem
        if default is not None and default.startswith("ip("):
            return 'the default of a label must be a string: source.labels["app"] | "unknown"'
        return EntrySource("source.labels", label, None if default is None else default[1:-1])
    simple = _SIMPLE.get(attr)
    if simple is not None and key is None:
        if simple != "source.ip":
            if default is not None:
                return (
                    f"a default for {attr} cannot be translated: callers without it (outside"
                    " the mesh) have no identity an AuthorizationPolicy could name; remove it"
                )
            return EntrySource(simple)
        if default is None:
            return EntrySource("source.ip")
        if not default.startswith("ip("):
            return 'the default of source.ip must be an address: source.ip | ip("0.0.0.0")'
        address = default[default.index('"') + 1 : default.rindex('"')]
        if not is_ip(address):
            return f"{address!r} is not an IP address"
        return EntrySource("source.ip", default=address)
    for prefix, hint in _ENTRY_HINTS.items():
        if attr == prefix or attr.startswith(prefix + "."):
            return f"{attr} cannot be translated: {hint}"
    return unsupported
