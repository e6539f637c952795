"""How much device memory each heavy stage needs, in bytes. Formulas and sources: docs/vram.md.

Every estimate has two totals:

- ``full``: everything on the device at once, the fastest way (all weights resident, cond and
  uncond sampled as one batch, the VAE decoding whole frames, every RIFE pair of a pass at once).
- ``minimum``: the leanest mode ComfyUI or the pack's engines fall back to by themselves (weights
  streamed from RAM, one batch at a time, tiled VAE decode, one RIFE pair, small ESRGAN tiles).
  Below it the stage runs out of memory.

WAN sampling and VAE decoding use ComfyUI's own formulas (``comfy/model_base.py`` memory_required,
``comfy/supported_models.py`` WAN memory_usage_factor = dim / 2222, ``comfy/sd.py``
memory_used_decode, ``comfy/model_management.py`` reserves), so the guard predicts what ComfyUI
itself will ask for. RIFE is the pack's IFNet, measured (tests/test_vram_estimate.py); ESRGAN uses
the upscale room's per-pixel rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .detect import WAN_LATENTS

MIB = 1 << 20
GIB = 1 << 30

# ComfyUI comfy/model_management.py: EXTRA_RESERVED_VRAM (400 MiB on Linux/macOS; 600 MiB on Windows,
# 700 MiB there on cards over 15 GiB; --reserve-vram overrides it) and minimum_inference_memory() =
# 0.8 GiB + that reserve. Inside ComfyUI the guard passes ComfyUI's own figure (comfy.reserved_vram()).
COMFY_RESERVED = 400 * MIB
INFERENCE_BASE = int(0.8 * GIB)
# load_models_gpu keeps at least this much of a partly loaded model on the device.
LOWVRAM_MIN_WEIGHTS = 128 * MIB

STAGES = ("sample", "vae-decode", "interpolate", "upscale", "custom")

# Parameter counts of the WAN diffusion models, counted from ComfyUI's WanModel (comfy/ldm/wan/model.py)
# built on the meta device with the Wan team's configs; checked against tests' key layouts.
WAN_PARAMETERS = {
    "wan22-ti2v-5b": 4_999_787_712,  # dim 3072, 30 blocks, ffn 14336, in/out 48
    "wan22-i2v-14b": 14_288_901_184,  # dim 5120, 40 blocks, ffn 13824, in 36 (one expert; A14B has two)
    "wan22-t2v-14b": 14_288_491_584,  # in 16
}
WAN_DIMS = {"wan22-ti2v-5b": 3072, "wan22-i2v-14b": 5120, "wan22-t2v-14b": 5120}
# The largest tensor is time_projection.1.weight, [6 * dim, dim].
WAN_LARGEST_TENSOR = {profile: 6 * dim * dim for profile, dim in WAN_DIMS.items()}
WAN_VAE_OF_PROFILE = {"wan22-ti2v-5b": "wan2.2-vae", "wan22-i2v-14b": "wan2.1-vae", "wan22-t2v-14b": "wan2.1-vae"}
# WAN VAE parameters (ComfyUI's comfy/ldm/wan/vae.py, vae2_2.py on the meta device); files ship in bf16.
WAN_VAE_PARAMETERS = {"wan2.1-vae": 126_892_531, "wan2.2-vae": 704_688_668}
# ComfyUI comfy/sd.py memory_used_decode: bytes per latent pixel per dtype byte (frames do not count:
# the WAN VAEs decode causally, a few frames at a time), and the tile its OOM fallback decodes with.
WAN_VAE_DECODE_FACTOR = {"wan2.1-vae": 7000 * 8 * 8, "wan2.2-vae": 8000 * 16 * 16}
VAE_TILE_PX = 256  # decode_tiled_3d: tile = 256 // spatial compression latent px

# The other providers (docs/providers.md), counted the same way from ComfyUI's classes with the released
# configs: SVD-XT's UNet (model_channels 320, mult 1-2-4-4, temporal layers) and LTX-Video 2B's DiT (28 blocks
# of 2048). ComfyUI's memory_usage_factor: SVD keeps the base 2.0, LTXV 5.5 (comfy/supported_models.py).
# Latents: SVD samples its frames as a batch of SD latents (4 channels, /8); LTX-Video's VAE packs
# 8 frames x 32 x 32 px into one of 128 channels.
PROVIDER_PARAMETERS = {"svd-xt": 1_524_623_082, "ltxv-2b": 1_923_385_472}
PROVIDER_LARGEST_TENSOR = {"svd-xt": 1280 * 2560 * 3 * 3, "ltxv-2b": 12288 * 2048}
MEMORY_USAGE_FACTOR = {"svd-xt": 2.0, "ltxv-2b": 5.5}
PROVIDER_LATENTS = {"svd-xt": {"latent_channels": 4, "stride": (1, 8, 8)},
                    "ltxv-2b": {"latent_channels": 128, "stride": (8, 32, 32)}}
# Their VAEs (SD VAE + temporal decoder 97.7 M; LTX-Video 0.9 VAE 419 M) and comfy/sd.py memory_used_decode
# (SD VAE: 2178 x 64 B per latent px per frame; LTX-Video: 900 x 512 B per latent voxel, frames count).
PROVIDER_VAE_OF_PROFILE = {"svd-xt": "svd-vae", "ltxv-2b": "ltxv-vae"}
PROVIDER_VAE_PARAMETERS = {"svd-vae": 97_742_775, "ltxv-vae": 419_194_289}
PROVIDER_VAE_DECODE_FACTOR = {"svd-vae": 2178 * 64, "ltxv-vae": 900 * 8 * 8 * 8}
# SVD also loads its CLIP vision tower (OpenCLIP ViT-H/14, 632 M parameters) for the start image.
SVD_CLIP_VISION_PARAMETERS = 632_076_800
MODEL_PARAMETERS = {**WAN_PARAMETERS, **PROVIDER_PARAMETERS}

# Bits per weight of quant types = block bytes * 8 / block weights (gguf.GGML_QUANT_SIZES), and of
# plain dtypes. A *_K_M / *_K_S file is mostly its K type; a few tensors stay larger (see docs).
QUANT_BITS = {
    "F32": 32.0, "F16": 16.0, "BF16": 16.0, "F8_E4M3": 8.0, "F8_E5M2": 8.0, "FP8": 8.0,
    "Q8_0": 8.5, "Q6_K": 6.5625, "Q5_K": 5.5, "Q5_K_M": 5.5, "Q5_K_S": 5.5, "Q5_0": 5.5, "Q5_1": 6.0,
    "Q4_K": 4.5, "Q4_K_M": 4.5, "Q4_K_S": 4.5, "Q4_0": 4.5, "Q4_1": 5.0, "Q3_K": 3.4375, "Q3_K_M": 3.4375,
    "Q3_K_S": 3.4375, "Q2_K": 2.625,
}
# Quants suggested when weights do not fit, best quality first.
SUGGESTED_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M")

# RIFE (the pack's IFNet, fp32): peak live bytes per frame pair per padded px = RIFE_PX_BASE +
# RIFE_PX_HEAD per feature channel a frame + RIFE_PX_CARRIED when blocks carry features (4.21+) at
# full resolution, + RIFE_PX_BLOCKS * scale^2 for the flow blocks. Measured at scale 1 / 0.5: 252/188
# (4.6), 392/336 (4.7), 520/464 (4.17), 568/544 (4.21), 428/424 (4.25), 812/800 (4.26.heavy); this
# bound is at or above each (tests check every architecture).
RIFE_PX_BASE = 200
RIFE_PX_HEAD = 36
RIFE_PX_CARRIED = 90
RIFE_PX_BLOCKS = 176
RIFE_HEAD = 16  # feature channels when the release is unknown: the most any has (4.26.heavy)
RIFE_BLOCKS = 5  # flow blocks when the release is unknown: the most any has (4.25+); 4.6-4.18 have 4
UPSCALE_MIN_TILE = 64  # px: the upscale engine shrinks tiles on out-of-memory; below this it crawls


@dataclass(frozen=True)
class Workload:
    """What a stage works on. ``width``/``height`` in px of the frames it makes (or reads), ``frames``
    the clip length (4n+1 for WAN). ``batch``: videos sampled at once (sample), frame pairs per pass
    (interpolate), frames per pass (upscale). ``cfg``: sampling with CFG (cond and uncond)."""

    width: int
    height: int
    frames: int
    batch: int = 1
    cfg: bool = True

    def __post_init__(self) -> None:
        for name in ("width", "height", "frames", "batch"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r} must be a whole number of at least 1")


@dataclass(frozen=True)
class StageEstimate:
    """Bytes a stage needs. ``weights`` + ``working`` = ``full``; ``minimum_weights`` +
    ``minimum_working`` = ``minimum``. ``basis`` shows the formula with its numbers."""

    stage: str
    weights: int
    working: int
    minimum_weights: int
    minimum_working: int
    basis: str
    partial_note: str = ""  # what happens between minimum and full ("weights offloaded to RAM")

    @property
    def full(self) -> int:
        return self.weights + self.working

    @property
    def minimum(self) -> int:
        return self.minimum_weights + self.minimum_working

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "full_bytes": self.full, "minimum_bytes": self.minimum,
                "weights_bytes": self.weights, "working_bytes": self.working,
                "minimum_weights_bytes": self.minimum_weights, "minimum_working_bytes": self.minimum_working,
                "basis": self.basis}


def gb(value: float) -> str:
    """Bytes as ``9.3 GB`` (GiB, the unit cards are sold in); small values keep one more digit."""
    size = value / GIB
    return f"{size:.2f} GB" if abs(size) < 1 else f"{size:.1f} GB"


def quant_bits(label: str) -> float:
    """Bits per weight of a quant or dtype label (``Q4_K_M``, ``BF16``); ValueError lists the known ones."""
    key = label.upper().replace("-", "_")
    if key not in QUANT_BITS:
        raise ValueError(f"unknown quant '{label}'; known: {', '.join(QUANT_BITS)}")
    return QUANT_BITS[key]


def nominal_weights(profile: str, quant: str = "BF16") -> int:
    """Bytes of a profile's diffusion model (WAN, SVD, LTX-Video) in ``quant`` (parameters x bits / 8)."""
    if profile not in MODEL_PARAMETERS:
        raise ValueError(f"no VRAM estimate for model profile '{profile}' (known: {', '.join(MODEL_PARAMETERS)}); "
                         "FastVideo runs in its own runtime, outside ComfyUI's memory management")
    return int(MODEL_PARAMETERS[profile] * quant_bits(quant) / 8)


