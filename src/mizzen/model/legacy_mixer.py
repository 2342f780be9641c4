"""Mixer's list checker (``config.istio.io/v1alpha2``) to AuthorizationPolicy
(``security.istio.io/v1``), and the YAML of the modern security resources.

Pure: the Mixer resources and the workloads of the mesh in, policies, refusals
and notes for the user out.

What a Mixer list check meant, and what it becomes
    A ``rule`` whose ``match`` holds for a request runs each action: the
    action's ``listchecker`` handler looks up the value of each ``listentry``
    instance (an attribute of the caller) in its list. A whitelist refuses the
    request when a value is not listed, a blacklist when it is; a request must
    pass every action of every matching rule. Mixer checked HTTP requests and
    TCP connections alike.

    - The rule's ``match`` (``destination.labels["k"] == "v"`` terms, see
      ``mizzen.api.parse_mixer``) becomes the policy's ``selector``; a rule in
      Mixer's configuration namespace (the root namespace, istio-system) saw
      the whole mesh, so its policy goes to the root namespace, or to the
      namespace its ``destination.namespace`` term names.
    - Each listchecker action becomes one policy named
      ``<rule>-<listchecker>`` (``-<action index>`` appended when one rule
      uses the same listchecker twice): ALLOW for a whitelist, DENY for a
      blacklist. An ALLOW policy refuses whatever it does not allow, exactly
      like the whitelist.
    - The caller attribute becomes a source that works on HTTP and TCP alike:
      ``source.labels["k"]`` the ``principals`` of the ServiceAccounts of the
      workloads whose label is listed, ``source.ip`` ``ipBlocks``,
      ``source.principal``/``source.user`` ``principals``,
      ``source.namespace`` ``namespaces``. Several listentries of one action
      must all pass a whitelist (one source, lists intersected) and any of
      them fails a blacklist (one source each).

What is refused (the rule produces nothing, never part of it)
    - a ServiceAccount used both by workloads whose label is listed and by
      workloads whose label is not: identity cannot tell them apart;
    - a list fetched from ``providerUrl``, ``REGEX`` lists, an ``entryType``
      that does not fit the attribute, ``*`` in principals or namespaces
      (a wildcard in an AuthorizationPolicy, a plain character in Mixer);
    - two whitelists on workloads that may overlap: Mixer required both to
      pass, while ALLOW policies add up.

What is only noted
    - a handler or instance that does not exist (Mixer skipped such actions
      too), a rule whose namespace term can never hold, a blacklist that
      matches nobody; a whitelist that matches nobody becomes an ALLOW policy
      that allows nothing;
    - the differences the user will see: denials are 403 ``RBAC: access
      denied`` instead of Mixer's 403 ``PERMISSION_DENIED:...``, identities
      come from mutual TLS, and another ALLOW policy on the same workloads
      widens a whitelist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import yaml

from mizzen.api.parse_mixer import (
    HANDLER_KINDS,
    INSTANCE_KINDS,
    MIXER_KINDS,
    NOT_TRANSLATED,
    EntrySource,
    MixerMatch,
    parse_entry_value,
    parse_match,
)
from mizzen.api.resources import (
    AuthorizationPolicy,
    AuthzOperation,
    AuthzRule,
    AuthzSource,
    JWTRule,
    MixerListChecker,
    MixerListEntry,
    MixerRule,
    ObjectMeta,
    RequestAuthentication,
)
from mizzen.api.validate_names import is_cidr, is_ip

__all__ = [
    "API_VERSION",
    "MeshWorkload",
    "MixerTranslation",
    "SourceWorkload",
    "modern_documents",
    "translate_mixer",
]

_T = TypeVar("_T")

API_VERSION = "security.istio.io/v1"
DRY_RUN_ANNOTATION = "istio.io/dry-run"


class SourceWorkload(Protocol):
    """What the translation needs to know of a workload (a pod, or the pods of
    one controller) that may call others."""

    @property
    def name(self) -> str: ...  # shown to the user ("recommendation-v1")

    @property
    def namespace(self) -> str: ...

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def service_account(self) -> str: ...  # "" means "default"


@dataclass(frozen=True)
class MeshWorkload:
    """A plain ``SourceWorkload``."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str = "default"


