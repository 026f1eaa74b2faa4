"""The risk flags of a diff: the changes a reviewer must not miss.

Each rule looks at one change (and, for deletions, at what the old tree held)
and names the risks by their stable ids (``diff_model.RISKS``).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterator
from typing import Any

from msgspec import Struct

from meshctl import layout
from meshctl.diff_model import (
    ABSENT,
    Change,
    FieldPath,
    Risk,
    Target,
    field_changes,
    format_field_path,
)

# --------------------------------------------------------------------------
# Risk flags.

PRODUCTION_NAMES = ("prod", "production")
DATA_KINDS = {
    ("postgresql.cnpg.io", "Cluster"),
    ("postgresql.cnpg.io", "Pooler"),
    ("postgresql.cnpg.io", "ScheduledBackup"),
    ("postgresql.cnpg.io", "Backup"),
    ("elasticsearch.k8s.elastic.co", "Elasticsearch"),
    ("kibana.k8s.elastic.co", "Kibana"),
    ("", "PersistentVolumeClaim"),
    ("", "PersistentVolume"),
    ("apps", "StatefulSet"),
}
# Charts that hold data themselves, or install the CRDs of resources that do
# (an Application that cascades deletes those CRDs, and with them every object).
DATA_CHARTS = {
    "redis",
    "postgresql",
    "postgresql-ha",
    "mysql",
    "mariadb",
    "mongodb",
    "elasticsearch",
    "opensearch",
    "kafka",
    "minio",
    "cloudnative-pg",
    "eck-operator",
}
ARGO_FINALIZER = "resources-finalizer.argocd.argoproj.io"
REPLICA_KEYS = {"replicas", "replicaCount", "instances", "count", "minReplicas", "maxReplicas"}
CALICO_GROUPS = {"crd.projectcalico.org", "projectcalico.org"}


class Context(Struct):
    """What the risk rules may ask about an environment beyond one change."""

    environment: str
    production: bool
    # The old tree's resources of the environment, read only when a rule asks.
    old_resources: Callable[[], dict[Target, tuple[Any, str]]]
    _data_namespaces: set[str] | None = None

    def data_namespaces(self) -> set[str]:
        """Namespaces that held data in the old tree (parsed only when asked)."""
        if self._data_namespaces is None:
            found = set()
            for target, (body, _) in self.old_resources().items():
                if (target.group, target.kind) in DATA_KINDS and target.namespace:
                    found.add(target.namespace)
                elif _is_application(target) and _data_application(body):
                    destination = (body.get("spec") or {}).get("destination") or {}
                    if isinstance(destination.get("namespace"), str):
                        found.add(destination["namespace"])
            self._data_namespaces = found
        return self._data_namespaces


def assess(
    context: Context,
    change: Change,
    old: Any,
    new: Any,
    raw: list[tuple[FieldPath, Any, Any]],
) -> list[Risk]:
    risks: list[Risk] = []
    target = change.target
    if change.action == "removed":
        risks += _removal_risks(context, target, old)
    elif change.action == "added":
        risks += _addition_risks(target, new)
    else:
        risks += _policy_risks(target, old, new)
        if _is_application(target) or _is_helm_release(target):
            risks += _chart_risks(old, new)
    if raw:
        for path, before, after in _leaf_pairs(raw):
            risks += _leaf_risks(context, target, path, before, after)
    unique: dict[tuple[str, str | None, str], Risk] = {}
    for risk in risks:
        unique.setdefault((risk.id, risk.path, risk.message), risk)
    return list(unique.values())


def _is_application(target: Target) -> bool:
    return target.group == "argoproj.io" and target.kind == "Application"


def _is_helm_release(target: Target) -> bool:
    return target.group == "helm.toolkit.fluxcd.io" and target.kind == "HelmRelease"


def _sources(body: Any) -> list[dict[str, Any]]:
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return []
    found = [spec["source"]] if isinstance(spec.get("source"), dict) else []
    found += [s for s in spec.get("sources") or [] if isinstance(s, dict)]
    return found


def _chart_name(source: dict[str, Any]) -> str | None:
    """The chart a source installs: `chart`, or the last part of an OCI repo URL."""
    if isinstance(source.get("chart"), str):
        return str(source["chart"])
    url = source.get("repoURL")
    if isinstance(url, str) and url.startswith("oci://"):
        return url.rstrip("/").rsplit("/", 1)[-1]
    return None


def _data_application(body: Any) -> str | None:
    """Why deleting this Application deletes data (None when it does not)."""
    metadata = body.get("metadata") if isinstance(body, dict) else None
    finalizers = (metadata or {}).get("finalizers") or []
    if ARGO_FINALIZER not in finalizers:
        return None
    for source in _sources(body):
        chart = _chart_name(source)
        if chart in DATA_CHARTS:
            return f"it cascades to the {chart} chart's resources"
        path = source.get("path")
        if isinstance(path, str) and posixpath.basename(path.rstrip("/")) == layout.DATA:
            return "it cascades to the data stage (database and search clusters)"
    return None


def _removal_risks(context: Context, target: Target, old: Any) -> list[Risk]:
    risks = []
    if (target.group, target.kind) in DATA_KINDS:
        risks.append(Risk("data-deleted", f"deleting a {target.kind} deletes the data it holds"))
    elif target.type == "values" and target.name in DATA_CHARTS - {
        "cloudnative-pg",
        "eck-operator",
    }:
        risks.append(
            Risk("data-deleted", f"the {target.name} release's values are gone with its data")
        )
    elif _is_application(target):
        reason = _data_application(old)
        if reason:
            risks.append(Risk("data-deleted", f"deleting this Application deletes data: {reason}"))
    elif (
        target.group == ""
        and target.kind == "Namespace"
        and target.name in (context.data_namespaces())
    ):
        risks.append(
            Risk("data-deleted", f"deleting namespace {target.name} deletes the data tier in it")
        )
    if target.group == "security.istio.io":
        if target.kind == "PeerAuthentication" and _strict_anywhere(old):
            risks.append(Risk("mtls-weakened", "a STRICT PeerAuthentication is removed"))
        elif target.kind == "AuthorizationPolicy":
            risks.append(Risk("authz-loosened", "an AuthorizationPolicy is removed"))
    if _is_network_policy(target):
        risks.append(Risk("network-policy-loosened", f"a {target.kind} is removed"))
    return risks


def _addition_risks(target: Target, new: Any) -> list[Risk]:
    """New policies are expected with new services; one that allows everything is not."""
    spec = new.get("spec") if isinstance(new, dict) else None
    spec = spec if isinstance(spec, dict) else {}
    authz = target.group == "security.istio.io" and target.kind == "AuthorizationPolicy"
    if authz and spec.get("action", "ALLOW") == "ALLOW" and {} in (spec.get("rules") or []):
        return [Risk("authz-loosened", "a new AuthorizationPolicy allows every request")]
    peer = target.group == "security.istio.io" and target.kind == "PeerAuthentication"
    if peer:
        # A new policy that lets plain text in, for the workload or one port
        # (a service's metrics port), overrides the mesh-wide STRICT for it.
        modes = [("workload", (spec.get("mtls") or {}).get("mode"))]
        modes += [
            (f"port {port}", (level or {}).get("mode"))
            for port, level in sorted((spec.get("portLevelMtls") or {}).items())
        ]
        weak = [f"{where} {mode}" for where, mode in modes if mode in ("PERMISSIVE", "DISABLE")]
        if weak:
            return [
                Risk(
                    "mtls-weakened",
                    "a new PeerAuthentication accepts plain text: " + ", ".join(weak),
                )
            ]
    if _is_network_policy(target):
        for direction, rules in _policy_rules(target, spec).items():
            if {} in rules["allow"]:
                return [
                    Risk(
                        "network-policy-loosened",
                        f"a new {target.kind} allows all {direction} traffic",
                    )
                ]
    return []


def _strict_anywhere(body: Any) -> bool:
    spec = body.get("spec") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        return False
    modes = [(spec.get("mtls") or {}).get("mode")]
    modes += [(p or {}).get("mode") for p in (spec.get("portLevelMtls") or {}).values()]
    return "STRICT" in modes


def _is_network_policy(target: Target) -> bool:
    if target.group == "networking.k8s.io":
        return target.kind == "NetworkPolicy"
    return target.group in CALICO_GROUPS and target.kind in (
        "NetworkPolicy",
        "GlobalNetworkPolicy",
    )


# -- policies: does the new one admit more than the old? --------------------


def _negative(key: str) -> bool:
    """Keys that exclude rather than admit (Istio's notPrincipals, Calico's
    notSelector, Kubernetes' ipBlock.except)."""
    return key == "except" or (key.startswith("not") and key[3:4].isupper())


def _compact(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _narrower_selector(old: str, new: str) -> bool:
    """A Calico selector that only adds terms (`old && more`) selects no more."""
    return new.startswith(f"{old} && ") or new.startswith(f"({old}) && ")


def wider(old: Any, new: Any, path: str = "", *, exclusion: bool = False) -> list[str]:
    """How `new` admits more than `old`, read as a policy condition ([] if it does not).

    Maps are conditions that all must hold: a key dropped admits more, a key
    added admits less. Lists of scalars are sets of admitted values; lists of
    maps are alternatives, each new one must be no wider than some old one
    (the reasons name the closest old one's differences). Negative keys
    (``notX``, ``except``) read the other way round.
    """
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        reasons = []
        for key, before in old.items():
            sub = f"{path}.{key}" if path else str(key)
            after = new.get(key, ABSENT)
            negative = _negative(str(key))
            if after is ABSENT:
                if before not in ({}, [], None, ""):
                    reasons.append(f"{sub} {'exclusion' if negative else 'condition'} removed")
            elif negative:
                reasons += wider(after, before, sub, exclusion=True)
            else:
                reasons += wider(before, after, sub)
        return reasons
    if isinstance(old, list) and isinstance(new, list):
        return _wider_list(old, new, path, exclusion=exclusion)
    if isinstance(old, str) and isinstance(new, str) and _narrower_selector(old, new):
        return []
    what = f"{path}: " if path else ""
    before, after = (new, old) if exclusion else (old, new)
    return [f"{what}{_compact(before)} -> {_compact(after)}"]


def _wider_list(old: list[Any], new: list[Any], path: str, *, exclusion: bool) -> list[str]:
    if not any(isinstance(v, dict | list) for v in (*old, *new)):
        extra = [v for v in (old if exclusion else new) if v not in (new if exclusion else old)]
        verb = "no longer excludes" if exclusion else "admits"
        return [f"{path} {verb} {_compact(extra)}"] if extra else []
    reasons = []
    for index, item in enumerate(new):
        if item in old:
            continue
        candidates = [wider(before, item) for before in old]
        if any(not c for c in candidates):
            continue
        label = f"{path}[{index}]"
        if candidates:
            closest: list[str] = min(candidates, key=len)
            reasons.append(f"{label}: {', '.join(closest)}")
        else:
            reasons.append(f"{label}: {_compact(item)}")
    return reasons


def _policy_rules(target: Target, spec: dict[str, Any]) -> dict[str, dict[str, list[Any]]]:
    """A network policy's rules per direction, split into allow and deny."""
    rules: dict[str, dict[str, list[Any]]] = {}
    for direction in ("ingress", "egress"):
        listed = [r for r in spec.get(direction) or [] if isinstance(r, dict)]
        if target.group == "networking.k8s.io":
            rules[direction] = {"allow": listed, "deny": []}
            continue
        split: dict[str, list[Any]] = {"allow": [], "deny": []}
        for rule in listed:
            action = str(rule.get("action", "")).lower()
            if action in split:
                split[action].append({k: v for k, v in rule.items() if k != "action"})
        rules[direction] = split
    return rules


def _policy_types(target: Target, spec: dict[str, Any]) -> set[str]:
    key = "policyTypes" if target.group == "networking.k8s.io" else "types"
    listed = spec.get(key)
    if isinstance(listed, list):
        return {str(t).lower() for t in listed}
    return {"ingress"} | ({"egress"} if spec.get("egress") else set())


def _policy_risks(target: Target, old: Any, new: Any) -> list[Risk]:
    old_spec = old.get("spec") if isinstance(old, dict) else None
    new_spec = new.get("spec") if isinstance(new, dict) else None
    old_spec = old_spec if isinstance(old_spec, dict) else {}
    new_spec = new_spec if isinstance(new_spec, dict) else {}
    if target.group == "security.istio.io" and target.kind == "AuthorizationPolicy":
        reasons = _authz_wider(old_spec, new_spec)
        return [Risk("authz-loosened", _reasons(reasons))] if reasons else []
    if target.group == "security.istio.io" and target.kind == "PeerAuthentication":
        return _mtls_risks(old_spec, new_spec)
    if target.group == "networking.istio.io" and target.kind == "DestinationRule":
        return _destination_tls_risks(old_spec, new_spec)
    if _is_network_policy(target):
        reasons = _network_wider(target, old_spec, new_spec)
        return [Risk("network-policy-loosened", _reasons(reasons))] if reasons else []
    return []


def _reasons(reasons: list[str]) -> str:
    shown = "; ".join(reasons[:3])
    return shown + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")


def _authz_wider(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = old.get("action", "ALLOW"), new.get("action", "ALLOW")
    if before != after:
        return [] if after == "DENY" else [f"action {before} -> {after}"]
    selector_old, selector_new = old.get("selector") or {}, new.get("selector") or {}
    rules_old, rules_new = old.get("rules") or [], new.get("rules") or []
    if after == "ALLOW":
        reasons = [f"selector widened: {r}" for r in wider(selector_old, selector_new, "selector")]
        return reasons + [f"allows more: {r}" for r in wider(rules_old, rules_new, "rules")]
    if after == "DENY":
        reasons = [f"selector narrowed: {r}" for r in wider(selector_new, selector_old, "selector")]
        return reasons + [f"denies less: {r}" for r in wider(rules_new, rules_old, "rules")]
    return []


def _network_wider(target: Target, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = (
        ("podSelector",)
        if target.group == "networking.k8s.io"
        else ("selector", "namespaceSelector", "serviceAccountSelector")
    )
    reasons = [
        f"selector widened: {r}"
        for r in wider({k: old[k] for k in keys if k in old}, {k: new[k] for k in keys if k in new})
    ]
    lost = _policy_types(target, old) - _policy_types(target, new)
    reasons += [f"{t} no longer enforced" for t in sorted(lost)]
    rules_old, rules_new = _policy_rules(target, old), _policy_rules(target, new)
    for direction in ("ingress", "egress"):
        before, after = rules_old[direction], rules_new[direction]
        kind = "" if target.group == "networking.k8s.io" else " Allow"
        allowed = wider(before["allow"], after["allow"], f"{direction}{kind} rules")
        denied = wider(after["deny"], before["deny"], f"{direction} Deny rules")
        reasons += [f"allows more: {r}" for r in allowed]
        reasons += [f"denies less: {r}" for r in denied]
    return reasons


_MTLS_RANK = {"STRICT": 3, "PERMISSIVE": 2, "UNSET": 1, "DISABLE": 0}
_DR_TLS_RANK = {"ISTIO_MUTUAL": 3, "MUTUAL": 3, "SIMPLE": 1, "DISABLE": 0}


def _mtls_risks(old: dict[str, Any], new: dict[str, Any]) -> list[Risk]:
    def modes(spec: dict[str, Any]) -> dict[str, str]:
        found = {"mtls.mode": str((spec.get("mtls") or {}).get("mode") or "UNSET")}
        for port, setting in (spec.get("portLevelMtls") or {}).items():
            found[f"portLevelMtls.{port}.mode"] = str((setting or {}).get("mode") or "UNSET")
        return found

    before, after = modes(old), modes(new)
    risks = []
    for key, mode in before.items():
        now = after.get(key, after["mtls.mode"])
        if _MTLS_RANK.get(now, 1) < _MTLS_RANK.get(mode, 1):
            risks.append(Risk("mtls-weakened", f"mTLS {mode} -> {now}", f"spec.{key}"))
    return risks


def _destination_tls_risks(old: dict[str, Any], new: dict[str, Any]) -> list[Risk]:
    risks = []
    for path, before, after in field_changes(old, new, ("spec",)):
        if len(path) >= 2 and path[-2:] == ("tls", "mode"):
            rank_old = _DR_TLS_RANK.get(str(before), 2)
            rank_new = _DR_TLS_RANK.get(str(after), 2)
            if rank_new < rank_old:
                shown = "(not set)" if after is ABSENT else after
                risks.append(
                    Risk(
                        "mtls-weakened",
                        f"TLS mode {before} -> {shown}",
                        format_field_path(path),
                    )
                )
    return risks


# -- charts -----------------------------------------------------------------

_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?")


def _chart_versions(body: Any) -> dict[str, str]:
    versions = {}
    for source in _sources(body):
        chart = _chart_name(source)
        if chart and isinstance(source.get("targetRevision"), str):
            versions[chart] = source["targetRevision"]
    spec = body.get("spec") if isinstance(body, dict) else None
    chart_spec = (
        (((spec or {}).get("chart") or {}).get("spec") or {}) if isinstance(spec, dict) else {}
    )
    if isinstance(chart_spec, dict) and isinstance(chart_spec.get("chart"), str):
        versions[chart_spec["chart"]] = str(chart_spec.get("version", ""))
    return versions


def _chart_risks(old: Any, new: Any) -> list[Risk]:
    risks = []
    before, after = _chart_versions(old), _chart_versions(new)
    for chart, version in sorted(after.items()):
        previous = before.get(chart)
        if previous is None or previous == version:
            continue
        a, b = _SEMVER.match(previous), _SEMVER.match(version)
        if not a or not b:
            continue
        major_a, major_b = int(a[1]), int(b[1])
        minor_a, minor_b = int(a[2] or 0), int(b[2] or 0)
        if major_a != major_b or (major_a == 0 and minor_a != minor_b):
            risks.append(Risk("chart-major-changed", f"chart {chart} {previous} -> {version}"))
    return risks


# -- leaves: replicas, persistence, TLS minimums, retention ---------------------


def _leaves(value: Any, path: FieldPath) -> Iterator[tuple[FieldPath, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif value is not ABSENT:
        yield path, value


def _leaf_pairs(raw: list[tuple[FieldPath, Any, Any]]) -> Iterator[tuple[FieldPath, Any, Any]]:
    """Every scalar that changed, also inside maps and lists added or removed whole."""
    for path, old, new in raw:
        if not isinstance(old, dict | list) and not isinstance(new, dict | list):
            yield path, old, new
            continue
        before, after = dict(_leaves(old, path)), dict(_leaves(new, path))
        for leaf in [*before, *(p for p in after if p not in before)]:
            a, b = before.get(leaf, ABSENT), after.get(leaf, ABSENT)
            if a != b:
                yield leaf, a, b


def _key(path: FieldPath) -> str:
    for part in reversed(path):
        if isinstance(part, str):
            return part
    return ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _leaf_risks(
    context: Context, target: Target, path: FieldPath, old: Any, new: Any
) -> list[Risk]:
    key = _key(path)
    shown = format_field_path(path)
    old_text = "(not set)" if old is ABSENT else _compact(old)
    new_text = "(not set)" if new is ABSENT else _compact(new)
    risks = []
    if context.production and key in REPLICA_KEYS:
        before, after = _number(old), _number(new)
        if before is not None and (new is ABSENT or (after is not None and after < before)):
            risks.append(Risk("replicas-reduced", f"{key} {old_text} -> {new_text}", shown))
    if (
        len(path) >= 2
        and path[-2:] == ("persistence", "enabled")
        and old is True
        and new is not True
    ):
        risks.append(
            Risk("data-deleted", f"persistence turned off ({old_text} -> {new_text})", shown)
        )
    if _tls_key(path):
        before_tls, after_tls = _tls_minimum(old), _tls_minimum(new)
        if before_tls is not None and (
            new is ABSENT or (after_tls is not None and after_tls < before_tls)
        ):
            risks.append(Risk("tls-min-lowered", f"{key} {old_text} -> {new_text}", shown))
    if "retention" in key.lower():
        before_r, after_r = _amount(key, old), _amount(key, new)
        shorter = (
            after_r is not None
            and before_r is not None
            and after_r[0] == before_r[0]
            and after_r[1] < before_r[1]
        )
        if before_r is not None and (new is ABSENT or shorter):
            risks.append(Risk("retention-shortened", f"{key} {old_text} -> {new_text}", shown))
    return risks


_TLS_KEY = re.compile(
    r"(?i)^(?:.*ssl_?protocols|min_?(?:tls|ssl|protocol)_?version|tls_?min_?version|min_?tls)$"
)
_TLS_TOKEN = re.compile(r"(?i)(TLS|SSL)[ _-]?V?(?:ERSION)?[ _]?(\d)(?:[._]?(\d))?")
_BARE_VERSION = re.compile(r"^v?(\d)\.(\d)$")


def _tls_key(path: FieldPath) -> bool:
    key = _key(path)
    if _TLS_KEY.match(key):
        return True
    return key == "minVersion" and any(isinstance(p, str) and "tls" in p.lower() for p in path)


def _tls_minimum(value: Any) -> tuple[int, int, int] | None:
    """The lowest protocol a value admits: TLSV1_2, TLSv1.3, VersionTLS12,
    `TLSv1.2 TLSv1.3` (Kong's ssl_protocols), 1.2; None when it names none."""
    if not isinstance(value, str):
        return None
    found = []
    for family, major, minor in _TLS_TOKEN.findall(value):
        found.append((1 if family.upper() == "TLS" else 0, int(major), int(minor or 0)))
    bare = _BARE_VERSION.match(value.strip())
    if bare:
        found.append((1, int(bare[1]), int(bare[2])))
    return min(found) if found else None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|mo|[smhdwy])", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTPE]?)(i?)B?$", re.IGNORECASE)
_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "mo": 30 * 86400,
    "y": 365 * 86400,
}


def _amount(key: str, value: Any) -> tuple[str, float] | None:
    """A retention as a comparable amount: ("time", seconds), ("size", bytes) or
    ("number", n); None when the value is none of these. Durations as Prometheus,
    Thanos and Go write them (`720h`, `30d`, `1h30m`); CloudNativePG's
    `retentionPolicy` counts `m` in months. Sizes as `50GB` or `50Gi`."""
    number = _number(value)
    if number is not None:
        return ("number", number)
    if not isinstance(value, str):
        return None
    text = value.strip()
    size = _SIZE.match(text)
    if size and ("size" in key.lower() or size[3] or text.upper().endswith("B")):
        power = " KMGTPE".index(size[2].upper() or " ")
        return ("size", float(size[1]) * (1024 if size[3] else 1000) ** power)
    parts = _DURATION.findall(text)
    if parts and "".join(f"{n}{u}" for n, u in parts) == text:
        seconds = 0.0
        for amount, unit in parts:
            name = unit.lower()
            if name == "m" and key == "retentionPolicy":
                name = "mo"
            seconds += float(amount) * _SECONDS[name]
        return ("time", seconds)
    return None
