"""The run's event log, ``events.jsonl``: append-only, one JSON object a line.

Two processes may append at once (a ComfyUI worker and the panel's reset, or two ComfyUI
instances sharing an output folder), so every line goes out as one ``write()`` on a descriptor opened
with ``O_APPEND`` (the kernel places each write at the end as a whole) while holding the run's lock
(lock.py: an exclusive ``fcntl`` lock on this file, re-entrant within a process, the same lock every
read-modify-write of a run file holds). A process killed mid-write can leave a torn last line;
the next writer starts on a fresh line, and readers skip any line that is not a whole JSON object.

Event fields are snake_case with their unit in the name (``elapsed_s``, ``vram_before_mb``); every
event has ``time`` (UTC ISO-8601), ``event`` (its kind) and ``pid``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .lock import run_lock

try:  # POSIX only; on Windows O_APPEND alone keeps lines whole for our small writes
    import fcntl
except ImportError:  # pragma: no cover - exercised only on Windows
    fcntl = None  # type: ignore[assignment]

EVENTS_FILE = "events.jsonl"

# Event kinds the pack writes (others are allowed; readers keep whatever they do not know).
RUN_CREATED = "run_created"
RUN_JOINED = "run_joined"
STORY_CHANGED = "story_changed"
STAGE_START = "stage_start"
STAGE_END = "stage_end"
SCENE_RECORDED = "scene_recorded"
POST_RECORDED = "post_recorded"
TELEMETRY_WRITTEN = "telemetry_written"
WARNING = "warning"
ERROR = "error"


def utc_now() -> str:
    """Now as UTC ISO-8601 with milliseconds and a ``Z``: ``2026-11-23T21:45:01.123Z``."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _ends_mid_line(fd: int) -> bool:
    """True if the file's last byte is not a newline (a writer died mid-line)."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append ``line`` (no newline inside) plus a newline to ``path`` as one write.

    Creates the file (and its folder) if missing. If a previous writer left a torn last line, the new
    line starts on a line of its own, so the torn fragment can never swallow it.
    """
    if "\n" in line or "\r" in line:
        raise ValueError("an event line may not contain a line break; serialise it with json.dumps")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = (line + "\n").encode("utf-8")
    folder, name = os.path.split(os.path.abspath(path))
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: to see a torn last line
    try:
        # A run's event log: the run's (re-entrant) lock; any other file: a lock on this descriptor.
        with run_lock(folder) if name == EVENTS_FILE else _locked(fd):
            if _ends_mid_line(fd):
                data = b"\n" + data
            written = os.write(fd, data)
            while written < len(data):  # only on a full disk or a signal; we still hold the lock
                written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def append_event(run_dir: str | os.PathLike[str], event: str, **fields: Any) -> dict[str, Any]:
    """Append one event to ``<run_dir>/events.jsonl`` and return it.

    ``fields`` must be JSON-able; ``None`` values are dropped. Example::

        append_event(run.run_dir, "stage_end", stage="sample", scene="b", elapsed_s=41.2)
    """
    if not event or not isinstance(event, str):
        raise ValueError(f"event kind must be a non-empty string, got {event!r}")
    record: dict[str, Any] = {"time": utc_now(), "event": event, "pid": os.getpid()}
    record.update({key: value for key, value in fields.items() if value is not None})
    line = json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    append_line(os.path.join(os.fspath(run_dir), EVENTS_FILE), line)
    return record


@dataclass
class EventLog:
    """What :func:`read_events` found: whole events in file order and the lines it skipped."""

    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # 1-based line numbers that were not whole JSON objects

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") in kinds]


def read_events(run_dir: str | os.PathLike[str]) -> EventLog:
    """Read ``<run_dir>/events.jsonl``; torn or foreign lines are skipped (and their numbers noted).

    A missing file reads as an empty log.
    """
    log = EventLog()
    path = os.path.join(os.fspath(run_dir), EVENTS_FILE)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return log
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            log.skipped.append(number)
            continue
        if isinstance(value, dict) and isinstance(value.get("event"), str):
            log.events.append(value)
        else:
            log.skipped.append(number)
    return log