@dataclass(frozen=True)
class MixerTranslation:
    """What one Mixer ``rule`` became: its policies, or, when ``refusal`` is
    set, nothing at all and why. ``notes`` are full sentences for the user."""

    rule: MixerRule
    policies: tuple[AuthorizationPolicy, ...] = ()
    refusal: str = ""
    notes: tuple[str, ...] = ()


def translate_mixer(
    checkers: Sequence[MixerListChecker],
    entries: Sequence[MixerListEntry],
    rules: Sequence[MixerRule],
    workloads: Sequence[SourceWorkload],
    *,
    trust_domain: str = "cluster.local",
    root_namespace: str = "istio-system",
) -> tuple[MixerTranslation, ...]:
    """One translation per rule, in the order of ``rules``. ``root_namespace``
    is both the mesh root namespace and Mixer's configuration namespace (both
    istio-system unless changed)."""
    context = _Context(
        {(c.meta.namespace, c.meta.name): c for c in checkers},
        {(e.meta.namespace, e.meta.name): e for e in entries},
        tuple(workloads),
        trust_domain,
        root_namespace,
    )
    drafts = [_translate_rule(rule, context) for rule in rules]
    _refuse_overlapping_whitelists(drafts, root_namespace)
    return tuple(d.finish() for d in drafts)


# ---------------------------------------------------------------------------
# One rule


@dataclass(frozen=True)
class _Context:
    checkers: Mapping[tuple[str, str], MixerListChecker]
    entries: Mapping[tuple[str, str], MixerListEntry]
    workloads: tuple[SourceWorkload, ...]
    trust_domain: str
    root_namespace: str


@dataclass
class _Draft:
    rule: MixerRule
    policies: list[AuthorizationPolicy] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    reference_notes: list[str] = field(default_factory=list)  # kept when refused
    policy_notes: list[str] = field(default_factory=list)

    def finish(self) -> MixerTranslation:
        if self.refusals:
            refusal = " ".join(self.refusals)
            return MixerTranslation(self.rule, (), refusal, tuple(self.reference_notes))
        notes = tuple(self.reference_notes + self.policy_notes)
        return MixerTranslation(self.rule, tuple(self.policies), "", notes)


def _rule_label(rule: MixerRule) -> str:
    return f"rule {rule.meta.namespace}/{rule.meta.name}"


def _translate_rule(rule: MixerRule, context: _Context) -> _Draft:
    draft = _Draft(rule)
    where = _rule_label(rule)
    match = parse_match(rule.match)
    if isinstance(match, str):
        draft.refusals.append(f"{where}: its match {rule.match!r} cannot be translated: {match}.")
        return draft
    scope = _scope(rule, match, context.root_namespace)
    if isinstance(scope, str):
        draft.reference_notes.append(scope)
        return draft
    if not rule.actions:
        draft.reference_notes.append(f"{where} has no actions, so it never did anything.")
    names: set[str] = set()
    for i, action in enumerate(rule.actions):
        here = f"{where}, actions[{i}]"
        checker = _lookup(action.handler, rule.meta.namespace, HANDLER_KINDS, context.checkers)
        if checker is None:
            draft.reference_notes.append(
                f"{here} uses handler {action.handler!r}, which is not a listchecker Mizzen"
                " knows (it does not exist, or is of a kind Mizzen does not translate); that"
                " action is not enforced until the listchecker exists, as in Mixer."
            )
            continue
        found: list[MixerListEntry] = []
        for ref in action.instances:
            entry = _lookup(ref, rule.meta.namespace, INSTANCE_KINDS, context.entries)
            if entry is None:
                draft.reference_notes.append(
                    f"{here} uses instance {ref!r}, which is not a listentry Mizzen knows (it"
                    " does not exist, or is of another template); it is left out, as Mixer"
                    " left it out, until the listentry exists."
                )
            elif entry not in found:
                found.append(entry)
        if not found:
            draft.reference_notes.append(
                f"{here} has no listentry to check, so it is not enforced, as in Mixer."
            )
            continue
        name = _policy_name(rule.meta.name, checker.meta.name, i, names)
        _translate_action(draft, here, name, scope, checker, found, context)
    return draft


