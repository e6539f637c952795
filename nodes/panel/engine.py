"""What the panel's routes do, on plain values: no aiohttp, no ComfyUI (tests call these directly).

Stories are named as the Story Loader lists them: a path relative to ``input/gemdirect/`` ending in
``.json`` (``demo/story.json``). Runs are named by the story's id (its slug) and the run id. Every
file handed out is resolved with symlinks followed and must lie inside ComfyUI's input, output,
temp or user folder; anything else is a :class:`PanelError` (a 4xx with a message and, for a bad
story, one issue per field path).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .. import comfy
from ..paths import file_sha256, is_inside, resolve_inside
from ..run import freshness, ledger
from ..story.load import (
    MAX_STORY_BYTES,
    StoryError,
    load_story,
    parse_story_text,
    save_story,
    story_lock,
    validate_story_dict,
)
from ..story.model import story_slug
from ..story.nodes import NO_STORIES, list_stories, stories_folder
from ..story.plan import LoadedStory, StoryPlan, load_and_plan, plan_story
from . import assistant
from .edl import EdlEvent, write_edl

MAX_BODY_BYTES = MAX_STORY_BYTES + 64 * 1024  # a story plus its envelope ({"story": ..., "base_hash": ...})
EXPORT_SCHEMA = "gemdirect.export/1"
# A story name: '/'-separated parts of plain characters, none starting with '.', ending in .json.
# Strict on purpose: no '..', no '%', no backslash, no drive letter, no hidden files.
_PART = r"[A-Za-z0-9_][A-Za-z0-9 _.-]{0,127}"
STORY_NAME = re.compile(rf"^(?:{_PART}/){{0,3}}{_PART}\.json$")
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".bmp": "image/bmp"}


@dataclass
class PanelError(Exception):
    """A request the panel's API refuses: HTTP ``status``, a message, and field issues if any."""

    status: int
    message: str
    issues: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.issues:
            body["issues"] = self.issues
        return body


def _story_error(exc: StoryError, status: int = 422) -> PanelError:
    issues = [{"path": issue.path, "message": issue.message} for issue in exc.issues]
    first = str(exc.issues[0]) if exc.issues else str(exc)
    more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
    return PanelError(status, f"the story is not valid: {first}{more}", issues)


# --------------------------------------------------------------------------- confinement


def confined(path: str) -> str:
    """``path`` with symlinks resolved, if it lies inside ComfyUI's input/output/temp/user folders."""
    real = os.path.realpath(path)
    if not any(is_inside(real, root) for root in comfy.allowed_roots()):
        raise PanelError(403, "that file lies outside ComfyUI's input, output and user folders")
    return real


def story_file(name: Any, *, must_exist: bool = True) -> str:
    """Absolute path of story ``name`` (``demo/story.json``) inside ``input/gemdirect/``."""
    if not isinstance(name, str) or not name:
        raise PanelError(400, "name is required: a story as listed, e.g. demo/story.json",
                         [{"path": "name", "message": "missing"}])
    if not STORY_NAME.match(name):
        raise PanelError(400, f"name {name[:80]!r} is not a story name: use the path under input/gemdirect/ "
                         "as listed (letters, digits, ' ', '_', '-', '.', '/' between folders; ending in .json)",
                         [{"path": "name", "message": "not a story name"}])
    path = resolve_inside(stories_folder(), name)
    if path is None or path == os.path.realpath(stories_folder()):  # e.g. a symlink pointing elsewhere
        raise PanelError(403, f"story {name!r} resolves outside input/gemdirect/; move the story into that folder")
    confined(path)
    if must_exist and not os.path.isfile(path):
        raise PanelError(404, f"story {name!r} not found in input/gemdirect/; pick one from GET /gemdirect/stories")
    return path


def _check_id(kind: str, value: Any, check: Any) -> str:
    try:
        return check(value)
    except ledger.RunError as exc:
        raise PanelError(400, str(exc), [{"path": kind, "message": "not a valid id"}]) from None


# --------------------------------------------------------------------------- stories


