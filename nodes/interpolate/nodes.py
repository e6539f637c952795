"""Interpolation nodes: load a RIFE checkpoint (GEMDIRECT_RIFE) and raise an IMAGE batch to a new fps.

The work lives in ``engine.py`` (chunks, batches, back-off), ``timing.py`` (which frames),
``ifnet.py``/``loader.py`` (RIFE) and ``flow.py`` (the weightless method). torch, cv2 and the engine
are imported inside the node functions so importing the pack stays fast.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .. import comfy

REQUIRES = ("numpy", "safetensors")  # cv2 (opencv-python-headless) is imported when frames are compared
log = logging.getLogger("gemdirect")

CATEGORY = "gemDirect/interpolate"
MODEL_FOLDERS = ("frame_interpolation", "rife")
FRAME_INTERPOLATION_PACK = "comfyui-frame-interpolation"  # its checkpoints sit in <pack>/ckpts/rife
NO_MODELS = "(no RIFE models found: see this node's help)"
NONE = "none (optical flow)"  # the first choice: no model, so a workflow loads without any RIFE file
WORKING_FILES = ("rife47.pth, rife49.pth, rife417.pth, rife426.pth (ComfyUI-Frame-Interpolation), "
                 "Practical-RIFE's flownet.pkl, ComfyUI's rife_v4.25/_lite/_heavy and rife_v4.26/_heavy .safetensors")
MODES = ("multiplier", "target_fps")
SCALES = ("1.0", "0.5", "0.25", "2.0")
FLOW = "flow (no model)"


def frame_interpolation_pack_folders() -> list[str]:
    """``ckpts/rife`` of ComfyUI-Frame-Interpolation in every custom_nodes folder where it is installed."""
    found = []
    for root in comfy.custom_nodes_directories():
        try:
            entries = os.listdir(root)
        except OSError:
            continue
        for entry in entries:
            folder = os.path.join(root, entry, "ckpts", "rife")
            if entry.lower() == FRAME_INTERPOLATION_PACK and os.path.isdir(folder):
                found.append(folder)
    return found


def register_folders() -> None:
    """``models/frame_interpolation`` (core's), ``models/rife`` and the Frame-Interpolation pack's downloads."""
    comfy.register_model_folder("frame_interpolation", [os.path.join(comfy.models_directory(), "frame_interpolation")])
    comfy.register_model_folder("rife", [os.path.join(comfy.models_directory(), "rife"),
                                         *frame_interpolation_pack_folders()])


def list_models() -> list[str]:
    register_folders()
    names: list[str] = []
    for folder in MODEL_FOLDERS:
        names += [n for n in comfy.model_files(folder) if n not in names]
    return [NONE, *names]


def model_file(name: str) -> str:
    """Absolute path of listed model ``name``; FileNotFoundError names the folders and files that work."""
    register_folders()
    if name and name != NO_MODELS:
        for folder in MODEL_FOLDERS:
            try:
                return comfy.model_path(folder, name)
            except FileNotFoundError:
                continue
    folders = [p for folder in MODEL_FOLDERS for p in comfy.model_folder_paths(folder)]
    what = f"RIFE model '{name}' was not found" if name and name != NO_MODELS else "no RIFE model was found"
    raise FileNotFoundError(f"{what}. Put one of {WORKING_FILES} into one of: {', '.join(folders)}; "
                            "then press R to refresh. Without a model, leave rife_model unconnected: the "
                            "Interpolate node then uses optical flow.")


class GemDirectRIFELoader:
    """Load a RIFE IFNet checkpoint (ifnet.VERSIONS) in any layout; the version is read from its tensors."""

    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("GEMDIRECT_RIFE", "STRING")
    RETURN_NAMES = ("rife_model", "description")
    OUTPUT_TOOLTIPS = ("The loaded RIFE network for Interpolate (gemDirect).",
                       "Which version and layout was detected, e.g. 'RIFE 4.25 (releases 4.25/4.26) ...'.")
    DESCRIPTION = ("Loads RIFE weights you already have (Practical-RIFE flownet.pkl, ComfyUI-Frame-Interpolation "
                   "rife*.pth, ComfyUI's rife_v4.25*/rife_v4.26* safetensors) and detects the version from the "
                   "weights.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (list_models(), {
                    "tooltip": "RIFE checkpoint from models/frame_interpolation, models/rife or "
                    "ComfyUI-Frame-Interpolation's ckpts/rife. The version is detected from the tensors, never "
                    "from the name. Loads: 4.6-4.26 with the lite and heavy variants (4.15.lite-4.17.lite, "
                    "4.22.lite, 4.25.lite, 4.25.heavy, 4.26.heavy); not 4.0-4.5 or 4.12.lite/4.13.lite.",
                }),
                "dtype": (["auto", "fp32", "fp16", "bf16"], {
                    "default": "auto",
                    "tooltip": "Precision of the convolutions (flow, warps and blending always run in fp32). auto: "
                    "fp16 on GPUs; on the CPU bf16 where it computes bf16 natively (AVX512-BF16/AMX; frames within "
                    "about 0.01 of fp32), else fp32. fp32: exact. fp16: half the memory, fast on NVIDIA GPUs. "
                    "bf16: like fp16 with more range (RTX 30xx and newer, recent CPUs).",
                }),
            },
        }

    def load(self, model_name: str, dtype: str):
        from .loader import load_rife

        if model_name == NONE:
            return (None, "no RIFE model: Interpolate and Story Render use optical flow")
        model = load_rife(model_file(model_name), dtype, device=comfy.torch_device())
        log.info("[gemDirect] %s", model.describe())
        return (model, model.describe())


class GemDirectInterpolate:
    """Raise frames to a new rate by a multiplier or to any target fps, with RIFE or optical flow."""

    CATEGORY = CATEGORY
    FUNCTION = "interpolate"
    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING")
    RETURN_NAMES = ("images", "fps", "report")
    OUTPUT_TOOLTIPS = (
        "The frames at the new rate: floor((n-1) x new/old) + 1 frames, first and last source frames kept.",
        "The new frame rate (feed it to the video encoder).",
        "What was done: method, frame counts, scene cuts, duplicates, time taken.",
    )
    DESCRIPTION = ("Frame interpolation to a multiplier or any target fps (16->24, 24->30, 16->60). Scene cuts "
                   "are never blended across. Without a RIFE model it uses OpenCV optical flow.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The clip's frames in order (IMAGE batch)."}),
                "source_fps": ("FLOAT", {
                    "default": 16.0, "min": 1.0, "max": 240.0, "step": 0.001,
                    "tooltip": "Frame rate of the input frames (WAN 2.2 renders at 16). 23.976/29.97/59.94 are "
                    "read as the exact NTSC rates.",
                }),
                "mode": (list(MODES), {
                    "default": "target_fps",
                    "tooltip": "target_fps: reach the target_fps exactly (any rate above the source). "
                    "multiplier: source fps x multiplier.",
                }),
                "multiplier": ("INT", {
                    "default": 2, "min": 1, "max": 16,
                    "tooltip": "Used when mode is multiplier: 2 gives 2n-1 frames at twice the rate.",
                }),
                "target_fps": ("FLOAT", {
                    "default": 24.0, "min": 1.0, "max": 240.0, "step": 0.001,
                    "tooltip": "Used when mode is target_fps: the output rate, e.g. 24, 30, 60 or 23.976.",
                }),
                "scale": (list(SCALES), {
                    "default": "1.0",
                    "tooltip": "Motion is estimated at this fraction of the frame size. 1.0 up to 1080p, 0.5 for "
                    "4K, 0.25 for 8K; 2.0 for small frames with fine motion (RIFE only).",
                }),
                "scene_cut_threshold": ("FLOAT", {
                    "default": 0.4, "min": 0.0, "max": 1.0, "step": 0.01,
                    "tooltip": "Neighbouring frames less similar than this (SSIM 0..1 after following the motion) "
                    "are a scene cut: the nearer frame is repeated, never a blend of two shots. 0 turns detection "
                    "off; raise it if cuts get blended, lower it if fast motion stutters.",
                }),
                "ensemble": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "RIFE 4.6-4.20: also run each step on the swapped pair and average (slower, "
                    "steadier). RIFE 4.21 and newer have no ensemble mode; it is then ignored and reported.",
                }),
                "batch_size": ("INT", {
                    "default": 4, "min": 1, "max": 64,
                    "tooltip": "Frames made per model call. Out of memory halves it and retries automatically.",
                }),
            },
            "optional": {
                "rife_model": ("GEMDIRECT_RIFE", {
                    "tooltip": "From RIFE Loader (gemDirect). Leave unconnected for the weightless optical-flow "
                    "method.",
                }),
                "run": ("RUN", {
                    "tooltip": "From Run (gemDirect): the stage's time, method and final fps go into the run's "
                    "telemetry.",
                }),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, mode: str = "target_fps", scale: str = "1.0", **_inputs: Any):
        if mode not in MODES:
            return f"mode '{mode}' is not one of {', '.join(MODES)}"
        if scale not in SCALES:
            return f"scale '{scale}' is not one of {', '.join(SCALES)}"
        return True

    def interpolate(self, images: Any, source_fps: float, mode: str, multiplier: int, target_fps: float,
                    scale: str, scene_cut_threshold: float, ensemble: bool, batch_size: int,
                    rife_model: Any = None, run: Any = None, unique_id: str | None = None):
        from . import engine, timing

        try:
            rate = timing.target_rate(source_fps, multiplier=multiplier if mode == "multiplier" else None,
                                      target_fps=target_fps if mode == "target_fps" else None)
        except ValueError as exc:
            raise ValueError(f"Interpolate: {exc}") from exc
        source = timing.parse_fps(source_fps)
        notes = []
        if rife_model is not None:
            if ensemble and not rife_model.spec.ensemble:
                notes.append(f"ensemble ignored: RIFE {rife_model.arch} has no ensemble mode")
            interpolator = engine.RIFEInterpolator(rife_model, float(scale), ensemble)
        else:
            interpolator = engine.FlowInterpolator(min(1.0, float(scale)))
        frames, report = engine.interpolate_images(images, source, rate, interpolator,
                                                   cut_ssim=scene_cut_threshold, batch_size=batch_size,
                                                   node_id=unique_id)
        report.notes += notes
        if run is not None:
            engine.record_telemetry(run.run_dir, report)
        log.info("[gemDirect] %s", report.describe().replace("\n", "; "))
        return (frames, float(rate), report.describe())


NODE_CLASS_MAPPINGS = {
    "GemDirectRIFELoader": GemDirectRIFELoader,
    "GemDirectInterpolate": GemDirectInterpolate,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GemDirectRIFELoader": "RIFE Loader (gemDirect)",
    "GemDirectInterpolate": "Interpolate (gemDirect)",
}
