"""The ``state_extension`` console script: the CLI app, with the EDK extension in its context.

``state_ext.cli`` is the command line; ``state_ext.extension`` the EDK extension that
describes, initializes and invokes it. This module joins the two (the CLI never imports
the extension) and applies the start-up measures of ``state_ext.startup``.
"""

from __future__ import annotations

from state_ext import startup
from state_ext.cli import app


def make_extension(project_root=None):
    """The EDK extension for this process's project (built per command, never at import)."""
    import os

    from state_ext.extension import StateExtension
    from state_ext.settings import find_project_root

    return StateExtension(project_root=find_project_root(project_root, dict(os.environ)))


def cli() -> None:
    startup.collect_rarely()
    try:
        app(obj=make_extension)
        code = 0
    except SystemExit as exc:
        code = exc.code
    startup.exit_now(code)
