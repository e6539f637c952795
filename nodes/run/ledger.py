"""The run ledger: one folder per run, on disk, so a run survives a crash and resumes from any scene.

Layout (``<root>`` is ``<ComfyUI output>/gemdirect``)::

    <root>/latest-run.json                    copy of the newest run's artifact-metadata.json
    <root>/<story-id>/<run-id>/
        run.json                              the ledger's manifest: story facts, scene order, preset
        story.json                            the story as run (as on disk when the run began)
        events.jsonl                          append-only event log (see events.py)
        scenes/<scene-id>.json                one record per scene (artifact-metadata Scenes[] shape)
        scenes/<scene-id>.mp4, <scene-id>_first.png, <scene-id>_last.png
        scenes/<scene-id>.mkv (lossless master; or the PNG folder <scene-id>_frames/)
        transitions/<from-id>--<to-id>.mkv, .mp4, .json  (VACE transitions: master, preview, record;
                                              see vace/transitions.py)
        final/post.json, final/<story-id>.mp4
        artifact-metadata.json, run-summary.txt  (written by the telemetry writer)

Scene files are named by the scene's stable id, not its position, so reordering scenes in the story
keeps each scene's files, and re-running a scene replaces exactly its own files.

Run ids are ``YYYYMMDD-HHMMSS-xxxx`` (UTC time of creation plus 4 random hex digits): they sort by
time and are unique (the folder is created atomically; a clash picks new digits). A run folder
appears complete: it is built under a temporary name and renamed into place.

Everything here takes plain values (slugs, scene ids, dicts), never the story room's classes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..comfy import output_directory
from ..paths import resolve_inside
from . import events
from .atomic import TEMP_MARKER, atomic_write_json, is_temporary
from .lock import run_lock

RUNS_FOLDER = "gemdirect"  # under ComfyUI's output folder
LATEST_RUN_FILE = "latest-run.json"
MANIFEST_FILE = "run.json"
STORY_FILE = "story.json"
METADATA_FILE = "artifact-metadata.json"
SUMMARY_FILE = "run-summary.txt"
POST_FILE = "post.json"
MANIFEST_SCHEMA = "gemdirect.run/1"

RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
# Story ids are slugs; scene ids follow story.json's id rule. Both become file names, so nothing else.
STORY_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
SCENE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

MODE_CONTINUE = "continue"
MODE_NEW = "new"
MODES = (MODE_CONTINUE, MODE_NEW)
# Old names still accepted (saved workflows hold them): old name -> mode.
MODE_AUTO = "auto"
MODE_ALIASES = {MODE_AUTO: MODE_CONTINUE}


class RunError(ValueError):
    """A run cannot be created, found or updated; the message says which and what to do."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class SceneInfo:
    """One scene of the story as the ledger knows it: its id and title, in play order."""

    id: str
    title: str


@dataclass(frozen=True)
class StoryInfo:
    """The plain facts about a story that a run records (built by the node from STORY).

    preset_settings holds the first scene's planned ``width``, ``height``, ``frames``, ``cfg``,
    ``steps`` (what the summary's Preset line shows).
    """

    story_id: str
    title: str
    scenes: tuple[SceneInfo, ...]
    logline: str = ""
    directors_vision: str = ""
    file: str = ""
    story_dir: str = ""
    preset: str = "none"
    preset_settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    content_hash: str = ""

    @property
    def scene_ids(self) -> tuple[str, ...]:
        return tuple(scene.id for scene in self.scenes)

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["scenes"] = [asdict(scene) for scene in self.scenes]
        value["preset_settings"] = dict(self.preset_settings)
        value["warnings"] = list(self.warnings)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> StoryInfo:
        return cls(
            story_id=value["story_id"],
            title=value.get("title", ""),
            scenes=tuple(SceneInfo(s["id"], s.get("title", s["id"])) for s in value.get("scenes", [])),
            logline=value.get("logline", ""),
            directors_vision=value.get("directors_vision", ""),
            file=value.get("file", ""),
            story_dir=value.get("story_dir", ""),
            preset=value.get("preset", "none"),
            preset_settings=dict(value.get("preset_settings", {})),
            warnings=tuple(value.get("warnings", ())),
            content_hash=value.get("content_hash", ""),
        )


