"""VACE splice: the generated clip made seam-free and colour-true, and put between A and B.

The transition clip (``layout.length`` frames) is the generated clip with

1. its colour matched to the original context frames (A's and B's, pooled) with the Color Match
   engine (one transform for the whole clip: VACE's brightness/colour shift is global);
2. its first ``context`` frames (A's context, regenerated) cross-faded from A's originals into the
   generated ones, and its last ``context`` frames from the generated ones into B's originals, so the
   seams at both ends are original frames blending into new ones, never a jump.

The spliced pair is ``A[:a - tail] + transition + B[head:]`` (see layout.py). A generated clip with
another frame count than the layout asks for is refused (splicing it would ghost or jump).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..render.join import crossfade_weights
from . import colour
from .layout import LayoutError, TransitionLayout

COLOR_MATCH_OFF = "off"
COLOR_MATCH_CHOICES = (COLOR_MATCH_OFF, *colour.METHODS)
DEFAULT_METHOD, DEFAULT_STRENGTH = "mkl", 0.7


@dataclass(frozen=True)
class ColourReport:
    """Mean Lab difference (Euclidean distance of the mean L*a*b*) of the generated frames to the context
    frames, before and after the colour match."""

    method: str
    strength: float
    before: float
    after: float

    @property
    def reduction(self) -> float:
        """Fraction of the difference removed (0 when there was none)."""
        return 0.0 if self.before <= 1e-9 else 1.0 - self.after / self.before

    def to_json(self) -> dict[str, Any]:
        return {"Method": self.method, "Strength": self.strength, "MeanLabDifferenceBefore": round(self.before, 4),
                "MeanLabDifferenceAfter": round(self.after, 4), "Reduction": round(self.reduction, 4)}


def mean_lab_difference(frames: Any, reference: Any) -> float:
    """Distance between the mean CIE Lab colour of ``frames`` and of ``reference`` ([N,H,W,3] 0..1)."""
    mean_a, _ = colour.lab_stats(frames)
    mean_b, _ = colour.lab_stats(reference)
    return float((mean_a - mean_b).norm())


def check_generated(layout: TransitionLayout, generated: Any, width: int, height: int) -> tuple[Any, str | None]:
    """``generated`` as float32 [length,H,W,3] at ``width`` x ``height``; LayoutError when its frame count
    is not the layout's; a note when it had to be resized (WanVaceToVideo works in multiples of 16)."""
    import torch

    frames = torch.as_tensor(generated).float()
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise LayoutError(f"generated: expected an IMAGE batch [T,H,W,3], got {list(frames.shape)}")
    count = int(frames.shape[0])
    if count != layout.length:
        what = "fewer" if count < layout.length else "more"
        raise LayoutError(
            f"generated: the clip has {count} frames, {what} than the {layout.length} the transition needs "
            f"(2*{layout.context} + 2*{layout.replace} + {layout.new} + 1); splicing it would ghost. Feed "
            "VACE Prep's length to WanVaceToVideo and trim the latent with TrimVideoLatent (trim_latent) "
            "before VAE Decode")
    note = None
    if tuple(frames.shape[1:3]) != (height, width):
        from ..upscale.resample import lanczos_resize

        note = (f"generated frames are {frames.shape[2]}x{frames.shape[1]}, the scenes {width}x{height}: "
                "resized with Lanczos")
        frames = lanczos_resize(frames, width, height)
    return frames, note


def transition_clip(layout: TransitionLayout, a_context: Any, b_context: Any, generated: Any, *,
                    method: str = DEFAULT_METHOD, strength: float = DEFAULT_STRENGTH) -> tuple[Any, ColourReport]:
    """The transition clip [length,H,W,3] float32 0..1 from the generated clip (see the module docstring).

    a_context / b_context: the ORIGINAL context frames [context,H,W,3] of A and B; generated: the
    decoded VACE output, already :func:`check_generated`. method: ``off`` or a colour engine method;
    strength 0..1 (0.7 by default, as VACE joiners use it).
    """
    import torch

    if method not in COLOR_MATCH_CHOICES:
        raise LayoutError(f"color_match {method!r} is not one of {', '.join(COLOR_MATCH_CHOICES)}")
    context = torch.cat([torch.as_tensor(a_context).float(), torch.as_tensor(b_context).float()])
    middle = slice(layout.context, layout.context + layout.generated)
    before = mean_lab_difference(generated[middle], context)
    if method == COLOR_MATCH_OFF or float(strength) == 0.0:
        matched = generated.clone()
    else:
        matched = colour.match_colour(generated, context, method=method, strength=float(strength))
    after = mean_lab_difference(matched[middle], context)
    weights = torch.tensor(crossfade_weights(layout.context, "linear"), dtype=torch.float32).view(-1, 1, 1, 1)
    out = matched.clone()
    head, tail = slice(0, layout.context), slice(layout.length - layout.context, layout.length)
    out[head] = a_context * (1.0 - weights) + matched[head] * weights  # original A into the new frames
    out[tail] = matched[tail] * (1.0 - weights) + b_context * weights  # new frames into original B
    return out.clamp(0.0, 1.0), ColourReport(method, float(strength), before, after)


def splice(layout: TransitionLayout, a: Any, b: Any, clip: Any) -> Any:
    """``A[:a - tail] + clip + B[head:]`` as one [spliced_frames,H,W,3] tensor."""
    import torch

    if int(a.shape[0]) != layout.a_frames or int(b.shape[0]) != layout.b_frames:
        raise LayoutError(f"the clips have {a.shape[0]} and {b.shape[0]} frames, the layout was made for "
                          f"{layout.a_frames} and {layout.b_frames}; run VACE Prep again")
    return torch.cat([torch.as_tensor(a)[:layout.a_frames - layout.tail].float(), clip,
                      torch.as_tensor(b)[layout.head:].float()])
