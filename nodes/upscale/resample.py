"""Lanczos resampling of frame batches: the weightless upscaler and the finishing resize.

A separable Lanczos filter (3 lobes by default) applied along height, then width. When an axis
shrinks, the kernel is stretched by the shrink factor (antialiasing), so a 4x model's output brought
down to 2x does not alias. Each axis is resampled as a sum of ``taps`` shifted, weighted copies, so
memory stays at two output-sized buffers (no dense resampling matrix).
"""

from __future__ import annotations

import math
from typing import Any

LANCZOS_LOBES = 3


def _lanczos(x: Any, lobes: int) -> Any:
    import torch

    x = x.abs()
    out = torch.sinc(x) * torch.sinc(x / lobes)
    return torch.where(x < lobes, out, torch.zeros_like(out))


def _axis_weights(size_in: int, size_out: int, lobes: int, device: Any) -> tuple[Any, Any]:
    """Source indices [size_out, taps] (edge-clamped) and normalised weights [size_out, taps]."""
    import torch

    scale = size_out / size_in
    stretch = max(1.0, 1.0 / scale)  # widen the kernel when shrinking: antialiasing
    support = lobes * stretch
    taps = math.ceil(support) * 2 + 1
    centres = (torch.arange(size_out, dtype=torch.float64, device=device) + 0.5) / scale - 0.5
    first = torch.floor(centres - support).to(torch.long) + 1
    index = first[:, None] + torch.arange(taps, device=device)[None, :]
    weights = _lanczos((index.to(torch.float64) - centres[:, None]) / stretch, lobes)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return index.clamp_(0, size_in - 1), weights.to(torch.float32)


def _resample_axis(frames: Any, axis: int, size_out: int, lobes: int) -> Any:
    import torch

    size_in = frames.shape[axis]
    if size_in == size_out:
        return frames
    index, weights = _axis_weights(size_in, size_out, lobes, frames.device)
    shape = [1] * frames.dim()
    shape[axis] = size_out
    out = torch.zeros(*frames.shape[:axis], size_out, *frames.shape[axis + 1:], dtype=torch.float32,
                      device=frames.device)
    for tap in range(index.shape[1]):
        picked = frames.index_select(axis, index[:, tap])
        out.add_(picked.mul_(weights[:, tap].reshape(shape)))
    return out


def lanczos_resize(frames: Any, width: int, height: int, *, lobes: int = LANCZOS_LOBES, clamp: bool = True) -> Any:
    """Resize ``frames`` [B,H,W,C] float (0..1) to [B,height,width,C] float32 with a Lanczos filter.

    Antialiased when shrinking. ``clamp`` keeps the result in 0..1 (Lanczos rings slightly past the
    range at hard edges). Runs on the frames' device.
    """
    if width < 1 or height < 1:
        raise ValueError(f"resize target {width}x{height} must be at least 1x1")
    if frames.dim() != 4:
        raise ValueError(f"frames must be [B,H,W,C], got shape {tuple(frames.shape)}")
    frames = frames.float()
    out = _resample_axis(frames, 1, int(height), lobes)
    out = _resample_axis(out, 2, int(width), lobes)
    if out is frames:
        out = frames.clone()
    return out.clamp_(0.0, 1.0) if clamp else out
