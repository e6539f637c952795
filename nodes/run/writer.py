"""The telemetry writer: the run ledger consolidated into artifact-metadata.json, run-summary.txt and
``<output>/gemdirect/latest-run.json``.

Nothing is written unless the whole document matches the schema (TelemetryError names each field at
fault); each file is replaced atomically, so a reader sees the previous version or the new one.
latest-run.json is the same bytes as the run's artifact-metadata.json, and is replaced only when this
run is at least as new as the run it holds (by creation time, then run id).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events, ledger, summary
from .atomic import atomic_write_text
from .events import utc_now
from .telemetry import SCHEMA_ID, check_metadata

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LATEST_LOCK = ".latest-run.lock"


@dataclass(frozen=True)
class TelemetryFiles:
    """What :func:`write_telemetry` wrote."""

    metadata: dict[str, Any]
    summary: str
    metadata_path: str
    summary_path: str
    latest_path: str | None  # None when a newer run already holds latest-run.json


def _event_warnings(run: ledger.Run, records: list[dict[str, Any]]) -> tuple[list[tuple[str, str | None, str]], int]:
    """Warning events as (time, scene, text), minus those a scene record already carries."""
    log = events.read_events(run.run_dir)
    known = {(record.get("SceneId"), text) for record in records for text in record.get("Warnings", ())}
    found = []
    for event in log.of_kind(events.WARNING):
        scene, text = event.get("scene"), str(event.get("text", ""))
        if text and (scene, text) not in known:
            found.append((str(event.get("time", "")), scene, text))
            known.add((scene, text))
    return found, len(log.skipped)


def build_metadata(run: ledger.Run, *, now: str | None = None) -> dict[str, Any]:
    """The artifact-metadata document of ``run`` as the ledger holds it now (not yet checked)."""
    info = ledger.story_info(run)
    records = ledger.read_scenes(run)
    status = ledger.run_status(run)
    event_warnings, torn = _event_warnings(run, records)
    warnings = [f"[Scene {scene}] {text}" if scene else text for _time, scene, text in event_warnings]
    if torn:
        warnings.append(f"events.jsonl: {torn} torn line(s) skipped (a writer was killed mid-line)")
    return {
        "Schema": SCHEMA_ID,
        "RunId": run.run_id,
        "Timestamp": now or utc_now(),
        "RunDir": Path(run.run_dir).as_posix(),
        "Story": {
            "Id": info.story_id, "Title": info.title, "Logline": info.logline,
            "DirectorsVision": info.directors_vision, "File": info.file, "StoryDir": info.story_dir,
            "SceneCount": len(info.scenes), "Warnings": list(info.warnings),
        },
        "Scenes": records,
        "Post": ledger.read_post(run),
        "Preset": info.preset,
        "Warnings": warnings,
        "RunCreated": run.created,
        "Progress": {"ScenesDone": list(status.done), "ScenesFailed": list(status.failed),
                     "ScenesPending": list(status.pending), "Finished": status.finished},
    }


def build_summary(run: ledger.Run, metadata: dict[str, Any]) -> str:
    """run-summary.txt for a checked metadata document: story, preset, scenes in story order, post."""
    info = ledger.story_info(run)
    start = summary.clock(run.created)
    lines = [summary.story_line(start, info.story_id, len(info.scenes))]
    settings = info.preset_settings
    if all(key in settings for key in ("width", "height", "frames", "cfg", "steps")):
        lines.append(summary.preset_line(start, info.preset, settings["width"], settings["height"],
                                         settings["frames"], settings["cfg"], settings["steps"]))
    lines += [summary.warning_line(start, text) for text in info.warnings]
    for scene in metadata["Scenes"]:
        lines += summary.scene_lines(scene)
    event_warnings, _torn = _event_warnings(run, metadata["Scenes"])
    lines += [summary.warning_line(summary.clock(time or None), text, scene) for time, scene, text in event_warnings]
    if metadata["Post"]:
        posted = events.read_events(run.run_dir).of_kind(events.POST_RECORDED)
        lines += summary.post_lines(metadata["Post"], summary.clock(posted[-1]["time"] if posted else None))
    return summary.render_summary(lines)


@contextlib.contextmanager
def _latest_lock(root: str) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    os.makedirs(root, exist_ok=True)
    fd = os.open(os.path.join(root, LATEST_LOCK), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def update_latest(run: ledger.Run, metadata_text: str) -> str | None:
    """Copy ``metadata_text`` to ``<root>/latest-run.json`` if no newer run holds it; returns its path."""
    path = os.path.join(run.root, ledger.LATEST_RUN_FILE)
    with _latest_lock(run.root):
        try:
            with open(path, encoding="utf-8") as handle:
                current = json.load(handle)
            newest = (str(current.get("RunCreated") or ""), str(current["RunId"]))
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            newest = None  # missing or damaged: replace it
        if newest is not None and newest > (run.created, run.run_id):
            return None
        atomic_write_text(path, metadata_text)
    return path


def write_telemetry(run: ledger.Run, *, now: str | None = None) -> TelemetryFiles:
    """Consolidate ``run``'s ledger into its telemetry files; TelemetryError (nothing written) if invalid."""
    metadata = check_metadata(build_metadata(run, now=now))
    text = json.dumps(metadata, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    summary_text = build_summary(run, metadata)
    atomic_write_text(run.metadata_path, text)
    atomic_write_text(run.summary_path, summary_text)
    latest = update_latest(run, text)
    events.append_event(run.run_dir, events.TELEMETRY_WRITTEN, scenes=len(metadata["Scenes"]),
                        latest=latest is not None)
    return TelemetryFiles(metadata, summary_text, run.metadata_path, run.summary_path, latest)
