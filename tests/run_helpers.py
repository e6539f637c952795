"""Helpers for the run room's tests: small stories, scene records, and a complete good run with real MP4s."""

from __future__ import annotations

import types
from fractions import Fraction

import numpy as np
from conftest import pack_module

ledger = pack_module("nodes.run.ledger")
records = pack_module("nodes.run.records")
measure = pack_module("nodes.run.measure")

SCENES = (("a", "Dawn"), ("b", "Boat"), ("c", "Dusk"))
WIDTH, HEIGHT, FRAMES, FPS = 320, 192, 9, Fraction(16)
GIB = 1 << 30


def story_info(story_id: str = "test-story", scenes=SCENES, content_hash: str = "hash-1"):
    return ledger.plain_story_info(
        story_id, "Test Story", scenes, logline="A boat crosses a lake.", directors_vision="Calm, warm light.",
        file="/stories/test/story.json", story_dir="/stories/test", preset="standard",
        preset_settings={"width": WIDTH, "height": HEIGHT, "frames": FRAMES, "cfg": 5.2, "steps": 16},
        warnings=("story-level note",), content_hash=content_hash,
    )


def story_raw(scenes=SCENES) -> dict:
    return {"schema": "gemdirect.story/1", "id": "test-story", "title": "Test Story",
            "scenes": [{"id": scene_id, "prompt": f"prompt {scene_id}"} for scene_id, _ in scenes]}


def scene_plan(scene_id: str, index: int, title: str = "") -> types.SimpleNamespace:
    """A stand-in for the story room's ScenePlan with the attributes the run room reads."""
    return types.SimpleNamespace(
        index=index, id=scene_id, title=title or scene_id, story_id="test-story", prompt=f"prompt {scene_id}",
        negative="blurry", seed=1000 + index, cfg=5.2, steps=16, sampler="euler", width=WIDTH, height=HEIGHT,
        length=FRAMES, fps=FPS, duration_seconds=FRAMES / 16, keyframe=None, loras=(), warnings=(),
        transition=types.SimpleNamespace(kind="cut", frames=0), chain=index > 1, model_profile="wan22-14b",
    )


def fake_stage(used_before_mb: float = 2048.0, used_after_mb: float = 2304.5):
    """A finished stage measurement with fixed numbers (total 8 GiB)."""
    total = 8 * GIB
    mem = measure.MemorySnapshot
    before = mem("cuda", "Test GPU", 0, total, total - int(used_before_mb * (1 << 20)), 4000.0)
    after = mem("cuda", "Test GPU", 0, total, total - int(used_after_mb * (1 << 20)), 4100.0)
    return measure.StageMeasurement(stage="sample", scene=None, before=before, after=after,
                                    started_at="2026-11-23T21:45:01.000Z", ended_at="2026-11-23T21:46:09.500Z",
                                    elapsed_s=68.5, peak_mb=used_after_mb + 100)


def scene_record(scene_id: str, index: int, *, bookend: float | None = None, success: bool = True, **extra):
    plan = scene_plan(scene_id, index)
    source = "previous-scene" if index > 1 else "keyframe"
    record = records.scene_record(
        **records.scene_plan_fields(plan),
        video_path=f"scenes/{scene_id}.mp4", video_duration=FRAMES / 16,
        video_status="ready" if success else "error", video_error=None if success else "out of memory",
        telemetry=records.run_telemetry(fake_stage(), flf2v_source=source,
                                        bookend=records.bookend_similarity(bookend)),
        models=["wan2.2_i2v_14B_Q4_K_M.gguf"], success=success, errors=() if success else ("out of memory",),
    )
    record.update(extra)
    return record


def frames(count: int = FRAMES, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """[T,H,W,3] float32 0..1: a smooth gradient drifting over time (compresses well, decodes fast)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.random(3).astype(np.float32)
    out = np.empty((count, height, width, 3), np.float32)
    for t in range(count):
        out[t, ..., 0] = (x / width + t * 0.02 + base[0]) % 1.0
        out[t, ..., 1] = (y / height + base[1]) % 1.0
        out[t, ..., 2] = base[2]
    return out


def make_good_run(root: str, scene_ids=("a", "b")):
    """A run with real scene MP4s, a final MP4, records, post and written telemetry. Returns the Run."""
    from conftest import pack_module as module

    encode_video = module("nodes.video.encode").encode_video
    writer = module("nodes.run.writer")
    run = ledger.create_run(story_info(), story_raw(), root=root)
    for index, scene_id in enumerate(scene_ids, start=1):
        encode_video(ledger.scene_paths(run, scene_id).video, frames(seed=index), FPS)
        bookend = None if index == 1 else 42.34
        ledger.record_scene(run, scene_record(scene_id, index, bookend=bookend))
    final = ledger.final_video_path(run)
    info = encode_video(final, frames(count=2 * FRAMES, seed=9), Fraction(24000, 1001))
    ledger.record_post(run, records.post_record(
        interpolation_method="flow", interpolation_ms=812.4, upscale_method="lanczos", upscale_ms=95.0,
        transition_method="cut", final_fps=info.fps, final_width=info.width, final_height=info.height,
        final_frames=info.frames, final_duration=info.duration, final_path=ledger.relative_path(run, final),
        audio_kept=False))
    writer.write_telemetry(run)
    return run
