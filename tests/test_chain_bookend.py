"""Bookend continuity: gemDirect1's pixel score with its 25/35 thresholds, and SSIM beside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pack_module

bookend = pack_module("nodes.chain.bookend")


def _photo_like(seed: int = 0, height: int = 48, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([x / width, y / height, 0.5 + 0.4 * np.sin(x / 5)], -1)
    return np.clip(frame + rng.normal(0, 0.02, frame.shape), 0, 1).astype(np.float32)


def _high_contrast(height: int = 48, width: int = 64) -> np.ndarray:
    """Saturated blocks (pure red, blue, white, black...): values near 0 and 1, like a graphic title card."""
    colours = np.array([[1, 0, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0], [1, 1, 0], [0.05, 0.95, 0.05]], np.float32)
    y, x = np.mgrid[0:height, 0:width]
    return colours[((x // 8) + 2 * (y // 8)) % len(colours)]


def test_identical_frames_score_100_and_pass_with_ssim_1():
    frame = _photo_like()
    result = bookend.compare_bookends(frame, frame.copy())
    assert result.score == 100.0 and result.status == "pass"
    assert result.ssim == pytest.approx(1.0)
    assert result.telemetry() == {"Score": 100.0, "Method": "pixel", "Status": "pass"}


def test_a_frame_against_its_inverse_scores_below_25_and_fails():
    frame = _high_contrast()
    result = bookend.compare_bookends(frame, 1.0 - frame)
    assert result.score < 25 and result.status == "fail"
    assert result.ssim < 0  # inverted structure: negatively correlated


def test_the_pixel_score_is_100_minus_the_mean_absolute_difference_in_percent():
    a = np.zeros((4, 4, 3), np.float32)
    b = np.full((4, 4, 3), 0.2, np.float32)  # 0.2 = 51/255 exactly
    assert bookend.pixel_score(a, b) == pytest.approx(80.0)
    assert bookend.pixel_score(a, np.ones_like(a)) == 0.0


def test_mid_tone_content_against_its_inverse_scores_about_50_and_only_ssim_sees_it():
    """A limit of gemDirect1's score worth knowing: mid-grey content is 'half different' from its inverse."""
    frame = np.random.default_rng(3).random((48, 64, 3)).astype(np.float32)
    result = bookend.compare_bookends(frame, 1.0 - frame)
    assert 45 < result.score < 55 and result.status == "pass"
    assert result.ssim < -0.5


@pytest.mark.parametrize(("score", "status"), [(24.99, "fail"), (25.0, "warn"), (34.99, "warn"), (35.0, "pass")])
def test_thresholds_are_gemdirect1s(score, status):
    assert pack_module("nodes.run.records").bookend_status(score) == status


def test_blur_of_fine_texture_barely_moves_the_pixel_score_but_ssim_sees_it():
    frame = np.clip(0.5 + 0.1 * np.random.default_rng(5).standard_normal((48, 64, 3)), 0, 1).astype(np.float32)
    blurred = (frame + np.roll(frame, 1, 0) + np.roll(frame, -1, 0) + np.roll(frame, 1, 1) + np.roll(frame, -1, 1)) / 5
    result = bookend.compare_bookends(frame, blurred)
    assert result.score > 90
    assert result.ssim < 0.6


def test_scores_are_symmetric_and_accept_torch_uint8_and_batches_of_one():
    a, b = _photo_like(1), _photo_like(2)
    forward, backward = bookend.compare_bookends(a, b), bookend.compare_bookends(b, a)
    assert forward.score == backward.score and forward.ssim == pytest.approx(backward.ssim)
    as_uint8 = (np.rint(a * 255)).astype(np.uint8)
    assert bookend.pixel_score(torch.from_numpy(a)[None], as_uint8) == 100.0


def test_frames_of_different_sizes_are_refused_with_both_sizes_named():
    with pytest.raises(ValueError, match="64x48 vs 32x48"):
        bookend.pixel_score(_photo_like(), _photo_like(width=32))


def test_one_ssim_serves_bookends_and_cut_detection():
    """The bookend SSIM and the interpolator's cut/duplicate SSIM are the same measure (nodes/metrics.py)."""
    metrics = pack_module("nodes.metrics")
    timing = pack_module("nodes.interpolate.timing")
    rng = np.random.default_rng(3)
    a = rng.random((32, 32))
    assert timing.ssim is metrics.ssim
    assert metrics.ssim(a, a) == pytest.approx(1.0)
    assert metrics.ssim(a, 1.0 - a) < 0.0
    with pytest.raises(ValueError, match="one size"):
        metrics.ssim(a, a[:16])