def _scope(rule: MixerRule, match: MixerMatch, root: str) -> tuple[str, dict[str, str]] | str:
    """(policy namespace, selector labels) of a rule, or why it never applied."""
    ns = rule.meta.namespace
    target = match.namespace
    if target is None or target == ns:
        return ns, dict(match.labels)
    if ns == root:
        return target, dict(match.labels)
    return (
        f"{_rule_label(rule)} requires destination.namespace == {target!r}, but a rule outside"
        f" {root} only ever saw requests to workloads of its own namespace {ns!r}: it never"
        " matched, so nothing was made from it."
    )


def _lookup(
    ref: str, rule_ns: str, kinds: frozenset[str], objects: Mapping[tuple[str, str], _T]
) -> _T | None:
    """Resolve a handler or instance reference the way Mixer did: ``name`` and
    ``name.kind`` in the rule's namespace, ``name.namespace`` (generic kinds),
    ``name.kind.namespace``."""
    parts = ref.split(".")
    if len(parts) == 1:
        return objects.get((rule_ns, parts[0]))
    if len(parts) == 2:
        if parts[1] in kinds:
            return objects.get((rule_ns, parts[0]))
        if parts[1] in NOT_TRANSLATED or parts[1] in MIXER_KINDS:
            return None
        return objects.get((parts[1], parts[0]))
    if len(parts) == 3 and parts[1] in kinds:
        return objects.get((parts[2], parts[0]))
    return None


def _policy_name(rule: str, handler: str, action: int, used: set[str]) -> str:
    name = f"{rule}-{handler}"
    if name in used:
        name = f"{name}-{action}"
    if len(name) > 253:
        name = name[:253].rstrip("-.")
    used.add(name)
    return name


# ---------------------------------------------------------------------------
# One listchecker action


_Field = Literal["principals", "namespaces", "ip_blocks"]


@dataclass(frozen=True)
class _Callers:
    """The callers one listentry names: values of one AuthorizationPolicy
    source field (empty: nobody)."""

    field: _Field
    values: tuple[str, ...]
    what: str  # 'source.labels["app"] in [recommendation]', for notes
    by_identity: bool  # needs the caller's mTLS identity
    from_workloads: bool  # computed from the workloads running now


