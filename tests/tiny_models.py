"""Tiny random-weight models in the real key layouts of the WAN family, for runs in a real ComfyUI.

ComfyUI infers a WAN DiT's shape from its weights (``head.modulation``, ``patch_embedding``,
``blocks.N.``), so a 2-layer model of width 128 saved in the real key layout loads through core's
``UNETLoader`` (or ComfyUI-GGUF's ``UnetLoaderGGUF``) and samples in seconds on the CPU. The VAEs are
fixed by ComfyUI (comfy/sd.py builds them from a constant config), so they are full size with random
weights. Layouts are written out here from the architectures' structure; ComfyUI is never imported
(CI has no ComfyUI). See ../shared/notes/tiny-wan.md for the measured facts.

Every file is built once into a cache folder (seeded; a file already there is reused) and then
linked under whatever file name a workflow asks for (:func:`install`).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tiny_providers
import torch
from safetensors.torch import save_file

LAYOUT_VERSION = 2  # bump when a layout changes: cached files carry it in their names
TEXT_DIM = 4096  # umt5-xxl's width: ComfyUI does not read it from the file
FREQ_DIM = 256
PATCH = (1, 2, 2)

Layout = dict[str, tuple[int, ...]]


# --------------------------------------------------------------------------- WAN DiT


@dataclass(frozen=True)
class DitShape:
    """The numbers ComfyUI's model detection reads from a WAN DiT's weights."""

    in_dim: int  # 16 latent (t2v), 36 = 16 latent + 4 mask + 16 image (i2v/FLF2V), 48 (5B TI2V)
    out_dim: int  # latent channels: 16 (WAN 2.1 VAE) or 48 (WAN 2.2 VAE)
    dim: int = 128  # heads = dim // 128
    ffn_dim: int = 256
    layers: int = 2
    image_embedding: bool = False  # WAN 2.1 I2V/FLF2V: CLIP-vision projection (img_emb) and k_img/v_img
    flf_tokens: int = 0  # WAN 2.1 FLF2V: img_emb.emb_pos for first + last frame tokens (514)
    vace_layers: int = 0
    vace_in_dim: int = 96  # 16 + 16 latent (inactive, reactive) + the mask folded into 64 channels


DITS: dict[str, DitShape] = {
    # WAN 2.2 I2V A14B (high- and low-noise experts): 36 channels in, no CLIP-vision embedding.
    "wan22_i2v": DitShape(in_dim=36, out_dim=16),
    # WAN 2.1 FLF2V 14B: CLIP-vision embedding with first/last frame position tokens.
    "wan21_flf2v": DitShape(in_dim=36, out_dim=16, image_embedding=True, flf_tokens=514),
    "wan21_i2v": DitShape(in_dim=36, out_dim=16, image_embedding=True),
    "wan_t2v": DitShape(in_dim=16, out_dim=16),
    # WAN 2.2 TI2V 5B: 48-channel latents in and out (the WAN 2.2 VAE).
    "wan22_ti2v_5b": DitShape(in_dim=48, out_dim=48),
    "wan21_vace": DitShape(in_dim=16, out_dim=16, vace_layers=1),
}


def _attention(prefix: str, dim: int, image: bool = False) -> Layout:
    layout: Layout = {}
    for name in ("q", "k", "v", "o") + (("k_img", "v_img") if image else ()):
        layout[f"{prefix}.{name}.weight"] = (dim, dim)
        layout[f"{prefix}.{name}.bias"] = (dim,)
    for name in ("norm_q", "norm_k") + (("norm_k_img",) if image else ()):
        layout[f"{prefix}.{name}.weight"] = (dim,)
    return layout


def _block(prefix: str, shape: DitShape) -> Layout:
    dim = shape.dim
    layout: Layout = {f"{prefix}.modulation": (1, 6, dim)}
    layout |= _attention(f"{prefix}.self_attn", dim)
    layout |= {f"{prefix}.norm3.weight": (dim,), f"{prefix}.norm3.bias": (dim,)}  # cross_attn_norm
    layout |= _attention(f"{prefix}.cross_attn", dim, image=shape.image_embedding)
    layout |= {f"{prefix}.ffn.0.weight": (shape.ffn_dim, dim), f"{prefix}.ffn.0.bias": (shape.ffn_dim,),
               f"{prefix}.ffn.2.weight": (dim, shape.ffn_dim), f"{prefix}.ffn.2.bias": (dim,)}
    return layout


def wan_dit_layout(shape: DitShape) -> Layout:
    """Key -> shape of a WAN 2.1/2.2 DiT state dict (the original, unprefixed key names)."""
    dim = shape.dim
    layout: Layout = {
        "patch_embedding.weight": (dim, shape.in_dim, *PATCH),
        "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, TEXT_DIM), "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim), "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, FREQ_DIM), "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim), "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (6 * dim, dim), "time_projection.1.bias": (6 * dim,),
    }
    for index in range(shape.layers):
        layout |= _block(f"blocks.{index}", shape)
    layout |= {"head.modulation": (1, 2, dim),
               "head.head.weight": (shape.out_dim * math.prod(PATCH), dim),
               "head.head.bias": (shape.out_dim * math.prod(PATCH),)}
    if shape.image_embedding:  # CLIP-vision (ViT-H, 1280 wide) projection
        layout |= {"img_emb.proj.0.weight": (1280,), "img_emb.proj.0.bias": (1280,),
                   "img_emb.proj.1.weight": (1280, 1280), "img_emb.proj.1.bias": (1280,),
                   "img_emb.proj.3.weight": (dim, 1280), "img_emb.proj.3.bias": (dim,),
                   "img_emb.proj.4.weight": (dim,), "img_emb.proj.4.bias": (dim,)}
        if shape.flf_tokens:
            layout["img_emb.emb_pos"] = (1, shape.flf_tokens, 1280)
    if shape.vace_layers:
        layout |= {"vace_patch_embedding.weight": (dim, shape.vace_in_dim, *PATCH),
                   "vace_patch_embedding.bias": (dim,)}
        for index in range(shape.vace_layers):
            prefix = f"vace_blocks.{index}"
            layout |= _block(prefix, DitShape(in_dim=shape.in_dim, out_dim=shape.out_dim, dim=dim,
                                              ffn_dim=shape.ffn_dim))
            if index == 0:
                layout |= {f"{prefix}.before_proj.weight": (dim, dim), f"{prefix}.before_proj.bias": (dim,)}
            layout |= {f"{prefix}.after_proj.weight": (dim, dim), f"{prefix}.after_proj.bias": (dim,)}
    return layout


# --------------------------------------------------------------------------- WAN VAEs


def _rms(prefix: str, channels: int, images: bool = False) -> Layout:
    return {f"{prefix}.gamma": (channels, 1, 1) if images else (channels, 1, 1, 1)}


def _conv3d(prefix: str, out_ch: int, in_ch: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> Layout:
    return {f"{prefix}.weight": (out_ch, in_ch, *kernel), f"{prefix}.bias": (out_ch,)}


def _conv2d(prefix: str, out_ch: int, in_ch: int, kernel: int = 3) -> Layout:
    return {f"{prefix}.weight": (out_ch, in_ch, kernel, kernel), f"{prefix}.bias": (out_ch,)}


def _residual(prefix: str, in_dim: int, out_dim: int) -> Layout:
    layout = _rms(f"{prefix}.residual.0", in_dim) | _conv3d(f"{prefix}.residual.2", out_dim, in_dim)
    layout |= _rms(f"{prefix}.residual.3", out_dim) | _conv3d(f"{prefix}.residual.6", out_dim, out_dim)
    if in_dim != out_dim:
        layout |= _conv3d(f"{prefix}.shortcut", out_dim, in_dim, (1, 1, 1))
    return layout


def _attention_block(prefix: str, dim: int) -> Layout:
    return _rms(f"{prefix}.norm", dim, images=True) | _conv2d(f"{prefix}.to_qkv", 3 * dim, dim, 1) \
        | _conv2d(f"{prefix}.proj", dim, dim, 1)


def _resample(prefix: str, dim: int, mode: str, halve: bool) -> Layout:
    """Up/downsampling between stages; WAN 2.1's upsamplers halve the channels, WAN 2.2's do not."""
    if mode.startswith("up"):
        layout = _conv2d(f"{prefix}.resample.1", dim // 2 if halve else dim, dim)
        if mode == "upsample3d":
            layout |= _conv3d(f"{prefix}.time_conv", 2 * dim, dim, (3, 1, 1))
        return layout
    layout = _conv2d(f"{prefix}.resample.1", dim, dim)
    if mode == "downsample3d":
        layout |= _conv3d(f"{prefix}.time_conv", dim, dim, (3, 1, 1))
    return layout


def _middle(prefix: str, dim: int) -> Layout:
    return (_residual(f"{prefix}.0", dim, dim) | _attention_block(f"{prefix}.1", dim)
            | _residual(f"{prefix}.2", dim, dim))


def wan21_vae_layout(dim: int = 96, z_dim: int = 16, mult=(1, 2, 4, 4), res_blocks: int = 2,
                     temporal=(False, True, True)) -> Layout:
    """Key -> shape of the WAN 2.1 VAE (``Wan2.1_VAE.pth`` / ``wan_2.1_vae.safetensors``)."""
    layout: Layout = _conv3d("encoder.conv1", dim, 3)
    dims = [dim * m for m in (1, *mult)]
    index = 0
    for stage, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
        for _ in range(res_blocks):
            layout |= _residual(f"encoder.downsamples.{index}", in_dim, out_dim)
            in_dim, index = out_dim, index + 1
        if stage != len(mult) - 1:
            layout |= _resample(f"encoder.downsamples.{index}", out_dim,
                                "downsample3d" if temporal[stage] else "downsample2d", halve=False)
            index += 1
    top = dims[-1]
    layout |= _middle("encoder.middle", top) | _rms("encoder.head.0", top) | _conv3d("encoder.head.2", 2 * z_dim, top)
    layout |= _conv3d("conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1)) | _conv3d("conv2", z_dim, z_dim, (1, 1, 1))
    dims = [dim * m for m in (mult[-1], *mult[::-1])]
    layout |= _conv3d("decoder.conv1", dims[0], z_dim) | _middle("decoder.middle", dims[0])
    up_temporal = temporal[::-1]
    index = 0
    for stage, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
        if stage in (1, 2, 3):
            in_dim //= 2  # the previous upsampler halved the channels
        for _ in range(res_blocks + 1):
            layout |= _residual(f"decoder.upsamples.{index}", in_dim, out_dim)
            in_dim, index = out_dim, index + 1
        if stage != len(mult) - 1:
            layout |= _resample(f"decoder.upsamples.{index}", out_dim,
                                "upsample3d" if up_temporal[stage] else "upsample2d", halve=True)
            index += 1
    layout |= _rms("decoder.head.0", dims[-1]) | _conv3d("decoder.head.2", 3, dims[-1])
    return layout


def wan22_vae_layout(dim: int = 160, dec_dim: int = 256, z_dim: int = 48, mult=(1, 2, 4, 4), res_blocks: int = 2,
                     temporal=(False, True, True)) -> Layout:
    """Key -> shape of the WAN 2.2 VAE (``wan2.2_vae.safetensors``): 12-channel (2x2 patched) pixels,
    each stage one block (``downsamples.N.downsamples.M`` / ``upsamples.N.upsamples.M``)."""
    layout: Layout = _conv3d("encoder.conv1", dim, 12)
    dims = [dim * m for m in (1, *mult)]
    for stage, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
        prefix = f"encoder.downsamples.{stage}.downsamples"
        for block in range(res_blocks):
            layout |= _residual(f"{prefix}.{block}", in_dim, out_dim)
            in_dim = out_dim
        if stage != len(mult) - 1:
            layout |= _resample(f"{prefix}.{res_blocks}", out_dim,
                                "downsample3d" if temporal[stage] else "downsample2d", halve=False)
    top = dims[-1]
    layout |= _middle("encoder.middle", top) | _rms("encoder.head.0", top) | _conv3d("encoder.head.2", 2 * z_dim, top)
    layout |= _conv3d("conv1", 2 * z_dim, 2 * z_dim, (1, 1, 1)) | _conv3d("conv2", z_dim, z_dim, (1, 1, 1))
    dims = [dec_dim * m for m in (mult[-1], *mult[::-1])]
    layout |= _conv3d("decoder.conv1", dims[0], z_dim) | _middle("decoder.middle", dims[0])
    up_temporal = temporal[::-1]
    for stage, (in_dim, out_dim) in enumerate(itertools.pairwise(dims)):
        prefix = f"decoder.upsamples.{stage}.upsamples"
        for block in range(res_blocks + 1):
            layout |= _residual(f"{prefix}.{block}", in_dim, out_dim)
            in_dim = out_dim
        if stage != len(mult) - 1:
            layout |= _resample(f"{prefix}.{res_blocks + 1}", out_dim,
                                "upsample3d" if up_temporal[stage] else "upsample2d", halve=False)
    layout |= _rms("decoder.head.0", dims[-1]) | _conv3d("decoder.head.2", 12, dims[-1])
    return layout


VAES = {"wan21_vae": wan21_vae_layout, "wan22_vae": wan22_vae_layout}


# --------------------------------------------------------------------------- weights


def _seed(name: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{name}:{seed}".encode()).digest()[:8], "little") & (2**63 - 1)


def dit_tensors(layout: Layout, seed: int = 0, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Every tensor ``randn * 0.02`` (modulations and norms included): small enough to stay finite."""
    generator = torch.Generator().manual_seed(seed)
    return {key: (torch.randn(shape, generator=generator) * 0.02).to(dtype) for key, shape in layout.items()}