def _inference_working(activations: float, reserved: int) -> int:
    """ComfyUI's working reserve for a model load: max(minimum inference memory, activations + reserve)."""
    return int(max(INFERENCE_BASE + reserved, activations + reserved))


def wan_latent_shape(profile_or_vae: str, workload: Workload) -> tuple[int, int, int, int]:
    """(channels, frames, height, width) of the WAN latent for ``workload`` (ComfyUI's Wan latents)."""
    if profile_or_vae in PROVIDER_LATENTS:
        layout = PROVIDER_LATENTS[profile_or_vae]
    else:
        layout = WAN_LATENTS[WAN_VAE_OF_PROFILE.get(profile_or_vae, profile_or_vae)]
    t_stride, h_stride, w_stride = layout["stride"]
    return (layout["latent_channels"], (workload.frames + t_stride - 1) // t_stride,
            workload.height // h_stride, workload.width // w_stride)


def sample_activations(dim: int, latent_area: int, *, efficient_attention: bool = True, dtype_bytes: int = 2,
                       factor: float | None = None) -> float:
    """ComfyUI's memory_required for a WAN model, in bytes, for ``latent_area`` = batch x T x H x W.

    With xformers/flash attention: area x dtype bytes x 0.01 x (dim / 2222) MiB; otherwise
    area x 0.15 x (dim / 2222) MiB. ``factor`` replaces dim / 2222 (the other providers' fixed factors).
    """
    factor = dim / 2222 if factor is None else factor
    per_area = dtype_bytes * 0.01 if efficient_attention else 0.15
    return latent_area * per_area * factor * MIB


def sample_estimate(profile: str, workload: Workload, *, weights: int | None = None, dim: int | None = None,
                    largest_tensor_params: int | None = None, efficient_attention: bool = True,
                    dtype_bytes: int = 2, reserved: int = COMFY_RESERVED) -> StageEstimate:
    """WAN sampling (KSampler). ``weights``: bytes of the diffusion model(s) resident at once (from the
    file headers; default the profile's bf16 size). ``dim``/``largest_tensor_params`` from the file's
    architecture (default the profile's). ``reserved``: ComfyUI's extra reserved VRAM in bytes."""
    factor = MEMORY_USAGE_FACTOR.get(profile)
    dim = dim or WAN_DIMS.get(profile, 2222)
    weights = nominal_weights(profile) if weights is None else int(weights)
    largest_params = largest_tensor_params or WAN_LARGEST_TENSOR.get(profile) or PROVIDER_LARGEST_TENSOR[profile]
    largest = largest_params * dtype_bytes  # dequantised to compute dtype
    _channels, frames, height, width = wan_latent_shape(profile, workload)
    area = frames * height * width
    batched = workload.batch * (2 if workload.cfg else 1)
    full_act = sample_activations(dim, area * batched, efficient_attention=efficient_attention, dtype_bytes=dtype_bytes,
                                  factor=factor)
    lean_act = sample_activations(dim, area * workload.batch, efficient_attention=efficient_attention,
                                  dtype_bytes=dtype_bytes, factor=factor)
    attention = f"{dtype_bytes} B x 0.01" if efficient_attention else "0.15"
    factor_text = f"dim {dim}/2222" if factor is None else f"{profile} factor {factor:g}"
    basis = (f"latent {frames}x{height}x{width} x batch {batched} x {attention} x {factor_text} MiB = "
             f"{gb(full_act)} activations (one batch: {gb(lean_act)}) + ComfyUI reserve + weights {gb(weights)}")
    return StageEstimate("sample", weights, _inference_working(full_act, reserved),
                         max(LOWVRAM_MIN_WEIGHTS, largest), _inference_working(lean_act, reserved), basis,
                         "ComfyUI keeps part of the weights in RAM and streams them (slower), "
                         "and samples cond and uncond one after the other")


def vae_decode_estimate(vae: str, workload: Workload, *, weights: int | None = None, dtype_bytes: int = 2,
                        reserved: int = COMFY_RESERVED) -> StageEstimate:
    """VAE decode (VAEDecode). ``vae``: ``wan2.1-vae``/``wan2.2-vae``/``svd-vae``/``ltxv-vae`` or a profile id."""
    vae = WAN_VAE_OF_PROFILE.get(vae, PROVIDER_VAE_OF_PROFILE.get(vae, vae))
    if vae in PROVIDER_VAE_DECODE_FACTOR:
        return _provider_decode_estimate(vae, workload, weights, dtype_bytes, reserved)
    if vae not in WAN_VAE_DECODE_FACTOR:
        raise ValueError(f"unknown VAE '{vae}'; known: {', '.join(WAN_VAE_DECODE_FACTOR)}")
    weights = WAN_VAE_PARAMETERS[vae] * 2 if weights is None else int(weights)
    _channels, _frames, height, width = wan_latent_shape(vae, workload)
    compression = WAN_LATENTS[vae]["stride"][1]
    tile = VAE_TILE_PX // compression
    whole = WAN_VAE_DECODE_FACTOR[vae] * height * width * dtype_bytes * workload.batch
    tiled = WAN_VAE_DECODE_FACTOR[vae] * min(tile, height) * min(tile, width) * dtype_bytes
    basis = (f"{WAN_VAE_DECODE_FACTOR[vae]} B x latent {height}x{width} x {dtype_bytes} B = {gb(whole)} "
             f"(a {VAE_TILE_PX} px tile: {gb(tiled)}) + ComfyUI reserve + VAE {gb(weights)}")
    return StageEstimate("vae-decode", weights, _inference_working(whole, reserved), weights,
                         _inference_working(tiled, reserved), basis,
                         "ComfyUI decodes in tiles after a first out-of-memory (slower)")


def _provider_decode_estimate(vae: str, workload: Workload, weights: int | None, dtype_bytes: int,
                              reserved: int) -> StageEstimate:
    """SVD's VAE decodes frame by frame (a batch of SD latents); LTX-Video's whole latent video at once
    (its formula counts latent frames), both falling back to tiles like the WAN VAEs."""
    profile = next(p for p, v in PROVIDER_VAE_OF_PROFILE.items() if v == vae)
    weights = PROVIDER_VAE_PARAMETERS[vae] * 2 if weights is None else int(weights)
    _channels, frames, height, width = wan_latent_shape(profile, workload)
    per_frames = 1 if vae == "svd-vae" else frames
    compression = PROVIDER_LATENTS[profile]["stride"][1]
    tile = VAE_TILE_PX // compression
    factor = PROVIDER_VAE_DECODE_FACTOR[vae]
    whole = factor * per_frames * height * width * dtype_bytes * workload.batch
    tiled = factor * per_frames * min(tile, height) * min(tile, width) * dtype_bytes
    basis = (f"{factor} B x latent {per_frames}x{height}x{width} x {dtype_bytes} B = {gb(whole)} "
             f"(a {VAE_TILE_PX} px tile: {gb(tiled)}) + ComfyUI reserve + VAE {gb(weights)}")
    return StageEstimate("vae-decode", weights, _inference_working(whole, reserved), weights,
                         _inference_working(tiled, reserved), basis,
                         "ComfyUI decodes in tiles after a first out-of-memory (slower)")


def rife_estimate(workload: Workload, *, weights: int, scale: float = 1.0, blocks: int = RIFE_BLOCKS,
                  head: int = RIFE_HEAD, carried: bool = True, pad_multiple: int | None = None) -> StageEstimate:
    """RIFE interpolation of ``workload.batch`` frame pairs per pass at ``scale`` (0.5 for 4K). Frames are
    padded to ``pad_multiple`` (default 4 x 2^(blocks - 1) / scale px, IFNet's coarsest grid), as the
    engine does. ``head``: feature channels per frame; ``carried``: blocks carry features (4.21+)."""
    multiple = pad_multiple or max(1, math.ceil(4 * 2 ** (blocks - 1) / scale))
    padded = math.ceil(workload.height / multiple) * multiple * math.ceil(workload.width / multiple) * multiple
    full = RIFE_PX_BASE + RIFE_PX_HEAD * head + (RIFE_PX_CARRIED if carried else 0)
    per_pair = int((full + RIFE_PX_BLOCKS * scale * scale) * padded)
    basis = (f"({full} + {RIFE_PX_BLOCKS} x scale {scale}^2) B x {padded} padded px = {gb(per_pair)} a pair "
             f"x {workload.batch} pairs + RIFE {gb(weights)}")
    return StageEstimate("interpolate", int(weights), per_pair * workload.batch, int(weights), per_pair, basis,
                         "the interpolation engine halves the pairs per pass on out-of-memory")


def upscale_estimate(workload: Workload, *, weights: int, max_channels: int = 64, scale: int = 4,
                     dtype_bytes: int = 2, tile: int = 0) -> StageEstimate:
    """ESRGAN-family upscaling of ``workload.batch`` frames per pass, as the upscale engine runs it: in
    tiles of at most ``tile`` px a side (its largest auto tile; a frame that fits is one tile), by the
    upscale room's rule (element bytes x widest layer x (4 + 2 x scale^2) per input px). ``scale``: the
    model's own factor (the guard reads it from the file)."""
    from types import SimpleNamespace

    from ..upscale.engine import MAX_AUTO_TILE
    from ..upscale.model import activation_bytes_per_pixel

    side = tile or MAX_AUTO_TILE
    per_px = activation_bytes_per_pixel(SimpleNamespace(max_channels=max_channels, scale=scale), dtype_bytes)
    tile_w, tile_h = min(side, workload.width), min(side, workload.height)
    whole = per_px * tile_w * tile_h * workload.batch
    smallest = per_px * UPSCALE_MIN_TILE * UPSCALE_MIN_TILE
    basis = (f"{dtype_bytes} B x {max_channels} channels x (4 + 2 x {scale}^2) = {per_px} B/px x "
             f"{tile_w}x{tile_h} (tiles of at most {side} px) x {workload.batch} frames = {gb(whole)} "
             f"+ model {gb(weights)}")
    return StageEstimate("upscale", int(weights), whole, int(weights), smallest, basis,
                         "the upscale engine works in tiles sized from free memory (slower)")


def custom_estimate(estimate_bytes: int) -> StageEstimate:
    """A stage whose need the user states (``estimate_gb``)."""
    return StageEstimate("custom", 0, int(estimate_bytes), 0, int(estimate_bytes), f"stated {gb(estimate_bytes)}")
