"""Drift in CIE Lab against the story's reference (through the vace room's colour engine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import pack_module

drift = pack_module("nodes.chain.drift")


def _clip(count: int = 4) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0.1, 0.9, 32), torch.linspace(0.1, 0.9, 40), indexing="ij")
    frame = torch.stack([x, y, (x + y) / 2], -1)
    return frame.expand(count, -1, -1, -1).contiguous()


def test_a_clip_equal_to_its_reference_has_no_drift():
    clip = _clip()
    measured = drift.measure_drift(clip, clip[0], "keyframe")
    assert measured.mean_delta_e == pytest.approx(0, abs=1e-3)
    assert measured.last_frame_delta_e == pytest.approx(0, abs=1e-3)
    assert measured.spread_ratio == pytest.approx((1.0, 1.0, 1.0), abs=1e-3)
    assert measured.extra()["Reference"] == "keyframe"


def test_a_brightening_clip_drifts_up_in_lightness_and_most_at_its_end():
    clip = _clip()
    brighter = torch.stack([(frame + 0.04 * i).clamp(0, 1) for i, frame in enumerate(clip)])
    measured = drift.measure_drift(brighter, clip[0].numpy(), "scenes/a_first.png")
    assert measured.mean_delta[0] > 1.0  # L rises
    assert measured.last_frame_delta_e > measured.mean_delta_e > 0


def test_a_flat_reference_has_no_spread_to_compare_with():
    flat = np.full((32, 40, 3), 0.5, np.float32)
    measured = drift.measure_drift(_clip(), flat, "own first frame")
    assert measured.spread_ratio[0] is None