def vae_tensors(layout: Layout, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Norm gains 1, biases 0, other weights randn / sqrt(fan-in): a random VAE whose decode stays finite
    (ComfyUI builds VAEs with uninitialised weights, so every tensor must be in the file)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in layout.items():
        if key.endswith(".gamma"):
            tensor = torch.ones(shape)
        elif key.endswith(".bias"):
            tensor = torch.zeros(shape)
        else:
            tensor = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        tensors[key] = tensor.to(dtype)
    return tensors


def lora_tensors(layout: Layout, style: str, rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA over every 2-D attention/FFN weight of a DiT ``layout``, in one of the key styles Wan LoRAs
    ship in: ``diffusers`` (``diffusion_model.<key>.lora_A/lora_B.weight``, musubi-tuner/ai-toolkit) or
    ``kohya`` (``lora_unet_<key with _>.lora_down/lora_up.weight`` + ``.alpha``)."""
    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for key, shape in layout.items():
        if len(shape) != 2 or not key.startswith("blocks.") or not key.endswith(".weight"):
            continue
        module = key[: -len(".weight")]
        down = torch.randn((rank, shape[1]), generator=generator) * 0.01
        up = torch.randn((shape[0], rank), generator=generator) * 0.01
        if style == "diffusers":
            tensors[f"diffusion_model.{module}.lora_A.weight"] = down
            tensors[f"diffusion_model.{module}.lora_B.weight"] = up
        elif style == "kohya":
            name = "lora_unet_" + module.replace(".", "_")
            tensors[f"{name}.lora_down.weight"] = down
            tensors[f"{name}.lora_up.weight"] = up
            tensors[f"{name}.alpha"] = torch.tensor(float(rank))
        else:
            raise ValueError(f"LoRA style '{style}' is not diffusers or kohya")
    return tensors


def lora_target_count(layout: Layout) -> int:
    """How many DiT weights :func:`lora_tensors` patches (to check a loader applied every one)."""
    return sum(1 for key, shape in layout.items()
               if len(shape) == 2 and key.startswith("blocks.") and key.endswith(".weight"))


# --------------------------------------------------------------------------- GGUF


def write_gguf(path: Path, tensors: Mapping[str, torch.Tensor], arch: str = "wan") -> None:
    """A GGUF file the way city96's convert tool writes a DiT: ``general.architecture`` set, 2-D weights
    Q8_0-quantised, the rest F16, 5-D ones with the original 5-D shape kept in
    ``comfy.gguf.orig_shape.<name>`` (GGUF holds at most 4 dimensions)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    for name, tensor in tensors.items():
        data = tensor.float().numpy()
        matrix = data.ndim == 2 and data.shape[-1] % 32 == 0  # only linear weights are quantised
        if data.ndim > 4:
            writer.add_array(f"comfy.gguf.orig_shape.{name}", list(data.shape))
            data = data.reshape(data.shape[0], -1)
        if matrix:
            quantised = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantised, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, data.astype(np.float16), raw_dtype=gguf.GGMLQuantizationType.F16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# --------------------------------------------------------------------------- the cache


def _atomic_target(path: Path) -> Path:
    return path.with_name(f".partial-{os.getpid()}-{path.name}")  # same extension: writers pick the format by it


def build(kind: str, cache: Path, seed: int = 0) -> Path:
    """The cached file for model ``kind`` (built on first use). Kinds: the keys of :data:`DITS` (safetensors),
    ``<dit>.gguf``, the keys of :data:`VAES`, ``lora_diffusers`` / ``lora_kohya`` (over ``wan22_i2v``),
    ``rife`` (RIFE 4.26 in core ComfyUI's layout), ``esrgan`` (a 4x RRDB .pth) and tiny_providers.KINDS."""
    if kind.startswith("svi_lora"):
        import tiny_svi

        return tiny_svi.build(kind, cache, seed)
    cache.mkdir(parents=True, exist_ok=True)
    base, _, extension = kind.partition(".")
    suffix = {"gguf": ".gguf", "": ".pth" if kind == "esrgan" else ".safetensors"}[extension]
    path = cache / f"{kind.replace('.', '-')}-v{LAYOUT_VERSION}-s{seed}{suffix}"
    if path.is_file():
        return path
    partial = _atomic_target(path)
    import tiny_scene  # imports this module: not at the top
    import tiny_zimage

    if base in DITS and extension == "gguf":
        write_gguf(partial, dit_tensors(wan_dit_layout(DITS[base]), _seed(base, seed)))
    elif base in DITS:
        save_file(dit_tensors(wan_dit_layout(DITS[base]), _seed(base, seed)), str(partial))
    elif base in VAES:
        save_file(vae_tensors(VAES[base](), _seed(base, seed)), str(partial))
    elif base in ("lora_diffusers", "lora_kohya"):
        save_file(lora_tensors(wan_dit_layout(DITS["wan22_i2v"]), base.split("_", 1)[1], seed=_seed(base, seed)),
                  str(partial))
    elif base in tiny_scene.KINDS:  # the scene workflows' models (tests/tiny_scene.py)
        tiny_scene.build_kind(base, partial, _seed(base, seed))
    elif base in tiny_zimage.KINDS:  # the Z-Image keyframe workflow's stand-ins (tests/tiny_zimage.py)
        tiny_zimage.build_kind(base, partial, _seed(base, seed))
    elif base == "rife":
        from conftest import pack_module

        ifnet, loader = pack_module("nodes.interpolate.ifnet"), pack_module("nodes.interpolate.loader")
        torch.manual_seed(_seed(base, seed))
        state = {k: v + 0.01 * torch.randn_like(v) for k, v in ifnet.build("4.25").state_dict().items()}
        loader.save_checkpoint(state, str(partial), "comfy-core")
    elif base in tiny_providers.KINDS:  # SVD, LTX-Video: layouts from ComfyUI's classes (needs COMFYUI_PATH)
        tiny_providers.build(base, partial, _seed(base, seed))
    elif base == "esrgan":
        from upscale_helpers import rrdb_state_dict

        torch.save(rrdb_state_dict(scale=4, blocks=1, features=16, seed=seed), str(partial))
    else:
        raise ValueError(f"unknown tiny model kind '{kind}'")
    os.replace(partial, path)
    return path


def install(cache_file: Path, models_dir: Path, folder: str, file_name: str) -> Path:
    """``models_dir/folder/file_name`` -> the cached file (a symlink; a copy where links are not allowed)."""
    target = models_dir / folder / file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        target.symlink_to(cache_file)
    except OSError:
        shutil.copyfile(cache_file, target)
    return target
