"""Layering (defaults -> profile -> spec -> overrides), origins, explain, profiles, policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from meshctl.expand import REMOVED, Layer, expand
from meshctl.load import parse_source
from meshctl.resources import profiles_dir
from meshctl.spec import load_platform

from conftest import meshctl


def layer(label: str, text: str) -> Layer:
    source = parse_source(text.encode(), f"{label}.yaml")
    return Layer(label, source, (), source.data)  # type: ignore[arg-type]


def test_maps_merge_lists_and_scalars_replace_null_removes() -> None:
    low = layer("low", "a: {x: 1, y: 2, list: [1, 2]}\nb: keep\nc: {gone: 1}\n")
    high = layer("high", "a: {y: 3, list: [9]}\nc: null\n")
    expansion = expand("env", [low, high])
    assert expansion.settings == {"a": {"x": 1, "y": 3, "list": [9]}, "b": "keep"}


def test_every_value_remembers_where_it_came_from() -> None:
    low = layer("low", "a:\n  y: 2\n")
    high = layer("high", "a: {y: 3}\n")
    history = expand("env", [low, high]).contributions(("a", "y"))
    assert [(c.layer.label, c.value, str(c.location)) for c in history] == [
        ("low", 2, "low.yaml:2:6"),
        ("high", 3, "high.yaml:1:8"),
    ]


def test_a_removal_is_recorded_for_everything_it_removed() -> None:
    expansion = expand("env", [layer("low", "a: {b: {c: 1}}\n"), layer("high", "a: {b: null}\n")])
    assert expansion.contributions(("a", "b", "c"))[-1].value is REMOVED
    assert str(expansion.contributions(("a", "b", "c"))[-1].location) == "high.yaml:1:8"


def test_a_higher_layer_can_set_again_what_a_lower_one_removed() -> None:
    expansion = expand("env", [layer("a", "x: 1\n"), layer("b", "x: null\n"), layer("c", "x: 2\n")])
    assert expansion.settings == {"x": 2}


def _values(tree: Path, env: str, release: str) -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((tree / f"overlays/{env}/values/{release}.yaml").read_text())  # type: ignore[no-any-return]


def test_profiles_give_the_design_brief_numbers(example_tree: object) -> None:
    tree = example_tree.tree  # type: ignore[attr-defined]
    kong = {env: _values(tree, env, "kong") for env in ("dev", "staging", "prod")}
    assert [kong[e]["replicaCount"] for e in kong] == [2, 3, 5]
    assert [kong[e]["resources"]["requests"] for e in kong] == [
        {"cpu": "1", "memory": "2Gi"},
        {"cpu": "2", "memory": "4Gi"},
        {"cpu": "4", "memory": "8Gi"},
    ]
    assert [kong[e]["autoscaling"]["enabled"] for e in kong] == [False, False, True]
    assert kong["prod"]["autoscaling"]["maxReplicas"] == 30  # the example's prod override
    assert [kong[e]["env"]["nginx_worker_processes"] for e in kong] == ["1", "2", "4"]
    assert [kong[e]["podDisruptionBudget"]["enabled"] for e in kong] == [False, True, True]
    assert "topologySpreadConstraints" in kong["prod"]
    assert "topologySpreadConstraints" not in kong["staging"]
    istiod = {env: _values(tree, env, "istiod") for env in ("dev", "staging", "prod")}
    assert [istiod[e]["replicaCount"] for e in istiod] == [1, 2, 2]
    assert istiod["prod"]["resources"]["requests"] == {"cpu": "2", "memory": "4Gi"}
    assert istiod["prod"]["autoscaleEnabled"] is True
    assert istiod["prod"]["global"]["proxy"]["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi"},
    }
    modes = {}
    for env in ("dev", "staging", "prod"):
        for folder in (tree / "base", tree / f"overlays/{env}/resources"):
            for doc in yaml.safe_load_all(
                (folder / "istio/mesh.yaml").read_text()
                if (folder / "istio/mesh.yaml").exists()
                else ""
            ):
                if doc and doc["kind"] == "PeerAuthentication":
                    modes[env] = doc["spec"]["mtls"]["mode"]
    assert modes == {"dev": "PERMISSIVE", "staging": "STRICT", "prod": "STRICT"}


def test_null_in_overrides_removes_a_cpu_limit(project: Path) -> None:
    spec = project / "platform.yaml"
    spec.write_text(
        spec.read_text().replace(
            "          autoscaling:\n            maxReplicas: 30\n",
            "          autoscaling:\n            maxReplicas: 30\n"
            "          resources:\n            limits:\n              cpu: null\n",
        )
    )
    assert meshctl("render", cwd=project).code == 0
    resources = _values(project / "rendered", "prod", "kong")["resources"]
    # null in Helm values deletes the key, and with it any chart default
    assert resources == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"cpu": None, "memory": "8Gi"},
    }


def test_explain_shows_the_value_its_origin_and_what_it_overrode(project: Path) -> None:
    run = meshctl("explain", "gateway.autoscaling.maxReplicas", "-e", "prod", cwd=project)
    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "gateway.autoscaling.maxReplicas  (environment prod)"
    assert lines[1].strip() == "= 30"
    assert lines[2].split() == [
        "set",
        "by",
        "environment",
        "prod",
        "overrides",
        "platform.yaml:64:26",
        "30",
    ]
    assert lines[3].split()[:5] == [
        "over",
        "profile",
        "prod",
        "(built-in)",
        "meshctl:profiles/prod.yaml:11:20",
    ]
    assert lines[3].split()[-1] == "20"
    assert lines[4].split()[-1] == "5"
    assert "profiles/default.yaml" in lines[4]


def test_explain_a_map_lists_each_setting_and_covers_every_environment(project: Path) -> None:
    run = meshctl("explain", "spec.mesh.mtls", cwd=project)
    assert run.code == 0, run.stderr
    assert run.stdout.count("(environment ") == 3
    assert "mode" in run.stdout and "minTlsVersion" in run.stdout
    assert '"PERMISSIVE"' in run.stdout


def test_explain_refuses_what_is_not_a_setting(project: Path) -> None:
    run = meshctl("explain", "gateway.replica", "-e", "prod", cwd=project)
    assert (run.code, run.stderr.strip()) == (
        2,
        "meshctl: no setting 'gateway.replica'; did you mean 'replicas'?",
    )
    run = meshctl("explain", "services", cwd=project)
    assert run.code == 2
    assert "not a layered setting" in run.stderr


def test_profiles_commands(project: Path) -> None:
    listing = meshctl("profiles", "list", cwd=project)
    assert listing.code == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()[1:] if line[:1].strip()] == [
        "default",
        "dev",
        "prod",
        "staging",
    ]
    shown = yaml.safe_load(meshctl("profiles", "show", "prod", cwd=project).stdout)
    assert shown["gateway"]["replicas"] == 5
    assert shown["gateway"]["autoscaling"]["maxReplicas"] == 20
    assert shown["mesh"]["mtls"]["mode"] == "STRICT"
    diff = meshctl("profiles", "diff", "dev", "prod", cwd=project)
    assert diff.code == 0
    row = next(line for line in diff.stdout.splitlines() if line.startswith("mesh.mtls.mode"))
    assert row.split() == ["mesh.mtls.mode", '"PERMISSIVE"', '"STRICT"']
    unknown = meshctl("profiles", "show", "prdo", cwd=project)
    assert unknown.code == 2
    assert "did you mean 'prod'" in unknown.stderr


def test_a_project_profile_extends_a_built_in_one(project: Path) -> None:
    (project / "profiles").mkdir()
    (project / "profiles/perf.yaml").write_text(
        "name: perf\ndescription: Load tests, production-sized\nextends: prod\n"
        "settings:\n  gateway:\n    replicas: 8\n"
    )
    spec = project / "platform.yaml"
    spec.write_text(spec.read_text().replace("      profile: staging\n", "      profile: perf\n"))
    assert "perf" in meshctl("profiles", "list", cwd=project).stdout
    assert meshctl("render", cwd=project).code == 0
    staging = _values(project / "rendered", "staging", "kong")
    assert staging["replicaCount"] == 8
    assert staging["autoscaling"]["maxReplicas"] == 20  # from prod, under perf
    # perf extends prod, so production policies apply to staging now
    platform = load_platform(spec)
    assert platform.environments["staging"].production


def test_verbatim_copies_of_the_built_in_profiles_are_the_built_ins(project: Path) -> None:
    # meshctl's own checkout holds profiles/ at its root: `pip install .`, then
    # `meshctl init && meshctl render` there (the README's quick start) must work.
    shutil.copytree(profiles_dir(), project / "profiles")
    (project / "profiles/perf.yaml").write_text("name: perf\ndescription: Load\nextends: prod\n")
    run = meshctl("render", cwd=project)
    assert run.code == 0, run.stdout + run.stderr
    assert "perf" in meshctl("profiles", "list", cwd=project).stdout
    # A changed copy is still a project profile, and refused under a built-in's name.
    prod = project / "profiles/prod.yaml"
    prod.write_text(prod.read_text() + "# mine\n")
    run = meshctl("render", cwd=project)
    assert run.code == 1
    assert "profile 'prod' is built in" in run.stderr + run.stdout


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"prod.yaml": "name: prod\ndescription: mine\nextends: default\n"},
            "profiles/prod.yaml:1:7: name: profile 'prod' is built in; give yours another name and "
            "'extends: prod'",
        ),
        (
            {
                "a.yaml": "name: a\ndescription: loops\nextends: b\n",
                "b.yaml": "name: b\ndescription: loops\nextends: a\n",
            },
            "profiles/a.yaml:3:10: extends: profiles extend each other in a cycle: a -> b -> a",
        ),
        (
            {"x.yaml": "name: x\ndescription: typo\nextends: prdo\n"},
            "profiles/x.yaml:3:10: extends: extends unknown profile 'prdo'; did you mean 'prod'?",
        ),
        (
            {
                "y.yaml": "name: y\ndescription: typo\nextends: dev\n"
                "settings:\n  gateway:\n    replcas: 3\n"
            },
            "profiles/y.yaml:6:5: settings.gateway.replcas: unknown key 'replcas'; did you mean "
            "'replicas'?",
        ),
        (
            {"z.yaml": "name: zz\ndescription: misnamed\nextends: dev\n"},
            "profiles/z.yaml:1:7: name: 'zz' does not match the file name; expected 'z'",
        ),
    ],
)
def test_broken_project_profiles_are_located(
    project: Path, files: dict[str, str], message: str
) -> None:
    (project / "profiles").mkdir()
    for name, text in files.items():
        (project / "profiles" / name).write_text(text)
    run = meshctl("validate", cwd=project)
    assert run.code == 1
    assert message in run.stdout


def test_production_policy_and_waivers(project: Path) -> None:
    spec = project / "platform.yaml"
    base = spec.read_text()
    weakened = base.replace(
        "        mesh:\n          egress:\n",
        "        mesh:\n          mtls:\n            mode: PERMISSIVE\n          egress:\n",
    )
    spec.write_text(weakened)
    run = meshctl("validate", cwd=project)
    assert run.code == 1
    assert (
        "platform.yaml:67:19: spec.environments.prod.overrides.mesh.mtls.mode: mutual TLS is "
        "PERMISSIVE; production requires STRICT (environment prod, policy mtls-strict; to "
        "allow it, add a waiver with a reason to the environment)"
    ) in run.stdout

    waiver = (
        "      waivers:\n      - policy: mtls-strict\n"
        '        reason: "Legacy batch clients migrate to mTLS in Q3 (JIRA-123)"\n'
    )
    spec.write_text(
        weakened.replace(
            "      overrides:\n        gateway:\n          autoscaling:",
            waiver + "      overrides:\n        gateway:\n          autoscaling:",
        )
    )
    run = meshctl("render", cwd=project)
    assert run.code == 0, run.stdout + run.stderr
    project_doc = yaml.safe_load((project / "rendered/overlays/prod/apps/project.yaml").read_text())
    assert json.loads(project_doc["metadata"]["annotations"]["meshctl.io/waivers"]) == [
        {"policy": "mtls-strict", "reason": "Legacy batch clients migrate to mTLS in Q3 (JIRA-123)"}
    ]


PROD_OVERRIDES = (
    "      overrides:\n        gateway:\n          autoscaling:\n            maxReplicas: 30\n"
)


@pytest.mark.parametrize(
    ("override", "policy"),
    [
        ('gateway:\n          tls:\n            minVersion: "1.1"', "tls-min-version"),
        ("gateway:\n          tls:\n            enabled: false", "tls-min-version"),
        ("resilience:\n          disruptionBudgets: false", "disruption-budgets"),
        (
            "gateway:\n          resources:\n            limits:\n              memory: null",
            "resource-limits",
        ),
        ("network:\n          defaultDeny: false", "default-deny"),
    ],
)
def test_each_production_policy_is_enforced(project: Path, override: str, policy: str) -> None:
    spec = project / "platform.yaml"
    spec.write_text(
        spec.read_text().replace(
            PROD_OVERRIDES,
            f"      overrides:\n        {override}\n",
        )
    )
    run = meshctl("validate", cwd=project)
    assert run.code == 1
    assert f"policy {policy};" in run.stdout
    assert "(environment prod" in run.stdout


def test_default_deny_off_in_production_needs_a_waiver(project: Path) -> None:
    spec = project / "platform.yaml"
    off = spec.read_text().replace(
        PROD_OVERRIDES, "      overrides:\n        network:\n          defaultDeny: false\n"
    )
    spec.write_text(off)
    run = meshctl("validate", cwd=project)
    assert run.code == 1
    assert "spec.environments.prod.overrides.network.defaultDeny: network default deny is off" in (
        run.stdout
    )
    waiver = (
        "      waivers:\n      - policy: default-deny\n"
        '        reason: "Brownfield cluster: policies roll out namespace by namespace"\n'
    )
    spec.write_text(
        off.replace(
            "      overrides:\n        network:", waiver + "      overrides:\n        network:"
        )
    )
    run = meshctl("validate", cwd=project)
    assert run.code == 0, run.stdout + run.stderr


@pytest.mark.parametrize(
    ("old", "new", "policy"),
    [
        (
            "    postgres:\n      enabled: true\n",
            "    postgres:\n      enabled: true\n      backup:\n        enabled: false\n",
            "backups",
        ),
        (
            "    redis:\n      enabled: true\n",
            "    redis:\n      enabled: true\n      resources:\n        limits:\n"
            "          memory: null\n",
            "resource-limits",
        ),
    ],
)
def test_data_tier_production_policies(project: Path, old: str, new: str, policy: str) -> None:
    """Set for every environment, refused only where production policies apply."""
    spec = project / "platform.yaml"
    assert old in spec.read_text()
    spec.write_text(spec.read_text().replace(old, new))
    run = meshctl("validate", cwd=project)
    assert run.code == 1
    assert f"policy {policy};" in run.stdout
    assert "(environment prod" in run.stdout
    assert "environment staging" not in run.stdout and "environment dev" not in run.stdout
