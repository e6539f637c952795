"""vace room nodes: colour matching (engine: colour.py) and the VACE joiner, VACE Prep and VACE Splice
(engines: layout.py, splice.py, joiner.py, transitions.py).

The engine imports torch, so it is imported when a node runs, not when ComfyUI lists the nodes.
"""

from __future__ import annotations

from typing import Any

from .. import comfy

REQUIRES = ("numpy", "av", "pydantic")
# Kept here (not imported from colour.py) so listing the nodes does not import torch.
METHODS = ("reinhard", "histogram", "mkl")
SPLICE_COLOR_MATCH = ("off", *METHODS)
VACE_TYPE = "GEMDIRECT_VACE"


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


def _frames_setting(default: int, low: int, what: str) -> tuple[str, dict]:
    return ("INT", {"default": default, "min": low, "max": 64, "step": 4, "tooltip": what})


class GemDirectVACEPrep:
    """Control video and masks for core WanVaceToVideo from two scenes of a run (or two clips)."""

    CATEGORY = "gemDirect/vace"
    FUNCTION = "prepare"
    RETURN_TYPES = ("IMAGE", "MASK", "INT", "INT", "INT", VACE_TYPE, "STRING", "STRING", "STRING")
    RETURN_NAMES = ("control_video", "control_masks", "length", "width", "height", "vace", "prompt", "negative",
                    "report")
    OUTPUT_TOOLTIPS = (
        "A's context frames, mid-grey (0.5) frames to generate, B's context frames: WanVaceToVideo's control_video.",
        "0 on the context frames (kept), 1 on the grey ones (generated): WanVaceToVideo's control_masks.",
        "Frames of the transition, 2*context + 2*replace + new + 1 (4n+1): WanVaceToVideo's length.",
        "The scenes' width rounded down to a multiple of 16: WanVaceToVideo's width.",
        "The scenes' height rounded down to a multiple of 16: WanVaceToVideo's height.",
        "Both clips and the frame accounting, for VACE Splice.",
        "The second scene's prompt (for the text encoder); empty for two IMAGE clips.",
        "The second scene's negative prompt.",
        "What was prepared: the pair, the frame accounting, notes.",
    )
    DESCRIPTION = ("Prepares a VACE transition between two scenes of the run (by transition_index among the story's "
                   "vace transitions; with 'increment' the batch count makes them all) or between two IMAGE clips.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "transition_index": ("INT", {
                    "default": 1, "min": 1, "max": 9999, "step": 1, "control_after_generate": True,
                    "tooltip": "Which vace transition of the story, counting from 1 in play order. Set the control "
                    "to 'increment' and the batch count to the number of vace transitions to make them all.",
                }),
                "context_frames": _frames_setting(8, 4, "Frames of each scene the model sees and keeps on each side "
                                                  "(a multiple of 4); they are regenerated and cross-faded."),
                "replace_frames": _frames_setting(8, 0, "Frames of each scene next to the join that are "
                                                  "regenerated (a multiple of 4)."),
                "new_frames": _frames_setting(0, 0, "Extra frames the transition adds between the scenes "
                                              "(a multiple of 4)."),
            },
            "optional": {
                "run": ("RUN", {"tooltip": "From Run: the run whose saved scenes are joined."}),
                "story": ("STORY", {"tooltip": "From Story Loader: the story as it is now (default: the run's "
                                    "story file)."}),
                "images_a": ("IMAGE", {"tooltip": "Instead of the run: the clip before the transition."}),
                "images_b": ("IMAGE", {"tooltip": "Instead of the run: the clip after the transition."}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # the run's scenes on disk decide: look on every prompt

    def prepare(self, transition_index: int, context_frames: int, replace_frames: int, new_frames: int,
                run: Any = None, story: Any = None, images_a: Any = None, images_b: Any = None):
        from .joiner import describe_prep, prepare

        plans = None
        if run is not None and images_a is None:
            from ..render.engine import current_story

            plans = current_story(run, story).plan.scenes
        prepared, video, masks = prepare(context=context_frames, replace=replace_frames, new=new_frames, run=run,
                                         plans=plans, transition_index=transition_index, images_a=images_a,
                                         images_b=images_b)
        width, height = prepared.control_size
        report = describe_prep(prepared)
        device = comfy.intermediate_device()
        return (video.to(device), masks.to(device), prepared.layout.length, width, height, prepared,
                prepared.prompt, prepared.negative, report)


class GemDirectVACESplice:
    """The VACE joiner: the generated clip colour-matched, cross-faded into both scenes and spliced between them."""

    CATEGORY = "gemDirect/vace"
    FUNCTION = "splice"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("images", "transition", "report")
    OUTPUT_TOOLTIPS = (
        "A without its last context+replace frames, the transition, B without its first ones: the joined pair.",
        "The transition clip alone, as written to transitions/<a>--<b> of the run.",
        "Frame counts, the colour match (mean Lab difference before/after) and what was recorded.",
    )
    DESCRIPTION = ("Splices the VACE output between the two scenes: colour-matched to its context (MKL 0.7 by "
                   "default), its context frames cross-faded over the originals; refuses a clip of the wrong "
                   "length. From a run, writes transitions/<a>--<b> (master, preview, record) that Story Render uses.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vace": (VACE_TYPE, {"tooltip": "From VACE Prep."}),
                "generated": ("IMAGE", {"tooltip": "The decoded VACE output (VAE Decode after TrimVideoLatent)."}),
                "color_match": (list(SPLICE_COLOR_MATCH), {
                    "default": "mkl",
                    "tooltip": "Pull the generated frames' colour to the scenes' context frames against VACE's "
                    "brightness/colour shift: mkl (full colour covariance, the default), reinhard, histogram, off.",
                }),
                "color_match_strength": ("FLOAT", {
                    "default": 0.7, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "0 keeps the generated colour, 1 matches fully; 0.7 as VACE joiners use it.",
                }),
            },
            "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # writes the ledger: never skip it from the cache

    def splice(self, vace: Any, generated: Any, color_match: str = "mkl", color_match_strength: float = 0.7,
               prompt=None, unique_id=None):
        from ..chain.save import prompt_models
        from .joiner import finish

        progress = comfy.Progress(vace.layout.length, node_id=unique_id)
        done = finish(vace, generated, method=color_match, strength=color_match_strength,
                      models=prompt_models(prompt), progress=progress)
        device = comfy.intermediate_device()
        return {"ui": {"text": [done.report]}, "result": (done.spliced.to(device), done.clip.to(device), done.report)}


NODE_CLASS_MAPPINGS = {
    "GemDirectColorMatch": GemDirectColorMatch,
    "GemDirectVACEPrep": GemDirectVACEPrep,
    "GemDirectVACESplice": GemDirectVACESplice,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectColorMatch": "Color Match (gemDirect)",
    "GemDirectVACEPrep": "VACE Prep (gemDirect)",
    "GemDirectVACESplice": "VACE Splice (gemDirect)",
}