def _scene_json(index: int, plan_scene: Any, raw_scene: Mapping[str, Any]) -> dict[str, Any]:
    fps = Fraction(plan_scene.fps)
    return {
        "index": index,
        "id": plan_scene.id,
        "title": plan_scene.title,
        "prompt": plan_scene.prompt,
        "frames": plan_scene.length,
        "fps": float(fps),
        "fps_text": f"{fps.numerator}/{fps.denominator}" if fps.denominator != 1 else str(fps.numerator),
        "duration_seconds": round(plan_scene.duration_seconds, 4),
        "keyframe": raw_scene.get("keyframe"),
        "seed": plan_scene.seed,
        "cfg": plan_scene.cfg,
        "steps": plan_scene.steps,
        "width": plan_scene.width,
        "height": plan_scene.height,
        "transition": {"kind": plan_scene.transition.kind, "frames": plan_scene.transition.frames},
        "chain": plan_scene.chain,
        "warnings": list(plan_scene.warnings),
    }


def _story_json(name: str, loaded: LoadedStory) -> dict[str, Any]:
    plan: StoryPlan = loaded.plan
    raw_scenes = loaded.raw.get("scenes", [])
    return {
        "name": name,
        "story_id": plan.story_id,
        "title": plan.title,
        "preset": plan.preset,
        "hash": loaded.content_hash,
        "story": loaded.raw,
        "scenes": [_scene_json(s.index, s, raw_scenes[s.index - 1]) for s in plan.scenes],
        "duration_seconds": round(plan.duration_seconds, 4),
        "total_frames": plan.total_frames,
        "warnings": loaded.warnings,
    }


def list_story_summaries() -> dict[str, Any]:
    """Every story under ``input/gemdirect/``: name, id, title, scene count, or why it cannot load."""
    stories = []
    for name in list_stories():
        if name == NO_STORIES or not STORY_NAME.match(name):
            continue
        entry: dict[str, Any] = {"name": name}
        try:
            loaded = load_story(story_file(name))
            entry.update(story_id=story_slug(loaded.story), title=loaded.story.title,
                         scenes=len(loaded.story.scenes))
        except StoryError as exc:
            entry["error"] = str(exc.issues[0]) if exc.issues else str(exc)
        except PanelError as exc:
            entry["error"] = exc.message
        stories.append(entry)
    return {"stories": stories}


def _load_planned(path: str) -> LoadedStory:
    try:
        return load_and_plan(path)
    except StoryError as exc:
        raise _story_error(exc) from None


def get_story(name: Any) -> dict[str, Any]:
    """Story ``name`` as on disk plus its plan per scene (frames, fps, duration) and its hash."""
    return _story_json(name, _load_planned(story_file(name)))


