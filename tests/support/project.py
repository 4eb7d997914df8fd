"""Minimal Meltano projects written straight to disk (no `meltano init` cost)."""

from __future__ import annotations

from pathlib import Path

import yaml

BASE = {
    "project_id": "state-ext-tests",
    "default_environment": "dev",
    "send_anonymous_usage_stats": False,
    "environments": [{"name": "dev"}, {"name": "prod"}],
}


def write_project(root: Path, **top_level) -> Path:
    """A meltano.yml with ``top_level`` keys merged in (e.g. state_backend=..., plugins=...)."""
    root.mkdir(parents=True, exist_ok=True)
    doc = {**BASE, **top_level}
    (root / "meltano.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return root
