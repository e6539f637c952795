"""Benchmark: decode + re-encode a clip in chunks; frames/s and peak RSS for clips of different lengths.

Streaming means peak memory does not depend on clip length: the 4x longer clip must peak at the same
RSS as the short one. Each measurement runs in a fresh Python process (peak RSS from
``resource.getrusage``) so runs cannot inherit each other's memory.

    nice python benchmarks/video_roundtrip.py                       # 1000 and 4000 frames, 512x512
    python benchmarks/video_roundtrip.py --frames 120 480 --size 256  # a quick look

Not a test: CI never runs it. The source clip is synthetic and generated first in a temp folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from bench import pack_module, peak_rss_mb


def synthetic_chunks(frames: int, size: int, chunk: int):
    """[T,size,size,3] uint8 chunks: two textures sliding past each other (cheap, codec-realistic)."""
    import numpy as np

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    waves = [np.sin(x * f1 + y * f2 + p) for f1, f2, p in rng.uniform(0.01, 0.08, size=(3, 3))]
    base = (np.stack(waves, axis=-1) * 0.35 + 0.5) * 255
    grain = rng.uniform(0, 40, size=(size, size, 3)).astype(np.float32)
    for start in range(0, frames, chunk):
        count = min(chunk, frames - start)
        out = np.empty((count, size, size, 3), np.uint8)
        for k in range(count):
            t = start + k
            out[k] = np.clip(np.roll(base, (t, 2 * t), axis=(0, 1)) * 0.85 + np.roll(grain, -t, axis=1), 0, 255)
        yield out


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints one JSON line."""
    video = pack_module("nodes.video")
    if args.torch:
        import torch  # noqa: F401  (counted in the baseline, as inside ComfyUI)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    if args.child == "generate":
        info = video.encode_video(args.dst, synthetic_chunks(args.frames[0], args.size, args.chunk), 24,
                                  preset="veryfast")
    else:
        source = video.probe_video(args.src)
        chunks = video.iter_frames(args.src, args.chunk, as_torch=args.torch)
        info = video.encode_video(args.dst, chunks, source.fps, preset=args.preset)
        if info.frames != source.frames:
            raise SystemExit(f"round trip lost frames: {source.frames} -> {info.frames}")
    elapsed = time.perf_counter() - started
    print(json.dumps({"frames": info.frames, "seconds": elapsed, "baseline_mb": baseline, "peak_mb": peak_rss_mb()}))


def measure(stage: str, frames: int, src: str, dst: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", stage, "--src", src, "--dst", dst, "--frames", str(frames),
               "--size", str(args.size), "--chunk", str(args.chunk), "--preset", args.preset]
    if args.torch:
        command.append("--torch")
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{stage} of {frames} frames failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 4000], help="clip lengths to measure")
    parser.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
    parser.add_argument("--chunk", type=int, default=16, help="frames per chunk")
    parser.add_argument("--preset", default="medium", help="x264 preset of the re-encode")
    parser.add_argument("--torch", action="store_true", help="decode to torch tensors (as nodes do)")
    parser.add_argument("--child", choices=["generate", "roundtrip"], help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dst", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    rows = []
    with tempfile.TemporaryDirectory(prefix="gemdirect-bench-") as folder:
        for frames in args.frames:
            src, dst = f"{folder}/source-{frames}.mp4", f"{folder}/roundtrip-{frames}.mp4"
            generated = measure("generate", frames, "", src, args)
            roundtrip = measure("roundtrip", frames, src, dst, args)
            rows.append((frames, generated, roundtrip))
            print(f"  {frames} frames done", file=sys.stderr)

    print(f"\nvideo round trip: {args.size}x{args.size}, chunks of {args.chunk}, re-encode preset {args.preset}, "
          f"{'torch' if args.torch else 'numpy'} frames\n")
    print(f"{'frames':>7} | {'stage':<28} | {'seconds':>8} | {'frames/s':>8} | {'peak RSS MB':>11} | {'work MB':>7}")
    print("-" * 86)
    for frames, generated, roundtrip in rows:
        for label, result in (("encode synthetic (veryfast)", generated), ("decode + re-encode", roundtrip)):
            work = result["peak_mb"] - result["baseline_mb"]
            print(f"{frames:>7} | {label:<28} | {result['seconds']:>8.1f} | {frames / result['seconds']:>8.1f} | "
                  f"{result['peak_mb']:>11.1f} | {work:>7.1f}")
    peaks = [roundtrip["peak_mb"] for _frames, _generated, roundtrip in rows]
    print(f"\nround-trip peak RSS spread across lengths: {max(peaks) - min(peaks):.1f} MB "
          "(flat = memory independent of clip length)")


if __name__ == "__main__":
    main()
