"""Interpolation speed and memory: frames/s and peak RSS per RIFE version and for ``flow``, and the
streaming path on a clip and on a 10x longer one (peak RSS must stay flat).

Every measurement runs in a fresh Python process (peak RSS is per process). RIFE weights are random
(speed does not depend on their values), written in the Frame-Interpolation layout and loaded
through the pack's loader. Run from the repository root, on an idle machine::

    nice -n 10 python benchmarks/interpolate.py                 # all
    nice -n 10 python benchmarks/interpolate.py --quick         # 256x256 only, short stream
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction

from bench import REPO_ROOT, pack_module, peak_rss_mb


def _frames(count: int, size: int, first: int = 0):
    """``count`` [T,size,size,3] float32 frames of a smooth texture moving 4 px a frame (numpy)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.random((size, size + 4 * (first + count) + 8, 3)).astype(np.float32), (0, 0), 3)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return np.stack([tex[:, 4 * k:4 * k + size] for k in range(first, first + count)])


def _interpolator(method: str, folder: str):
    engine = pack_module("nodes.interpolate.engine")
    if method == "flow":
        return engine.FlowInterpolator()
    import torch

    ifnet, loader = pack_module("nodes.interpolate.ifnet"), pack_module("nodes.interpolate.loader")
    torch.manual_seed(0)
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in ifnet.build(method).state_dict().items()}
    path = os.path.join(folder, f"rife{method}.pth")
    loader.save_checkpoint(state, path, "frame-interpolation")
    return engine.RIFEInterpolator(loader.load_rife(path, "fp32"))


def child_speed(method: str, size: int, frames: int) -> dict:
    """Interpolate ``frames`` source frames x2 (frames-1 new frames) as an IMAGE batch."""
    import torch

    torch.set_num_threads(2)
    engine = pack_module("nodes.interpolate.engine")
    with tempfile.TemporaryDirectory() as folder:
        interpolator = _interpolator(method, folder)
        images = torch.from_numpy(_frames(frames, size))
        engine.interpolate_images(images[:2], Fraction(16), Fraction(32), interpolator, cut_ssim=0)  # warm-up
        start = time.perf_counter()
        _, report = engine.interpolate_images(images, Fraction(16), Fraction(32), interpolator, cut_ssim=0,
                                              batch_size=4)
        elapsed = time.perf_counter() - start
    return {"method": method, "size": size, "made": report.blended, "seconds": round(elapsed, 2),
            "fps": round(report.blended / elapsed, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def child_stream(method: str, size: int, frames: int) -> dict:
    """Stream ``frames`` generated source frames (chunks of 16) 16 -> 32 fps; outputs are dropped."""
    import torch

    torch.set_num_threads(2)
    engine = pack_module("nodes.interpolate.engine")
    with tempfile.TemporaryDirectory() as folder:
        interpolator = _interpolator(method, folder)

        def source():
            for first in range(0, frames, 16):
                yield torch.from_numpy(_frames(min(16, frames - first), size, first))

        start = time.perf_counter()
        made, warm = 0, 0.0
        for i, chunk in enumerate(engine.interpolate_chunks(source(), Fraction(16), Fraction(32), interpolator,
                                                            cut_ssim=0, batch_size=4)):
            made += chunk.shape[0]
            if i == 2:  # allocator pools are filled after a few chunks
                warm = peak_rss_mb()
        elapsed = time.perf_counter() - start
    return {"method": method, "size": size, "source_frames": frames, "frames_out": made,
            "seconds": round(elapsed, 2), "peak_rss_mb": round(peak_rss_mb(), 1), "warm_mb": round(warm, 1)}


def child_file(size: int, frames: int) -> dict:
    """A real file through the streaming path: decode -> flow 16 -> 32 fps -> encode."""
    video, engine = pack_module("nodes.video"), pack_module("nodes.interpolate.engine")
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "in.mp4")
        video.encode_video(source, (_frames(min(16, frames - f), size, f) for f in range(0, frames, 16)), 16)
        baseline = peak_rss_mb()
        start = time.perf_counter()
        report = engine.interpolate_video(source, os.path.join(folder, "out.mp4"), Fraction(32),
                                          engine.FlowInterpolator())
        elapsed = time.perf_counter() - start
    return {"method": "flow (file)", "size": size, "source_frames": frames, "frames_out": report.frames_out,
            "seconds": round(elapsed, 2), "peak_rss_mb": round(peak_rss_mb(), 1),
            "peak_before_mb": round(baseline, 1)}


def _run_child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                            cwd=str(REPO_ROOT), timeout=1800)
    if result.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="256x256 only")
    parser.add_argument("--only-stream", action="store_true", help="skip the per-version speed table")
    parser.add_argument("--frames", type=int, default=5, help="source frames per speed run (x2: frames-1 new)")
    parser.add_argument("--stream", type=int, default=48, help="source frames of the short stream (long: 10x)")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "speed":
            print(json.dumps(child_speed(rest[0], int(rest[1]), int(rest[2]))))
        elif kind == "stream":
            print(json.dumps(child_stream(rest[0], int(rest[1]), int(rest[2]))))
        else:
            print(json.dumps(child_file(int(rest[0]), int(rest[1]))))
        return

    versions = list(pack_module("nodes.interpolate.ifnet").VERSIONS)
    if args.only_stream:
        versions = []
    sizes = (256,) if args.quick else (256, 512)
    print(f"CPU, fp32, 2 threads; {args.frames} source frames x2 per run; peak RSS of a fresh process")
    print(f"{'method':<12}{'size':>6}{'frames/s':>10}{'s':>8}{'peak RSS MB':>13}")
    for method in [*versions, "flow"] if versions else []:
        for size in sizes:
            row = _run_child("speed", method, str(size), str(args.frames))
            print(f"{method:<12}{size:>6}{row['fps']:>10}{row['seconds']:>8}{row['peak_rss_mb']:>13}", flush=True)
    print("\nstreaming 16 -> 32 fps at 256x256, chunks of 16: a clip and a 10x longer one")
    for method in ("flow", "4.25"):
        for frames in (args.stream, args.stream * 10):
            row = _run_child("stream", method, "256", str(frames))
            print(f"{method:<6} {frames:>5} frames in -> {row['frames_out']:>5} out  {row['seconds']:>7} s  "
                  f"peak RSS after 3 chunks {row['warm_mb']} MB, at the end {row['peak_rss_mb']} MB", flush=True)
    for frames in (args.stream, args.stream * 10):
        row = _run_child("file", "256", str(frames))
        print(f"file  {frames:>5} frames in -> {row['frames_out']:>5} out  {row['seconds']:>7} s  "
              f"peak RSS {row['peak_rss_mb']} MB (after writing the source: {row['peak_before_mb']} MB)", flush=True)


if __name__ == "__main__":
    main()
