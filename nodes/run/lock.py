"""The run folder's lock: one exclusive lock per run, held by every read-modify-write of a run file.

Two ComfyUI processes (or a ComfyUI worker and the panel) may work on one run folder. Appending to
``events.jsonl``, counting a scene's attempts, rewriting the manifest when the story changes, and
updating ``breaker.json`` each read a file and write it back; without one lock around the read and
the write, two writers interleave and one update is lost.

The lock is an ``fcntl.flock`` on the run's ``events.jsonl`` (the file the event log always locked,
so an older process appending events still takes the same lock). ``flock`` belongs to an open file
description: two descriptors of one file in one process block each other. So the lock is re-entrant
within a process: the first :func:`run_lock` of a run folder in this process opens the file and
takes the ``flock``, nested ones (in the same thread) only count, and other threads of the process
wait on a thread lock first. Record a scene while holding the lock and the event it appends takes
the lock again without deadlocking.

Where ``fcntl`` is missing (Windows) only the in-process part applies.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - exercised only on Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "events.jsonl"  # the event log is the lock file (see the module docstring)


@dataclass
class _Held:
    """One run folder's lock in this process: the thread lock, how deep it is held, the locked descriptor."""

    thread_lock: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    fd: int | None = None


_registry_lock = threading.Lock()
_registry: dict[str, _Held] = {}


def lock_path(run_dir: str | os.PathLike[str]) -> str:
    """The file whose ``flock`` is the run's lock: ``<run_dir>/events.jsonl``."""
    return os.path.join(os.path.abspath(os.fspath(run_dir)), LOCK_FILE)


def _held(path: str) -> _Held:
    key = os.path.realpath(path)
    with _registry_lock:
        entry = _registry.get(key)
        if entry is None:
            entry = _registry[key] = _Held()
        return entry


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the run's exclusive lock for the ``with`` block (re-entrant in this process and thread).

    Wrap every read-modify-write of a run file in it::

        with run_lock(run.run_dir):
            value = read(...)
            atomic_write_json(path, change(value))

    The lock file (and the folder) is created if missing.
    """
    with file_lock(lock_path(run_dir)):
        yield


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the ``with`` block, re-entrant in this process and thread,
    as :func:`run_lock` is. ``path`` is a file (created if missing) or an existing folder (locked as it is,
    nothing created: a story's folder, :func:`nodes.story.load.story_lock`). Lock something that is never
    replaced, not the file being rewritten.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.isdir(path)
    if not folder:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    entry = _held(path)
    with entry.thread_lock:
        if entry.depth == 0 and not (folder and fcntl is None):
            flags = os.O_RDONLY if folder else os.O_RDWR | os.O_APPEND | os.O_CREAT
            fd = os.open(path, flags, 0o644)
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
            entry.fd = fd
        entry.depth += 1
        try:
            yield
        finally:
            entry.depth -= 1
            if entry.depth == 0:
                fd, entry.fd = entry.fd, None
                if fd is not None:
                    try:
                        if fcntl is not None:
                            fcntl.flock(fd, fcntl.LOCK_UN)
                    finally:
                        os.close(fd)


def is_held(run_dir: str | os.PathLike[str]) -> bool:
    """True while this process holds the run's lock (in any thread); for tests and assertions."""
    return _held(lock_path(run_dir)).depth > 0
