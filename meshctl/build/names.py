"""Kubernetes names derived from spec values, always valid and stable."""

from __future__ import annotations

import hashlib
import re

_INVALID = re.compile(r"[^a-z0-9-]+")


def dns_label(*parts: str, limit: int = 63) -> str:
    """Join parts into a DNS-1123 label; over-long names keep a hash of the whole."""
    name = _INVALID.sub("-", "-".join(parts).lower()).strip("-")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-')}-{digest}"


def tls_secret(host: str) -> str:
    """The Secret holding a route host's certificate (cert-manager writes it)."""
    return f"{host}-tls"