def _translate_action(
    draft: _Draft,
    here: str,
    name: str,
    scope: tuple[str, dict[str, str]],
    checker: MixerListChecker,
    entries: list[MixerListEntry],
    context: _Context,
) -> None:
    ns, labels = scope
    handler = f"listchecker {checker.meta.namespace}/{checker.meta.name}"
    whitelist = not checker.blacklist
    if checker.provider_url:
        draft.refusals.append(
            f"{here}: {handler} fetches its list from {checker.provider_url!r}, which cannot be"
            " known when the policy is written; copy the list into overrides."
        )
        return
    if checker.entry_type not in ("STRINGS", "CASE_INSENSITIVE_STRINGS", "IP_ADDRESSES"):
        draft.refusals.append(
            f"{here}: {handler} has entryType {checker.entry_type}, which AuthorizationPolicy"
            " cannot express; list the values with entryType STRINGS."
        )
        return
    callers: list[_Callers] = []
    for entry in entries:
        result = _callers(entry, checker, whitelist, context)
        if isinstance(result, str):
            draft.refusals.append(f"{here}: {result}")
        else:
            callers.append(result)
    if draft.refusals:
        return
    meta = ObjectMeta(name, ns)
    selector = labels or None
    mixer_handler = f"{checker.meta.name}.listchecker.{checker.meta.namespace}"
    notes: list[str] = []
    if whitelist:
        policy = _whitelist_policy(meta, selector, callers, handler, notes)
        verdict = "is not whitelisted"
    else:
        blacklist = _blacklist_policy(meta, selector, callers, handler, notes)
        if blacklist is None:
            draft.policy_notes.extend(notes)
            return
        policy = blacklist
        verdict = "is blacklisted"
    draft.policies.append(policy)
    draft.policy_notes.extend(notes)
    draft.policy_notes.append(
        f"Requests that AuthorizationPolicy {ns}/{name} refuses now get 403 with body"
        f" `RBAC: access denied`; Mixer answered 403"
        f" `PERMISSION_DENIED:{mixer_handler}:<value> {verdict}`."
    )
    if any(c.by_identity for c in callers):
        outcome = "refused even when it is listed" if whitelist else "not refused even when listed"
        draft.policy_notes.append(
            f"AuthorizationPolicy {ns}/{name} recognises callers by their mutual-TLS identity:"
            f" a caller without a sidecar has none and is {outcome}; keep mutual TLS on"
            " between these workloads."
        )
    if any(c.from_workloads and c.values for c in callers):
        draft.policy_notes.append(
            f"The ServiceAccounts in AuthorizationPolicy {ns}/{name} come from the workloads"
            " running now: a workload that gets a listed label later is covered only once"
            " this is translated again."
        )
    if whitelist:
        draft.policy_notes.append(
            f"AuthorizationPolicy {ns}/{name} is an ALLOW policy: it refuses every request to"
            " the selected workloads that it does not allow, as the whitelist did; another"
            " ALLOW policy on the same workloads would let in what it allows as well, where"
            " Mixer required every check to pass."
        )


def _whitelist_policy(
    meta: ObjectMeta,
    selector: dict[str, str] | None,
    callers: list[_Callers],
    handler: str,
    notes: list[str],
) -> AuthorizationPolicy:
    """ALLOW what every listentry lets through."""
    fields: dict[_Field, list[str]] = {}
    for c in callers:
        if c.field in fields:
            fields[c.field] = [v for v in fields[c.field] if v in c.values]
        else:
            fields[c.field] = list(c.values)
    where = f"AuthorizationPolicy {meta.namespace}/{meta.name}"
    nobody = [c for c in callers if not c.values]
    if nobody or not all(fields.values()):
        why = (
            f"No caller has {' or '.join(c.what for c in nobody)}"
            if nobody
            else f"No caller has {' and '.join(c.what for c in callers)} at once"
        )
        notes.append(
            f"{why} ({handler}), so {where} allows nothing: every request to the selected"
            " workloads is refused, as the whitelist did."
        )
        return AuthorizationPolicy(meta, "ALLOW", (), selector)
    source = _source({k: tuple(v) for k, v in fields.items()})
    return AuthorizationPolicy(meta, "ALLOW", (AuthzRule(sources=(source,)),), selector)


def _blacklist_policy(
    meta: ObjectMeta,
    selector: dict[str, str] | None,
    callers: list[_Callers],
    handler: str,
    notes: list[str],
) -> AuthorizationPolicy | None:
    """DENY what any listentry finds."""
    sources: list[AuthzSource] = []
    for c in callers:
        if not c.values:
            notes.append(f"No caller has {c.what} ({handler}), so that check refuses nobody.")
            continue
        source = _source({c.field: c.values})
        if source not in sources:
            sources.append(source)
    if not sources:
        notes.append(
            f"{handler} refuses nobody now, so no AuthorizationPolicy was made from it"
            f" (it would have been {meta.namespace}/{meta.name})."
        )
        return None
    return AuthorizationPolicy(meta, "DENY", (AuthzRule(sources=tuple(sources)),), selector)


def _source(fields: Mapping[_Field, tuple[str, ...]]) -> AuthzSource:
    return AuthzSource(
        principals=fields.get("principals", ()),
        namespaces=fields.get("namespaces", ()),
        ip_blocks=fields.get("ip_blocks", ()),
    )


