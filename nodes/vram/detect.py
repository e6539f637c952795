"""What a model file holds, told from its tensor names and shapes: a registry of small detectors.

Each detector looks at ``{name: shape}`` (torch order, prefixes such as ``model.diffusion_model.``
already stripped) and returns an :class:`Architecture` descriptor or None. Callers read the
descriptor; nothing here or downstream branches on file names.

WAN facts (from ComfyUI's ``comfy/model_detection.py`` and ``comfy/ldm/wan/model.py``, and the Wan
team's configs): ``head.modulation`` is ``[1, 2, dim]``; ``head.head.weight`` is
``[out_dim * 4, dim]`` (patch 1x2x2); ``patch_embedding.weight`` is ``[dim, in_dim, 1, 2, 2]``;
heads = dim / 128. TI2V 5B: dim 3072, 30 blocks, ffn 14336, in/out 48 (the WAN 2.2 VAE's 48 latent
channels). 14B: dim 5120, 40 blocks, ffn 13824; I2V/FLF2V in_dim 36 (16 noise + 4 mask + 16 image),
T2V in_dim 16. WAN 2.1 1.3B: dim 1536, 30 blocks. WAN 2.1 I2V carries a CLIP image projection
(``img_emb.proj.*``); WAN 2.2's I2V does not. WAN 2.1 and 2.2 T2V 14B have the same shapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]

# Prefixes that wrap a model's own keys in checkpoints (full ComfyUI checkpoints, DataParallel saves).
KEY_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "first_stage_model.", "vae.", "module.")


@dataclass(frozen=True)
class Architecture:
    """What a file is. ``family``: ``wan-dit``, ``wan-vae``, ``rife``, ``upscaler``, ``lora`` or ``unknown``.

    ``variant`` is a stable id (``wan22-ti2v-5b``), ``label`` reads well in the UI, ``profile`` names
    the story model profile with the same latent layout (for estimates and preset hints), ``details``
    the numbers the detector read (dim, blocks, in_dim, ...).
    """

    family: str
    variant: str
    label: str
    profile: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "variant": self.variant, "label": self.label, "profile": self.profile,
                "details": dict(self.details)}


UNKNOWN = Architecture("unknown", "unknown", "unknown architecture")

# Latent layout of WAN's two VAEs: channels and (time, height, width) stride. Source: ComfyUI comfy/sd.py.
WAN_LATENTS = {
    "wan2.1-vae": {"latent_channels": 16, "stride": (4, 8, 8)},
    "wan2.2-vae": {"latent_channels": 48, "stride": (4, 16, 16)},
}


def strip_prefix(shapes: Shapes) -> dict[str, tuple[int, ...]]:
    """Drop the checkpoint prefix most keys share (``model.diffusion_model.`` ...)."""
    for prefix in KEY_PREFIXES:
        inside = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
        if inside and len(inside) * 2 >= len(shapes):
            return inside
    return dict(shapes)


def count_blocks(shapes: Shapes, prefix: str) -> int:
    """Number of distinct ``<prefix><n>.`` blocks."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({match.group(1) for key in shapes if (match := pattern.match(key))})


# --------------------------------------------------------------------------- detectors


def _wan_dit(shapes: Shapes) -> Architecture | None:
    modulation = shapes.get("head.modulation")
    if modulation is None:
        return None
    dim = modulation[-1]
    head = shapes.get("head.head.weight", (16 * 4,))  # missing: assume the common 16 latent channels
    patch = shapes.get("patch_embedding.weight", (dim, 16))
    ffn = shapes.get("blocks.0.ffn.0.weight", (0,))
    details: dict[str, Any] = {
        "dim": dim,
        "blocks": count_blocks(shapes, "blocks."),
        "heads": dim // 128,
        "ffn_dim": ffn[0],
        "in_dim": patch[1] if len(patch) > 1 else 0,
        "out_dim": head[0] // 4,
    }
    clip_image = "img_emb.proj.0.bias" in shapes
    if "vace_patch_embedding.weight" in shapes:
        kind = "vace"
        details["vace_blocks"] = count_blocks(shapes, "vace_blocks.")
    elif "control_adapter.conv.weight" in shapes:
        kind = "camera"
    elif "casual_audio_encoder.encoder.final_linear.weight" in shapes:
        kind = "s2v"
    elif "face_adapter.fuser_blocks.0.k_norm.weight" in shapes:
        kind = "animate"
    elif details["out_dim"] == 48:
        kind = "ti2v"
    elif clip_image or details["in_dim"] == 36:
        kind = "i2v"
    else:
        kind = "t2v"
    details["model_type"] = kind
    details["vae"] = "wan2.2-vae" if details["out_dim"] == 48 else "wan2.1-vae"
    details.update(WAN_LATENTS[details["vae"]])

    dim, blocks = details["dim"], details["blocks"]
    if dim == 3072 and blocks == 30:
        size, version = "5B", "2.2"
    elif dim == 5120 and blocks == 40:
        size = "14B"
        # 2.1 I2V has a CLIP image projection, 2.2 I2V does not; T2V 14B is the same in both.
        version = "2.1" if clip_image else ("2.2" if kind == "i2v" else "2.1/2.2")
    elif dim == 1536 and blocks == 30:
        size, version = "1.3B", "2.1"
    else:
        size, version = f"dim {dim}, {blocks} blocks", "?"
    variant_kind = {"ti2v": "TI2V", "i2v": "I2V", "t2v": "T2V"}.get(kind, kind.upper())
    label = f"WAN {version} {variant_kind} {size}" if version != "?" else f"WAN {variant_kind} ({size})"
    variant = f"wan{version.replace('.', '').replace('/', '-')}-{kind}-{size.lower()}" if version != "?" else \
        f"wan-{kind}-dim{dim}x{blocks}"
    profile = {"ti2v": "wan22-ti2v-5b", "i2v": "wan22-i2v-14b", "t2v": "wan22-t2v-14b"}.get(kind)
    return Architecture("wan-dit", variant, label, profile, details)


