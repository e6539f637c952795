"""One job of the farm, done for real: headless (the pack's nodes in this process) or on a ComfyUI worker.

Everything in and out is plain JSON-able values (the Ray task carries them between processes):

- ``context``: ``story_path``, ``preset``, ``run_dir``, ``home`` (GEMDIRECT_HOME), and for ComfyUI
  workers ``prompt`` (the workflow's API prompt), ``transition_prompt``, ``render_prompt``, ``story_folder`` (where
  the story goes in the worker's input/gemdirect/), ``timeout_s``;
- ``worker``: a :class:`workers.WorkerSpec` as JSON (``url`` None: headless);
- the result: ``{"job", "ok", "error", "method", "worker", "files"}``. A job whose prompt failed
  returns ``ok: False`` after recording the failure in the ledger (as a local failure is
  recorded); a worker that stops answering raises :class:`client.WorkerLost` (Ray retries the job).

Headless (no ``--workers``): a scene is rendered as the demo renders it (Run -> Chain Start ->
Animatic -> Scene Save: the animatic of an FLF2V scene, from the start image into the keyframe);
a transition makes no clip (the headless path has no VACE model): a note and a warning say the render
crossfades that vace join instead; the render is Story Render.

On a ComfyUI worker the coordinator mirrors onto the worker what the prompt reads (the story and
its files into ``input/gemdirect/<story_folder>/``; the run's manifest and story, the previous
scene's record and saved last frame, the first scene's record and first frame into
``output/gemdirect/<story>/<run>/``) with ``/upload/image``, queues the workflow with Scene Select's
index and Run's run_id set (a transition: ``transition_index``), waits, and fetches the scene's
record and files back with ``/view``. Workers share no storage.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from ..run import events, ledger
from ..run.atomic import atomic_write_bytes, atomic_write_json
from .graph import RENDER, SCENE, TRANSITION, Job

FARM_JOB = "farm_job"  # the event the coordinator's ledger gets for every job attempt (panel, tests)
HEADLESS_MOVES = ("push in", "pan right", "pull out", "pan left", "tilt up", "tilt down")
SCENE_SELECT, RUN_NODE, STORY_LOADER = "GemDirectSceneSelect", "GemDirectRun", "GemDirectStoryLoader"
STORY_RENDER = "GemDirectStoryRender"
TRANSITION_INDEX = "transition_index"
TRANSITION_RECORD = "{a}--{b}.json"  # the VACE nodes' record (gemdirect.transition/1), fetched from a worker
HEADLESS_RECORD = "{a}--{b}.headless.json"  # the headless farm's note (no clip): not a VACE record


def load_story(context: Mapping[str, Any]) -> Any:
    """The STORY (LoadedStory) the farm renders (read again by every job: a Ray process runs many farms)."""
    from ..story.plan import load_and_plan

    return load_and_plan(str(context["story_path"]), str(context.get("preset") or "from story"))


def open_run(context: Mapping[str, Any]) -> ledger.Run:
    return ledger.open_run_dir(context["run_dir"])


def farm_event(run: ledger.Run, job: Job, state: str, **fields: Any) -> dict[str, Any]:
    """A ``farm_job`` event in the coordinator's run: ``job``, ``kind``, ``stage``, ``state``
    (started | done | failed | lost | skipped) plus what the state carries (worker, attempt, error...)."""
    return events.append_event(run.run_dir, FARM_JOB, job=job.id, kind=job.kind, stage=job.stage, state=state,
                               scene=job.scene, **fields)


def record_failure(run: ledger.Run, scene: Any, error: str, models: tuple[str, ...] = ()) -> None:
    """Record scene ``scene`` as failed in the coordinator's ledger, as Scene Save records a local failure."""
    from ..chain.save import _failure_record, _save_measurement, close_stage

    stage = close_stage(run, scene.id, None, _save_measurement(), error=error)
    _failure_record(run, scene, ledger.scene_paths(run, scene.id), stage, None, list(models), error)


# --------------------------------------------------------------------------- headless


def headless_scene(run: ledger.Run, story: Any, scene: Any) -> dict[str, Any]:
    from ..chain.nodes import GemDirectChainStart, GemDirectSceneSave
    from ..run.nodes import GemDirectRun
    from ..story.nodes import GemDirectAnimatic

    run, _run_dir = GemDirectRun().start(story, scene, ledger.MODE_CONTINUE, run.run_id)
    start_image, end_image, source = GemDirectChainStart().start(run, scene)
    (frames,) = GemDirectAnimatic().animate(
        keyframe=start_image, length=scene.length, move=HEADLESS_MOVES[(scene.index - 1) % len(HEADLESS_MOVES)],
        easing="ease-in-out", amount=0.12, scene=scene, end_image=end_image)
    GemDirectSceneSave().save(frames, scene, run)  # records a failure itself, then raises
    return {"method": f"animatic (started from {source})", "files": [ledger.relative_path(
        run, ledger.scene_paths(run, scene.id).record)]}


