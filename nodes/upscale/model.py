"""The upscale model as the engine sees it: core's UPSCALE_MODEL, a spandrel ImageModelDescriptor.

Checks that a model can upscale RGB frames, picks the precision (fp16/bf16 where the descriptor
supports it and the device runs it well), estimates activation memory per pixel, and lends the model
on the compute device for one job without changing the caller's object (ComfyUI caches it).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class UpscaleModelError(ValueError):
    """The model given to the upscaler cannot upscale RGB frames (message says why and what to do)."""


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know about a model: scale (x), size rules, tiling advice, name."""

    name: str
    scale: int
    multiple_of: int
    minimum: int
    square: bool
    tiling: str  # "supported", "discouraged" or "internal" (spandrel's ModelTiling)
    supports_half: bool
    supports_bfloat16: bool
    max_channels: int  # widest conv layer: drives activation memory


def _architecture_name(model: Any) -> str:
    arch = getattr(model, "architecture", None)
    return str(getattr(arch, "name", None) or type(getattr(model, "model", model)).__name__)


def model_label(model: Any) -> str:
    """A short description for logs and telemetry: ``ESRGAN 4x``."""
    return f"{_architecture_name(model)} {getattr(model, 'scale', '?')}x"


def inspect_model(model: Any) -> ModelInfo:
    """Check ``model`` (a spandrel ImageModelDescriptor) and describe it.

    Raises UpscaleModelError for anything that is not a single-image RGB -> RGB model: inpainting
    (masked) models, grayscale or 4-channel models, plain nn.Modules.
    """
    kind = type(model).__name__
    if kind == "MaskedImageModelDescriptor":
        raise UpscaleModelError(
            f"upscale_model is an inpainting model ({_architecture_name(model)}, needs a mask), not an "
            "image upscaler; load an ESRGAN-family model (e.g. RealESRGAN_x4plus) with Load Upscale Model")
    needed = ("scale", "input_channels", "output_channels", "size_requirements", "model")
    if not all(hasattr(model, attr) for attr in needed) or not callable(model):
        raise UpscaleModelError(
            f"upscale_model is a {kind}, not an image model from spandrel; connect the output of core's "
            "Load Upscale Model (UpscaleModelLoader)")
    name = _architecture_name(model)
    if model.input_channels != 3 or model.output_channels != 3:
        raise UpscaleModelError(
            f"upscale_model ({name}) takes {model.input_channels} and gives {model.output_channels} channels; "
            "this node upscales RGB frames and needs a 3-in/3-out model (RGB ESRGAN, Compact, SPAN, ...); "
            "pick an RGB model, or leave upscale_model empty to use lanczos")
    if int(model.scale) < 1:
        raise UpscaleModelError(f"upscale_model ({name}) reports scale {model.scale}; it must be 1 or more")
    req = model.size_requirements
    tiling = getattr(getattr(model, "tiling", None), "name", "SUPPORTED").lower()
    return ModelInfo(
        name=name,
        scale=int(model.scale),
        multiple_of=int(getattr(req, "multiple_of", 1) or 1),
        minimum=int(getattr(req, "minimum", 0) or 0),
        square=bool(getattr(req, "square", False)),
        tiling=tiling,
        supports_half=bool(getattr(model, "supports_half", False)),
        supports_bfloat16=bool(getattr(model, "supports_bfloat16", False)),
        max_channels=_max_channels(model.model),
    )


def _max_channels(module: Any) -> int:
    widest = 0
    for layer in module.modules():
        for attr in ("in_channels", "out_channels", "in_features", "out_features"):
            widest = max(widest, int(getattr(layer, attr, 0) or 0))
    return widest or 64


def activation_bytes_per_pixel(info: ModelInfo, element_size: int) -> int:
    """Rough peak activation memory per *input* pixel per frame, in bytes.

    A few feature maps of the widest layer at input resolution plus two at output resolution
    (scale^2 pixels each): 192 channels at 4x and fp32 gives about 14 KB per input pixel, in line
    with core's fixed estimate (384 x 3 x scale x element size).
    """
    return element_size * info.max_channels * (4 + 2 * info.scale * info.scale)


def resolve_precision(precision: str, info: ModelInfo, device: Any) -> Any:
    """torch dtype for ``precision`` (auto|fp32|fp16|bf16) on ``device``.

    auto: fp16 on CUDA/MPS/XPU when the model supports half, else bf16 on CUDA when supported, else
    fp32. On the CPU: bf16 when the model supports it and the CPU computes bf16 natively (AVX512-BF16
    or AMX; 1.5-2.3x faster than fp32 there, see docs/upscale.md), else fp32 (fp16 convolutions on
    CPUs are slower than fp32). Asking for a precision the model does not support raises
    UpscaleModelError.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    kind = getattr(device, "type", str(device))
    if precision == "auto":
        if kind == "cpu":
            return torch.bfloat16 if info.supports_bfloat16 and cpu_has_bf16() else torch.float32
        if info.supports_half:
            return torch.float16
        if info.supports_bfloat16 and kind == "cuda":
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and not info.supports_half:
        raise UpscaleModelError(f"{info.name} does not support fp16 (its output breaks in half); use fp32 or auto")
    if precision == "bf16" and not info.supports_bfloat16:
        raise UpscaleModelError(f"{info.name} does not support bf16; use fp32 or auto")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def cpu_has_bf16() -> bool:
    """True when this CPU runs bf16 convolutions natively (oneDNN says so)."""
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def model_on(model: Any, device: Any, dtype: Any) -> Iterator[Any]:
    """The descriptor on ``device`` in ``dtype`` for the duration of a job.

    Same dtype: the caller's descriptor is moved to the device and moved back afterwards (as core
    does). Another dtype: a converted copy is used, because converting the cached model to fp16 and
    back would round its weights for every later user.
    """
    original_device = model.device
    if model.dtype == dtype:
        model.to(device)
        try:
            yield model
        finally:
            model.to(original_device)
        return
    converted = copy.deepcopy(model).to(device=device, dtype=dtype)
    try:
        yield converted
    finally:
        del converted
