"""state_ext/ uses s3fs, gcsfs, adlfs and fsspec through their public APIs only (issue 12).

A private attribute of an SDK (``_call_s3``, gcsfs's ``_call``, a wrapped ``_request``)
changes without notice between releases. Allowed: fsspec's documented async methods,
which are the public methods' names with a leading underscore (``_pipe_file``,
``_cat_file``, ``_info``...), and our own names. Everything else that starts with an
underscore and is defined by those libraries' filesystem classes is refused here, as are
imports of private or internal helpers from their modules.

A name we define ourselves (``S3Store._call``) is no finding, unless it is reached through
a filesystem object (a receiver named ``fs``: ``self.fs._call`` is gcsfs's). ``KNOWN`` is
a ratchet: the places that still use an internal, each with why; the test fails on any
new one, and on a listed one that is gone (so the list only shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import adlfs
import gcsfs
import s3fs
from fsspec.asyn import AsyncFileSystem
from fsspec.spec import AbstractFileSystem

PACKAGE = Path(__file__).resolve().parents[1] / "state_ext"
LIBRARIES = ("s3fs", "gcsfs", "adlfs", "fsspec")
INTERNAL_HELPERS = {"simple_upload", "__wrapped__"}
# (file, what) -> why it is still there. Empty: GCS goes through gcsfs's public async
# methods, its generation preconditions through the public split_path, and its retries
# are bounded through aiohttp's public trace hooks (clouds/gcs.py).
KNOWN: dict[tuple[str, str], str] = {}


def private_names() -> set[str]:
    public = {n for n in dir(AbstractFileSystem) if not n.startswith("_")}
    names = set()
    for cls in (s3fs.S3FileSystem, gcsfs.GCSFileSystem, adlfs.AzureBlobFileSystem,
                AsyncFileSystem, AbstractFileSystem):
        names |= {n for n in dir(cls) if n.startswith("_") and not n.startswith("__")}
    return {n for n in names if n[1:] not in public}


def trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE.parent), ast.parse(path.read_text(), str(path))


def our_names() -> set[str]:
    """Names state_ext defines itself (methods, functions, attributes it assigns)."""
    names = set()
    for _, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


def _through_a_filesystem(node: ast.Attribute) -> bool:
    receiver = node.value
    name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
    return name in ("fs", "filesystem") or name.endswith("FileSystem")


def findings() -> set[tuple[str, str]]:
    private = private_names()
    forbidden = (private - our_names()) | INTERNAL_HELPERS
    found = set()
    for path, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and (
                    node.attr in forbidden or
                    (node.attr in private and _through_a_filesystem(node))):
                found.add((str(path), f".{node.attr}"))
            elif isinstance(node, ast.ImportFrom) and \
                    (node.module or "").split(".")[0] in LIBRARIES:
                found |= {(str(path), f"from {node.module} import {a.name}")
                          for a in node.names
                          if a.name.startswith("_") or a.name in INTERNAL_HELPERS}
    return found


def test_no_private_sdk_attribute_is_touched():
    found = findings()
    new = sorted(found - set(KNOWN))
    assert new == [], "private SDK internals used:\n" + "\n".join(map(str, new))
    gone = sorted(set(KNOWN) - found)
    assert gone == [], f"no longer used, remove from KNOWN: {gone}"


def test_the_check_catches_what_it_is_for():
    """The forbidden set holds the internals issue 12 named, and no public async method."""
    forbidden = private_names()
    assert {"_call_s3", "_call", "_get_object"} <= forbidden
    assert not {"_pipe_file", "_cat_file", "_info", "_ls", "_rm_file"} & forbidden
