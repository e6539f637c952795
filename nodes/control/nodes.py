"""control room nodes: a scene's LoRAs, its control sequence, and saving a generated keyframe.

Engines: loras.py (which LoRAs, where their files are; the patching is ComfyUI's, through
nodes/comfy.py), sequence.py (safe control zips, resampling), keyframes.py (PNG + locked story.json
update). Engines that import torch or Pillow are imported when a node runs, not when ComfyUI lists nodes.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import comfy
from .loras import MODEL_ROLES, SINGLE

REQUIRES = ("numpy", "PIL", "pydantic")
log = logging.getLogger("gemdirect")
WITHOUT_CONTROL = ("error", "black frames")


def _warn(run: Any, scene: Any, texts: list[str], event: str, data: dict) -> None:
    """A fallback or doubt said everywhere: the log, the run ledger (when a RUN is connected), the UI."""
    for text in texts:
        log.warning("[gemDirect] %s", text)
        if run is not None:
            from ..run import ledger

            ledger.warn(run, text, scene=getattr(scene, "id", None))
    comfy.send_event(event, data | {"warnings": list(texts)})


class GemDirectSceneLoRAs:
    """Patch MODEL (and CLIP) with the scene's LoRAs from story.json, on clones: the next scene starts clean."""

    CATEGORY = "gemDirect/control"
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL", "CLIP", "STRING")
    RETURN_NAMES = ("model", "clip", "report")
    OUTPUT_TOOLTIPS = (
        "The model with this scene's LoRAs (a patched clone; the input model is unchanged).",
        "The text encoder with the LoRAs' text-encoder keys, when a CLIP is connected (else nothing).",
        "Which LoRAs were applied at which strength, which were not and why.",
    )
    DESCRIPTION = ("Applies the scene's story.json loras [{name, strength, expert}] through ComfyUI's own LoRA "
                   "loading. A missing file names the folder searched and the closest names there.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model to patch (UNETLoader / UnetLoaderGGUF output)."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: its loras list decides what is applied."}),
                "model_is": (list(MODEL_ROLES), {
                    "default": SINGLE,
                    "tooltip": "Which model this is. WAN 2.2 14B has two experts: use one Scene LoRAs node on "
                    "the high-noise model and one on the low-noise model; each applies the LoRAs whose expert "
                    "is its own or 'both'. single model (5B, 2.1): every LoRA of the scene.",
                }),
            },
            "optional": {
                "clip": ("CLIP", {"tooltip": "The text encoder, for LoRAs that carry text-encoder keys "
                                  "(WAN LoRAs rarely do). Patched with the same strength."}),
                "run": ("RUN", {"tooltip": "From Run: warnings (a one-expert LoRA on a single model) also go "
                                "to the run ledger's telemetry."}),
            },
        }

    def apply(self, model: Any, scene: Any, model_is: str = SINGLE, clip: Any = None, run: Any = None):
        from .loras import describe_pick, lora_file, pick_loras

        pick = pick_loras(getattr(scene, "loras", ()), model_is, scene.id)
        paths = [lora_file(lora.name) for lora in pick.apply]  # every file found before anything is patched
        for lora, path in zip(pick.apply, paths, strict=True):
            model, clip = comfy.apply_lora_file(model, clip, path, lora.strength, lora.strength)
        report = describe_pick(scene.id, model_is, pick, clip is not None)
        data = {"scene_id": scene.id, "story_id": scene.story_id, "model_is": model_is,
                "applied": [{"name": lo.name, "strength": lo.strength, "expert": lo.expert} for lo in pick.apply]}
        _warn(run, scene, pick.warnings, "gemdirect.loras", data)
        return (model, clip, report)


