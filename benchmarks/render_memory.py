"""Benchmark: peak RSS and frames/s of the story render for a short and a 10x longer film.

The render streams chunk by chunk, so peak memory must not depend on the film's length. A synthetic
run is made first (scenes of ``--scene-frames`` frames, crossfades between them); each film length
is then rendered in a fresh Python process, and its peak RSS is read from ``VmHWM`` in
``/proc/self/status`` (``ru_maxrss`` of a child can carry the parent's peak).

    nice python benchmarks/render_memory.py                           # 30 s and 300 s at 1280x720
    python benchmarks/render_memory.py --seconds 10 100 --size 640x352 # a quicker look

Scenes are read from their lossless FFV1 masters, as Scene Save leaves them (``--no-master``: from
the MP4 previews). Options: ``--interpolate`` adds flow interpolation to 24 fps (slow on a CPU),
``--upscale F`` a Lanczos upscale by F. Not a test: CI never runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import pack_module, peak_rss_mb

FPS = 16


def synthetic_scene(count: int, width: int, height: int):
    """[T,H,W,3] uint8 chunks of a sliding texture (cheap to make, realistic for the codec)."""
    import numpy as np

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = ((np.stack([np.sin(x * 0.03 + y * 0.02), np.sin(x * 0.05), np.sin(y * 0.04)], -1) * 0.4 + 0.5) * 255)
    for start in range(0, count, 8):
        out = np.empty((min(8, count - start), height, width, 3), np.uint8)
        for k in range(len(out)):
            out[k] = np.roll(base, 3 * (start + k), axis=1).astype(np.uint8)
        yield out


def make_run(home: Path, scenes: int, scene_frames: int, width: int, height: int, with_master: bool = True):
    """A run with ``scenes`` scenes (one encoded file, and its master, hard-linked under every scene id)."""
    os.environ["GEMDIRECT_HOME"] = str(home)
    for sub in ("input", "output", "temp", "user", "models"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    ledger, records = pack_module("nodes.run.ledger"), pack_module("nodes.run.records")
    measure, video = pack_module("nodes.run.measure"), pack_module("nodes.video")
    folder = home / "input" / "gemdirect" / f"bench-{scenes}"
    folder.mkdir(parents=True, exist_ok=True)
    story = {"schema": "gemdirect.story/1", "id": "bench", "title": "Benchmark",
             "defaults": {"fps": FPS, "width": width, "height": height, "model_profile": "wan22-i2v-14b",
                          "transition": {"kind": "crossfade", "frames": 8}},
             "scenes": [{"id": f"s{i:03d}", "prompt": "texture", "frames": scene_frames} for i in range(scenes)]}
    (folder / "story.json").write_text(json.dumps(story), encoding="utf-8")
    loaded = pack_module("nodes.story.plan").load_and_plan(str(folder / "story.json"))
    run = ledger.create_run(pack_module("nodes.run.nodes").story_info(loaded), loaded.raw)
    source = home / f"scene-{scene_frames}.mp4"
    if not source.exists():
        video.encode_video(source, synthetic_scene(scene_frames, width, height), FPS, preset="veryfast")
    kept = home / f"scene-{scene_frames}.mkv"
    if with_master and not kept.exists():
        pack_module("nodes.video.master").encode_master(kept, synthetic_scene(scene_frames, width, height), FPS)
    snapshot = measure.MemorySnapshot("cpu", "cpu", None, 1 << 33, 1 << 32, 0.0)
    stage = measure.StageMeasurement(stage="sample", scene=None, before=snapshot, after=snapshot,
                                     started_at="2026-01-01T00:00:00.000Z", ended_at="2026-01-01T00:00:01.000Z",
                                     elapsed_s=1.0)
    for scene in loaded.plan.scenes:
        paths = ledger.scene_paths(run, scene.id)
        os.link(source, paths.video)
        if with_master:
            os.link(kept, paths.master)
        ledger.record_scene(run, records.scene_record(
            **records.scene_plan_fields(scene), video_path=ledger.relative_path(run, paths.video),
            video_master=ledger.relative_path(run, paths.master) if with_master else None,
            telemetry=records.run_telemetry(stage, flf2v_source="keyframe")))
    return run.run_dir


def child(run_dir: str, interpolate: bool, upscale: float) -> None:
    """Render one film in this (fresh) process and print its figures as JSON."""
    engine, ledger = pack_module("nodes.render.engine"), pack_module("nodes.run.ledger")
    sizing = pack_module("nodes.upscale.sizing")
    settings = engine.RenderSettings(interpolation="flow" if interpolate else "off", target_fps=24 if interpolate
                                     else None, upscale=sizing.OutputSize(mode="factor", factor=upscale)
                                     if upscale != 1 else None, x264_preset="veryfast")
    started = time.perf_counter()
    result = engine.render_story(ledger.open_run_dir(run_dir), settings)
    elapsed = time.perf_counter() - started
    print(json.dumps({"frames": result.post["FinalFrames"], "seconds": result.post["FinalDurationSeconds"],
                      "size": result.post["FinalResolution"], "elapsed_s": round(elapsed, 2),
                      "fps": round(result.post["FinalFrames"] / elapsed, 1), "peak_rss_mb": round(peak_rss_mb(), 1),
                      "problems": len(result.problems)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 300], help="film lengths to render")
    parser.add_argument("--size", default="1280x720", help="scene size WxH (multiples of 16)")
    parser.add_argument("--scene-frames", type=int, default=81, help="frames per scene (4n+1)")
    parser.add_argument("--interpolate", action="store_true", help="flow interpolation to 24 fps")
    parser.add_argument("--upscale", type=float, default=1.0, help="Lanczos upscale factor (1: none)")
    parser.add_argument("--no-master", action="store_true", help="read the MP4 previews, not FFV1 masters")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.interpolate, args.upscale)
        return
    width, height = (int(v) for v in args.size.split("x"))
    home = Path(tempfile.mkdtemp(prefix="gemdirect-render-bench-"))
    try:
        for seconds in args.seconds:
            # Each crossfade takes 8 frames: enough scenes that the film lasts about `seconds`.
            scenes = max(1, math.ceil((seconds * FPS - 8) / (args.scene_frames - 8)))
            run_dir = make_run(home, scenes, args.scene_frames, width, height, not args.no_master)
            command = [sys.executable, __file__, "--child", run_dir, "--upscale", str(args.upscale)]
            command += ["--interpolate"] if args.interpolate else []
            out = subprocess.run(command, capture_output=True, text=True, check=True,
                                 env={**os.environ, "GEMDIRECT_HOME": str(home)})
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{seconds:>6g} s film ({scenes} scenes): {figures['frames']} frames {figures['size']}, "
                  f"{figures['elapsed_s']} s, {figures['fps']} frames/s, peak RSS {figures['peak_rss_mb']} MB, "
                  f"validator problems: {figures['problems']}")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