@dataclass(frozen=True)
class Run:
    """The RUN value that flows through the graph: which run folder this prompt writes into."""

    run_id: str
    story_id: str
    run_dir: str  # absolute
    created: str  # UTC ISO-8601

    @property
    def root(self) -> str:
        """``<output>/gemdirect``, the folder holding every story's runs and latest-run.json."""
        return os.path.dirname(os.path.dirname(self.run_dir))

    @property
    def scenes_dir(self) -> str:
        return os.path.join(self.run_dir, "scenes")

    @property
    def transitions_dir(self) -> str:
        return os.path.join(self.run_dir, "transitions")

    @property
    def final_dir(self) -> str:
        return os.path.join(self.run_dir, "final")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.run_dir, METADATA_FILE)

    @property
    def summary_path(self) -> str:
        return os.path.join(self.run_dir, SUMMARY_FILE)

    @property
    def events_path(self) -> str:
        return os.path.join(self.run_dir, events.EVENTS_FILE)

    @property
    def story_path(self) -> str:
        return os.path.join(self.run_dir, STORY_FILE)


@dataclass(frozen=True)
class ScenePaths:
    """Where one scene's files live in a run (absolute paths).

    ``video`` is the H.264 preview (for people); ``master`` the lossless FFV1 master the render reads,
    or ``master_frames``, the PNG-frames folder used where PyAV has no FFV1 encoder.
    """

    record: str
    video: str
    first_frame: str
    last_frame: str
    master: str = ""
    master_frames: str = ""

    def relative(self, run: Run) -> dict[str, str]:
        """The same paths relative to the run folder with forward slashes (as telemetry writes them)."""
        return {name: relative_path(run, path) for name, path in asdict(self).items()}


@dataclass(frozen=True)
class RunStatus:
    """How far a run has come. Scene tuples are in story order."""

    run_id: str
    story_id: str
    done: tuple[str, ...]
    failed: tuple[str, ...]
    pending: tuple[str, ...]
    finished: bool  # the final video is recorded (StoryRender completed)
    final_path: str | None  # relative to the run folder

    @property
    def scene_count(self) -> int:
        return len(self.done) + len(self.failed) + len(self.pending)

    def describe(self) -> str:
        state = "finished" if self.finished else "unfinished"
        return (f"run {self.run_id} ({state}): {len(self.done)}/{self.scene_count} scenes done, "
                f"{len(self.failed)} failed, {len(self.pending)} pending")


# --------------------------------------------------------------------------- names and paths


def runs_root() -> str:
    """``<ComfyUI output>/gemdirect`` (absolute)."""
    return os.path.join(output_directory(), RUNS_FOLDER)


def check_story_id(story_id: str) -> str:
    if not isinstance(story_id, str) or not STORY_ID_PATTERN.match(story_id):
        raise RunError(
            f"story id {story_id!r} cannot name a run folder: use lowercase letters, digits, '-' and '_' "
            "(up to 64, e.g. 'lighthouse-keeper'); set the story's id field"
        )
    return story_id


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise RunError(
            f"run_id {run_id!r} is not a run id: expected YYYYMMDD-HHMMSS-xxxx such as 20261123-214501-3fa2 "
            "(copy it from the run folder's name, or leave run_id empty to start or join a run)"
        )
    return run_id


def check_scene_id(scene_id: str) -> str:
    if not isinstance(scene_id, str) or not SCENE_ID_PATTERN.match(scene_id):
        raise RunError(
            f"scene id {scene_id!r} cannot name a file: use letters, digits, '-' and '_' (up to 64), "
            "as story.json's scene ids do"
        )
    return scene_id


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A fresh id ``YYYYMMDD-HHMMSS-xxxx`` from the UTC time ``now`` and 4 random hex digits."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def relative_path(run: Run, path: str) -> str:
    """``path`` relative to the run folder with forward slashes (``scenes/a.mp4``)."""
    return os.path.relpath(os.path.abspath(path), run.run_dir).replace(os.sep, "/")


def resolve_in_run(run_dir: str, relative: str) -> str:
    """Absolute path of ``relative`` (forward slashes) inside ``run_dir``; RunError if it leaves it."""
    path = resolve_inside(run_dir, relative)
    if path is None or os.path.isabs(relative):
        raise RunError(f"path {relative!r} leaves the run folder {run_dir}; paths in a run are relative to it")
    return path


def scene_paths(run: Run, scene_id: str) -> ScenePaths:
    """The files of scene ``scene_id`` in ``run``: record, video, first and last frame PNGs, master."""
    check_scene_id(scene_id)
    stem = os.path.join(run.scenes_dir, scene_id)
    return ScenePaths(f"{stem}.json", f"{stem}.mp4", f"{stem}_first.png", f"{stem}_last.png", f"{stem}.mkv",
                      f"{stem}_frames")


def transition_path(run: Run, from_scene: str, to_scene: str) -> str:
    """Where the transition clip between two scenes goes: ``transitions/<from>--<to>.mp4``."""
    return os.path.join(run.transitions_dir, f"{check_scene_id(from_scene)}--{check_scene_id(to_scene)}.mp4")


