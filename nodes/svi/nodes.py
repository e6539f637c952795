"""SVI nodes: the SVI LoRA loader (one per expert of the 14B pair) and SVI Continue. Engines: ../loras.py,
engine.py, layout.py, latents.py."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any

from .. import comfy
from ..loras import CAST_CHOICES, LoraFile, LoraFileError, load_lora
from ..vram.inspect import format_bytes
from .engine import ANCHOR_CHOICES, ANCHOR_REFERENCE, FROM_STORY

REQUIRES = ("numpy", "PIL", "safetensors")  # torch comes with ComfyUI; importing it here would slow start-up
log = logging.getLogger("gemdirect")

SVI_FOLDER = "svi_loras"  # models/loras/svi/, listed on its own
SVI_EXTENSIONS = (".safetensors", ".sft", ".gguf")
NO_FILES = "(no SVI LoRA in models/loras/svi)"
STRENGTH_FROM_SCENE = "scene"
_CACHE_SIZE = 4  # a HIGH/LOW pair, twice over (two casts)
_cache: OrderedDict[tuple[str, int, int, str], LoraFile] = OrderedDict()


def register_folders() -> None:
    """``models/loras/svi`` as the ``svi_loras`` model folder (SVI LoRAs listed apart from the others)."""
    comfy.register_model_folder(SVI_FOLDER, [os.path.join(comfy.models_directory(), "loras", "svi")],
                                SVI_EXTENSIONS)


def svi_lora_choices() -> list[str]:
    register_folders()
    return comfy.model_files(SVI_FOLDER) or [NO_FILES]


def cached_lora(path: str, cast: str) -> LoraFile:
    """:func:`load_lora`, remembered while the file's size and modification time stay."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, cast)
    if key not in _cache:
        _cache[key] = load_lora(path, cast=cast)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    _cache.move_to_end(key)
    return _cache[key]


def apply_svi_lora(model: Any, lora_name: str, strength: float, enabled: bool, cast: str = "none",
                   scene: Any = None, expert: str = "") -> tuple[Any, str]:
    """The loader's work: ``(model, report)``. Disabled (or the scene has svi off): the model untouched and
    no file opened. Enabled: the LoRA checked against the model's weights and applied on a clone."""
    label = f"SVI LoRA{f' ({expert})' if expert else ''}"
    svi = getattr(scene, "svi", None)
    if not enabled:
        return model, f"{label}: off (enabled is off); the model passes through untouched"
    if scene is not None and (svi is None or not svi.enabled):
        return model, f"{label}: off for scene '{scene.id}' (svi off in the story); the model passes through untouched"
    if scene is not None:
        strength = float(svi.lora_strength)
    if lora_name == NO_FILES or not lora_name:
        raise LoraFileError("lora_name: no SVI LoRA file in models/loras/svi/; put "
                            "SVI_v2_PRO_Wan2.2-I2V-A14B_HIGH/LOW_lora_rank_128_fp16.safetensors there and refresh (R), "
                            "or set enabled off")
    register_folders()
    path = comfy.model_path(SVI_FOLDER, lora_name)
    lora = cached_lora(path, cast)
    lora.check_targets(comfy.model_weight_shapes(model))
    patched, count = comfy.apply_lora(model, lora.comfy_state_dict(), strength)
    if count != len(lora.patches):
        raise LoraFileError(f"{label} '{lora.name}': only {count} of its {len(lora.patches)} weights could be patched "
                            "onto this model; it was made for another model")
    source = f" (scene '{scene.id}' svi.lora_strength)" if scene is not None else ""
    report = (f"{label}: {lora.name} ({format_bytes(lora.file_bytes)} on disk, {format_bytes(lora.nbytes)} in memory"
              f"{', cast to ' + cast if cast != 'none' else ''}) applied at strength {strength:g}{source} to "
              f"{count} weights; key spelling: {', '.join(lora.spellings)}")
    if lora.ignored:
        report += (f"\nWARNING: {len(lora.ignored)} keys are not LoRA pairs and were not applied "
                   f"(e.g. {lora.ignored[0]})")
    log.warning("[gemDirect] %s", report.replace("\n", " | "))  # the one warning: what was loaded, its real size
    return patched, report


class GemDirectSVILoRALoader:
    """Apply one SVI LoRA to one model (WAN 2.2 14B: one loader on the HIGH expert, one on the LOW)."""

    CATEGORY = "gemDirect/svi"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "STRING")
    RETURN_NAMES = ("model", "report")
    OUTPUT_TOOLTIPS = ("The model with the LoRA patched in (a clone; nothing baked), or the input model when off.",
                       "What was applied: file, real size, strength, weights patched; or why not.")
    DESCRIPTION = ("Stable Video Infinity LoRA loader. Lists models/loras/svi/ (safetensors or GGUF), maps every Wan "
                   "LoRA key spelling onto the model and applies it through ComfyUI's own LoRA patching. Off: the "
                   "file is not even opened.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The WAN 2.2 I2V A14B expert this LoRA is for (HIGH or LOW noise)."}),
                "lora_name": (svi_lora_choices(), {
                    "tooltip": "An SVI LoRA in models/loras/svi/: the HIGH one on the high-noise model, the LOW one "
                    "on the low-noise model (SVI_v2_PRO_Wan2.2-I2V-A14B_HIGH/LOW_lora_rank_128_fp16).",
                }),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                    "tooltip": "LoRA strength (SVI is trained at 1.0). With a scene connected the scene's "
                    "svi.lora_strength is used instead.",
                }),
                "enabled": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Off: the model passes through untouched and the LoRA file is not opened.",
                }),
                "cast": (list(CAST_CHOICES), {
                    "default": "none",
                    "tooltip": "Keep the LoRA weights as stored, or cast them to bf16 / fp8_e4m3fn to save memory "
                    "(rank-128 fp16 pair: about 1.2 GB; fp8 halves it).",
                }),
            },
            "optional": {
                "scene": ("SCENE", {
                    "tooltip": "Optional: from Scene Select. Then the scene's svi setting decides: svi off passes "
                    "the model through (no file opened), svi on uses its lora_strength.",
                }),
            },
        }

    def load(self, model: Any, lora_name: str, strength: float = 1.0, enabled: bool = True, cast: str = "none",
             scene: Any = None):
        patched, report = apply_svi_lora(model, lora_name, strength, enabled, cast, scene)
        return (patched, report)


