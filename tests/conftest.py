"""Shared fixtures: real Meltano projects, the real meltano CLI, a real PostgreSQL server."""

from __future__ import annotations

import pytest

from tests.support.cli import clean_env, meltano, meltano_path
from tests.support.postgres import PostgresServer
from tests.support.project import write_project


@pytest.fixture(scope="session")
def meltano_bin():
    """The meltano 4.4.x CLI in its own virtual environment (installed by bootstrap)."""
    return meltano_path()


@pytest.fixture
def project(tmp_path):
    """An empty Meltano project whose system database was created by the real meltano."""
    root = write_project(tmp_path / "project")
    return root


@pytest.fixture
def meltano_project(project, meltano_bin):
    """A project whose SQLite system database (schema included) was created by meltano."""
    meltano("state", "list", cwd=project)
    assert (project / ".meltano" / "meltano.db").is_file()
    return project


@pytest.fixture
def env():
    return clean_env()


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh empty PostgreSQL database (no Meltano schema yet)."""
    return postgres_server.create_database()