def final_video_path(run: Run) -> str:
    """Where the finished film goes: ``final/<story-id>.mp4``."""
    return os.path.join(run.final_dir, f"{run.story_id}.mp4")


def _story_folder(story_id: str, root: str | None) -> str:
    return os.path.join(root or runs_root(), check_story_id(story_id))


# --------------------------------------------------------------------------- manifest


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _run_from_manifest(run_dir: str, manifest: Mapping[str, Any]) -> Run:
    return Run(run_id=manifest["run_id"], story_id=manifest["story_id"], run_dir=os.path.abspath(run_dir),
               created=manifest["created"])


def read_manifest(run: Run | str) -> dict[str, Any]:
    """The run's ``run.json`` (story facts, scene order, preset). RunError if missing or unreadable."""
    run_dir = run.run_dir if isinstance(run, Run) else os.fspath(run)
    path = os.path.join(run_dir, MANIFEST_FILE)
    try:
        manifest = _read_json(path)
    except FileNotFoundError as exc:
        raise RunError(f"{path} is missing: {run_dir} is not a gemDirect run folder (or its creation was "
                       "interrupted); start a new run") from exc
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} cannot be read ({exc}); the run folder is damaged, start a new run") from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise RunError(f"{path} is not a gemDirect run manifest ({MANIFEST_SCHEMA}); start a new run")
    return manifest


def story_info(run: Run | str) -> StoryInfo:
    """The story facts recorded in the run's manifest."""
    return StoryInfo.from_json(read_manifest(run)["story"])


def _manifest(run_id: str, created: str, info: StoryInfo) -> dict[str, Any]:
    return {"schema": MANIFEST_SCHEMA, "run_id": run_id, "story_id": info.story_id, "created": created,
            "story": info.to_json()}


# --------------------------------------------------------------------------- create, open, list


def create_run(info: StoryInfo, story_raw: Mapping[str, Any], *, root: str | None = None) -> Run:
    """Start a new run of ``info.story_id`` and return it.

    The folder is filled under a temporary name (manifest, story.json, the run_created event,
    empty scenes/, transitions/, final/) and renamed into place, so it never appears half made.
    """
    folder = _story_folder(info.story_id, root)
    for scene in info.scenes:
        check_scene_id(scene.id)
    os.makedirs(folder, exist_ok=True)
    for _attempt in range(20):
        now = _dt.datetime.now(_dt.timezone.utc)
        run_id = new_run_id(now)
        run_dir = os.path.join(folder, run_id)
        if os.path.exists(run_dir):
            continue
        temp_dir = os.path.join(folder, f".{run_id}.{secrets.token_hex(4)}{TEMP_MARKER}")
        os.mkdir(temp_dir)
        try:
            created = events.utc_now()
            for sub in ("scenes", "transitions", "final"):
                os.mkdir(os.path.join(temp_dir, sub))
            atomic_write_json(os.path.join(temp_dir, STORY_FILE), dict(story_raw))
            atomic_write_json(os.path.join(temp_dir, MANIFEST_FILE), _manifest(run_id, created, info))
            events.append_event(temp_dir, events.RUN_CREATED, run=run_id, story=info.story_id,
                                scenes=len(info.scenes), preset=info.preset)
            os.rename(temp_dir, run_dir)  # fails if a run with this id appeared meanwhile
        except OSError:
            shutil.rmtree(temp_dir, ignore_errors=True)
            if os.path.exists(run_dir):
                continue
            raise
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        return Run(run_id=run_id, story_id=info.story_id, run_dir=run_dir, created=created)
    raise RunError(f"could not pick a free run id in {folder} after 20 tries; check the folder is writable")


def list_runs(story_id: str, *, root: str | None = None) -> list[Run]:
    """Runs of ``story_id``, newest first. Folders without a readable manifest are left out."""
    folder = _story_folder(story_id, root)
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    runs = []
    for name in names:
        if is_temporary(name) or not RUN_ID_PATTERN.match(name):
            continue
        run_dir = os.path.join(folder, name)
        try:
            manifest = read_manifest(run_dir)
        except RunError:
            continue
        if manifest.get("run_id") == name and manifest.get("story_id") == story_id:
            runs.append(_run_from_manifest(run_dir, manifest))
    return sorted(runs, key=lambda run: (run.created, run.run_id), reverse=True)


