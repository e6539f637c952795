"""Bookend continuity: how closely a scene's first frame follows the previous scene's last frame.

Two measures, side by side:

- the **pixel score** of gemDirect1 (always reported, the one its dashboards and thresholds know):
  ``100 - mean absolute difference in percent`` over every pixel and channel, 0..100.
  Verdict: ``fail`` below 25, ``warn`` below 35, else ``pass`` (``records.bookend_status``).
- **SSIM** on luma (BT.601), Gaussian window 11 px / sigma 1.5, K1 = 0.01, K2 = 0.03 (Wang et al.
  2004), -1..1: structure and contrast, which the pixel score cannot see (a frame and a blurred
  copy score high on pixels and lower on SSIM).

The **start match** (:func:`start_match`) is the check that can fail: a chained scene's first frame
against the start image Chain Start gave it, PSNR (RGB, 8-bit values) and SSIM (luma), verdict
``fail`` below START_MATCH_MIN_PSNR dB (docs/chaining.md says why 28).

Pure numpy; frames are [H,W,3] float 0..1 or uint8 (numpy or torch), both of the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import psnr as peak_snr
from ..metrics import ssim as structural_similarity
from ..run.records import bookend_similarity, bookend_status
from ..video.convert import to_uint8

PIXEL_METHOD = "pixel"
START_MATCH_MIN_PSNR = 28.0  # dB; a VAE/codec round trip of the start image stays above it, other content below
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def _as_float(frame: Any, name: str) -> np.ndarray:
    """[H,W,3] float64 0..1 from float 0..1 or uint8 pixels (a one-frame batch [1,H,W,3] is accepted)."""
    pixels = to_uint8(frame)  # the same 8-bit values the PNG bookends hold
    if pixels.ndim == 4 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"{name} has shape {list(pixels.shape)}; expected one RGB frame [H,W,3]")
    return pixels.astype(np.float64) / 255.0


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    first, second = _as_float(a, "previous frame"), _as_float(b, "first frame")
    if first.shape != second.shape:
        raise ValueError(f"bookend frames differ in size: {first.shape[1]}x{first.shape[0]} vs "
                         f"{second.shape[1]}x{second.shape[0]}; fit one to the other first")
    return first, second


def pixel_score(a: Any, b: Any) -> float:
    """gemDirect1's score: 100 - mean |a - b| in percent of full scale (100 = identical, 0 = opposite)."""
    first, second = _pair(a, b)
    return float(100.0 - np.mean(np.abs(first - second)) * 100.0)


def ssim(a: Any, b: Any) -> float:
    """Mean structural similarity of the luma of two frames, -1..1 (1 = identical)."""
    first, second = _pair(a, b)
    return structural_similarity(first @ LUMA, second @ LUMA)


@dataclass(frozen=True)
class BookendResult:
    """Both measures of one bookend pair and gemDirect1's verdict on the pixel score."""

    score: float  # pixel score 0..100
    status: str  # pass | warn | fail
    ssim: float  # -1..1

    def telemetry(self) -> dict[str, Any]:
        """The ``BookendSimilarity`` block (pixel score, its method and status)."""
        return bookend_similarity(self.score, PIXEL_METHOD, self.status)

    def extra(self) -> dict[str, Any]:
        """Both measures for the record's ``Extra.Bookend``."""
        return {"PixelScore": round(self.score, 2), "SSIM": round(self.ssim, 4), "Status": self.status}


def compare_bookends(previous_last: Any, first: Any) -> BookendResult:
    """Score the previous scene's last frame against this scene's first (each [H,W,3], same size)."""
    score = round(pixel_score(previous_last, first), 2)
    return BookendResult(score=score, status=bookend_status(score), ssim=ssim(previous_last, first))


@dataclass(frozen=True)
class StartMatch:
    """A scene's first frame against the start image it was given: PSNR (dB), SSIM and the verdict."""

    psnr: float
    ssim: float
    threshold: float

    @property
    def verdict(self) -> str:
        return "pass" if self.psnr >= self.threshold else "fail"

    def telemetry(self) -> dict[str, Any]:
        """The ``StartMatch`` block of the scene's Telemetry."""
        return {"PSNR": round(self.psnr, 2), "SSIM": round(self.ssim, 4), "Verdict": self.verdict,
                "Threshold": self.threshold}


def start_match(start: Any, first: Any, threshold: float = START_MATCH_MIN_PSNR) -> StartMatch:
    """PSNR and SSIM of a scene's ``first`` frame against its ``start`` image (each [H,W,3], same size)."""
    given, made = _pair(start, first)
    return StartMatch(psnr=peak_snr(given, made), ssim=structural_similarity(given @ LUMA, made @ LUMA),
                      threshold=float(threshold))
