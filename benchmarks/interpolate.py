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


# --------------------------------------------------------------------------- core-style reference
# ComfyUI core's FrameInterpolate path, written here from its published behaviour (not its code): an
# IFNet with ``blocks.N`` (five blocks, scales 16..1), ResConv as addcmul, in-place flow update, lerp
# blend, cached warp grids; the node reflect-pads to 64, encodes each frame's features once and hands
# the right frame's to the next pair, runs the multiplier-1 timesteps of one pair as one batch, and
# fills a preallocated output, then crops and clamps.



def core_style_net(state):
    """A core-style IFNet (torch modules) holding ``state`` (comfy-core spelling: ``blocks.N.``)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class ResConv(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, 1, 1)
            self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
            self.relu = nn.LeakyReLU(0.2, True)

        def forward(self, x):
            return self.relu(torch.addcmul(x, self.conv(x), self.beta))

    class Block(nn.Module):
        def __init__(self, cin, c):
            super().__init__()
            self.conv0 = nn.Sequential(nn.Sequential(nn.Conv2d(cin, c // 2, 3, 2, 1), nn.LeakyReLU(0.2, True)),
                                       nn.Sequential(nn.Conv2d(c // 2, c, 3, 2, 1), nn.LeakyReLU(0.2, True)))
            self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
            self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 52, 4, 2, 1), nn.PixelShuffle(2))

        def forward(self, x, flow, scale):
            x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear")
            if flow is not None:
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear").div_(scale)
                x = torch.cat((x, flow), 1)
            tmp = F.interpolate(self.lastconv(self.convblock(self.conv0(x))), scale_factor=scale, mode="bilinear")
            return tmp[:, :4] * scale, tmp[:, 4:5], tmp[:, 5:]

    class Net(nn.Module):
        def __init__(self, head, widths):
            super().__init__()
            self.encode = nn.Module()
            self.encode.cnn0, self.encode.cnn1 = nn.Conv2d(3, 16, 3, 2, 1), nn.Conv2d(16, 16, 3, 1, 1)
            self.encode.cnn2, self.encode.cnn3 = nn.Conv2d(16, 16, 3, 1, 1), nn.ConvTranspose2d(16, head, 4, 2, 1)
            self.blocks = nn.ModuleList(Block(7 + 2 * head if i == 0 else 20 + 2 * head, c)
                                        for i, c in enumerate(widths))
            self.grids = {}

        def features(self, img):
            e, relu = self.encode, nn.functional.leaky_relu
            return e.cnn3(relu(e.cnn2(relu(e.cnn1(relu(e.cnn0(img), 0.2)), 0.2)), 0.2))

        def warp(self, img, flow):
            h, w = img.shape[-2:]
            if (h, w) not in self.grids:
                ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
                self.grids = {(h, w): (torch.stack((xs, ys)).unsqueeze(0), ((w - 1.0) / 2.0, (h - 1.0) / 2.0))}
            grid, div = self.grids[(h, w)]
            norm = torch.cat([flow[:, 0:1] / div[0], flow[:, 1:2] / div[1]], 1)
            coords = (grid.expand(img.shape[0], -1, -1, -1) + norm).permute(0, 2, 3, 1)
            return F.grid_sample(img, coords, mode="bilinear", padding_mode="border", align_corners=True)

        def forward(self, img0, img1, timestep, f0, f1):
            n = img0.shape[0]
            f0, f1 = f0.expand(n, -1, -1, -1), f1.expand(n, -1, -1, -1)
            flow = mask = feat = None
            w0, w1 = img0, img1
            for i, block in enumerate(self.blocks):
                scale = [16, 8, 4, 2, 1][i]
                if flow is None:
                    flow, mask, feat = block(torch.cat((img0, img1, f0, f1, timestep), 1), None, scale)
                else:
                    fd, mask, feat = block(torch.cat((w0, w1, self.warp(f0, flow[:, :2]), self.warp(f1, flow[:, 2:4]),
                                                      timestep, mask, feat), 1), flow, scale)
                    flow = flow.add_(fd)
                w0, w1 = self.warp(img0, flow[:, :2]), self.warp(img1, flow[:, 2:4])
            return torch.lerp(w1, w0, torch.sigmoid(mask))

    head = state["encode.cnn3.weight"].shape[1]
    widths = [state[f"blocks.{i}.conv0.1.0.weight"].shape[0] for i in range(5)]
    net = Net(head, widths)
    net.load_state_dict(state)
    return net.eval().requires_grad_(False)


def core_style_interpolate(net, images, multiplier: int):
    """IMAGE [B,H,W,3] -> [(B-1)*multiplier+1,H,W,3] the way core's FrameInterpolate node runs."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        frames = images.movedim(-1, 1)
        _, c, h, w = frames.shape
        frames = F.pad(frames, (0, (-w) % 64, 0, (-h) % 64), mode="reflect")
        _, _, ph, pw = frames.shape
        ts = torch.tensor([t / multiplier for t in range(1, multiplier)]).reshape(-1, 1, 1, 1).expand(-1, 1, ph, pw)
        result = torch.empty(((frames.shape[0] - 1) * multiplier + 1, c, ph, pw))
        result[0] = frames[0]
        out, cached = 1, None
        for i in range(frames.shape[0] - 1):
            a, b = frames[i:i + 1], frames[i + 1:i + 2]
            f0 = cached if cached is not None else net.features(a)
            cached = f1 = net.features(b)
            n = multiplier - 1
            result[out:out + n].copy_(net(a.expand(n, -1, -1, -1), b.expand(n, -1, -1, -1), ts, f0, f1))
            out += n
            result[out].copy_(frames[i + 1])
            out += 1
        return result[:, :, :h, :w].movedim(1, -1).clamp_(0.0, 1.0)


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


