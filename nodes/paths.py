"""Path confinement, in one place: a path given by a user or a file stays inside the folder it belongs to.

Both sides are resolved with ``realpath`` first, so ``..``, absolute parts and symlinks pointing out
are all caught by the same comparison.
"""

from __future__ import annotations

import hashlib
import os


def is_inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True if ``path`` (symlinks resolved) is ``root`` or lies below it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def resolve_inside(root: str | os.PathLike[str], relative: str) -> str | None:
    """Absolute, resolved path of ``relative`` ('/'-separated) under ``root``; None if it leaves ``root``."""
    path = os.path.realpath(os.path.join(os.path.realpath(root), *relative.split("/")))
    return path if is_inside(path, root) else None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
