"""Chain nodes: where a scene starts (Chain Start) and how it is kept (Scene Save). Engines: start.py, save.py."""

from __future__ import annotations

import logging
from typing import Any

from .. import comfy
from ..story.keyframe import FIT_MODES
from . import states
from .start import CHAIN_CHOICES, CHAIN_FROM_STORY, END_AUTO, END_CHOICES

REQUIRES = ("numpy", "PIL", "av", "pydantic")
log = logging.getLogger("gemdirect")
# Kept here (not imported from save.py) so listing the nodes does not load the video encoder.
COLOR_MATCH_CHOICES = ("off", "reinhard", "histogram", "mkl")


def _image(pixels: Any) -> Any:
    """[H,W,3] float32 numpy -> IMAGE [1,H,W,3] on ComfyUI's intermediate device."""
    import torch

    return torch.from_numpy(pixels).unsqueeze(0).to(comfy.intermediate_device())


class GemDirectChainStart:
    """The start image of a scene (its keyframe, or the previous scene's saved last frame) and its end image."""

    CATEGORY = "gemDirect/chain"
    FUNCTION = "start"
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("start_image", "end_image", "source")
    OUTPUT_TOOLTIPS = (
        "Where this scene starts: the previous scene's last frame (chained) or the scene's keyframe. "
        "Feed it to WanFirstLastFrameToVideo's start_image or Wan22ImageToVideoLatent's start_image.",
        "Where the scene should end, by the end_image widget, or nothing (None) for no end image: "
        "WanFirstLastFrameToVideo's end_image is optional, so it then runs as image-to-video. "
        "Recorded as FLF2VEnd in the telemetry.",
        "keyframe, previous-scene or none (mid-grey start): recorded as FLF2VSource in the telemetry.",
    )
    DESCRIPTION = ("Chains scene N to scene N-1 through the run ledger (FLF2V). Falls back to the keyframe when "
                   "the previous scene is missing or failed, and records why.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "run": ("RUN", {"tooltip": "From Run: the run whose saved scenes this scene chains to."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: the scene about to be rendered."}),
                "fit": (list(FIT_MODES), {
                    "default": "crop",
                    "tooltip": "How an image of another shape is fitted to the scene's size: crop (cover, "
                    "centre-crop the overflow) or pad (fit inside, black bars). Never stretched.",
                }),
                "chain": (list(CHAIN_CHOICES), {
                    "default": CHAIN_FROM_STORY,
                    "tooltip": "from story: chain when the scene's chain setting is on (the first scene never "
                    "chains). on: chain anyway. off: always start from the keyframe.",
                }),
                "end_image": (list(END_CHOICES), {
                    "default": END_AUTO,
                    "tooltip": "The image the scene ends on (FLF2V). auto: the scene's keyframe when it differs "
                    "from the start image, else none. keyframe: the scene's keyframe. next scene's keyframe: "
                    "head for where the next scene begins. none: no end image (image-to-video). A mode that "
                    "finds no image gives none and says so; an end equal to the start is never used silently.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # the previous scene's files on disk decide: look on every prompt

    def start(self, run: Any, scene: Any, fit: str = "crop", chain: str = CHAIN_FROM_STORY,
              end_image: str = END_AUTO, unique_id=None):
        from .start import begin_scene, chain_start, describe_start

        states.send_scene_state(run, scene, states.QUEUED)
        try:
            result = chain_start(run, scene, fit=fit, chain=chain, end_mode=end_image)
            begin_scene(run, scene, result, fit=fit)
        except Exception as exc:
            states.send_scene_state(run, scene, states.FAILED, error=str(exc))
            raise
        if result.fallback:
            log.warning("[gemDirect] scene '%s' not chained: %s", scene.id, result.fallback)
        if result.end_warning:
            log.warning("[gemDirect] scene '%s': %s", scene.id, result.end_warning)
        report = describe_start(scene, result)
        log.info("[gemDirect] %s", report.replace("\n", " | "))
        states.send_scene_state(run, scene, states.RENDERING, source=result.source, fallback=result.fallback,
                                flf2v_end=result.flf2v_end, end_note=result.end_note,
                                end_warning=result.end_warning, report=report)
        end = _image(result.end) if result.end is not None else None
        return (_image(result.start), end, result.source)


class GemDirectSceneSave:
    """Save a rendered scene into the run: MP4, first/last PNG, telemetry, bookend and drift QA."""

    CATEGORY = "gemDirect/chain"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("RUN", "IMAGE", "STRING")
    RETURN_NAMES = ("run", "frames", "report")
    OUTPUT_TOOLTIPS = (
        "The same run, passed on: connect it to the Telemetry Writer so it runs after the save.",
        "The frames as saved (after colour matching, if on).",
        "What was saved: file, FLF2V source, bookend score, drift, warnings.",
    )
    DESCRIPTION = ("Writes scenes/<id>.mp4 (audio kept, the preview), its lossless master scenes/<id>.mkv (what "
                   "Story Render reads) and <id>_first/_last.png into the run, measures the bookend "
                   "against the previous scene and the colour drift against the story's reference, optionally "
                   "colour-matches first, and records the scene's telemetry.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The scene's decoded frames (VAE Decode)."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: the scene these frames render."}),
                "run": ("RUN", {"tooltip": "From Run: the run to save into."}),
                "color_match": (list(COLOR_MATCH_CHOICES), {
                    "default": "off",
                    "tooltip": "Colour-correct the frames towards the story's reference (the first scene's first "
                    "frame, else the keyframe) before saving: reinhard (Lab mean/spread), histogram, mkl "
                    "(full colour covariance). off keeps the frames as rendered; drift is measured either way.",
                }),
                "color_match_strength": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                    "tooltip": "How far to move towards the reference: 0 changes nothing, 1 matches fully.",
                }),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Optional sound for the scene, muxed into its MP4 as AAC."}),
                "fit": (list(FIT_MODES), {
                    "default": "crop",
                    "tooltip": "How a reference or previous last frame of another size is fitted for comparison "
                    "and colour matching: crop or pad. Use the same setting as Chain Start.",
                }),
                "crf": ("INT", {
                    "default": 19, "min": 0, "max": 51, "step": 1,
                    "tooltip": "x264 quality of the scene's MP4: 0 lossless, 19 visually clean, higher is smaller.",
                }),
                "lossless_master": ("BOOLEAN", {
                    "default": True, "label_on": "keep", "label_off": "off (save disk)",
                    "tooltip": "Keep a lossless master (scenes/<id>.mkv, FFV1) beside the MP4 preview; Story "
                    "Render reads it, so the film is not made from re-encoded H.264. About 10-50 MB per 81-frame "
                    "832x480 scene, 16-110 MB at 1280x720 (docs/render.md). Off: the render reads the MP4 and warns.",
                }),
                "latent": ("LATENT", {
                    "tooltip": "Optional: the sampler's LATENT (before VAE Decode). Its last latent frames are kept "
                    "as scenes/<id>_latents.safetensors so the next scene can continue in latent space (SVI "
                    "Continue). Not connected: no latents are kept.",
                }),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # saving writes the ledger: never skip it from the cache

    def save(self, frames: Any, scene: Any, run: Any, color_match: str = "off", color_match_strength: float = 1.0,
             audio: dict | None = None, fit: str = "crop", crf: int = 19, lossless_master: bool = True,
             latent: dict | None = None, prompt=None, extra_pnginfo=None, unique_id=None):
        from .save import prompt_models, save_scene

        progress = comfy.Progress(int(frames.shape[0]), node_id=unique_id) if hasattr(frames, "shape") else None
        result = save_scene(run, scene, frames, audio=audio, models=prompt_models(prompt), color_match=color_match,
                            color_match_strength=color_match_strength, fit=fit, crf=crf, progress=progress,
                            master=bool(lossless_master), latent=latent)
        log.info("[gemDirect] %s", result.report.replace("\n", " | "))
        ui = {"images": [result.preview], "animated": (True,)} if result.preview else {}
        saved = result.frames.to(comfy.intermediate_device())
        return {"ui": ui, "result": (run, saved, result.report)}


NODE_CLASS_MAPPINGS = {
    "GemDirectChainStart": GemDirectChainStart,
    "GemDirectSceneSave": GemDirectSceneSave,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectChainStart": "Chain Start (gemDirect)",
    "GemDirectSceneSave": "Scene Save (gemDirect)",
}