class GemDirectSVIContinue:
    """SVI conditioning for a scene: anchor + the previous scene's last latents + padding (+ end latent)."""

    CATEGORY = "gemDirect/svi"
    FUNCTION = "build"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT", "STRING")
    RETURN_NAMES = ("positive", "negative", "latent", "report")
    OUTPUT_TOOLTIPS = (
        "Positive conditioning with the SVI concat latent and mask (14B).",
        "Negative conditioning with the same concat latent and mask.",
        "The latent to sample: zeros (14B), or the held slots with a noise_mask (5B).",
        "What the scene continues from, the slot layout, and any fallback.",
    )
    DESCRIPTION = ("Stable Video Infinity continuation, laid out as KJNodes' WanImageToVideoSVIPro: concat(anchor "
                   "latent, the previous scene's last motion latents, zero padding), only latent frame 0 masked; an "
                   "end image locks the last slot. The previous latents come from the run ledger (Scene Save's "
                   "latent input), so clips continue in latent space without a decode/encode between them.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "positive": ("CONDITIONING", {"tooltip": "The scene's prompt (CLIP Text Encode of Scene Select's "
                                              "positive)."}),
                "negative": ("CONDITIONING", {"tooltip": "The scene's negative prompt."}),
                "vae": ("VAE", {"tooltip": "The WAN VAE: encodes the anchor (and end image) at the scene's size."}),
                "run": ("RUN", {"tooltip": "From Run: where the previous scene's latents are kept."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: size, length and svi settings of this scene."}),
                "anchor": (list(ANCHOR_CHOICES), {
                    "default": ANCHOR_REFERENCE,
                    "tooltip": "The image every clip of the chain is anchored to: story reference (the first "
                    "scene's saved first frame, else the keyframe) or scene keyframe. Fitted to the scene's size "
                    "(fit). An image connected to anchor_image wins and must already be the scene's size.",
                }),
                "motion_latent_count": ("INT", {
                    "default": FROM_STORY, "min": FROM_STORY, "max": 8, "step": 1,
                    "tooltip": "Latent frames of the previous scene carried as motion. -1: the scene's "
                    "svi.motion_latent_count (SVI uses 1; more freezes motion). 0: anchor only.",
                }),
                "fit": (["crop", "pad"], {
                    "default": "crop",
                    "tooltip": "How a story anchor of another shape is fitted to the scene's size (never stretched).",
                }),
            },
            "optional": {
                "anchor_image": ("IMAGE", {"tooltip": "Optional anchor image; must be the scene's output size."}),
                "prev_samples": ("LATENT", {
                    "tooltip": "Optional: previous latents to continue from instead of the ledger's (e.g. a "
                    "Load Latent). Not connected: the previous scene's kept latents from the run.",
                }),
                "end_image": ("IMAGE", {
                    "tooltip": "Optional end frame (Chain Start's end_image): locks the last latent slot, FLF "
                    "style. Must be the scene's size.",
                }),
            },
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # the previous scene's latents on disk decide: look on every prompt

    def build(self, positive: Any, negative: Any, vae: Any, run: Any, scene: Any, anchor: str = ANCHOR_REFERENCE,
              motion_latent_count: int = FROM_STORY, fit: str = "crop", anchor_image: Any = None,
              prev_samples: Any = None, end_image: Any = None):
        import torch

        from .engine import (
            anchor_pixels,
            check_image_size,
            continue_scene,
            describe,
            record_continuation,
            set_conditioning,
        )

        if anchor_image is not None:
            check_image_size("anchor_image", anchor_image, scene)
            pixels, anchor_name = anchor_image[:1], "anchor_image input"
        else:
            image, anchor_name = anchor_pixels(run, scene, anchor, fit)
            pixels = torch.from_numpy(image).unsqueeze(0)
        anchor_latent = comfy.vae_encode(vae, pixels)
        end_latent = None
        if end_image is not None:
            check_image_size("end_image", end_image, scene)
            end_latent = comfy.vae_encode(vae, end_image[:1])
        result = continue_scene(run, scene, anchor_latent, anchor_name, motion_latent_count=motion_latent_count,
                                latent_input=prev_samples, end_latent=end_latent)
        record_continuation(run, scene, result)
        report = describe(scene, result)
        log.info("[gemDirect] %s", report.replace("\n", " | "))
        values = result.layout.conditioning_values()
        device = comfy.intermediate_device()
        latent = {k: v.to(device) for k, v in result.layout.latent_dict().items()}
        return {"ui": {"text": [report]},
                "result": (set_conditioning(positive, values), set_conditioning(negative, values), latent, report)}


NODE_CLASS_MAPPINGS = {
    "GemDirectSVILoRALoader": GemDirectSVILoRALoader,
    "GemDirectSVIContinue": GemDirectSVIContinue,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectSVILoRALoader": "SVI LoRA Loader (gemDirect)",
    "GemDirectSVIContinue": "SVI Continue (gemDirect)",
}
