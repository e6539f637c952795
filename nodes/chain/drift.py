"""Colour and brightness drift of a scene against the story's reference, in CIE Lab.

Chained WAN clips creep: each a little darker, warmer or more saturated than the last. Per scene we
compare the Lab statistics of the whole clip (and of its last frame, which the next scene starts
from) with those of the reference image:

- ``MeanDeltaLab`` = clip mean - reference mean, per channel (L in 0..100, a/b about -128..127);
- ``MeanDeltaE`` = length of that vector (CIE76 delta E of the means; about 2.3 is a just
  noticeable difference, 5+ is plainly visible);
- ``SpreadRatioLab`` = clip std / reference std, per channel (1 = same contrast/colourfulness;
  null where the reference is flat, std below 0.5);
- ``LastFrameDeltaE``: the same delta E for the last frame alone.

The Lab conversion and statistics are the colour engine's (``nodes/vace/colour.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

FLAT_STD = 0.5  # Lab units: below this the reference has no spread to compare against


@dataclass(frozen=True)
class Drift:
    """One scene's drift against the reference (see the module docstring for the fields)."""

    reference: str  # which image was the reference, e.g. scenes/a_first.png, keyframe, own first frame
    mean_delta: tuple[float, float, float]
    mean_delta_e: float
    spread_ratio: tuple[float | None, float | None, float | None]
    last_frame_delta_e: float

    def extra(self) -> dict[str, Any]:
        """The record's ``Extra.Drift`` block."""
        return {"Reference": self.reference, "Space": "CIELab",
                "MeanDeltaLab": [round(v, 3) for v in self.mean_delta], "MeanDeltaE": round(self.mean_delta_e, 3),
                "SpreadRatioLab": [None if v is None else round(v, 4) for v in self.spread_ratio],
                "LastFrameDeltaE": round(self.last_frame_delta_e, 3)}


def as_frames(frames: Any) -> Any:
    """``frames`` as a torch float32 tensor [T,H,W,3] 0..1 (numpy, uint8 and [H,W,3] accepted)."""
    import numpy as np
    import torch

    tensor = frames if isinstance(frames, torch.Tensor) else torch.from_numpy(np.asarray(frames))
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    tensor = tensor.float()
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(0)
    return tensor


def _stats(frames: Any) -> tuple[list[float], list[float]]:
    from ..vace.colour import lab_stats  # imports torch: only when a scene is measured

    mean, std = lab_stats(frames)
    return [float(v) for v in mean], [float(v) for v in std]


def measure_drift(frames: Any, reference: Any, reference_name: str) -> Drift:
    """Drift of ``frames`` [T,H,W,3] against ``reference`` [H,W,3] (float 0..1 or uint8, torch or numpy)."""
    clip = as_frames(frames)
    ref_mean, ref_std = _stats(as_frames(reference))
    mean, std = _stats(clip)
    last_mean, _ = _stats(clip[-1:])
    delta = tuple(m - r for m, r in zip(mean, ref_mean, strict=True))
    last_delta = [m - r for m, r in zip(last_mean, ref_mean, strict=True)]
    ratio = tuple(None if r < FLAT_STD else s / r for s, r in zip(std, ref_std, strict=True))
    return Drift(reference=reference_name, mean_delta=delta, mean_delta_e=math.sqrt(sum(v * v for v in delta)),
                 spread_ratio=ratio, last_frame_delta_e=math.sqrt(sum(v * v for v in last_delta)))
