"""What to do when a stage does not fit: a preset that fits, fewer frames, a smaller quant.

Pure functions over the estimates; presets come from the story room (``presets/*.json``: model
profile, size, frames, and ``vram.min_gb``/``fallback``/``hint``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .estimate import (
    COMFY_RESERVED,
    MODEL_PARAMETERS,
    QUANT_BITS,
    SUGGESTED_QUANTS,
    StageEstimate,
    Workload,
    gb,
    quant_bits,
    sample_estimate,
)

log = logging.getLogger("gemdirect")


@dataclass(frozen=True)
class PresetFit:
    """A preset's sampling estimate, with the weights it would have at the user's quant."""

    name: str
    label: str
    width: int
    height: int
    frames: int
    estimate: StageEstimate
    min_gb: float
    hint: str


def preset_fits(quant: str = "BF16", *, efficient_attention: bool = True, dtype_bytes: int = 2,
                reserved: int = COMFY_RESERVED) -> list[PresetFit]:
    """Every preset's sampling estimate (its profile's model at ``quant``), in the presets' own order.

    Empty when the story room's presets cannot be read (logged; advice then leaves presets out).
    """
    try:
        from ..story.presets import available_presets, load_preset
    except Exception as exc:  # the story room's requirements are missing: advise without presets
        log.debug("gemDirect: presets unavailable for VRAM advice: %s", exc)
        return []
    bits = QUANT_BITS.get(quant.upper(), 16.0)
    fits = []
    for name in available_presets():
        try:
            preset = load_preset(name)
        except Exception as exc:
            log.debug("gemDirect: preset %s unreadable for VRAM advice: %s", name, exc)
            continue
        profile = preset.model_profile
        if profile not in MODEL_PARAMETERS:
            continue
        weights = int(MODEL_PARAMETERS[profile] * bits / 8)
        estimate = sample_estimate(profile, Workload(preset.width, preset.height, preset.frames), weights=weights,
                                   efficient_attention=efficient_attention, dtype_bytes=dtype_bytes, reserved=reserved)
        fits.append(PresetFit(name, preset.label, preset.width, preset.height, preset.frames, estimate,
                              preset.vram.min_gb, preset.vram.hint))
    return fits


def max_frames_that_fit(profile: str, workload: Workload, available: int, *, weights: int, dim: int | None = None,
                        largest_tensor_params: int | None = None, efficient_attention: bool = True,
                        dtype_bytes: int = 2, reserved: int = COMFY_RESERVED, full: bool = False) -> int | None:
    """The longest clip (4n+1 frames, at most ``workload.frames``) whose sampling minimum (or full,
    with ``full``) fits in ``available`` bytes at the same size; None if not even 5 frames fit."""
    best = None
    for frames in range(5, workload.frames + 1, 4):
        trial = Workload(workload.width, workload.height, frames, workload.batch, workload.cfg)
        estimate = sample_estimate(profile, trial, weights=weights, dim=dim,
                                   largest_tensor_params=largest_tensor_params, efficient_attention=efficient_attention,
                                   dtype_bytes=dtype_bytes, reserved=reserved)
        if (estimate.full if full else estimate.minimum) > available:
            break
        best = frames
    return best


def quant_that_fits(parameters: int, room_for_weights: int, current: str | None = None) -> tuple[str, int] | None:
    """The best suggested quant (Q8_0 ... Q3_K_M) whose weights fit in ``room_for_weights`` bytes and that
    is smaller than ``current``; (label, weight bytes) or None."""
    current_bits = QUANT_BITS.get((current or "").upper(), 99.0)
    for label in SUGGESTED_QUANTS:
        bits = quant_bits(label)
        size = int(parameters * bits / 8)
        if bits < current_bits and size <= room_for_weights:
            return label, size
    return None


def sample_advice(profile: str, workload: Workload, available: int, *, weights: int, parameters: int | None,
                  quant: str | None, dim: int | None = None, largest_tensor_params: int | None = None,
                  efficient_attention: bool = True, dtype_bytes: int = 2, reserved: int = COMFY_RESERVED,
                  short: bool) -> list[str]:
    """What fits in ``available`` bytes. ``short``: the minimum does not fit (else only full speed does not)."""
    tips: list[str] = []
    if short:
        frames = max_frames_that_fit(profile, workload, available, weights=weights, dim=dim,
                                     largest_tensor_params=largest_tensor_params,
                                     efficient_attention=efficient_attention, dtype_bytes=dtype_bytes,
                                     reserved=reserved)
        presets = [fit for fit in preset_fits(quant or "BF16", efficient_attention=efficient_attention,
                                              dtype_bytes=dtype_bytes, reserved=reserved)
                   if fit.estimate.minimum <= available]
        if presets:
            best = max(presets, key=lambda fit: fit.estimate.minimum)
            tips.append(f"use the {best.label} preset ({best.width}x{best.height}, {best.frames} frames: "
                        f"needs {gb(best.estimate.minimum)})")
        if frames:
            tips.append(f"keep {workload.width}x{workload.height} with at most {frames} frames")
        elif not presets:
            tips.append("lower the resolution and frames, or free the GPU (close other programs using it)")
        return tips
    # The minimum fits; full speed needs all weights resident: which quant would make them fit?
    if parameters:
        room = available - (sample_estimate(profile, workload, weights=0, dim=dim,
                                            largest_tensor_params=largest_tensor_params,
                                            efficient_attention=efficient_attention,
                                            dtype_bytes=dtype_bytes, reserved=reserved).working)
        quant_fit = quant_that_fits(parameters, room, quant)
        if quant_fit:
            tips.append(f"a {quant_fit[0]} GGUF (weights {gb(quant_fit[1])}) would fit whole and run faster")
    return tips
