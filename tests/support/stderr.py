"""Assertions on what a failed command printed: one line, and nothing a user cannot read."""

from __future__ import annotations

NOISE = ("Traceback", "never retrieved", "Exception ignored", "Unclosed", "Error in atexit")


def one_line(stderr: str) -> str:
    """The only stderr line; fails on any traceback or asyncio/finaliser leftover."""
    for noise in NOISE:
        assert noise not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]
