"""The output tree: where every rendered file goes.

rendered/
  .meshctl-manifest.json             files meshctl owns, with their hashes
  base/<stage>/                      resources identical in every environment
  overlays/<env>/kustomization.yaml  builds everything for <env>
  overlays/<env>/<stage>/            the environment's plain resources (+ base/<stage>)
  overlays/<env>/apps/               GitOps objects: AppProject, root, Applications
  overlays/<env>/values/<release>.yaml  Helm values, read by Argo CD via $values

Plain resources come in stages, each synced as a unit after the charts it
needs: ``foundation`` (namespaces, secret stores and ExternalSecrets, issuers
and certificates, network policy) once the operators are up; ``data`` (the
database and search clusters) once their credentials exist; ``resources``
(mesh and gateway policy, routes) last.
"""

from __future__ import annotations

import posixpath

MANIFEST = ".meshctl-manifest.json"
BASE = "base"
OVERLAYS = "overlays"
KUSTOMIZATION = "kustomization.yaml"


def overlay_dir(env: str) -> str:
    return f"{OVERLAYS}/{env}"


STAGES = ("foundation", "data", "resources")
FOUNDATION, DATA, RESOURCES = STAGES


def stage_dir(env: str, stage: str) -> str:
    return f"{overlay_dir(env)}/{stage}"


def base_dir(stage: str) -> str:
    return f"{BASE}/{stage}"


def apps_dir(env: str) -> str:
    return f"{overlay_dir(env)}/apps"


def values_file(env: str, release: str) -> str:
    return f"{overlay_dir(env)}/values/{release}.yaml"


def in_repo(gitops_path: str, tree_path: str) -> str:
    """Path of a rendered file or folder inside the GitOps repository."""
    return posixpath.join(gitops_path, tree_path)


def environment_of(path: str) -> str | None:
    """The environment an overlay file belongs to; None for shared files."""
    parts = path.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == OVERLAYS else None