def headless_transition(run: ledger.Run, story: Any, job: Job) -> dict[str, Any]:
    """No VACE model runs headless: the pair is left to the render, which crossfades a ``vace`` join that has no
    transition clip (Story Render reports ``vace->crossfade`` with the reason). Both scenes must be made (the job's
    dependencies); the note and a run warning say what was done instead of a VACE clip."""
    from ..render.join import RenderError, _scene_source

    a_id, b_id = job.pair
    for scene_id in (a_id, b_id):
        if _scene_source(run, scene_id)[3]:
            raise RenderError(f"transition '{a_id}' -> '{b_id}': scene '{scene_id}' {_scene_source(run, scene_id)[3]}")
    a = next(s for s in story.plan.scenes if s.id == a_id)
    frames = int(a.transition.frames)
    note = (f"transition '{a_id}' -> '{b_id}': no VACE model runs on the headless farm, so no transition clip was "
            f"made; the render crossfades this vace join over {frames} frames instead (Story Render: vace->crossfade)")
    record = {"From": a_id, "To": b_id, "Frames": frames, "Method": "crossfade", "Engine": "farm-headless",
              "Easing": a.transition.easing, "Note": note}
    atomic_write_json(os.path.join(run.transitions_dir, HEADLESS_RECORD.format(a=a_id, b=b_id)), record)
    ledger.warn(run, note)
    return {"method": "none (headless: no VACE model; the render crossfades)", "files": []}


def render_film(run: ledger.Run, story: Any, context: Mapping[str, Any]) -> dict[str, Any]:
    from ..render.nodes import GemDirectStoryRender

    rendered = GemDirectStoryRender().render(run, story=story, **dict(context.get("render") or {}))
    _run, final_path, report = rendered["result"]
    return {"method": "Story Render (coordinator)", "files": [ledger.relative_path(run, final_path)],
            "report": report}


# --------------------------------------------------------------------------- ComfyUI workers


def worker_run_folder(run: ledger.Run) -> str:
    """The run's folder on a worker, relative to its output folder: ``gemdirect/<story>/<run>``."""
    return posixpath.join(ledger.RUNS_FOLDER, run.story_id, run.run_id)


def story_files(story: Any) -> list[str]:
    """The story's files relative to its folder: story.json and every keyframe, control zip and soundtrack."""
    names = [os.path.basename(story.path)]
    for scene in story.story.scenes:
        names += [scene.keyframe] if scene.keyframe else []
        names += [scene.control.sequence] if scene.control else []
    names += [story.story.soundtrack] if story.story.soundtrack else []
    return list(dict.fromkeys(name.replace("\\", "/") for name in names))


def mirror_story(client: Any, story: Any, folder: str) -> None:
    """The story (same bytes, same relative paths) into the worker's ``input/gemdirect/<folder>/``."""
    for name in story_files(story):
        with open(os.path.join(os.path.dirname(story.path), name), "rb") as handle:
            data = handle.read()
        sub, base = posixpath.split(name)
        client.upload(data, base, posixpath.join("gemdirect", folder, sub).rstrip("/"), "input")


def _upload_run_file(client: Any, run: ledger.Run, path: str) -> None:
    relative = ledger.relative_path(run, path)
    sub, base = posixpath.split(relative)
    with open(path, "rb") as handle:
        client.upload(handle.read(), base, posixpath.join(worker_run_folder(run), sub).rstrip("/"), "output")


def mirror_run(client: Any, run: ledger.Run, scene_ids: list[str]) -> None:
    """The run's manifest and story.json, and the records and bookend frames of ``scene_ids`` (what
    Chain Start and Scene Save read on the worker), into the worker's copy of the run folder."""
    _upload_run_file(client, run, os.path.join(run.run_dir, ledger.MANIFEST_FILE))
    _upload_run_file(client, run, run.story_path)
    for scene_id in scene_ids:
        paths = ledger.scene_paths(run, scene_id)
        for path in (paths.record, paths.first_frame, paths.last_frame):
            if os.path.isfile(path):
                _upload_run_file(client, run, path)


def fetch(client: Any, run: ledger.Run, relative: str) -> bytes:
    """A file of the worker's copy of the run (``scenes/b.mkv``) into the coordinator's run folder."""
    from .client import PromptFailed

    sub, base = posixpath.split(relative)
    data = client.view(base, posixpath.join(worker_run_folder(run), sub).rstrip("/"), "output")
    if data is None:
        raise PromptFailed(f"worker {client.url}: {relative} is not in its run folder after the prompt")
    atomic_write_bytes(ledger.resolve_in_run(run.run_dir, relative), data)
    return data


