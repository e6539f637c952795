"""Upscale node: core's UPSCALE_MODEL (optional) + IMAGE -> IMAGE, tiled, half precision, any size."""

from __future__ import annotations

from .. import comfy
from .sizing import SIZE_MODES, size_inputs

REQUIRES = ("numpy",)  # torch and spandrel come with ComfyUI; imported when the node runs

PRECISIONS = ["auto", "fp32", "fp16", "bf16"]
ALPHA_MODES = ["keep", "drop"]
NODE_CHUNK = 8  # frames upscaled at a time into the preallocated output batch


class GemDirectUpscale:
    """Upscale an IMAGE batch with an ESRGAN-family model, or with Lanczos when no model is connected."""

    CATEGORY = "gemDirect/upscale"
    FUNCTION = "upscale"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The upscaled frames at the size chosen by size_mode.",)
    DESCRIPTION = ("Upscales frames with core's UPSCALE_MODEL (RealESRGAN, UltraSharp, compact "
                   "models...) in memory-sized tiles, several frames at once, in fp16/bf16 where the "
                   "model allows; without a model, a Lanczos resize.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Frames to upscale, [B,H,W,3] (or RGBA [B,H,W,4])."}),
                "size_mode": (list(SIZE_MODES), {"default": "model scale", "tooltip": (
                    "model scale: the model's own factor (with no model: factor). factor: any factor, "
                    "e.g. 2.0 with a 4x model. long side: the longer side becomes long_side px. "
                    "exact: width x height (aspect not kept).")}),
                **size_inputs("output", "size_mode"),
                "tile": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8, "tooltip": (
                    "Tile side in input px; 0 picks it from free memory (whole frame if it fits). "
                    "On out-of-memory the tile is halved and retried.")}),
                "overlap": ("INT", {"default": 32, "min": 0, "max": 256, "step": 4, "tooltip": (
                    "Input px shared by neighbouring tiles; they are cross-faded so no seams show.")}),
                "precision": (PRECISIONS, {"default": "auto", "tooltip": (
                    "auto: fp16 on GPUs when the model supports it; on the CPU bf16 if the CPU has it, "
                    "else fp32. fp16/bf16 halve memory and are faster on GPUs.")}),
                "alpha": (ALPHA_MODES, {"default": "keep", "tooltip": (
                    "RGBA input: keep the alpha (resized with Lanczos) or drop it (RGB out).")}),
            },
            "optional": {
                "upscale_model": ("UPSCALE_MODEL", {"tooltip": (
                    "From core's Load Upscale Model (models/upscale_models). Empty: Lanczos resize.")}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def upscale(self, image, size_mode, factor, long_side, width, height, tile, overlap, precision, alpha,
                upscale_model=None, unique_id=None):
        import torch

        from .engine import Upscaler, UpscaleSettings
        from .sizing import OutputSize

        settings = UpscaleSettings(
            output=OutputSize(mode=size_mode, factor=factor, long_side=long_side, width=width, height=height),
            tile=tile, overlap=overlap, precision=precision, alpha=alpha)
        progress = comfy.Progress(image.shape[0], node_id=unique_id)
        upscaler = Upscaler(upscale_model, settings, progress=progress.update)
        out_w, out_h = upscaler.output_size(image.shape[2], image.shape[1])
        channels = 4 if image.shape[-1] == 4 and alpha == "keep" else 3
        result = torch.empty((image.shape[0], out_h, out_w, channels), dtype=torch.float32,
                             device=comfy.intermediate_device())
        chunks = (image[start:start + NODE_CHUNK] for start in range(0, image.shape[0], NODE_CHUNK))
        done = 0
        for upscaled in upscaler.run(chunks):
            result[done:done + upscaled.shape[0]] = upscaled
            done += upscaled.shape[0]
        return (result,)


NONE = "none (Lanczos)"  # the first choice: no model, so a workflow loads without any upscale file


def load_upscale_model(path: str):
    """An ESRGAN-family file as core's UpscaleModelLoader loads it: spandrel descriptor, eval, on the CPU."""
    from spandrel import ImageModelDescriptor, ModelLoader

    state = comfy.load_state_dict(path)
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in state:  # SwinIR saved with DataParallel
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    try:
        model = ModelLoader().load_from_state_dict(state).eval()
    except Exception as exc:
        raise ValueError(f"{path} is not an upscale model spandrel knows ({type(exc).__name__}: {exc}); use an "
                         f"ESRGAN-family file (RealESRGAN, UltraSharp, compact...) or '{NONE}'") from exc
    if not isinstance(model, ImageModelDescriptor):
        raise ValueError(f"{path} is a {type(model).__name__}, not a single-image upscale model")
    return model


class GemDirectUpscaleModelLoader:
    """Core's Load Upscale Model with an explicit first choice: none (Lanczos)."""

    CATEGORY = "gemDirect/upscale"
    FUNCTION = "load"
    RETURN_TYPES = ("UPSCALE_MODEL", "STRING")
    RETURN_NAMES = ("upscale_model", "description")
    OUTPUT_TOOLTIPS = ("The model for Story Render / Upscale (gemDirect); nothing when 'none (Lanczos)' is chosen.",
                       "What was loaded: architecture and factor, or that Lanczos is used.")
    DESCRIPTION = ("Loads an ESRGAN-family model from models/upscale_models as core's Load Upscale Model does. Its "
                   "first choice, none (Lanczos), loads nothing, so a workflow opens without the file and the "
                   "choice shows in the graph.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model_name": ([NONE, *comfy.model_files("upscale_models")], {
            "tooltip": "An upscale model from models/upscale_models (RealESRGAN_x4plus.pth, 4x-UltraSharp, compact "
            "models...), or none (Lanczos): Story Render and Upscale then resize with Lanczos; a preset that asks "
            "for a model upscale says so in the report and the telemetry."})}}

    def load(self, model_name: str):
        if model_name == NONE:
            return (None, "no upscale model: Lanczos")
        from .model import model_label

        model = load_upscale_model(comfy.model_path("upscale_models", model_name))
        return (model, f"{model_label(model)} from {model_name}")


NODE_CLASS_MAPPINGS = {"GemDirectUpscale": GemDirectUpscale, "GemDirectUpscaleModelLoader": GemDirectUpscaleModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"GemDirectUpscale": "Upscale (gemDirect)",
                              "GemDirectUpscaleModelLoader": "Upscale Model Loader (gemDirect)"}
