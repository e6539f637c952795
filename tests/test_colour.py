"""Colour engine (nodes/vace/colour.py) and the Color Match node: Lab conversion, drift pulled back, strength."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pack_module

colour = pack_module("nodes.vace.colour")
vace_nodes = pack_module("nodes.vace.nodes")

GAIN = torch.tensor([0.82, 0.93, 1.12])
OFFSET = torch.tensor([0.06, -0.03, 0.04])


def _reference() -> torch.Tensor:
    """A 40x48 frame with gradients and texture in every channel, inside 0.1..0.85 so a drift does not clip."""
    y, x = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 48), indexing="ij")
    return torch.stack([0.15 + 0.6 * x, 0.1 + 0.7 * y, 0.45 + 0.3 * torch.sin(7 * x * y + 2 * x)], -1).clamp(0, 1)


def _clip(count: int = 6) -> torch.Tensor:
    """A moving clip of the reference's content (rolled a few pixels a frame) with a little noise."""
    generator = torch.Generator().manual_seed(3)
    ref = _reference()
    frames = torch.stack([ref.roll(2 * i, dims=1) for i in range(count)])
    return (frames + 0.01 * torch.randn(frames.shape, generator=generator)).clamp(0, 1)


def _drifted(frames: torch.Tensor) -> torch.Tensor:
    """The known drift: a gain and an offset per RGB channel."""
    return (frames * GAIN + OFFSET).clamp(0, 1)


def _mean_lab_difference(frames: torch.Tensor, reference: torch.Tensor) -> float:
    clip_mean, _ = colour.lab_stats(frames)
    ref_mean, _ = colour.lab_stats(reference)
    return float((clip_mean - ref_mean).norm())


def test_lab_of_known_colours():
    white, red, black = colour.rgb_to_lab(torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]]))
    assert white.tolist() == pytest.approx([100.0, 0.0, 0.0], abs=0.01)
    assert red.tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.02)
    assert black.tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-4)


def test_lab_round_trip_is_exact_within_the_gamut():
    frames = _clip(3)
    assert torch.allclose(colour.lab_to_rgb(colour.rgb_to_lab(frames)), frames, atol=1e-5)


def test_lab_stats_are_per_channel_mean_and_spread_over_all_frames():
    flat = torch.full((2, 4, 5, 3), 0.5)
    mean, std = colour.lab_stats(flat)
    assert mean.shape == std.shape == (3,) and mean.dtype == torch.float32
    assert mean.tolist() == pytest.approx(colour.rgb_to_lab(torch.tensor([0.5, 0.5, 0.5])).tolist(), abs=1e-3)
    assert std.tolist() == pytest.approx([0, 0, 0], abs=1e-3)
    two = torch.stack([torch.zeros(4, 5, 3), torch.ones(4, 5, 3)])
    mean, std = colour.lab_stats(two)  # half black (L 0), half white (L 100)
    assert float(mean[0]) == pytest.approx(50, abs=0.01) and float(std[0]) == pytest.approx(50, abs=0.01)
    assert torch.allclose(colour.lab_stats(np.uint8(two.numpy() * 255))[0], mean, atol=0.01)


@pytest.mark.parametrize("method", colour.METHODS)
def test_colour_match_pulls_a_gain_and_offset_drift_back_by_at_least_80_percent(method):
    reference = _reference()
    drifted = _drifted(_clip())
    before = _mean_lab_difference(drifted, reference)
    matched = colour.match_colour(drifted, reference, method=method)
    after = _mean_lab_difference(matched, reference)
    assert before > 5.0  # the drift is plainly visible to begin with
    assert after <= 0.2 * before, f"{method}: mean Lab difference {before:.2f} -> {after:.2f}"
    assert matched.shape == drifted.shape and matched.dtype == torch.float32
    assert 0.0 <= float(matched.min()) and float(matched.max()) <= 1.0


@pytest.mark.parametrize("method", colour.METHODS)
def test_strength_zero_changes_nothing(method):
    drifted = _drifted(_clip(3))
    assert torch.equal(colour.match_colour(drifted, _reference(), method=method, strength=0.0), drifted)


@pytest.mark.parametrize("method", colour.METHODS)
def test_half_strength_lands_between_the_input_and_the_full_match(method):
    drifted, reference = _drifted(_clip(3)), _reference()
    full = colour.match_colour(drifted, reference, method=method)
    half = colour.match_colour(drifted, reference, method=method, strength=0.5)
    assert torch.allclose(half, (drifted + full) / 2, atol=1e-5)


@pytest.mark.parametrize("method", colour.METHODS)
def test_one_transform_for_the_whole_clip_so_equal_frames_stay_equal_across_chunks(method, monkeypatch):
    monkeypatch.setattr(colour, "CHUNK_FRAMES", 2)  # the clip is matched in 3 chunks
    frames = _drifted(_clip(5))
    frames[4] = frames[0]
    done = []
    matched = colour.match_colour(frames, _reference(), method=method, on_chunk=lambda d, t: done.append((d, t)))
    assert torch.equal(matched[4], matched[0])
    assert done == [(2, 5), (4, 5), (5, 5)]
    monkeypatch.setattr(colour, "CHUNK_FRAMES", 16)
    assert torch.allclose(colour.match_colour(frames, _reference(), method=method), matched, atol=1e-5)


def test_mkl_undoes_a_channel_mixing_tint_in_linear_rgb():
    reference = _reference()
    mix = torch.tensor([[0.9, 0.1, 0.0], [0.05, 0.85, 0.05], [0.0, 0.15, 0.8]], dtype=torch.float64)
    linear = colour.srgb_to_linear(reference).double()
    tinted = colour.linear_to_srgb(linear @ mix.T + 0.02).float().clamp(0, 1)
    matched = colour.match_colour(tinted, reference, method="mkl")
    assert _mean_lab_difference(matched, reference) < 0.3
    assert float((matched[0] - reference).abs().mean()) < 0.02


def test_reference_may_be_several_frames_and_pooled():
    reference = _reference()
    both = torch.stack([reference, reference.flip(1)])  # same colours, other layout
    drifted = _drifted(_clip(2))
    assert torch.allclose(colour.match_colour(drifted, both), colour.match_colour(drifted, reference), atol=1e-5)


def test_bad_input_says_what_to_do():
    frames = _clip(2)
    with pytest.raises(ValueError, match="method 'lut' is unknown; use one of reinhard, histogram, mkl"):
        colour.match_colour(frames, frames[0], method="lut")
    with pytest.raises(ValueError, match=r"strength 1\.5 is outside 0\.\.1"):
        colour.match_colour(frames, frames[0], strength=1.5)
    with pytest.raises(ValueError, match=r"reference must have 3 colour channels last.*\(40, 48, 4\)"):
        colour.match_colour(frames, torch.zeros(40, 48, 4))


def test_color_match_node_returns_an_image_batch_and_reports_progress():
    node = vace_nodes.GemDirectColorMatch()
    drifted, reference = _drifted(_clip(4)), _reference().unsqueeze(0)
    (matched,) = node.match(drifted, reference, "histogram", 1.0, unique_id="7")
    assert matched.shape == drifted.shape and matched.device == torch.device("cpu")
    assert _mean_lab_difference(matched, reference) < 0.2 * _mean_lab_difference(drifted, reference)
    assert vace_nodes.METHODS == colour.METHODS