def fetch_master(client: Any, run: ledger.Run, relative: str) -> None:
    """A scene master: the FFV1 file, or the PNG-frames folder (its index, then every frame)."""
    from ..video.master import FRAME_NAME, FRAMES_INDEX

    if relative.endswith(".mkv"):
        fetch(client, run, relative)
        return
    index = json.loads(fetch(client, run, posixpath.join(relative, FRAMES_INDEX)))
    for number in range(int(index["frames"])):
        fetch(client, run, posixpath.join(relative, FRAME_NAME.format(number)))


def prompt_for(prompt: Mapping[str, Any], story_option: str, run_id: str, *, scene_index: int | None = None,
               transition_index: int | None = None, render: bool = False) -> dict[str, Any]:
    """The workflow's API prompt for one job: every Story Loader on ``story_option``, every Run on
    ``run_id``, Scene Select's ``scene_index`` and any ``transition_index`` widget set; Story Render nodes
    left out unless ``render`` (a scene's worker holds only the scenes it was sent)."""
    out = json.loads(json.dumps(prompt))
    for key in [k for k, node in out.items() if node.get("class_type") == STORY_RENDER and not render]:
        del out[key]  # the film is the render job's, made from the whole ledger
    for node in out.values():
        inputs = node.setdefault("inputs", {})
        kind = node.get("class_type")
        if kind == STORY_LOADER:
            inputs["story"] = story_option
        elif kind == RUN_NODE:
            inputs["run_id"] = run_id
        elif kind == SCENE_SELECT and scene_index is not None and not isinstance(inputs.get("scene_index"), list):
            inputs["scene_index"] = scene_index
        if transition_index is not None and TRANSITION_INDEX in inputs and not isinstance(inputs[TRANSITION_INDEX],
                                                                                       list):
            inputs[TRANSITION_INDEX] = transition_index
    return out


