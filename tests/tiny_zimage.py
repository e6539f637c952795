"""Stand-ins for the Z-Image Turbo keyframe workflow on the pinned ComfyUI (a125cd84, 0.3.64).

That ComfyUI has no Z-Image model: comfy/model_detection.py reads any state dict with
``cap_embedder.1.weight`` as Lumina 2 and fixes the NextDiT's width at 2304 (24 heads of 96, 8 kv
heads), the patch at 2, 16 latent channels and 2 noise + 2 context refiner blocks; it reads only the
caption width (``cap_embedder.1.weight``'s second dimension) and the number of ``layers.N`` from the
file. So the smallest DiT it loads for ``z_image_turbo_bf16.safetensors`` is that NextDiT with one main
layer (about 428 M parameters, bf16: 0.86 GB) and a caption width of 2560, qwen_3_4b's hidden size, the
width Z-Image's text encoder gives. Real Z-Image files need a ComfyUI with Z-Image support.

- ``lumina2_zimage``: that NextDiT, keys as the Lumina 2 / Z-Image safetensors name them (unprefixed).
- ``flux_ae``: the Flux VAE (``ae.safetensors``) at full size, the LDM autoencoder ComfyUI builds from
  a constant config (ch 128, ch_mult 1,2,4,4, 2 res blocks, 16 latent channels, no quant convs).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from tiny_models import Layout, dit_tensors

DIM = 2304  # fixed by the pinned ComfyUI's Lumina 2 detection
HEADS, KV_HEADS = 24, 8
HEAD_DIM = DIM // HEADS
FFN = 9216  # NextDiT's feed-forward width at dim 2304 (multiple_of 256, no multiplier)
ADALN = min(DIM, 1024)  # the timestep embedding's width
CAPTION_DIM = 2560  # qwen_3_4b's hidden size: what the test conditioning gives this model
LAYERS = 1
REFINER_LAYERS = 2  # not read from the file: always 2 noise + 2 context refiners
PATCH, LATENT = 2, 16
KINDS = ("lumina2_zimage", "flux_ae")


def _joint_block(prefix: str, modulation: bool) -> Layout:
    layout: Layout = {
        f"{prefix}.attention.qkv.weight": ((HEADS + 2 * KV_HEADS) * HEAD_DIM, DIM),
        f"{prefix}.attention.out.weight": (DIM, HEADS * HEAD_DIM),
        f"{prefix}.attention.q_norm.weight": (HEAD_DIM,),
        f"{prefix}.attention.k_norm.weight": (HEAD_DIM,),
        f"{prefix}.feed_forward.w1.weight": (FFN, DIM),
        f"{prefix}.feed_forward.w2.weight": (DIM, FFN),
        f"{prefix}.feed_forward.w3.weight": (FFN, DIM),
    }
    for norm in ("attention_norm1", "ffn_norm1", "attention_norm2", "ffn_norm2"):
        layout[f"{prefix}.{norm}.weight"] = (DIM,)
    if modulation:
        layout |= {f"{prefix}.adaLN_modulation.1.weight": (4 * DIM, ADALN),
                   f"{prefix}.adaLN_modulation.1.bias": (4 * DIM,)}
    return layout


def nextdit_layout(layers: int = LAYERS, caption_dim: int = CAPTION_DIM) -> Layout:
    """Key -> shape of a Lumina 2 NextDiT as the pinned ComfyUI builds it for ``cap_embedder.1.weight``."""
    layout: Layout = {"x_embedder.weight": (DIM, PATCH * PATCH * LATENT), "x_embedder.bias": (DIM,)}
    for index in range(REFINER_LAYERS):
        layout |= _joint_block(f"noise_refiner.{index}", modulation=True)
    for index in range(REFINER_LAYERS):
        layout |= _joint_block(f"context_refiner.{index}", modulation=False)
    layout |= {"t_embedder.mlp.0.weight": (ADALN, 256), "t_embedder.mlp.0.bias": (ADALN,),
               "t_embedder.mlp.2.weight": (ADALN, ADALN), "t_embedder.mlp.2.bias": (ADALN,),
               "cap_embedder.0.weight": (caption_dim,),
               "cap_embedder.1.weight": (DIM, caption_dim), "cap_embedder.1.bias": (DIM,)}
    for index in range(layers):
        layout |= _joint_block(f"layers.{index}", modulation=True)
    layout |= {"norm_final.weight": (DIM,),
               "final_layer.linear.weight": (PATCH * PATCH * LATENT, DIM),
               "final_layer.linear.bias": (PATCH * PATCH * LATENT,),
               "final_layer.adaLN_modulation.1.weight": (DIM, ADALN),
               "final_layer.adaLN_modulation.1.bias": (DIM,)}
    return layout


def _norm(prefix: str, channels: int) -> Layout:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,)}


def _conv(prefix: str, out_ch: int, in_ch: int, kernel: int = 3) -> Layout:
    return {f"{prefix}.weight": (out_ch, in_ch, kernel, kernel), f"{prefix}.bias": (out_ch,)}


def _resnet(prefix: str, in_ch: int, out_ch: int) -> Layout:
    layout = _norm(f"{prefix}.norm1", in_ch) | _conv(f"{prefix}.conv1", out_ch, in_ch)
    layout |= _norm(f"{prefix}.norm2", out_ch) | _conv(f"{prefix}.conv2", out_ch, out_ch)
    if in_ch != out_ch:
        layout |= _conv(f"{prefix}.nin_shortcut", out_ch, in_ch, 1)
    return layout


def _mid(prefix: str, channels: int) -> Layout:
    layout = _resnet(f"{prefix}.block_1", channels, channels) | _norm(f"{prefix}.attn_1.norm", channels)
    for name in ("q", "k", "v", "proj_out"):
        layout |= _conv(f"{prefix}.attn_1.{name}", channels, channels, 1)
    return layout | _resnet(f"{prefix}.block_2", channels, channels)


def flux_vae_layout(ch: int = 128, mult=(1, 2, 4, 4), res_blocks: int = 2, z_dim: int = LATENT) -> Layout:
    """Key -> shape of the Flux VAE (``ae.safetensors``): the LDM encoder/decoder without quant convs."""
    layout: Layout = _conv("encoder.conv_in", ch, 3)
    in_mult = (1, *mult)
    for level, m in enumerate(mult):
        block_in, block_out = ch * in_mult[level], ch * m
        for block in range(res_blocks):
            layout |= _resnet(f"encoder.down.{level}.block.{block}", block_in, block_out)
            block_in = block_out
        if level != len(mult) - 1:
            layout |= _conv(f"encoder.down.{level}.downsample.conv", block_in, block_in)
    top = ch * mult[-1]
    layout |= _mid("encoder.mid", top) | _norm("encoder.norm_out", top) | _conv("encoder.conv_out", 2 * z_dim, top)
    layout |= _conv("decoder.conv_in", top, z_dim) | _mid("decoder.mid", top)
    block_in = top
    for level in reversed(range(len(mult))):
        block_out = ch * mult[level]
        for block in range(res_blocks + 1):
            layout |= _resnet(f"decoder.up.{level}.block.{block}", block_in, block_out)
            block_in = block_out
        if level != 0:
            layout |= _conv(f"decoder.up.{level}.upsample.conv", block_in, block_in)
    return layout | _norm("decoder.norm_out", ch) | _conv("decoder.conv_out", 3, ch)


def flux_vae_tensors(layout: Layout, seed: int) -> dict[str, torch.Tensor]:
    """GroupNorm gains 1, biases 0, other weights randn / sqrt(fan-in) (bf16): a decode that stays finite."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in layout.items():
        if key.endswith(".bias"):
            tensor = torch.zeros(shape)
        elif len(shape) == 1:  # a norm's gain
            tensor = torch.ones(shape)
        else:
            tensor = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        tensors[key] = tensor.to(torch.bfloat16)
    return tensors


def build_kind(kind: str, target: Path, seed: int) -> None:
    """Write model ``kind`` (one of :data:`KINDS`) to ``target`` with weights seeded by ``seed``."""
    if kind == "lumina2_zimage":
        save_file(dit_tensors(nextdit_layout(), seed, dtype=torch.bfloat16), str(target))
    elif kind == "flux_ae":
        save_file(flux_vae_tensors(flux_vae_layout(), seed), str(target))
    else:
        raise ValueError(f"unknown Z-Image model kind '{kind}'")