# ---------------------------------------------------------------------------
# One listentry: which callers its list names


def _callers(
    entry: MixerListEntry, checker: MixerListChecker, whitelist: bool, context: _Context
) -> _Callers | str:
    """The callers the list names through this entry, or why that cannot be
    expressed."""
    source = parse_entry_value(entry.value)
    instance = f"listentry {entry.meta.namespace}/{entry.meta.name}"
    if isinstance(source, str):
        return f"{instance}: {source}."
    entry_type = checker.entry_type
    if source.attribute == "source.ip":
        if entry_type != "IP_ADDRESSES":
            return (
                f"{instance} checks source.ip, but listchecker {checker.meta.name} compares"
                f" {entry_type}; set its entryType to IP_ADDRESSES."
            )
        bad = [v for v in checker.overrides if not _ip_block(v)]
        if bad:
            return (
                f"listchecker {checker.meta.name} lists {', '.join(bad)}, which are not IPv4"
                " addresses or CIDR ranges (write IPv6 ranges with their prefix length)."
            )
        return _Callers("ip_blocks", tuple(checker.overrides), _what(source, checker), False, False)
    if entry_type == "IP_ADDRESSES":
        return (
            f"{instance} checks {source}, but listchecker {checker.meta.name} compares IP"
            " addresses; set its entryType to STRINGS."
        )
    if source.attribute == "source.labels":
        return _label_callers(source, checker, whitelist, context)
    if source.attribute == "source.namespace":
        values = _plain(checker.overrides, source, checker, lower=entry_type != "STRINGS")
        if isinstance(values, str):
            return values
        return _Callers("namespaces", values, _what(source, checker), True, False)
    if entry_type != "STRINGS":
        return (
            f"{instance} checks {source} case-insensitively, but principals are matched"
            f" exactly; set the entryType of listchecker {checker.meta.name} to STRINGS."
        )
    principals = tuple(v.removeprefix("spiffe://") for v in checker.overrides)
    values = _plain(principals, source, checker, lower=False)
    if isinstance(values, str):
        return values
    return _Callers("principals", values, _what(source, checker), True, False)


def _ip_block(value: str) -> bool:
    if "/" in value:
        return is_cidr(value)
    return is_ip(value) and ":" not in value


def _plain(
    values: Iterable[str], source: EntrySource, checker: MixerListChecker, *, lower: bool
) -> tuple[str, ...] | str:
    out: list[str] = []
    for value in values:
        if "*" in value:
            return (
                f"listchecker {checker.meta.name} lists {value!r} for {source}: Mixer compared"
                " '*' literally, an AuthorizationPolicy reads it as a wildcard; list the"
                " values without it."
            )
        shown = value.lower() if lower else value
        if shown not in out:
            out.append(shown)
    return tuple(out)


def _what(source: EntrySource, checker: MixerListChecker) -> str:
    listed = ", ".join(checker.overrides)
    return f"{source} in [{listed}]"


