"""VRAM nodes: Model Info (a model file read from its header) and the VRAM Guard (pass, free, or stop)."""

from __future__ import annotations

import math
import os
from typing import Any

from .. import comfy
from .estimate import GIB, STAGES, Workload
from .files import inspect_cached, inspect_choices, model_choices, resolve
from .guard import POLICIES, GuardRequest, GuardResult, VRAMShortError, run_guard
from .inspect import ModelFileInfo
from .probe import read_vram

REQUIRES = ()  # gguf is imported when a .gguf file is inspected; torch comes with ComfyUI


class AnyType(str):
    """ComfyUI's "any" type: compares equal to every type, so any link connects."""

    def __ne__(self, other: object) -> bool:
        return False

    __hash__ = str.__hash__


ANY = AnyType("*")
MODEL_INFO = "GEMDIRECT_MODEL_INFO"


class GemDirectModelInfo:
    """Read a model file's header: exact weight bytes, parameters, quant mix, WAN variant. No weights load."""

    CATEGORY = "gemDirect/vram"
    FUNCTION = "inspect"
    OUTPUT_NODE = True
    RETURN_TYPES = (MODEL_INFO, "STRING", "FLOAT", "STRING")
    RETURN_NAMES = ("model_info", "summary", "weights_gb", "variant")
    OUTPUT_TOOLTIPS = (
        "The inspected file, for the VRAM Guard's model_info input.",
        "What the header says, a few lines (also shown on the node).",
        "Exact bytes of the weights, in GB (GiB).",
        "Detected architecture, e.g. wan22-ti2v-5b or wan22-i2v-14b; 'unknown' if not recognised.",
    )
    DESCRIPTION = ("Reads a .safetensors or .gguf model's header (never its weights) and shows the exact weight "
                   "size, parameter count, quant mix and the WAN variant (TI2V 5B, I2V/T2V 14B).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (model_choices(), {"tooltip": (
                    "A model file from ComfyUI's diffusion_models (unet), vae, loras, upscale_models or "
                    "frame_interpolation folders. Only its header is read, in milliseconds.")}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, model):
        try:
            stat = os.stat(resolve(model))
        except Exception:
            return float("nan")
        return f"{stat.st_size}-{stat.st_mtime_ns}"

    def inspect(self, model: str):
        info = inspect_cached(resolve(model))
        summary = info.summary()
        return {"ui": {"text": [summary]},
                "result": (info, summary, round(info.weight_bytes / GIB, 3), info.architecture.variant)}


def _scene_value(scene: Any, name: str, default: Any) -> Any:
    value = getattr(scene, name, None) if scene is not None else None
    return default if value is None else value