def comfy_scene(client: Any, run: ledger.Run, story: Any, scene: Any, context: Mapping[str, Any],
                on_progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    from .client import PromptFailed

    info = ledger.story_info(run)
    needed = [info.scene_ids[0]] + ([info.scene_ids[scene.index - 2]] if scene.index > 1 else [])
    mirror_story(client, story, context["story_folder"])
    mirror_run(client, run, list(dict.fromkeys(s for s in needed if s != scene.id)))
    prompt = prompt_for(context["prompt"], f"{context['story_folder']}/{os.path.basename(story.path)}", run.run_id,
                        scene_index=scene.index)
    try:
        client.run(prompt, float(context.get("timeout_s") or 1800), on_progress)
        paths = ledger.scene_paths(run, scene.id)
        record = json.loads(fetch(client, run, ledger.relative_path(run, paths.record)))
    except PromptFailed:
        raise  # run_job records the failure
    video = record.get("Video") or {}
    files = [video.get("Path"), (record.get("Extra") or {}).get("Files", {}).get("FirstFrame"),
             (record.get("Extra") or {}).get("Files", {}).get("LastFrame")]
    for relative in filter(None, files):
        fetch(client, run, relative)
    if video.get("Master"):
        fetch_master(client, run, video["Master"])
    # The record last, through the ledger (schema check, scene_recorded event): a reader never sees a
    # record whose files are not all there.
    record.pop("AttemptsRun", None)
    ledger.record_scene(run, record)
    return {"method": f"ComfyUI prompt on {client.url}", "files": [f for f in files if f] + [video.get("Master")]}


def comfy_transition(client: Any, run: ledger.Run, story: Any, job: Job, context: Mapping[str, Any],
                     on_progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """The transition workflow with ``transition_index`` set; both scenes' records and masters go to the worker
    first; the clip ``transitions/<a>--<b>.mp4`` (and its record, if the workflow writes one) come back."""
    from .client import PromptFailed

    a_id, b_id = job.pair
    mirror_story(client, story, context["story_folder"])
    mirror_run(client, run, [a_id, b_id])
    for scene_id in (a_id, b_id):
        record = ledger.read_scene(run, scene_id) or {}
        master = (record.get("Video") or {}).get("Master")
        if master and os.path.isfile(ledger.resolve_in_run(run.run_dir, master)):
            _upload_run_file(client, run, ledger.resolve_in_run(run.run_dir, master))
    prompt = prompt_for(context["transition_prompt"], f"{context['story_folder']}/{os.path.basename(story.path)}",
                        run.run_id, transition_index=job.index)
    client.run(prompt, float(context.get("timeout_s") or 1800), on_progress)
    stem = posixpath.join("transitions", f"{a_id}--{b_id}")
    fetched = []
    for relative in (f"{stem}.mp4", f"{stem}.mkv"):  # the preview and the lossless master the render reads
        sub, base = posixpath.split(relative)
        data = client.view(base, posixpath.join(worker_run_folder(run), sub), "output")
        if data is not None:
            atomic_write_bytes(ledger.resolve_in_run(run.run_dir, relative), data)
            fetched.append(relative)
    if not any(name.endswith(".mkv") for name in fetched):
        try:  # a PNG-frames master where the worker's PyAV has no FFV1
            fetch_master(client, run, f"{stem}_frames")
            fetched.append(f"{stem}_frames")
        except PromptFailed:
            pass
    if not fetched:
        raise PromptFailed(f"worker {client.url}: the transition workflow left no {stem}.mp4/.mkv in its run folder")
    fetch(client, run, f"{stem}.json")  # the record last: a reader never sees it before its files
    return {"method": f"ComfyUI transition prompt on {client.url}", "files": fetched}


def _upload_tree(client: Any, run: ledger.Run, path: str) -> None:
    """A file of the run, or every file of a folder of it (a PNG-frames master), onto the worker."""
    if os.path.isdir(path):
        for name in sorted(os.listdir(path)):
            _upload_tree(client, run, os.path.join(path, name))
    elif os.path.isfile(path):
        _upload_run_file(client, run, path)


def comfy_render(client: Any, run: ledger.Run, story: Any, context: Mapping[str, Any],
                 on_progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """The render workflow on a ``post`` worker: the whole run goes there first (records, bookends, masters,
    previews, transition clips); the film and its post record come back, and the coordinator writes the
    run's telemetry from its own ledger."""
    from ..run.writer import write_telemetry
    from .client import PromptFailed

    ids = list(ledger.story_info(run).scene_ids)
    mirror_story(client, story, context["story_folder"])
    mirror_run(client, run, ids)
    for scene_id in ids:
        record = ledger.read_scene(run, scene_id) or {}
        video = record.get("Video") or {}
        for relative in filter(None, (video.get("Path"), video.get("Master"))):
            _upload_tree(client, run, ledger.resolve_in_run(run.run_dir, relative))
    _upload_tree(client, run, run.transitions_dir)
    prompt = prompt_for(context["render_prompt"], f"{context['story_folder']}/{os.path.basename(story.path)}",
                        run.run_id, scene_index=len(ids), render=True)
    client.run(prompt, float(context.get("timeout_s") or 1800), on_progress)
    post = json.loads(fetch(client, run, posixpath.join("final", ledger.POST_FILE)))
    if not post.get("FinalPath"):
        raise PromptFailed(f"worker {client.url}: the render recorded no FinalPath in final/post.json")
    fetch(client, run, post["FinalPath"])
    ledger.record_post(run, post)
    write_telemetry(run)
    return {"method": f"Story Render prompt on {client.url}", "files": [post["FinalPath"]]}


# --------------------------------------------------------------------------- one job


def run_job(job_value: Mapping[str, Any], context: Mapping[str, Any], worker: Mapping[str, Any],
            on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Do one job (see the module docstring); returns the result, raises WorkerLost for a lost worker."""
    from .client import ComfyClient, PromptFailed, WorkerLost

    job = Job.from_json(dict(job_value))
    run, story = open_run(context), load_story(context)
    url = worker.get("url")
    result: dict[str, Any] = {"job": job.id, "ok": True, "error": None, "worker": worker.get("name")}
    try:
        if job.kind == RENDER and (url is None or not context.get("render_prompt")):
            result.update(render_film(run, story, context))
        elif job.kind == RENDER:
            result.update(comfy_render(ComfyClient(url), run, story, context, on_progress))
        elif url is None:
            if job.kind == SCENE:
                result.update(headless_scene(run, story, story.plan.scenes[job.index - 1]))
            elif job.kind == TRANSITION:
                result.update(headless_transition(run, story, job))
            else:
                raise ValueError(f"job {job.id}: the headless executor has no {job.kind} step")
        else:
            client = ComfyClient(url)
            if job.kind == SCENE:
                result.update(comfy_scene(client, run, story, story.plan.scenes[job.index - 1], context, on_progress))
            elif job.kind == TRANSITION:
                result.update(comfy_transition(client, run, story, job, context, on_progress))
            else:
                raise ValueError(f"job {job.id}: the farm has no workflow for {job.kind} jobs yet")
    except WorkerLost:
        raise
    except Exception as exc:  # the job failed on a working worker: its result, recorded like a local failure
        error = str(exc) if isinstance(exc, PromptFailed) else f"{type(exc).__name__}: {exc}"
        result.update(ok=False, error=error)
        if job.kind == SCENE:
            scene = story.plan.scenes[job.index - 1]
            record = ledger.read_scene(run, scene.id) or {}
            if record.get("Success") is not False or error not in " ".join(map(str, record.get("Errors") or [])):
                record_failure(run, scene, error)  # Scene Save had not recorded it (it failed before saving)
    return result
