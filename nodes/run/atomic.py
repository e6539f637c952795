"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file the pack writes goes to a temporary name in the target's folder (same file system, so the
rename is atomic), is flushed and fsynced, then renamed over the target. A crash loses at most the
write in flight; stray temporaries carry the ``.gemdirect-tmp`` marker and are skipped by listings.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

TEMP_MARKER = ".gemdirect-tmp"

# mkstemp creates files readable by their owner only; written files get the usual mode instead
# (0666 less the umask, as open() would give). Read once: os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


def is_temporary(name: str) -> bool:
    """True for the temporary files of an unfinished atomic write."""
    return TEMP_MARKER in os.path.basename(name)


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; not available on every platform (Windows).
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``.

    The caller writes the whole file to the yielded path (e.g. an encoder that needs a file name).
    On an exception the temporary file is removed and ``target`` is left as it was.
    """
    target = os.path.abspath(os.fspath(target))
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(target))
    fd, temp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f"{TEMP_MARKER}{ext}", dir=folder)
    os.close(fd)
    os.chmod(temp, FILE_MODE)
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as temp, open(temp, "wb") as handle:
        handle.write(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))


def atomic_write_json(target: str | os.PathLike[str], value: Any, *, indent: int | None = 2) -> None:
    """Serialise ``value`` as UTF-8 JSON and write it to ``target`` atomically.

    Serialisation happens before the file is touched, so a value that cannot be encoded leaves the
    target unchanged.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    atomic_write_text(target, text + "\n")


def remove_stale_temporaries(folder: str | os.PathLike[str], *, min_age_s: float = 3600.0) -> list[str]:
    """Delete temporaries in ``folder`` (not recursive) older than ``min_age_s`` seconds; return their paths.

    A process killed mid-write leaves its temporary behind. Listings already skip them
    (:func:`is_temporary`); this reclaims the space. The age guard keeps a write that is in flight in
    another process alive: only files untouched for ``min_age_s`` are removed.
    """
    import time

    removed = []
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return removed
    now = time.time()
    for name in names:
        path = os.path.join(folder, name)
        if not is_temporary(name) or not os.path.isfile(path):
            continue
        with contextlib.suppress(OSError):
            if now - os.path.getmtime(path) >= min_age_s:
                os.unlink(path)
                removed.append(path)
    return removed
