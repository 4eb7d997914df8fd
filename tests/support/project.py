"""Minimal Meltano projects written straight to disk (no `meltano init` cost)."""

from __future__ import annotations

import hashlib
import json
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


def meltano_seeded_db(tmp_path_factory, seed: dict) -> Path:
    """A SQLite system database made by the real meltano holding ``seed`` (cached per seed).

    Tests copy it instead of paying a meltano process each time.
    """
    from tests.support.cli import meltano

    doc = json.dumps(seed, sort_keys=True)
    digest = hashlib.sha1(doc.encode()).hexdigest()[:10]
    base = tmp_path_factory.getbasetemp() / f"meltano-db-{digest}"
    db = base / ".meltano" / "meltano.db"
    if not db.is_file():
        write_project(base)
        (base / "seed.json").write_text(doc)
        meltano("state", "import", "seed.json", cwd=base)
        assert db.is_file()
    return db


def seed_file_store(root: Path, states: dict) -> str:
    """A file:// store written by hand in Meltano's layout (ID -> Envelope); its URI."""
    for state_id, envelope in states.items():
        (root / state_id).mkdir(parents=True, exist_ok=True)
        (root / state_id / "state.json").write_text(envelope.to_json())
    return root.as_uri()