class GemDirectControlSequence:
    """The scene's control frames (pose/depth/canny zip, or connected frames) at its length and size."""

    CATEGORY = "gemDirect/control"
    FUNCTION = "sequence"
    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING")
    RETURN_NAMES = ("control_video", "strength", "report")
    OUTPUT_TOOLTIPS = (
        "length frames at width x height, for WanFunControlToVideo's control_video or WanVaceToVideo's "
        "control_video.",
        "The scene's control strength (story.json control.strength, 1.0 without), for WanVaceToVideo's strength.",
        "Where the frames came from and how they were resampled.",
    )
    DESCRIPTION = ("Reads the scene's control zip (story.json control.sequence) safely, in memory, and resamples it "
                   "to the scene: nearest frame in time to its 4n+1 frames, cover + centre crop to its size.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "scene": ("SCENE", {"tooltip": "From Scene Select: its control zip, length, width and height."}),
                "without_control": (list(WITHOUT_CONTROL), {
                    "default": "error",
                    "tooltip": "A scene with no control and no frames connected: error stops the prompt; black "
                    "frames gives an all-black control video and says so (report, ledger, UI).",
                }),
            },
            "optional": {
                "control_frames": ("IMAGE", {
                    "tooltip": "Frames to use instead of the story's zip (e.g. a pose preprocessor's output); "
                    "resampled the same way."}),
                "run": ("RUN", {"tooltip": "From Run: a fallback to black frames is recorded in its ledger."}),
            },
        }

    def sequence(self, scene: Any, without_control: str = "error", control_frames: Any = None, run: Any = None):
        import numpy as np
        import torch

        from .sequence import read_control_zip, resample

        control = getattr(scene, "control", None)
        strength = float(control.strength) if control is not None else 1.0
        warnings: list[str] = []
        if control_frames is not None:
            source = control_frames.detach().cpu().float().numpy()
            origin = f"{len(source)} connected frame(s)"
        elif control is not None:
            read = read_control_zip(control.sequence)
            source = read.frames
            origin = (f"{control.kind} zip {control.sequence} ({len(source)} frame(s), "
                      f"{read.names[0]} .. {read.names[-1]})")
        elif without_control == "black frames":
            source = np.zeros((1, scene.height, scene.width, 3), dtype=np.uint8)
            origin = "black frames"
            warnings.append(f"scene '{scene.id}' has no control sequence: black control frames used "
                            "(add control {kind, sequence} to the scene in story.json)")
        else:
            raise ValueError(f"scene '{scene.id}' has no control: add \"control\": {{\"kind\": \"pose\", "
                             "\"sequence\": \"control/<scene>.zip\"}} to it in story.json, connect control_frames, "
                             "or set without_control to black frames")
        frames = resample(source, scene.length, scene.width, scene.height)
        report = (f"Scene '{scene.id}': {origin} -> {scene.length} frames at {scene.width}x{scene.height} "
                  f"(nearest frame in time, cover + centre crop), strength {strength:g}")
        report += "".join(f"\n  WARNING: {w}" for w in warnings)
        _warn(run, scene, warnings, "gemdirect.control", {"scene_id": scene.id, "story_id": scene.story_id,
                                                         "frames": scene.length, "source": origin})
        return (torch.from_numpy(frames).to(comfy.intermediate_device()), strength, report)


class GemDirectSaveKeyframe:
    """Save a generated image as the scene's keyframe: a PNG in the story's folder, its path in story.json."""

    CATEGORY = "gemDirect/control"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("keyframe", "path")
    OUTPUT_TOOLTIPS = (
        "The saved image (one frame), e.g. to preview it.",
        "The keyframe's path as written into story.json (relative to the story's folder).",
    )
    DESCRIPTION = ("Writes the image as scene N's keyframe (<folder>/<scene id>.png) and sets scenes[N].keyframe in "
                   "story.json: atomic, unknown fields kept, locked against the panel's saves.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The generated image (VAE Decode output); a batch keeps the "
                                     "image at 'index'."}),
                "story": ("STORY", {"tooltip": "From Story Loader: the story.json written to."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: the scene whose keyframe this becomes."}),
                "folder": ("STRING", {"default": "keyframes", "tooltip": "Folder inside the story's folder for "
                                      "the PNG (<folder>/<scene id>.png, replaced on every save)."}),
                "index": ("INT", {"default": 0, "min": 0, "max": 4095, "tooltip": "Which image of the batch: "
                                  "0 is the first (a WAN clip of length 1 has only that one)."}),
            },
        }

    def save(self, images: Any, story: Any, scene: Any, folder: str = "keyframes", index: int = 0):
        from .keyframes import save_keyframe

        if not 0 <= index < len(images):
            raise ValueError(f"index {index} is outside the batch of {len(images)} image(s); "
                             f"use 0 to {len(images) - 1}")
        image = images[index: index + 1]
        saved = save_keyframe(story.path, scene.id, image[0].detach().cpu().numpy(), folder)
        comfy.send_event("gemdirect.keyframe", {"story_id": scene.story_id, "scene_id": scene.id,
                                                "keyframe": saved.relative, "previous": saved.previous})
        text = f"scene '{scene.id}' keyframe saved: {saved.relative}" + (
            f" (was {saved.previous})" if saved.previous and saved.previous != saved.relative else "")
        return {"ui": {"text": [text]}, "result": (image, saved.relative)}


NODE_CLASS_MAPPINGS = {
    "GemDirectSceneLoRAs": GemDirectSceneLoRAs,
    "GemDirectControlSequence": GemDirectControlSequence,
    "GemDirectSaveKeyframe": GemDirectSaveKeyframe,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectSceneLoRAs": "Scene LoRAs (gemDirect)",
    "GemDirectControlSequence": "Control Sequence (gemDirect)",
    "GemDirectSaveKeyframe": "Save Keyframe (gemDirect)",
}
