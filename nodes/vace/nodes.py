"""vace room nodes: colour matching of a clip to a reference (engine: colour.py).

The engine imports torch, so it is imported when a node runs, not when ComfyUI lists the nodes.
"""

from __future__ import annotations

from typing import Any

from .. import comfy

REQUIRES = ("numpy",)
# Kept here (not imported from colour.py) so listing the nodes does not import torch.
METHODS = ("reinhard", "histogram", "mkl")


class GemDirectColorMatch:
    """Colour-match frames to a reference image (Reinhard in Lab, Lab histogram, or MKL), batched in torch."""

    CATEGORY = "gemDirect/vace"
    FUNCTION = "match"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The frames colour-matched to the reference, same size and count, clamped to 0..1.",)
    DESCRIPTION = ("Pulls a clip's colour back to a reference (e.g. the story's first frame), against the drift of "
                   "chained WAN clips. One transform for the whole clip, so nothing flickers.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames to correct (a batch, e.g. a decoded scene)."}),
                "reference": ("IMAGE", {
                    "tooltip": "The look to match: any size; with several images their colours are pooled.",
                }),
                "method": (list(METHODS), {
                    "default": "reinhard",
                    "tooltip": "reinhard: mean and spread per channel in CIE Lab (gentle, the usual choice). "
                    "histogram: the whole tone curve per Lab channel (strongest; can posterise flat areas). "
                    "mkl: full colour covariance in linear RGB (undoes a tint that mixes channels).",
                }),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "0 leaves the frames unchanged, 1 applies the full match; in between blends.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def match(self, images: Any, reference: Any, method: str, strength: float, unique_id: str | None = None):
        from . import colour

        progress = comfy.Progress(int(images.shape[0]), node_id=unique_id)
        matched = colour.match_colour(images, reference, method=method, strength=strength,
                                      on_chunk=lambda done, _total: progress.set(done))
        return (matched.to(comfy.intermediate_device()),)


NODE_CLASS_MAPPINGS = {"GemDirectColorMatch": GemDirectColorMatch}
NODE_DISPLAY_NAME_MAPPINGS = {"GemDirectColorMatch": "Color Match (gemDirect)"}