def _label_callers(
    source: EntrySource, checker: MixerListChecker, whitelist: bool, context: _Context
) -> _Callers | str:
    key = source.label
    fold: Callable[[str], str] = (
        str.casefold if checker.entry_type == "CASE_INSENSITIVE_STRINGS" else str
    )
    listed = {fold(v) for v in checker.overrides}
    what = _what(source, checker)
    if source.default is not None and fold(source.default) in listed:
        return (
            f"the default {source.default!r} of {source} is listed by listchecker"
            f" {checker.meta.name}, so Mixer also matched callers without that label,"
            " including callers outside the mesh; an AuthorizationPolicy can only name callers"
            " by identity. Remove the default from the listentry, or that value from the list."
        )

    def is_listed(w: SourceWorkload) -> bool:
        value = w.labels.get(key)
        return value is not None and fold(value) in listed

    accounts: dict[tuple[str, str], list[SourceWorkload]] = {}
    for w in context.workloads:
        accounts.setdefault((w.namespace, w.service_account or "default"), []).append(w)
    principals: list[str] = []
    conflicts: list[str] = []
    shared: list[SourceWorkload] = []
    for (ns, sa), members in sorted(accounts.items()):
        inside = [w for w in members if is_listed(w)]
        if not inside:
            continue
        outside = [w for w in members if not is_listed(w)]
        if outside:
            conflicts.append(
                f"ServiceAccount {ns}/{sa} is used by {_names(inside, key)}, which are listed,"
                f" and by {_names(outside, key)}, so {'allowing' if whitelist else 'refusing'}"
                f" it would also {'let in' if whitelist else 'refuse'} {_names(outside)}"
            )
            shared.extend(inside)
        principals.append(f"{context.trust_domain}/ns/{ns}/sa/{sa}")
    if conflicts:
        return (
            f"listchecker {checker.meta.name} {'allows only' if whitelist else 'refuses'}"
            f" callers with {what}, but an AuthorizationPolicy tells callers apart only by"
            " their ServiceAccount: "
            + "; ".join(conflicts)
            + f". Give {_names(shared)} a ServiceAccount of their own"
            " (spec.serviceAccountName in the pod template) and apply again; nothing of"
            " this rule is enforced until then."
        )
    return _Callers("principals", tuple(principals), what, True, True)


def _names(workloads: list[SourceWorkload], key: str = "") -> str:
    """``a, b and c``, each with its ``key`` label when ``key`` is given."""
    shown = []
    for w in sorted(workloads, key=lambda w: (w.namespace, w.name)):
        if key:
            value = w.labels.get(key)
            shown.append(
                f"{w.name} ({f'{key}={value}' if value is not None else f'no {key} label'})"
            )
        else:
            shown.append(w.name)
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


# ---------------------------------------------------------------------------
# Whitelists that add up


def _refuse_overlapping_whitelists(drafts: list[_Draft], root: str) -> None:
    allows = [
        (i, p)
        for i, d in enumerate(drafts)
        if not d.refusals
        for p in d.policies
        if p.action == "ALLOW"
    ]
    clashes: dict[int, list[str]] = {}
    for a, (i, first) in enumerate(allows):
        for j, second in allows[a + 1 :]:
            if not _may_overlap(first, second, root):
                continue
            if i == j:
                clashes.setdefault(i, []).append(
                    f"its whitelist policies {first.meta.name} and {second.meta.name} may apply"
                    " to the same workloads"
                )
                continue
            for k, mine, other, other_rule in (
                (i, first, second, drafts[j].rule),
                (j, second, first, drafts[i].rule),
            ):
                clashes.setdefault(k, []).append(
                    f"its whitelist policy {mine.meta.name} and the whitelist policy"
                    f" {other.meta.name} (from {_rule_label(other_rule)}) may apply to the"
                    " same workloads"
                )
    for k, reasons in clashes.items():
        draft = drafts[k]
        draft.refusals.append(
            f"{_rule_label(draft.rule)} cannot be translated: "
            + "; ".join(reasons)
            + ". Mixer let a request through only when every whitelist allowed it, while"
            " ALLOW policies add up (a caller allowed by either gets in). Merge the lists"
            " into one listchecker used by one rule, or write one AuthorizationPolicy that"
            " lists only the callers every whitelist allows; nothing of this rule is"
            " enforced until then."
        )


def _may_overlap(a: AuthorizationPolicy, b: AuthorizationPolicy, root: str) -> bool:
    same_scope = root in (a.meta.namespace, b.meta.namespace) or (
        a.meta.namespace == b.meta.namespace
    )
    if not same_scope:
        return False
    mine, theirs = a.selector or {}, b.selector or {}
    return all(theirs.get(k, v) == v for k, v in mine.items())


# ---------------------------------------------------------------------------
# YAML of the modern resources


def modern_documents(objs: Sequence[AuthorizationPolicy | RequestAuthentication]) -> str:
    """``objs`` as security.istio.io/v1 YAML, one document each, joined by
    ``---``; only the fields that are set, with Istio's field names."""
    return "---\n".join(
        yaml.safe_dump(_document(o), sort_keys=False, default_flow_style=False, width=4096)
        for o in objs
    )


