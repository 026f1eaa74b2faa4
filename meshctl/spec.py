"""A spec, loaded: load -> validate -> expand, for every environment.

``load_platform`` returns a ``Platform`` (the typed document, the profiles and
each environment's expanded settings) or raises ``SpecError`` with every
problem found in the spec and the profiles it uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from msgspec import Struct

from meshctl import dependencies, models, policy
from meshctl.errors import Location, Problem, SpecError, UsageError
from meshctl.expand import REMOVED, Expansion, Layer, expand
from meshctl.inline_secrets import inline_secret_problems
from meshctl.load import Source, read_source
from meshctl.paths import format_path
from meshctl.profiles import Profile, ProfileSet, load_profiles
from meshctl.validate import (
    profile_reference_problems,
    pydantic_problems,
    reference_problems,
    suggestion,
    unique_problems,
    validate_document,
)
from meshctl.yamlio import Path as DataPath


class EnvironmentPlan(Struct, frozen=True):
    """One environment after expansion: typed settings and where each came from."""

    name: str
    environment: models.Environment
    profile: Profile
    production: bool
    expansion: Expansion
    settings: models.Settings


class Platform(Struct, frozen=True):
    source: Source
    document: models.PlatformDocument
    profiles: ProfileSet
    environments: dict[str, EnvironmentPlan]

    @property
    def spec(self) -> models.PlatformSpec:
        return self.document.spec

    @property
    def name(self) -> str:
        return self.document.metadata.name


def load_platform(path: Path, display_name: str | None = None) -> Platform:
    """Load, validate and expand a spec; raise SpecError with every problem found."""
    source = read_source(path, display_name)
    if source.data is None:
        raise SpecError(
            [
                Problem(
                    Location(source.name, 1, 1),
                    "",
                    "the file is empty; expected a platform spec "
                    "(run `meshctl init` for an example)",
                )
            ]
        )
    # A secret in the spec is reported alone: other checks quote the values
    # they refuse, and must not print it again.
    leaks = inline_secret_problems(source)
    if leaks:
        raise SpecError(leaks)
    document, problems = validate_document(source, models.PlatformDocument, "platform.schema.json")
    problems += reference_problems(source)
    try:
        profiles = load_profiles(path.parent)
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    problems += profile_reference_problems(source, profiles.names())
    if problems or document is None:
        raise SpecError(unique_problems(problems))
    environments: dict[str, EnvironmentPlan] = {}
    for name, environment in document.spec.environments.items():
        plan = _plan(name, environment, source, profiles, problems)
        if plan is not None:
            environments[name] = plan
    for plan in environments.values():
        problems.extend(_environment_problems(plan, document.spec, source))
    problems.extend(_shared_cluster_problems(document.spec, source))
    if problems:
        raise SpecError(_merge_environments(unique_problems(problems)))
    return Platform(source, document, profiles, environments)


def _plan(
    name: str,
    environment: models.Environment,
    source: Source,
    profiles: ProfileSet,
    problems: list[Problem],
) -> EnvironmentPlan | None:
    from pydantic import ValidationError

    env_path: DataPath = ("spec", "environments", name)
    raw_spec: dict[str, Any] = source.data["spec"]  # type: ignore[index]
    overrides: dict[str, Any] = raw_spec["environments"][name].get("overrides") or {}
    layers = [
        Layer(f"profile {p.name} ({p.origin})", p.source, ("settings",), p.settings)
        for p in profiles.chain(environment.profile)
    ]
    layers.append(
        Layer(
            "spec",
            source,
            ("spec",),
            {k: raw_spec[k] for k in models.LAYERED_SECTIONS if k in raw_spec},
        )
    )
    layers.append(
        Layer(f"environment {name} overrides", source, (*env_path, "overrides"), overrides)
    )
    expansion = expand(name, layers)
    try:
        settings = models.Settings.model_validate(expansion.settings)
    except ValidationError as exc:
        problems.extend(_effective_problems(exc.errors(), expansion, source))
        return None
    return EnvironmentPlan(
        name,
        environment,
        profiles.get(environment.profile),
        profiles.is_production(environment.profile),
        expansion,
        settings,
    )


def _source_of(expansion: Expansion, path: DataPath, source: Source) -> tuple[Location, str]:
    """Where the value at a settings path was decided, as a location and source path."""
    origin = expansion.origin(path)
    if origin is None:
        return source.location(("spec",)), format_path(("spec", *path))
    rest = path[len(origin.path) :]
    return origin.location, format_path((*origin.layer.source_path(origin.path), *rest))


def _effective_problems(errors: list[Any], expansion: Expansion, source: Source) -> list[Problem]:
    env = expansion.environment

    def locate(path: DataPath, kind: str) -> tuple[Location, str]:
        return _source_of(expansion, path, source)

    problems = []
    for err in errors:
        path: DataPath = tuple(err["loc"])
        contributions = expansion.contributions(path)
        if err["type"] == "missing":
            if contributions and contributions[-1].value is REMOVED:
                message = "is required and cannot be removed with null"
            else:
                message = f"'{path[-1]}' is required; set it in the spec"
            err = {**err, "msg": message}  # noqa: PLW2901 - the rewritten error replaces it
        problems.extend(pydantic_problems([err], locate, context=f" (environment {env})"))
    return problems


# Namespaces the platform's operators run in (services may not share them).
OPERATOR_NAMESPACES = {
    "tigera-operator": "Calico operator",
    "calico-system": "Calico",
    "cert-manager": "cert-manager",
    "external-secrets": "External Secrets Operator",
    "cnpg-system": "CloudNativePG operator",
    "elastic-system": "ECK operator",
    "calico-apiserver": "Calico API server",
    "monitoring": "monitoring",
}


def _environment_problems(
    plan: EnvironmentPlan, spec: models.PlatformSpec, source: Source
) -> list[Problem]:
    problems: list[Problem] = []
    settings = plan.settings
    if plan.production:
        waived: set[str] = {w.policy for w in plan.environment.waivers}
        for name, path, message in policy.violations(settings, waived):
            location, display = _source_of(plan.expansion, path, source)
            problems.append(
                Problem(
                    location,
                    display,
                    f"{message} (environment {plan.name}, policy {name}; to allow it, add a waiver "
                    "with a reason to the environment)",
                    rule="policy",
                )
            )
    for path, message in dependencies.settings_needs(settings):
        location, display = _source_of(plan.expansion, path, source)
        problems.append(
            Problem(location, display, f"{message} (environment {plan.name})", rule="model")
        )
    for spec_path, message in dependencies.service_needs(settings, spec):
        problems.append(
            Problem(
                source.location(spec_path),
                format_path(spec_path),
                f"{message} (environment {plan.name})",
                rule="reference",
            )
        )
    settings_autoscaling = (
        (("gateway",), settings.gateway.replicas, settings.gateway.autoscaling),
        (
            ("mesh", "controlPlane"),
            settings.mesh.control_plane.replicas,
            settings.mesh.control_plane.autoscaling,
        ),
    )
    for base, replicas, autoscaling in settings_autoscaling:
        if autoscaling.enabled and autoscaling.max_replicas < replicas:
            location, display = _source_of(
                plan.expansion, (*base, "autoscaling", "maxReplicas"), source
            )
            problems.append(
                Problem(
                    location,
                    display,
                    f"maxReplicas {autoscaling.max_replicas} is below replicas {replicas} "
                    f"(environment {plan.name})",
                    rule="model",
                )
            )
    reserved = {
        **OPERATOR_NAMESPACES,
        settings.data.namespace: "data tier",
        settings.gateway.namespace: "Kong gateway",
        spec.gitops.namespace: "Flux" if spec.gitops.engine == "flux" else "Argo CD",
        "istio-egress": "Istio egress gateway",
    }
    seen_routes: dict[tuple[str, str], str] = {}
    for index, service in enumerate(spec.services):
        base_path: DataPath = ("spec", "services", index)
        owner = reserved.get(service.namespace)
        if owner:
            problems.append(
                Problem(
                    source.location((*base_path, "namespace")),
                    format_path((*base_path, "namespace")),
                    f"'{service.namespace}' is the {owner} namespace; put services in their own",
                    rule="reference",
                )
            )
        for r, route in enumerate(service.routes):
            host = route_host(route.host, settings.domain)
            for p, prefix in enumerate(route.paths):
                other = seen_routes.setdefault((host, prefix), service.name)
                if other != service.name:
                    at = (*base_path, "routes", r, "paths", p)
                    where = "" if host == route.host else f" in environment {plan.name}"
                    problems.append(
                        Problem(
                            source.location(at),
                            format_path(at),
                            f"{host}{prefix} is already routed to '{other}'{where}",
                            rule="reference",
                        )
                    )
    return problems


_PER_ENVIRONMENT = re.compile(r"^(?P<message>.*) \(environment (?P<env>[a-z0-9-]+)\)$")


def _merge_environments(problems: list[Problem]) -> list[Problem]:
    """One problem at one place in several environments is reported once."""
    merged: dict[tuple[Location, str, str], list[str]] = {}
    others = []
    for problem in problems:
        match = _PER_ENVIRONMENT.match(problem.message)
        if match:
            key = (problem.location, problem.path, match["message"])
            merged.setdefault(key, []).append(match["env"])
        else:
            others.append(problem)
    for (location, path, message), envs in merged.items():
        label = "environment" if len(envs) == 1 else "environments"
        others.append(
            Problem(location, path, f"{message} ({label} {', '.join(envs)})", rule="model")
        )
    return others


def _shared_cluster_problems(spec: models.PlatformSpec, source: Source) -> list[Problem]:
    """Two environments in one cluster would fight over the same releases,
    namespaces and cluster-wide objects (Argo CD's self-heal flipping them)."""
    problems = []
    first: dict[tuple[str, str], str] = {}
    raw: dict[str, Any] = source.data["spec"]["environments"]  # type: ignore[index]
    for name, environment in spec.environments.items():
        cluster = environment.cluster
        key = ("server", cluster.server) if cluster.server else ("name", cluster.name or "")
        if key not in first:
            first[key] = name
            continue
        explicit = isinstance(raw[name], dict) and "cluster" in raw[name]
        path: DataPath = ("spec", "environments", name, *(("cluster",) if explicit else ()))
        problems.append(
            Problem(
                source.location(path, key=not explicit),
                format_path(path),
                f"environments {first[key]} and {name} deploy to the same cluster ({key[1]}); "
                "their releases and namespaces would collide: give each its own `cluster`",
                rule="reference",
            )
        )
    return problems


def route_host(host: str, domain: str) -> str:
    """A single label is a name under the environment's domain; anything else is an FQDN."""
    return host if "." in host else f"{host}.{domain}"


def select_environments(platform: Platform, names: list[str] | None) -> list[str]:
    """The environments a command works on, in spec order; unknown names are usage errors."""
    available = list(platform.environments)
    if not names:
        return available
    for name in names:
        if name not in platform.environments:
            raise UsageError(
                f"unknown environment '{name}'{suggestion(name, available)} "
                f"(the spec has: {', '.join(available)})"
            )
    return [n for n in available if n in names]