def _body_object(body: Any, example: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise PanelError(400, f"send a JSON object: {example}", [{"path": "", "message": "not an object"}])
    return body


def _check_story(path: str, raw: Any) -> dict[str, Any]:
    """``raw`` validated and planned as the story at ``path`` would be; nothing is written."""
    if not isinstance(raw, dict):
        raise PanelError(400, 'story must be the story as a JSON object {"title": ..., "scenes": [...]}',
                         [{"path": "story", "message": "not an object"}])
    try:
        plan_story(validate_story_dict(raw, path, os.path.dirname(path)))  # planning errors too
    except StoryError as exc:
        raise _story_error(exc) from None
    return raw


def _save(path: str, raw: dict[str, Any]) -> None:
    try:
        save_story(path, raw)
    except StoryError as exc:
        raise _story_error(exc) from None


def put_story(name: Any, body: Any) -> dict[str, Any]:
    """Replace story ``name`` with ``body["story"]`` after full validation (atomic write; on any problem
    the file is untouched). ``body["base_hash"]``, if given, must match the file's current hash (else 409:
    someone else saved in between)."""
    path = story_file(name)
    body = _body_object(body, '{"story": {...}, "base_hash": "<hash from GET>"}')
    base = body.get("base_hash")
    if base is not None and not isinstance(base, str):
        raise PanelError(400, "base_hash must be the hash string from GET /gemdirect/story",
                         [{"path": "base_hash", "message": "not a string"}])
    raw = _check_story(path, body.get("story"))
    with story_lock(path):  # the hash check and the write as one step against Save Keyframe's updates
        if base and base != file_sha256(path):
            raise PanelError(409, "the story changed on disk since you loaded it; reload it and apply your change "
                             "again")
        _save(path, raw)
    return get_story(name)


def import_story(body: Any) -> dict[str, Any]:
    """Write a new story (``{"name": "<folder>/story.json", "story": {...}, "overwrite": false}``), validated
    against the folder it goes into (keyframes must already be there) before anything is written."""
    body = _body_object(body, '{"name": "my-story/story.json", "story": {...}, "overwrite": false}')
    name = body.get("name")
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise PanelError(400, "overwrite must be true or false", [{"path": "overwrite", "message": "not a boolean"}])
    path = story_file(name, must_exist=False)
    if os.path.exists(path) and not overwrite:
        raise PanelError(409, f"story {name!r} exists; send \"overwrite\": true to replace it")
    if isinstance(body.get("story"), str):  # the text of a file, as picked in the browser
        try:
            body["story"] = parse_story_text(body["story"].encode("utf-8"), path)
        except StoryError as exc:
            raise _story_error(exc, 400) from None
    raw = _check_story(path, body.get("story"))  # before any folder is made
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _save(path, raw)
    return get_story(name)


# --------------------------------------------------------------------------- runs


def _run_summary(run: ledger.Run) -> dict[str, Any]:
    status = ledger.run_status(run)
    return {"run_id": run.run_id, "story_id": run.story_id, "created": run.created,
            "done": list(status.done), "failed": list(status.failed), "pending": list(status.pending),
            "finished": status.finished, "final": status.final_path}


def list_story_runs(story_id: Any) -> dict[str, Any]:
    """Runs of story ``story_id`` (its slug), newest first, each with which scenes are done/failed/pending."""
    story_id = _check_id("story", story_id, ledger.check_story_id)
    runs = []
    for run in ledger.list_runs(story_id):
        try:
            runs.append(_run_summary(run))
        except (ledger.RunError, OSError, ValueError) as exc:
            runs.append({"run_id": run.run_id, "story_id": story_id, "created": run.created, "error": str(exc)})
    return {"story_id": story_id, "runs": runs}


def open_story_run(story_id: Any, run_id: Any) -> ledger.Run:
    story_id = _check_id("story", story_id, ledger.check_story_id)
    run_id = _check_id("run", run_id, ledger.check_run_id)
    try:
        run = ledger.open_run(story_id, run_id)
    except ledger.RunError as exc:
        raise PanelError(404, str(exc)) from None
    confined(run.run_dir)
    return run


def _start_match(value: Any) -> dict[str, Any] | None:
    """A chained scene's first frame against the start image it was given (Telemetry.StartMatch:
    PSNR dB, SSIM, Verdict pass|fail, Threshold dB), or None when the record has none."""
    if not isinstance(value, Mapping):
        return None
    return {"psnr": value.get("PSNR"), "ssim": value.get("SSIM"), "verdict": value.get("Verdict"),
            "threshold": value.get("Threshold")}


def _scene_view(record: Mapping[str, Any]) -> dict[str, Any]:
    telemetry = record.get("Telemetry") or {}
    gpu = telemetry.get("GPU") or {}
    bookend = telemetry.get("BookendSimilarity") or {}
    video = record.get("Video") or {}
    return {
        "scene_id": record.get("SceneId"),
        "success": record.get("Success"),
        "seed": record.get("Seed"), "cfg": record.get("CFG"), "steps": record.get("Steps"),
        "frames": record.get("FrameCount"), "fps": record.get("FPS"), "resolution": record.get("Resolution"),
        "elapsed_seconds": telemetry.get("DurationSeconds"),
        "vram_before_mb": gpu.get("VramBeforeMB"), "vram_after_mb": gpu.get("VramAfterMB"),
        "vram_peak_mb": gpu.get("VramPeakMB"), "gpu": gpu.get("Name"),
        "bookend": {"score": bookend.get("Score"), "status": bookend.get("Status")} if bookend else None,
        "start_match": _start_match(telemetry.get("StartMatch")),
        "video": {"path": video.get("Path"), "status": video.get("Status")} if video else None,
        "warnings": list(record.get("Warnings") or []), "errors": list(record.get("Errors") or []),
        "attempts": record.get("AttemptsRun"),
    }


def _current_story(story_id: str, name: Any) -> tuple[str | None, Any]:
    """(name, scene plans) of the story as it is on disk now: story ``name`` when given (a bad story is a
    422 naming each field; another story's name a 400), else the first valid story under
    input/gemdirect/ with this id; (None, None) when there is none."""
    if name:
        loaded = _load_planned(story_file(name))
        if loaded.plan.story_id != story_id:
            raise PanelError(400, f"story {name!r} has id {loaded.plan.story_id!r}, not {story_id!r}; pass the "
                             "story this run belongs to", [{"path": "name", "message": "another story"}])
        return name, loaded.plan.scenes
    for candidate in list_stories():
        if candidate == NO_STORIES or not STORY_NAME.match(candidate):
            continue
        try:
            loaded = load_and_plan(story_file(candidate))
        except (StoryError, PanelError):
            continue
        if loaded.plan.story_id == story_id:
            return candidate, loaded.plan.scenes
    return None, None


def _freshness(run: ledger.Run, name: Any) -> dict[str, Any]:
    """Each scene's state (fresh | stale | missing | failed, with reasons) against the story on disk now,
    and the scenes to regenerate in play order (nodes/run/freshness.py)."""
    story_name, plans = _current_story(run.story_id, name)
    compared = story_name or "the story recorded in the run (no story with this id in input/gemdirect/)"
    try:
        states = freshness.scene_states(run, plans)
    except (ledger.RunError, OSError, ValueError) as exc:
        if name:
            raise PanelError(422, f"the scenes' states cannot be worked out: {exc}") from None
        return {"states": None, "regenerate": None, "states_against": compared,
                "states_error": f"the scenes' states cannot be worked out: {exc}"}
    from ..vace import transitions

    try:  # each VACE transition's state (fresh | stale | missing): what Regenerate stale transitions queues
        joins = transitions.transition_states(run, plans, states)
        found = {"transitions": [state.to_json() for state in joins],
                 "regenerate_transitions": transitions.regenerate_transitions(joins)}
    except (ledger.RunError, OSError, ValueError) as exc:
        found = {"transitions": None, "regenerate_transitions": None,
                 "transitions_error": f"the transitions' states cannot be worked out: {exc}"}
    return {"states": [state.to_json() for state in states], "regenerate": freshness.regenerate_order(states),
            "states_against": compared, **found}


def get_run(story_id: Any, run_id: Any, name: Any = None) -> dict[str, Any]:
    """One run: its progress, each recorded scene's telemetry (seed, cfg, steps, VRAM, elapsed, bookend,
    start match), artifact-metadata.json when the telemetry writer has written it, and each scene's
    state against the story on disk now (story ``name``, else the story with this id) with the
    ``regenerate`` list."""
    run = open_story_run(story_id, run_id)
    fresh = _freshness(run, name)
    try:
        summary = _run_summary(run)
        scenes = {record.get("SceneId"): _scene_view(record) for record in ledger.read_scenes(run)}
    except ledger.RunError as exc:
        raise PanelError(422, str(exc)) from None
    metadata = None
    if os.path.isfile(run.metadata_path):
        try:
            with open(run.metadata_path, encoding="utf-8") as handle:
                metadata = json.load(handle)
        except (OSError, ValueError) as exc:
            summary["metadata_error"] = f"artifact-metadata.json unreadable: {exc}"
    run_dir = os.path.relpath(run.run_dir, comfy.output_directory()).replace(os.sep, "/")
    film = None
    if summary["finished"]:
        film_path = ledger.final_video_path(run)
        if os.path.isfile(film_path):
            info = os.stat(film_path)  # the monitor reloads the film when it is rendered again
            try:
                post = ledger.read_post(run) or {}
            except ledger.RunError as exc:
                post = {}
                summary["film_error"] = str(exc)
            extra = post.get("Extra") or {}
            film = {"bytes": info.st_size, "mtime": round(info.st_mtime, 3),
                    "seconds": post.get("FinalDurationSeconds"), "scenes": extra.get("Scenes")}
    return {**summary, "run_dir": run_dir, "scenes": scenes, "metadata": metadata, "film": film, **fresh}


# --------------------------------------------------------------------------- files


def _scene_of(path: str, scene_id: str) -> tuple[LoadedStory, Any]:
    loaded = _load_planned(path)
    for scene in loaded.plan.scenes:
        if scene.id == scene_id:
            return loaded, scene
    raise PanelError(404, f"scene {scene_id!r} is not in this story (scenes: "
                     f"{', '.join(s.id for s in loaded.plan.scenes)})")


def thumbnail_file(name: Any, scene_id: Any, run_id: Any = None, frame: Any = None) -> str:
    """The picture for a scene's card: the run's last frame (``frame="first"``: its first frame) once
    rendered, else the scene's keyframe. 404 when neither exists (the card then shows its title only)."""
    if frame not in (None, "", "first", "last"):
        raise PanelError(400, "frame must be first or last", [{"path": "frame", "message": "use first or last"}])
    path = story_file(name)
    scene_id = _check_id("scene", scene_id, ledger.check_scene_id)
    loaded, scene = _scene_of(path, scene_id)
    if run_id:
        run = open_story_run(loaded.plan.story_id, run_id)
        paths = ledger.scene_paths(run, scene_id)
        rendered = paths.first_frame if frame == "first" else paths.last_frame
        if os.path.isfile(rendered):
            return confined(rendered)
    keyframe = scene.keyframe  # the planner resolved it inside the story's folder
    if keyframe and os.path.isfile(keyframe) and os.path.splitext(keyframe)[1].lower() in IMAGE_TYPES:
        return confined(keyframe)
    raise PanelError(404, f"scene {scene_id!r} has no keyframe and no rendered frame yet")


def scene_video_file(story_id: Any, run_id: Any, scene_id: Any) -> str:
    """The scene's MP4 in a run, for the preview."""
    run = open_story_run(story_id, run_id)
    scene_id = _check_id("scene", scene_id, ledger.check_scene_id)
    video = ledger.scene_paths(run, scene_id).video
    if not os.path.isfile(video):
        raise PanelError(404, f"scene {scene_id!r} has no video in run {run.run_id} yet")
    return confined(video)


def film_file(story_id: Any, run_id: Any) -> str:
    """The run's finished film (``final/<story-id>.mp4``), for the timeline's preview monitor."""
    run = open_story_run(story_id, run_id)
    film = ledger.final_video_path(run)
    if not os.path.isfile(film):
        raise PanelError(404, f"run {run.run_id} has no film yet; a Story Render makes it")
    return confined(film)


# --------------------------------------------------------------------------- assistant


def assist(body: Any) -> dict[str, Any]:
    """Ask the assistant endpoint for one scene's prompt, negative and camera move. Reads the story,
    writes nothing. Body: {"name", "scene", "endpoint", "model", "timeout"?}."""
    body = _body_object(body, '{"name": "demo/story.json", "scene": "dawn", "endpoint": "http://...", "model": "..."}')
    story = get_story(body.get("name"))
    scene = _check_id("scene", body.get("scene"), ledger.check_scene_id)
    timeout = body.get("timeout", assistant.DEFAULT_TIMEOUT_SECONDS)
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not number or not 0 < timeout <= assistant.MAX_TIMEOUT_SECONDS:
        raise PanelError(400, f"timeout must be seconds in (0, {assistant.MAX_TIMEOUT_SECONDS:g}]",
                         [{"path": "timeout", "message": "not a number of seconds in range"}])
    try:
        proposal = assistant.suggest(story["story"], scene, body.get("endpoint"), body.get("model") or "",
                                     float(timeout))
    except assistant.AssistantError as exc:
        raise PanelError(exc.status, f"story assistant: {exc}") from None
    return {**proposal, "name": story["name"], "hash": story["hash"]}


# --------------------------------------------------------------------------- export


def export_story(name: Any, fmt: Any, run_id: Any = None) -> tuple[str, str, str]:
    """``(content type, file name, text)``: the story (+ run) as JSON, or its scenes as a CMX 3600 EDL."""
    if fmt not in ("json", "edl"):
        raise PanelError(400, f"format {str(fmt)[:20]!r} is not known; use json or edl",
                         [{"path": "format", "message": "use json or edl"}])
    story = get_story(name)
    run = get_run(story["story_id"], run_id, name) if run_id else None
    stem = story["story_id"] + (f"-{run['run_id']}" if run else "")
    if fmt == "json":
        document = {"schema": EXPORT_SCHEMA, "name": story["name"], "story_id": story["story_id"],
                    "story": story["story"], "plan": story["scenes"], "run": run}
        return "application/json", f"{stem}.json", json.dumps(document, indent=2, ensure_ascii=False)
    scenes = story["scenes"]
    events = [EdlEvent(clip=f"{s['id']}.mp4", frames=s["frames"], fps=Fraction(s["fps_text"]),
                       comment=s["title"] or s["id"]) for s in scenes]
    text = write_edl(story["title"], events, Fraction(scenes[0]["fps_text"]))
    return "text/plain; charset=utf-8", f"{stem}.edl", text
