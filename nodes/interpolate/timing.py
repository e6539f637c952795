"""Exact frame accounting for any source -> target rate, and scene-cut / duplicate detection.

Source frame ``i`` (0-based) shows at ``i / source_fps`` seconds. Output frame ``k`` shows at
``k / target_fps`` and samples the source at position ``p_k = k * source_fps / target_fps`` (in
source frames, an exact fraction). The output covers the span from the first to the last source
frame, both included, so for ``n`` source frames::

    frames_out = floor((n - 1) * target_fps / source_fps) + 1

A multiplier ``m`` is ``target_fps = m * source_fps``: ``(n - 1) * m + 1`` frames (``2n - 1`` for 2).
81 frames at 16 fps to 24 fps: ``floor(80 * 24/16) + 1 = 121`` frames at ``k/24`` s, positions
``0, 2/3, 4/3, 2, ...``; every third output frame is a source frame copied bit for bit.

Output frame ``k`` is source frame ``floor(p_k)`` when ``p_k`` is whole; otherwise it lies between
frames ``i = floor(p_k)`` and ``i + 1`` at ``t = p_k - i``. Such a pair is blended by the model unless it
is a scene cut (the nearer source frame is copied; a tie takes the earlier) or a duplicate (the
left frame is copied: nothing moves, and the model would only add noise).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..metrics import ssim
from ..timebase import parse_fps

# Duplicates as in Practical-RIFE's video script: SSIM above 0.996. Cuts: SSIM after motion
# compensation below 0.4 (plain SSIM, Practical-RIFE's test, also drops below its 0.2 for fast motion
# over fine texture; measured in tests/test_interpolate_timing.py: moving 0.89+, cut 0.25).
DEFAULT_CUT_SSIM = 0.4
DUPLICATE_SSIM = 0.996
THUMBNAIL_SIDE = 32  # similarity is measured on frames shrunk to at most this many pixels a side

COPY, BLEND, NEAREST_CUT, DUPLICATE = "copy", "blend", "cut", "duplicate"


@dataclass(frozen=True)
class OutputFrame:
    """One output frame: where it sits in time and how it is made."""

    index: int  # k
    time: Fraction  # seconds: k / target_fps
    position: Fraction  # in source frames: k * source_fps / target_fps
    left: int  # floor(position)
    t: Fraction  # position - left, in [0, 1)


def target_rate(source_fps: Fraction | float | str, *, multiplier: int | None = None,
                target_fps: Fraction | float | str | None = None) -> Fraction:
    """The output rate from a multiplier (an int >= 1) or a target rate (exact, via ``parse_fps``)."""
    source = parse_fps(source_fps)
    if (multiplier is None) == (target_fps is None):
        raise ValueError("give either a multiplier or a target fps, not both and not neither")
    if multiplier is not None:
        if isinstance(multiplier, bool) or int(multiplier) != multiplier or multiplier < 1:
            raise ValueError(f"multiplier {multiplier!r} must be a whole number of at least 1")
        return source * int(multiplier)
    target = parse_fps(target_fps)
    if target < source:
        raise ValueError(f"target fps {float(target):g} is below the source's {float(source):g}; interpolation "
                         "only adds frames (drop frames with a frame-rate converter instead)")
    return target


def output_count(source_frames: int, source_fps: Fraction, target_fps: Fraction) -> int:
    """Frames out for ``source_frames`` in: ``floor((n - 1) * target / source) + 1`` (0 for none)."""
    if source_frames <= 0:
        return 0
    return math.floor((source_frames - 1) * Fraction(target_fps) / Fraction(source_fps)) + 1


def plan(source_frames: int | None, source_fps: Fraction, target_fps: Fraction,
         start: int = 0) -> Iterator[OutputFrame]:
    """Output frames from index ``start`` on, in order; endless when ``source_frames`` is None (a stream)."""
    step = Fraction(source_fps) / Fraction(target_fps)
    end = None if source_frames is None else output_count(source_frames, source_fps, target_fps)
    k = start
    while end is None or k < end:
        position = k * step
        left = math.floor(position)
        yield OutputFrame(k, Fraction(k) / Fraction(target_fps), position, left, position - left)
        k += 1


# --------------------------------------------------------------------------- pair similarity


def thumbnail(frame: np.ndarray) -> np.ndarray:
    """A frame ``[H,W,3]`` (0..1) as a small grey ``[h,w]`` float32 image, by area averaging."""
    import cv2

    grey = np.asarray(frame, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    h, w = grey.shape
    factor = max(h, w) / THUMBNAIL_SIDE
    if factor > 1:
        grey = cv2.resize(grey, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return grey


def compensated_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of thumbnail ``a`` and thumbnail ``b`` warped onto it by dense optical flow.

    Motion (anything flow can follow) scores high; a change of shot stays low.
    """
    import cv2

    from .flow import backward_warp

    def u8(x: np.ndarray) -> np.ndarray:
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)

    motion = cv2.calcOpticalFlowFarneback(u8(a), u8(b), None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return ssim(a, backward_warp(b, motion))


def classify_pair(a_thumb: np.ndarray, b_thumb: np.ndarray, cut_ssim: float) -> tuple[str, float]:
    """``(BLEND | NEAREST_CUT | DUPLICATE, similarity)`` for two neighbouring frames' thumbnails.

    Duplicate: plain SSIM above :data:`DUPLICATE_SSIM`. Cut: SSIM after motion compensation below
    ``cut_ssim`` (0 turns cut detection off). Plain SSIM is a lower bound in practice, so the flow is
    only computed for pairs that plain SSIM cannot clear.
    """
    score = ssim(a_thumb, b_thumb)
    if score > DUPLICATE_SSIM:
        return DUPLICATE, score
    if cut_ssim > 0 and score < cut_ssim:
        score = compensated_ssim(a_thumb, b_thumb)
        if score < cut_ssim:
            return NEAREST_CUT, score
    return BLEND, score