class GemDirectVRAMGuard:
    """Stand before a heavy stage: pass, free ComfyUI's cached models and pass, or stop with what is short."""

    CATEGORY = "gemDirect/vram"
    FUNCTION = "guard"
    RETURN_TYPES = (ANY, "STRING")
    RETURN_NAMES = ("value", "report")
    OUTPUT_TOOLTIPS = (
        "The value input, passed through unchanged once the guard lets the stage run.",
        "The decision, the device reading and how the estimate was made.",
    )
    DESCRIPTION = ("Checks free VRAM against the next stage's estimate (model bytes from file headers, activations "
                   "from resolution x frames) before the work starts, then passes, frees cached models and "
                   "passes, or stops the prompt with what is short by how much and which preset or quant fits.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "value": (ANY, {"tooltip": (
                    "Anything (MODEL, LATENT, IMAGE...): passed through, so the guard runs right before the "
                    "node it feeds. Put it on the input of the heavy stage.")}),
                "stage": (list(STAGES), {"default": "sample", "tooltip": (
                    "The stage that follows: sample (WAN KSampler), vae-decode, interpolate (RIFE), upscale "
                    "(ESRGAN), or custom (uses estimate_gb).")}),
                "policy": (list(POLICIES), {"default": "free-then-block", "tooltip": (
                    "When memory is short: free-then-block unloads ComfyUI's cached models, reads again and "
                    "stops only if still short; block stops without unloading anything; warn never stops, "
                    "it warns.")}),
            },
            "optional": {
                "run": ("RUN", {"tooltip": "From Run: decisions and readings go to the run's events, and the "
                                           "run's circuit breaker is checked and updated."}),
                "scene": ("SCENE", {"tooltip": "From Scene Select: width, height, frames and model profile come "
                                               "from the scene (then the size inputs below are ignored)."}),
                "model_info": (MODEL_INFO, {"tooltip": "From Model Info: a model file that will load in this "
                                                       "stage (added to model_files)."}),
                "model_files": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    "Model files this stage loads, one per line, as Model Info lists them "
                    "(diffusion_models/wan2.2_i2v_high_noise_14B_Q4_K_M.gguf). Only headers are read.")}),
                "estimate_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 192.0, "step": 0.1, "tooltip": (
                    "If above 0: the stage needs this many GB, instead of the estimate (required for custom).")}),
                "width": ("INT", {"default": 832, "min": 16, "max": 16384, "step": 16, "tooltip": (
                    "Frame width in px, when no scene is connected (for upscale: the input frames).")}),
                "height": ("INT", {"default": 480, "min": 16, "max": 16384, "step": 16, "tooltip": (
                    "Frame height in px, when no scene is connected.")}),
                "frames": ("INT", {"default": 81, "min": 1, "max": 4001, "step": 4, "tooltip": (
                    "Clip length in frames (4n+1 for WAN), when no scene is connected.")}),
                "batch": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": (
                    "sample: videos at once (batch_size); interpolate: frame pairs per pass; upscale: frames "
                    "per pass.")}),
                "rife_scale": ("FLOAT", {"default": 1.0, "min": 0.25, "max": 1.0, "step": 0.25, "tooltip": (
                    "interpolate: the RIFE scale you run with (0.5 for 4K) - less memory below 1.")}),
                "reset_breaker": ("BOOLEAN", {"default": False, "tooltip": (
                    "Clear the run's circuit breaker before checking (after fixing what made scenes fail).")}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")  # free memory changes between prompts: decide every time

    @classmethod
    def VALIDATE_INPUTS(cls, stage=None, policy=None, estimate_gb=0.0, **_inputs):
        if stage is not None and stage not in STAGES:
            return f"stage '{stage}' is not one of {', '.join(STAGES)}"
        if policy is not None and policy not in POLICIES:
            return f"policy '{policy}' is not one of {', '.join(POLICIES)}"
        if stage == "custom" and isinstance(estimate_gb, (int, float)) and not estimate_gb > 0:
            return "stage custom needs estimate_gb above 0 (the GB the stage needs)"
        return True

    def guard(self, value: Any, stage: str, policy: str, run: Any = None, scene: Any = None,
              model_info: ModelFileInfo | None = None, model_files: str = "", estimate_gb: float = 0.0,
              width: int = 832, height: int = 480, frames: int = 81, batch: int = 1, rife_scale: float = 1.0,
              reset_breaker: bool = False, unique_id: Any = None):
        models = inspect_choices(model_files or "")
        if model_info is not None and all(m.path != model_info.path for m in models):
            models = (model_info, *models)
        workload = Workload(int(_scene_value(scene, "width", width)), int(_scene_value(scene, "height", height)),
                            int(_scene_value(scene, "length", frames)), batch=int(batch))
        reading = read_vram()
        device = comfy.torch_device()
        request = GuardRequest(
            stage=stage, policy=policy, workload=workload, models=models,
            estimate_bytes=int(estimate_gb * GIB) if estimate_gb and math.isfinite(estimate_gb) else None,
            profile=_scene_value(scene, "model_profile", None), scene=_scene_value(scene, "id", None),
            efficient_attention=comfy.efficient_attention(device),
            dtype_bytes=4 if reading.device_type == "cpu" else 2, rife_scale=float(rife_scale),
            reserved=comfy.reserved_vram())

        def free_memory(bytes_wanted: int, keep: tuple[Any, ...]):
            comfy.free_cached_models(bytes_wanted, device, keep=keep)
            return read_vram()

        run_dir = getattr(run, "run_dir", None)
        try:
            result = run_guard(request, reading, run_dir=run_dir, free_memory=free_memory,
                               prompt_id=comfy.current_prompt_id(), outcome=comfy.prompt_outcome,
                               reset_breaker=bool(reset_breaker))
        except VRAMShortError as stopped:
            _notify(unique_id, run_dir, stopped.result)
            raise
        _notify(unique_id, run_dir, result)
        return (value, result.report)


def _notify(node: Any, run_dir: str | None, result: GuardResult | None) -> None:
    """Tell the frontend (the panel) what the guard decided."""
    if result is not None:
        comfy.send_event("gemdirect.vram", {"node": node, "run_dir": run_dir, "breaker": result.breaker_state,
                                            **result.decision.event_fields()})


NODE_CLASS_MAPPINGS = {"GemDirectModelInfo": GemDirectModelInfo, "GemDirectVRAMGuard": GemDirectVRAMGuard}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectModelInfo": "Model Info (gemDirect)",
    "GemDirectVRAMGuard": "VRAM Guard (gemDirect)",
}