def open_run(story_id: str, run_id: str, *, root: str | None = None) -> Run:
    """Open run ``run_id`` of ``story_id`` to resume it; RunError lists the story's runs if unknown."""
    check_run_id(run_id)
    run_dir = os.path.join(_story_folder(story_id, root), run_id)
    if not os.path.isdir(run_dir):
        known = list_runs(story_id, root=root)
        listing = ", ".join(run.run_id for run in known[:10]) or "none yet"
        more = f" (and {len(known) - 10} older)" if len(known) > 10 else ""
        raise RunError(
            f"run '{run_id}' of story '{story_id}' not found in {os.path.dirname(run_dir)}; "
            f"existing runs, newest first: {listing}{more}. Copy one of them, or leave run_id empty"
        )
    return _run_from_manifest(run_dir, read_manifest(run_dir))


def open_run_dir(run_dir: str | os.PathLike[str]) -> Run:
    """The run stored in folder ``run_dir`` (for tools that are handed a folder)."""
    run_dir = os.path.abspath(os.fspath(run_dir))
    return _run_from_manifest(run_dir, read_manifest(run_dir))


# --------------------------------------------------------------------------- scene and post records


def read_scene(run: Run, scene_id: str) -> dict[str, Any] | None:
    """Scene ``scene_id``'s record, or None if the scene has not been recorded in this run."""
    try:
        value = _read_json(scene_paths(run, scene_id).record)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError(f"{scene_paths(run, scene_id).record} cannot be read ({exc}); re-run scene "
                       f"'{scene_id}' to rewrite it") from exc
    return value if isinstance(value, dict) else None


def read_scenes(run: Run) -> list[dict[str, Any]]:
    """Every scene record of the run: the story's scenes in play order, then any recorded scene the
    story no longer has (a scene removed from story.json after it was rendered)."""
    order = story_info(run).scene_ids
    recorded = sorted(
        name[: -len(".json")] for name in _listdir(run.scenes_dir)
        if name.endswith(".json") and not is_temporary(name) and SCENE_ID_PATTERN.match(name[: -len(".json")])
    )
    ids = [scene for scene in order if scene in recorded] + [scene for scene in recorded if scene not in order]
    return [record for record in (read_scene(run, scene) for scene in ids) if record is not None]


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def record_scene(run: Run, record: Mapping[str, Any]) -> dict[str, Any]:
    """Write scene ``record["SceneId"]``'s record (the artifact-metadata ``Scenes[]`` shape).

    The record is checked against the telemetry schema first; a bad record raises TelemetryError
    naming the field and nothing is written. ``AttemptsRun`` may be left out: it then counts this
    scene's recordings in the run (1 the first time). Only this scene's record is replaced.
    """
    from .telemetry import TelemetryError, check_scene_record

    scene_id = record.get("SceneId")
    if not isinstance(scene_id, str):
        raise TelemetryError([f"SceneId: missing or not a string ({scene_id!r}); give the scene's id from story.json"])
    check_scene_id(scene_id)
    known = story_info(run).scene_ids
    if scene_id not in known:
        raise RunError(f"scene '{scene_id}' is not in the story of run {run.run_id} (scenes: {', '.join(known)}); "
                       "start a new run after adding scenes to the story")
    value = dict(record)
    with run_lock(run.run_dir):  # the attempt count is read, bumped and written back: no lost update
        if value.get("AttemptsRun") is None:
            previous = read_scene(run, scene_id)
            value["AttemptsRun"] = int(previous.get("AttemptsRun", 0)) + 1 if previous else 1
        checked = check_scene_record(value)
        atomic_write_json(scene_paths(run, scene_id).record, checked)
        events.append_event(run.run_dir, events.SCENE_RECORDED, scene=scene_id, success=checked.get("Success"),
                            attempt=checked.get("AttemptsRun"))
    return checked


def read_post(run: Run) -> dict[str, Any] | None:
    """The post-production record (``final/post.json``), or None before the story is rendered."""
    path = os.path.join(run.final_dir, POST_FILE)
    try:
        value = _read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} cannot be read ({exc}); render the story again to rewrite it") from exc
    return value if isinstance(value, dict) else None


def record_post(run: Run, post: Mapping[str, Any]) -> dict[str, Any]:
    """Write the post-production record (artifact-metadata ``Post`` shape) after the final render.

    Checked against the schema first (TelemetryError names the field; nothing written).
    """
    from .telemetry import check_post_record

    checked = check_post_record(dict(post))
    atomic_write_json(os.path.join(run.final_dir, POST_FILE), checked)
    events.append_event(run.run_dir, events.POST_RECORDED, final=checked.get("FinalPath"))
    return checked


def append_event(run: Run, event: str, **fields: Any) -> dict[str, Any]:
    """Append one event to the run's events.jsonl (see :func:`events.append_event`)."""
    return events.append_event(run.run_dir, event, **fields)


