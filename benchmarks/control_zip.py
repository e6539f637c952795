"""Reading and resampling a control zip: time and peak memory for a scene-sized pose sequence.

    python benchmarks/control_zip.py [--frames 81] [--length 81] [--size 832x480] [--source 1280x720]

Writes a zip of ``--frames`` PNG frames at ``--source`` size (pose-map-like: black with coloured lines,
which PNG compresses as real pose/canny maps compress), then times Control Sequence's two steps: reading
the zip (checks + decode, in memory) and resampling to ``--length`` frames at ``--size``. Prints one line
per step and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import zipfile

import numpy as np
from bench import pack_module, peak_rss_mb
from PIL import Image, ImageDraw

sequence = pack_module("nodes.control.sequence")


def pose_frame(index: int, width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    x = width // 3 + index * width // 300
    for k, colour in enumerate(((255, 0, 85), (255, 170, 0), (0, 255, 0), (0, 170, 255), (170, 0, 255))):
        draw.line((x, height // 4, x + (k - 2) * width // 20, height * 3 // 4), fill=colour, width=max(2, width // 160))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--length", type=int, default=81)
    parser.add_argument("--size", default="832x480")
    parser.add_argument("--source", default="1280x720")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    src_w, src_h = (int(v) for v in args.source.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "pose.zip")
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for index in range(args.frames):
                archive.writestr(f"pose/{index:04d}.png", pose_frame(index, src_w, src_h))
        size_mb = os.path.getsize(path) / 2**20
        started = time.perf_counter()
        read = sequence.read_control_zip(path)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        out = sequence.resample(read.frames, args.length, width, height)
        resample_s = time.perf_counter() - started
    assert out.shape == (args.length, height, width, 3) and np.isfinite(out).all()
    print(f"zip: {args.frames} frames {src_w}x{src_h}, {size_mb:.2f} MB")
    print(f"read + check + decode: {read_s:.2f} s ({read_s / args.frames * 1000:.1f} ms/frame)")
    print(f"resample to {args.length} x {width}x{height}: {resample_s:.2f} s")
    print(f"peak RSS: {peak_rss_mb():.0f} MB (output IMAGE {out.nbytes / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
