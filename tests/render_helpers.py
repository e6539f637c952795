"""Helpers for the render room's tests: a story whose scenes are solid colours, saved into a run."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
from conftest import pack_module
from run_helpers import fake_stage

WIDTH, HEIGHT, FPS = 80, 64, 16
COLOURS = {"a": (230, 30, 30), "b": (30, 200, 40), "c": (40, 60, 230), "d": (230, 220, 40)}
LENGTHS = {"a": 9, "b": 13, "c": 17, "d": 9}


def story_dict(scene_ids=("a", "b", "c"), transitions=None, lengths=None, **top) -> dict:
    """A story of solid-colour scenes; ``transitions[i]`` is scene i's transition to the next (None: cut);
    ``lengths`` maps scene ids to frame counts (default LENGTHS)."""
    transitions = list(transitions or []) + [None] * len(scene_ids)
    scenes = []
    for scene_id, transition in zip(scene_ids, transitions, strict=False):
        scene = {"id": scene_id, "prompt": f"a {scene_id} field", "frames": (lengths or LENGTHS)[scene_id]}
        if transition:
            scene["transition"] = transition
        scenes.append(scene)
    story = {"schema": "gemdirect.story/1", "id": "render-story", "title": "Render Story",
             "defaults": {"fps": FPS, "width": WIDTH, "height": HEIGHT, "model_profile": "wan22-i2v-14b",
                          "cfg": 5.2, "steps": 16},
             "scenes": scenes}
    story.update(top)
    return story


def write_story(folder: Path, story: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "story.json"
    path.write_text(json.dumps(story, indent=2), encoding="utf-8")
    return path


def write_wav(path: Path, seconds: float, rate: int = 48000) -> Path:
    """A mono 440 Hz tone of ``seconds`` as 16-bit WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = round(seconds * rate)
    tone = (0.3 * np.sin(2 * math.pi * 440 * np.arange(count) / rate) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(tone.tobytes())
    return path


def solid(scene_id: str, count: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """[T,H,W,3] uint8 frames of the scene's colour (a faint moving stripe, so frames differ)."""
    frames = np.empty((count, height, width, 3), np.uint8)
    frames[:] = COLOURS[scene_id]
    for t in range(count):
        frames[t, :2, (2 * t) % width] = 128
    return frames


def load(path: Path):
    return pack_module("nodes.story.plan").load_and_plan(str(path))


def start_run(story_path: Path):
    """A new run of the story (as GemDirectRun starts one) under the current standalone home."""
    ledger = pack_module("nodes.run.ledger")
    loaded = load(story_path)
    return ledger.create_run(pack_module("nodes.run.nodes").story_info(loaded), loaded.raw)


def save_scene(run, scene, *, success: bool = True, frames: np.ndarray | None = None, master: bool = True) -> None:
    """Encode the scene's solid-colour MP4 (and its lossless master) and record it, as Scene Save does."""
    ledger = pack_module("nodes.run.ledger")
    records = pack_module("nodes.run.records")
    encode_video = pack_module("nodes.video").encode_video
    paths = ledger.scene_paths(run, scene.id)
    pixels = solid(scene.id, scene.length) if frames is None else frames
    info = encode_video(paths.video, pixels, scene.fps, crf=10, preset="ultrafast")
    if master:
        pack_module("nodes.video.master").encode_master(paths.master, pixels, scene.fps)
    ledger.record_scene(run, records.scene_record(
        **records.scene_plan_fields(scene), video_path=ledger.relative_path(run, paths.video),
        video_master=ledger.relative_path(run, paths.master) if master else None,
        video_duration=info.duration, video_status="ready" if success else "error",
        video_error=None if success else "out of memory",
        telemetry=records.run_telemetry(fake_stage(), flf2v_source="keyframe"),
        success=success, errors=() if success else ("out of memory",)))


def save_all(run, loaded) -> None:
    for scene in loaded.plan.scenes:
        save_scene(run, scene)


def centre_colours(path: str) -> list[tuple[int, int, int]]:
    """The centre pixel of every frame of a video, as RGB bytes."""
    video = pack_module("nodes.video")
    out = []
    for chunk in video.iter_frames(path, 16, dtype="uint8", as_torch=False):
        centre = chunk[:, chunk.shape[1] // 2, chunk.shape[2] // 2]
        out += [tuple(int(v) for v in pixel) for pixel in centre]
    return out


def nearest_scene(colour) -> str:
    return min(COLOURS, key=lambda scene: sum((int(a) - int(b)) ** 2 for a, b in zip(colour, COLOURS[scene],
                                                                                        strict=True)))
