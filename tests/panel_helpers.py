"""A small ComfyUI home for the panel's tests (pytest and the browser test's server): the demo story
in input/gemdirect/demo/, and one run of it with scene 'dawn' rendered (record, last frame PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import pack_module
from run_helpers import fake_stage, scene_record
from run_helpers import story_info as plain_story_info

ledger = pack_module("nodes.run.ledger")
story_nodes = pack_module("nodes.story.nodes")
images = pack_module("nodes.video.images")
encode = pack_module("nodes.video.encode")
records = pack_module("nodes.run.records")
fingerprint = pack_module("nodes.run.fingerprint")
plan = pack_module("nodes.story.plan")

DEMO = "demo/story.json"
STORY_ID = "lighthouse"
SCENES = (("dawn", "Dawn over the sea"), ("noon", "The keeper's rounds"), ("dusk", "The lamp is lit"))


def make_home(home: Path) -> dict:
    """Fill ``home`` (already GEMDIRECT_HOME, with input/ output/ user/ temp/) and return names in it."""
    for sub in ("input", "output", "temp", "user", "models"):
        (home / sub).mkdir(exist_ok=True)
    story_nodes.list_stories()  # installs the demo story, as the Story Loader does on first use
    story_path = Path(story_nodes.story_path(DEMO))
    raw = json.loads(story_path.read_text())
    run = ledger.create_run(plain_story_info(STORY_ID, scenes=SCENES), raw)
    ledger.record_scene(run, scene_record("dawn", 1, bookend=None))
    last = ledger.scene_paths(run, "dawn").last_frame
    frame = np.zeros((48, 80, 3), np.float32)
    frame[..., 2] = 0.8  # a blue frame: tells the rendered frame from the keyframe on a card
    images.save_png(last, frame)
    return {"story": DEMO, "story_path": story_path, "story_id": STORY_ID, "run_id": run.run_id, "run": run}



def render_demo_scenes(names: dict, scene_ids: tuple[str, ...] | list[str]) -> None:
    """Record scenes of the demo story (as planned from its story.json now) in the run as Scene Save
    leaves them: a small H.264 preview, the last frame PNG, and a record with its fingerprint; a
    chained scene after the first starts on its predecessor's saved last frame (hashed into the
    fingerprint), so a scene rendered this way is fresh until the story or its predecessor changes.
    Render in play order (a chained scene hashes its predecessor's last frame as it is then)."""
    loaded = plan.load_and_plan(str(names["story_path"]))
    run = names["run"]
    plans = list(loaded.plan.scenes)
    for scene_id in scene_ids:
        position = next(i for i, p in enumerate(plans) if p.id == scene_id)
        scene, previous = plans[position], plans[position - 1] if position else None
        paths = ledger.scene_paths(run, scene_id)
        frames = np.zeros((5, 48, 80, 3), np.float32)
        frames[..., position % 3] = np.linspace(0.2, 0.9, 5, dtype=np.float32)[:, None, None]
        encode.encode_video(paths.video, frames, scene.fps)
        images.save_png(paths.last_frame, frames[-1])
        if scene.chain and previous is not None:
            start = {"flf2v_source": "previous-scene", "previous_scene": previous.id,
                     "start_file": ledger.scene_paths(run, previous.id).last_frame, "fit": "crop"}
        else:
            start = {"flf2v_source": "keyframe"}
        record = records.scene_record(
            **records.scene_plan_fields(scene), video_path=ledger.relative_path(run, paths.video),
            video_duration=5 / float(scene.fps),
            telemetry=records.run_telemetry(fake_stage(), flf2v_source=start["flf2v_source"],
                                            bookend=records.bookend_similarity(40.0 if previous else None)),
            models=["wan2.2_i2v_14B_Q4_K_M.gguf"],
            extra={"Fingerprint": fingerprint.scene_fingerprint(run.run_dir, scene, start,
                                                                ["wan2.2_i2v_14B_Q4_K_M.gguf"])})
        ledger.record_scene(run, record)


def render_demo_film(names: dict) -> list[str]:
    """Write the run's film as Story Render leaves it (final/<story>.mp4 and the post record with
    Extra.Scenes): the demo's scenes in the story's order now, each a second of its own solid colour
    (red, green, blue by its position in SCENES), so a reorder shows in the film. Returns the order."""
    loaded = plan.load_and_plan(str(names["story_path"]))
    run = names["run"]
    order = [scene.id for scene in loaded.plan.scenes]
    fps = loaded.plan.scenes[0].fps
    colours = {scene_id: i for i, (scene_id, _) in enumerate(SCENES)}
    frames = np.zeros((16 * len(order), 48, 80, 3), np.float32)
    for k, scene_id in enumerate(order):
        frames[16 * k:16 * (k + 1), ..., colours[scene_id] % 3] = 0.9
    info = encode.encode_video(ledger.final_video_path(run), frames, fps)
    ledger.record_post(run, records.post_record(
        interpolation_method="none", interpolation_ms=0, upscale_method="none", upscale_ms=0,
        transition_method="cut", final_fps=info.fps, final_width=info.width, final_height=info.height,
        final_frames=info.frames, final_duration=info.duration, final_path=ledger.relative_path(run, info.path),
        audio_kept=False, extra={"Scenes": order}))
    return order