def _wan_vae(shapes: Shapes) -> Architecture | None:
    if "decoder.middle.0.residual.0.gamma" not in shapes:
        return None
    version = "2.2" if "decoder.upsamples.0.upsamples.0.residual.2.weight" in shapes else "2.1"
    vae = f"wan{version}-vae"
    return Architecture("wan-vae", vae, f"WAN {version} VAE", None, dict(WAN_LATENTS[vae]))


def _rife(shapes: Shapes) -> Architecture | None:
    core = "blocks.0.conv0.0.0.weight" in shapes  # core ComfyUI's spelling of the same tensors
    if "block0.conv0.0.0.weight" not in shapes and not core:
        return None
    blocks = count_blocks(shapes, "blocks." if core else "block")
    last = shapes.get("blocks.0.lastconv.0.weight" if core else "block0.lastconv.0.weight", (0, 0))
    head = next((shapes[k][1] for k in ("encode.cnn3.weight", "encode.6.weight", "encode.1.weight") if k in shapes), 0)
    return Architecture("rife", "rife-4.x", "RIFE 4.x (IFNet)", None,
                        {"blocks": blocks, "head": int(head), "carried": last[1] == 52})


def _upscaler(shapes: Shapes) -> Architecture | None:
    markers = ("conv_first.weight", "model.0.weight", "body.0.weight")
    if not any(marker in shapes for marker in markers):
        return None
    convs = [shape for shape in shapes.values() if len(shape) == 4]
    if not convs:
        return None
    widest = max(max(shape[0], shape[1]) for shape in convs)
    details = {"max_channels": widest}
    scale = upscale_factor(shapes)
    if scale is not None:
        details["scale"] = scale
    return Architecture("upscaler", "esrgan-family", "ESRGAN-family upscaler", None, details)


def upscale_factor(shapes: Shapes) -> int | None:
    """The upscale factor an ESRGAN-family file has, from its tensors (spandrel's rules), or None.

    Compact (SRVGG): the last body conv emits 3 x scale^2 channels for its pixel shuffle. RRDB, new
    spelling: x2 per ``conv_up*``, less the pixel-unshuffle of the 1x/2x variants (conv_first takes
    12 or 48 channels). RRDB, old spelling (``model.N``): x2 per conv between the trunk and the last two.
    """
    if "body.0.weight" in shapes and "conv_first.weight" not in shapes:
        body = sorted((int(k.split(".")[1]), v) for k, v in shapes.items()
                      if k.startswith("body.") and k.endswith(".weight") and len(v) == 4)
        if body:
            root = math.isqrt(max(body[-1][1][0] // 3, 1))
            return root if root * root * 3 == body[-1][1][0] else None
    if "conv_first.weight" in shapes:
        ups = sum(1 for k in shapes if re.match(r"^conv_up\d+\.weight$", k))
        unshuffle = {12: 2, 48: 4}.get(shapes["conv_first.weight"][1], 1)
        return max(1, 2 ** ups // unshuffle)
    if "model.0.weight" in shapes:
        convs = [int(k.split(".")[1]) for k, v in shapes.items()
                 if re.match(r"^model\.\d+\.weight$", k) and len(v) == 4]
        ups = len([i for i in convs if i >= 2]) - 2
        return 2 ** ups if ups >= 0 else None
    return None


def _lora(shapes: Shapes) -> Architecture | None:
    markers = ("lora_up.", "lora_down.", "lora_A.", "lora_B.", ".lora.up.", ".lora.down.")
    if not any(marker in key for key in shapes for marker in markers):
        return None
    return Architecture("lora", "lora", "LoRA", None, {})


DETECTORS: tuple[Callable[[Shapes], Architecture | None], ...] = (_wan_dit, _wan_vae, _rife, _upscaler, _lora)


def detect_architecture(shapes: Shapes) -> Architecture:
    """The first detector's answer for ``{tensor name: torch shape}``; :data:`UNKNOWN` if none knows it."""
    inner = strip_prefix(shapes)
    for detector in DETECTORS:
        found = detector(inner)
        if found is not None:
            return found
    return UNKNOWN