def child_ratio(width: int, height: int, frames: int, reps: int, dtype: str = "fp32") -> dict:
    """The pack's engine against the core-style path on the same RIFE 4.25 weights and clip, x2, fp32,
    2 threads, in this one process: runs interleaved, best of ``reps`` each, output difference."""
    import torch

    torch.set_num_threads(2)
    engine = pack_module("nodes.interpolate.engine")
    ifnet, loader = pack_module("nodes.interpolate.ifnet"), pack_module("nodes.interpolate.loader")
    torch.manual_seed(0)
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in ifnet.build("4.25").state_dict().items()}
    core = core_style_net(loader.to_layout(state, "comfy-core"))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rife_v4.26.safetensors")
        loader.save_checkpoint(state, path, "comfy-core")
        model = loader.load_rife(path, dtype)
    clip = torch.from_numpy(_frames(frames, max(width, height)))[:, :height, :width].contiguous()

    def ours():
        return engine.interpolate_images(clip, Fraction(16), Fraction(32), engine.RIFEInterpolator(model),
                                         cut_ssim=0, batch_size=1)[0]  # Story Render's batch on the CPU

    def theirs():
        return core_style_interpolate(core, clip, 2)

    times: dict[str, list[float]] = {"ours": [], "core": []}
    outputs = {"ours": ours(), "core": theirs()}  # warm-up (allocator, oneDNN kernels), and the outputs
    for _ in range(reps):
        for name, run in (("core", theirs), ("ours", ours)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    made = frames - 1
    best = {name: min(values) for name, values in times.items()}
    return {"size": f"{width}x{height}", "dtype": str(model.dtype).replace("torch.", ""), "made": made,
            "core_fps": round(made / best["core"], 3),
            "ours_fps": round(made / best["ours"], 3), "ratio": round(best["core"] / best["ours"], 3),
            "max_diff": float((outputs["ours"] - outputs["core"]).abs().max()),
            # the two padding rules (core reflects, the pack repeats edges) differ near the padded edges
            # (bottom/right) when a side is not a multiple of 64: compare away from them too
            "interior_diff": float((outputs["ours"] - outputs["core"])[:, :height - 64, :width - 64].abs().max()),
            "core_s": [round(v, 2) for v in times["core"]], "ours_s": [round(v, 2) for v in times["ours"]],
            "load": os.getloadavg()[0]}


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
    parser.add_argument("--only-ratio", action="store_true", help="only the comparison with core's path")
    parser.add_argument("--reps", type=int, default=3, help="timed runs of each path in the comparison")
    parser.add_argument("--dtypes", default="fp32,auto", help="the RIFE Loader dtypes the pack runs in (core: fp32)")
    parser.add_argument("--stream", type=int, default=48, help="source frames of the short stream (long: 10x)")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "ratio":
            print(json.dumps(child_ratio(int(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]), rest[4])))
            return
        if kind == "speed":
            print(json.dumps(child_speed(rest[0], int(rest[1]), int(rest[2]))))
        elif kind == "stream":
            print(json.dumps(child_stream(rest[0], int(rest[1]), int(rest[2]))))
        else:
            print(json.dumps(child_file(int(rest[0]), int(rest[1]))))
        return

    print(f"against a core-style FrameInterpolate path (same RIFE 4.25 weights and clip, x2, fp32, 2 threads, "
          f"one process, best of {args.reps}); load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'size':<10}{'ours in':>9}{'core fps':>10}{'ours fps':>10}{'ratio':>8}{'max diff':>11}"
          f"{'interior':>10}  load")
    for dtype in args.dtypes.split(","):
        for width, height in ((256, 256),) if args.quick else ((256, 256), (512, 512), (1280, 720)):
            row = _run_child("ratio", str(width), str(height), str(args.frames), str(args.reps), dtype)
            print(f"{row['size']:<10}{row['dtype']:>9}{row['core_fps']:>10}{row['ours_fps']:>10}{row['ratio']:>8}"
                  f"{row['max_diff']:>11.1e}{row['interior_diff']:>10.1e}  {row['load']:.2f}  "
                  f"(core {row['core_s']} s, ours {row['ours_s']} s)",
                  flush=True)
    if args.only_ratio:
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