def _document(obj: AuthorizationPolicy | RequestAuthentication) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": obj.meta.name}
    if obj.meta.namespace:
        metadata["namespace"] = obj.meta.namespace
    if obj.meta.labels:
        metadata["labels"] = dict(obj.meta.labels)
    annotations = dict(obj.meta.annotations)
    if isinstance(obj, AuthorizationPolicy) and obj.dry_run:
        annotations[DRY_RUN_ANNOTATION] = "true"
    if annotations:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {}
    if obj.selector:
        spec["selector"] = {"matchLabels": dict(obj.selector)}
    if obj.target_refs:
        spec["targetRefs"] = [
            _drop_empty({"group": r.group, "kind": r.kind, "name": r.name}) for r in obj.target_refs
        ]
    if isinstance(obj, AuthorizationPolicy):
        kind = "AuthorizationPolicy"
        spec["action"] = obj.action
        if obj.provider:
            spec["provider"] = {"name": obj.provider}
        if obj.rules:
            spec["rules"] = [_rule(r) for r in obj.rules]
    else:
        kind = "RequestAuthentication"
        if obj.jwt_rules:
            spec["jwtRules"] = [_jwt_rule(r) for r in obj.jwt_rules]
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def _rule(rule: AuthzRule) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rule.sources:
        out["from"] = [{"source": _source_doc(s)} for s in rule.sources]
    if rule.operations:
        out["to"] = [{"operation": _operation_doc(o)} for o in rule.operations]
    if rule.when:
        out["when"] = [
            _drop_empty({"key": c.key, "values": list(c.values), "notValues": list(c.not_values)})
            for c in rule.when
        ]
    return out


def _source_doc(s: AuthzSource) -> dict[str, Any]:
    return _drop_empty(
        {
            "principals": list(s.principals),
            "notPrincipals": list(s.not_principals),
            "requestPrincipals": list(s.request_principals),
            "notRequestPrincipals": list(s.not_request_principals),
            "namespaces": list(s.namespaces),
            "notNamespaces": list(s.not_namespaces),
            "serviceAccounts": list(s.service_accounts),
            "notServiceAccounts": list(s.not_service_accounts),
            "ipBlocks": list(s.ip_blocks),
            "notIpBlocks": list(s.not_ip_blocks),
            "remoteIpBlocks": list(s.remote_ip_blocks),
            "notRemoteIpBlocks": list(s.not_remote_ip_blocks),
        }
    )


def _operation_doc(o: AuthzOperation) -> dict[str, Any]:
    return _drop_empty(
        {
            "hosts": list(o.hosts),
            "notHosts": list(o.not_hosts),
            "ports": list(o.ports),
            "notPorts": list(o.not_ports),
            "methods": list(o.methods),
            "notMethods": list(o.not_methods),
            "paths": list(o.paths),
            "notPaths": list(o.not_paths),
        }
    )


def _jwt_rule(r: JWTRule) -> dict[str, Any]:
    return _drop_empty(
        {
            "issuer": r.issuer,
            "audiences": list(r.audiences),
            "jwksUri": r.jwks_uri,
            "jwks": r.jwks,
            "fromHeaders": [
                _drop_empty({"name": h.name, "prefix": h.prefix}) for h in r.from_headers
            ],
            "fromParams": list(r.from_params),
            "fromCookies": list(r.from_cookies),
            "forwardOriginalToken": r.forward_original_token,
            "outputPayloadToHeader": r.output_payload_to_header,
            "outputClaimToHeaders": [
                {"header": c.header, "claim": c.claim} for c in r.output_claim_to_headers
            ],
            "timeout": None if r.timeout is None else _duration(r.timeout),
            "spaceDelimitedClaims": list(r.space_delimited_claims),
        }
    )


def _duration(seconds: float) -> str:
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _drop_empty(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in (None, "", [], False)}
