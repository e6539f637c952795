"""Upscale benchmark: gemDirect's engine against core's way (fp32, one frame at a time, 512 tiles,
whole clip in RAM), on the same model in the same process; then peak RSS of the video path for a clip
and a 10x longer clip, each in a fresh subprocess.

Models are built through spandrel with random (mid-range) weights in the real architectures' shapes:
realesr-general-x4v3 (Compact, 64 features, 32 convs, 4x) at full size, and RRDB (RealESRGAN_x4plus
layout, 64 features) with fewer blocks than the real 23 so a run takes minutes on a CPU.

    nice -n 10 python benchmarks/upscale_speed.py [--frames 8] [--size 256] [--rrdb-blocks 3]
        [--rss-frames 6] [--rss-size 128] [--skip-rss]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import REPO_ROOT as ROOT
from bench import pack_module, peak_rss_mb


def build_model(kind: str, blocks: int, path: Path):
    from upscale_helpers import compact_state_dict, rrdb_state_dict, save_and_load

    if kind == "compact":
        state = compact_state_dict(scale=4, convs=32, features=64)
    else:
        state = rrdb_state_dict(scale=4, blocks=blocks, features=64)
    return save_and_load(state, path)


def core_style(model, image):
    """Core's ImageUpscaleWithModel on the CPU: fp32, frame by frame, 512 tiles with 32 overlap and
    a feathered blend, channels-last view of the IMAGE, the whole output batch allocated up front and
    clamped into a second copy."""
    import torch

    tile, overlap, scale = 512, 32, model.scale
    batch, height, width, _ = image.shape
    nchw = image.movedim(-1, 1)
    out = torch.empty((batch, 3, height * scale, width * scale))
    for index in range(batch):
        frame = nchw[index:index + 1]
        acc = torch.zeros((1, 3, height * scale, width * scale))
        div = torch.zeros_like(acc)
        ys = range(0, max(height - overlap, 1), tile - overlap)
        xs = range(0, max(width - overlap, 1), tile - overlap)
        for y in ys:
            for x in xs:
                y0, x0 = max(0, min(height - overlap - 1, y)), max(0, min(width - overlap - 1, x))
                crop = frame[:, :, y0:y0 + tile, x0:x0 + tile]
                result = model(crop)
                mask = torch.ones_like(result)
                feather = overlap * scale
                for t in range(feather):
                    ramp = (t + 1) / feather
                    mask[:, :, t, :] *= ramp
                    mask[:, :, mask.shape[2] - 1 - t, :] *= ramp
                    mask[:, :, :, t] *= ramp
                    mask[:, :, :, mask.shape[3] - 1 - t] *= ramp
                region = (slice(None), slice(None), slice(y0 * scale, y0 * scale + result.shape[2]),
                          slice(x0 * scale, x0 * scale + result.shape[3]))
                acc[region] += result * mask
                div[region] += mask
        out[index] = (acc / div)[0]
    return torch.clamp(out.movedim(1, -1), 0, 1)


def speed(args) -> list[dict]:
    import torch

    engine = pack_module("nodes.upscale.engine")
    torch.set_num_threads(2)
    rows = []
    tmp = Path(tempfile.mkdtemp())
    for kind in ("compact", "rrdb"):
        model = build_model(kind, args.rrdb_blocks, tmp / f"{kind}.pth")
        frames = args.frames if kind == "compact" else max(2, args.frames // 2)
        image = torch.rand((frames, args.size, args.size, 3), generator=torch.Generator().manual_seed(0))
        model(image[:1].movedim(-1, 1))  # the first call in a process is slower: warm up
        timings = {}
        start = time.perf_counter()
        reference = core_style(model, image)
        timings["core-style fp32, 1 frame/call, 512 tiles"] = time.perf_counter() - start
        for label, precision in (("gemDirect fp32", "fp32"), ("gemDirect auto (bf16 on this CPU)", "auto")):
            upscaler = engine.Upscaler(model, engine.UpscaleSettings(precision=precision,
                                                                       device=torch.device("cpu")))
            start = time.perf_counter()
            out = upscaler.upscale(image)
            timings[label] = time.perf_counter() - start
            diff = (out - reference).abs().max().item()
            rows.append({"model": kind, "method": label, "plan": str(upscaler.plan), "max_diff_vs_core": diff})
        base = timings["core-style fp32, 1 frame/call, 512 tiles"]
        rows.append({"model": kind, "method": "core-style fp32, 1 frame/call, 512 tiles"})
        for row in rows:
            if row["model"] == kind:
                seconds = timings[row["method"]]
                row.update(frames=frames, size=f"{args.size}->{args.size * 4}", seconds=round(seconds, 2),
                           fps=round(frames / seconds, 3), speedup_vs_core=round(base / seconds, 2))
    return rows




def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # "5" resets the peak RSS mark to the current RSS
        handle.write("5")


def child_run(mode: str, frames: int, size: int, blocks: int) -> dict:
    """In a fresh process: make a clip, upscale it (streamed or core-style), report peak RSS."""
    import torch

    video = pack_module("nodes.video")
    upscale_video = pack_module("nodes.upscale.video")
    engine = pack_module("nodes.upscale.engine")
    torch.set_num_threads(2)
    tmp = Path(tempfile.mkdtemp())
    model = build_model("compact", blocks, tmp / "compact.pth")
    generator = torch.Generator().manual_seed(0)
    source = tmp / "in.mp4"
    chunks = (torch.rand((min(8, frames - i), size, size, 3), generator=generator) for i in range(0, frames, 8))
    video.encode_video(source, chunks, 24, preset="ultrafast")
    _reset_hwm()
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    if mode == "streamed":
        upscale_video.upscale_video(source, tmp / "out.mp4", model,
                                    engine.UpscaleSettings(device=torch.device("cpu")), preset="ultrafast")
    else:  # core-style: the whole clip as one IMAGE, upscaled whole, then encoded
        image = video.read_frames(source)
        out = core_style(model, image)
        video.encode_video(tmp / "out.mp4", out, 24, preset="ultrafast")
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return {"mode": mode, "frames": frames, "size": f"{size}->{size * 4}", "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak), "rss_before_upscale_mb": round(rss_before)}


def rss(args) -> list[dict]:
    rows = []
    for mode in ("streamed", "core-style"):
        for frames in (args.rss_frames, args.rss_frames * 10):
            code = (f"import sys, json; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import upscale_speed as b; "
                    f"print(json.dumps(b.child_run({mode!r}, {frames}, {args.rss_size}, {args.rrdb_blocks})))")
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT))
            if done.returncode != 0:
                raise SystemExit(done.stderr)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rrdb-blocks", type=int, default=3)
    parser.add_argument("--rss-frames", type=int, default=6)
    parser.add_argument("--rss-size", type=int, default=128)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    print(f"torch threads: 2, cpu count: {os.cpu_count()}; RSS from /proc VmHWM, reset before the upscale")
    if not args.skip_speed:
        for row in speed(args):
            print(json.dumps(row))
    if not args.skip_rss:
        for row in rss(args):
            print(json.dumps(row))


if __name__ == "__main__":
    main()