def warn(run: Run, text: str, *, scene: str | None = None) -> None:
    """Record a warning for the run (or one scene); it reaches the metadata's Warnings and the summary."""
    events.append_event(run.run_dir, events.WARNING, scene=scene, text=str(text))


# --------------------------------------------------------------------------- status and run modes


def run_status(run: Run) -> RunStatus:
    """Which scenes are done (recorded, Success), failed (recorded, not Success) or pending."""
    order = story_info(run).scene_ids
    done, failed, pending = [], [], []
    for scene_id in order:
        record = read_scene(run, scene_id)
        if record is None:
            pending.append(scene_id)
        elif record.get("Success") is True:
            done.append(scene_id)
        else:
            failed.append(scene_id)
    post = read_post(run)
    final = post.get("FinalPath") if post else None
    finished = bool(final) and os.path.isfile(resolve_in_run(run.run_dir, final))
    return RunStatus(run.run_id, run.story_id, tuple(done), tuple(failed), tuple(pending), finished, final)


def _update_story(run: Run, info: StoryInfo, story_raw: Mapping[str, Any]) -> None:
    """Keep the run's story.json and manifest in step with the story a joining scene brings."""
    if info.story_id != run.story_id:
        raise RunError(f"run {run.run_id} belongs to story '{run.story_id}', not '{info.story_id}'; "
                       "pick a run of this story or leave run_id empty")
    with run_lock(run.run_dir):  # manifest read-modify-write
        manifest = read_manifest(run)
        recorded = StoryInfo.from_json(manifest["story"])
        if recorded.content_hash == info.content_hash and recorded.scene_ids == info.scene_ids:
            return
        atomic_write_json(run.story_path, dict(story_raw))
        manifest["story"] = info.to_json()
        atomic_write_json(os.path.join(run.run_dir, MANIFEST_FILE), manifest)
        events.append_event(run.run_dir, events.STORY_CHANGED, old_hash=recorded.content_hash,
                            new_hash=info.content_hash, scenes=list(info.scene_ids))
        warn(run, "story.json changed since scenes of this run were rendered; the run follows the story as it "
                  "is now (scenes rendered before keep their settings in their own records, and Story Render "
                  "reports those whose inputs changed as stale)")


def resolve_run(mode: str, info: StoryInfo, scene_id: str, story_raw: Mapping[str, Any], *,
                run_id: str = "", root: str | None = None) -> Run:
    """The run a prompt rendering scene ``scene_id`` writes into.

    - ``run_id`` given: resume that run of the story (RunError lists existing runs if unknown).
    - ``new``: always a new run.
    - ``continue`` (the default; ``auto`` is its old name): the story's newest run, finished or not,
      so a run is the project's working copy; a new run only when the story has none.

    A joined or resumed run takes the story as it is now (story.json and manifest updated, with a
    warning event if it changed); the scene's join is logged as a ``run_joined`` event.
    """
    check_story_id(info.story_id)
    check_scene_id(scene_id)
    if scene_id not in info.scene_ids:
        raise RunError(f"scene '{scene_id}' is not in story '{info.story_id}' (scenes: {', '.join(info.scene_ids)})")
    asked = mode
    mode = normalise_mode(mode)
    run_id = (run_id or "").strip()
    if run_id:
        run = open_run(info.story_id, run_id, root=root)
        how = "resume"
    elif mode == MODE_NEW:
        return create_run(info, story_raw, root=root)
    else:
        runs = list_runs(info.story_id, root=root)
        if not runs:
            return create_run(info, story_raw, root=root)
        run, how = runs[0], MODE_CONTINUE
    _update_story(run, info, story_raw)
    events.append_event(run.run_dir, events.RUN_JOINED, scene=scene_id, how=how,
                        mode_alias=asked if asked in MODE_ALIASES else None)
    return run


def normalise_mode(mode: str) -> str:
    """``mode`` as one of MODES (an old name such as ``auto`` becomes ``continue``); RunError if unknown."""
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise RunError(f"mode {mode!r} is not a run mode: use one of {', '.join(MODES)} (continue: the story's "
                       "newest run; new: a fresh run), or give a run_id to resume")
    return mode


def plain_story_info(story_id: str, title: str, scenes: Sequence[tuple[str, str]], **facts: Any) -> StoryInfo:
    """A StoryInfo from plain values: ``scenes`` is ``[(id, title), ...]`` in play order."""
    return StoryInfo(story_id=story_id, title=title, scenes=tuple(SceneInfo(i, t) for i, t in scenes), **facts)
