"""Production policies: what `validate` refuses in a production environment.

An environment is production when its profile chain says so (the built-in
``prod`` profile does). Each policy can be waived per environment with a
recorded reason (``spec.environments.<env>.waivers``); waivers are carried into
the rendered AppProject so they stay visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from meshctl import models
from meshctl.yamlio import Path

Violation = tuple[Path, str]

_TLS_ORDER = {"1.0": 0, "1.1": 1, "1.2": 2, "1.3": 3}


def _mtls_strict(settings: models.Settings) -> Iterator[Violation]:
    if settings.mesh.mtls.mode != "STRICT":
        yield (
            ("mesh", "mtls", "mode"),
            (f"mutual TLS is {settings.mesh.mtls.mode}; production requires STRICT"),
        )


def _tls_min_version(settings: models.Settings) -> Iterator[Violation]:
    tls = settings.gateway.tls
    if not tls.enabled:
        yield (
            ("gateway", "tls", "enabled"),
            "the gateway serves plain HTTP; production requires TLS",
        )
    elif _TLS_ORDER[tls.min_version] < _TLS_ORDER["1.2"]:
        yield (
            ("gateway", "tls", "minVersion"),
            (f"the gateway accepts TLS {tls.min_version}; production requires 1.2 or newer"),
        )


_POSTGRES_TLS = {"TLSv1": "1.0", "TLSv1.1": "1.1", "TLSv1.2": "1.2", "TLSv1.3": "1.3"}


def _postgres_tls(settings: models.Settings) -> Iterator[Violation]:
    postgres = settings.data.postgres
    minimum = postgres.parameters.get("ssl_min_protocol_version")
    if postgres.enabled and minimum is not None:
        version = _POSTGRES_TLS.get(minimum)
        if version is None or _TLS_ORDER[version] < _TLS_ORDER["1.2"]:
            yield (
                ("data", "postgres", "parameters", "ssl_min_protocol_version"),
                f"PostgreSQL accepts {minimum}; production requires TLSv1.2 or TLSv1.3",
            )


def _tls_min_versions(settings: models.Settings) -> Iterator[Violation]:
    yield from _tls_min_version(settings)
    yield from _postgres_tls(settings)


def _disruption_budgets(settings: models.Settings) -> Iterator[Violation]:
    if not settings.resilience.disruption_budgets:
        yield (
            ("resilience", "disruptionBudgets"),
            ("disruption budgets are off; production requires them"),
        )


def _default_deny(settings: models.Settings) -> Iterator[Violation]:
    if not settings.network.default_deny:
        yield (
            ("network", "defaultDeny"),
            "network default deny is off; production requires it",
        )


def _backups(settings: models.Settings) -> Iterator[Violation]:
    postgres = settings.data.postgres
    if postgres.enabled and not postgres.backup.enabled:
        yield (
            ("data", "postgres", "backup", "enabled"),
            "PostgreSQL backups and WAL archival are off; production requires them",
        )


def _resource_blocks(settings: models.Settings) -> Iterator[tuple[Path, models.Resources]]:
    yield ("gateway", "resources"), settings.gateway.resources
    yield ("gateway", "sidecar", "resources"), settings.gateway.sidecar.resources
    yield ("mesh", "controlPlane", "resources"), settings.mesh.control_plane.resources
    yield ("mesh", "sidecar", "resources"), settings.mesh.sidecar.resources
    if settings.mesh.egress.gateway.enabled:
        yield ("mesh", "egress", "gateway", "resources"), settings.mesh.egress.gateway.resources
    data = settings.data
    if data.postgres.enabled:
        yield ("data", "postgres", "resources"), data.postgres.resources
    if data.redis.enabled:
        yield ("data", "redis", "resources"), data.redis.resources
    if data.elasticsearch.enabled:
        yield ("data", "elasticsearch", "resources"), data.elasticsearch.resources
        if data.elasticsearch.kibana.enabled:
            yield (
                ("data", "elasticsearch", "kibana", "resources"),
                data.elasticsearch.kibana.resources,
            )


def _resource_limits(settings: models.Settings) -> Iterator[Violation]:
    # CPU limits are deliberately not required: they throttle latency-critical
    # proxies; memory limits are what protect a node's other pods.
    for path, resources in _resource_blocks(settings):
        for field, value in (
            (("requests", "cpu"), resources.requests.cpu),
            (("requests", "memory"), resources.requests.memory),
            (("limits", "memory"), resources.limits.memory),
        ):
            if value is None:
                yield (
                    (*path, *field),
                    (
                        f"{'.'.join(field)} is not set; production requires CPU and memory "
                        "requests and a memory limit"
                    ),
                )


POLICIES: dict[str, Callable[[models.Settings], Iterator[Violation]]] = {
    "mtls-strict": _mtls_strict,
    "tls-min-version": _tls_min_versions,
    "disruption-budgets": _disruption_budgets,
    "resource-limits": _resource_limits,
    "default-deny": _default_deny,
    "backups": _backups,
}


def violations(settings: models.Settings, waived: set[str]) -> Iterator[tuple[str, Path, str]]:
    """(policy, settings path, message) for every unwaived production policy broken."""
    for name, check in POLICIES.items():
        if name in waived:
            continue
        for path, message in check(settings):
            yield name, path, message
