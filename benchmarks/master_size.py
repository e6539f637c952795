"""Benchmark: disk size of one scene's lossless master against its H.264 preview.

The clip is the demo's animatic (the lighthouse keyframe, a slow push-in), 81 frames per size, once
clean (flat painted areas: the small end) and once with per-frame grain of 3/255 standard deviation
(fine moving detail, like a diffusion model's output: the large end). Written the way Scene Save
does: the preview at crf 19 (medium), the master as FFV1 (bgr0) in Matroska and, for comparison,
as the PNG-frames fallback. Also checks the master decodes back bit-exact.

    nice python benchmarks/master_size.py                       # 832x480 and 1280x720, 81 frames
    python benchmarks/master_size.py --frames 33 --sizes 320x192   # a quick look

Not a test: CI never runs it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from bench import pack_module


def folder_bytes(path: str) -> int:
    return sum(entry.stat().st_size for entry in os.scandir(path) if entry.is_file())


def measure(width: int, height: int, frames: int, folder: str, grain: float) -> dict:
    import torch

    demo, animatic = pack_module("nodes.story.demo"), pack_module("nodes.story.animatic")
    video, master = pack_module("nodes.video"), pack_module("nodes.video.master")
    keyframe = torch.from_numpy(np.asarray(demo.paint_keyframe("dawn"), np.float32) / 255.0)
    clip = animatic.animatic(keyframe, frames, "push in", width=width, height=height)
    if grain:
        noise = torch.randn(clip.shape, generator=torch.Generator().manual_seed(0)) * (grain / 255.0)
        clip = (clip + noise).clamp(0, 1)
    exact = np.rint(clip.numpy() * 255).astype(np.uint8)
    out: dict = {"size": f"{width}x{height}", "frames": frames, "grain": grain}
    stem = os.path.join(folder, f"{width}x{height}-{grain:g}")
    started = time.perf_counter()
    video.encode_video(stem + ".mp4", clip, 16, crf=19)
    out["mp4_s"] = time.perf_counter() - started
    out["mp4_mb"] = os.path.getsize(stem + ".mp4") / 2**20
    started = time.perf_counter()
    master.encode_master(stem + ".mkv", clip, 16, fmt="ffv1")
    out["ffv1_s"] = time.perf_counter() - started
    out["ffv1_mb"] = os.path.getsize(stem + ".mkv") / 2**20
    back = np.concatenate(list(master.iter_source_frames(stem + ".mkv", 16, dtype="uint8", as_torch=False)))
    out["ffv1_exact"] = bool(np.array_equal(back, exact))
    started = time.perf_counter()
    master.encode_master(stem + "_frames", clip, 16, fmt="png")
    out["png_s"] = time.perf_counter() - started
    out["png_mb"] = folder_bytes(stem + "_frames") / 2**20
    preview = np.concatenate(list(video.iter_frames(stem + ".mp4", 16, dtype="uint8", as_torch=False)))
    error = np.abs(preview.astype(np.int16) - exact.astype(np.int16))
    out["mp4_max_err"], out["mp4_mean_err"] = int(error.max()), float(error.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--sizes", nargs="+", default=["832x480", "1280x720"])
    parser.add_argument("--grain", nargs="+", type=float, default=[0.0, 3.0], help="noise std in 1/255")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for size, grain in ((size, grain) for size in args.sizes for grain in args.grain):
            width, height = (int(v) for v in size.split("x"))
            r = measure(width, height, args.frames, folder, grain)
            print(f"{r['size']} x {r['frames']} frames, grain {grain:g}: preview MP4 {r['mp4_mb']:.1f} MB "
                  f"({r['mp4_s']:.1f} s, "
                  f"max/mean error {r['mp4_max_err']}/{r['mp4_mean_err']:.2f} of 255), FFV1 master "
                  f"{r['ffv1_mb']:.1f} MB ({r['ffv1_s']:.1f} s, exact: {r['ffv1_exact']}), PNG frames "
                  f"{r['png_mb']:.1f} MB ({r['png_s']:.1f} s)")


if __name__ == "__main__":
    main()
