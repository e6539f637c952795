"""Tiny SVI-style LoRA files for the tests: one random LoRA over the tiny WAN 2.2 I2V DiT, written in each key
spelling Wan LoRAs ship in (and as GGUF), so every spelling can be checked to give the same patch set.

The spellings are data: (prefix, down suffix, up suffix, alpha kept). The tensors come from
tiny_models.lora_tensors (seeded), so two spellings of one seed are the same LoRA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tiny_models
import torch
from safetensors.torch import save_file

# name -> (module prefix, down suffix, up suffix, writes .alpha)
SPELLINGS: dict[str, tuple[str, str, str, bool]] = {
    "diffusers": ("diffusion_model.", ".lora_A.weight", ".lora_B.weight", False),
    "comfy_down_up": ("diffusion_model.", ".lora_down.weight", ".lora_up.weight", True),
    "kohya": ("lora_unet_", ".lora_down.weight", ".lora_up.weight", True),
    "bare_peft": ("", ".lora_A.default.weight", ".lora_B.default.weight", False),
    "bare": ("", ".lora_A.weight", ".lora_B.weight", True),
}
SVI_RANK = 8  # the real SVI 2.0 Pro LoRAs are rank 128; small here


def dit_layout() -> tiny_models.Layout:
    return tiny_models.wan_dit_layout(tiny_models.DITS["wan22_i2v"])


def lora_pairs(rank: int = SVI_RANK, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module (``blocks.0.self_attn.q``) -> (down [rank, in], up [out, rank]) over the tiny DiT."""
    tensors = tiny_models.lora_tensors(dit_layout(), "diffusers", rank=rank, seed=seed)
    pairs = {}
    for key, down in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key[len("diffusion_model."):-len(".lora_A.weight")]
            pairs[module] = (down, tensors[key.replace(".lora_A.", ".lora_B.")] * 20)  # visible effect
    return pairs


def spelled(spelling: str, rank: int = SVI_RANK, seed: int = 0, alpha: float | None = None) -> dict[str, torch.Tensor]:
    """The LoRA of ``seed`` as a state dict in ``spelling`` (alpha = rank unless given)."""
    prefix, down_suffix, up_suffix, with_alpha = SPELLINGS[spelling]
    out: dict[str, torch.Tensor] = {}
    for module, (down, up) in lora_pairs(rank, seed).items():
        name = prefix + (module.replace(".", "_") if prefix == "lora_unet_" else module)
        out[name + down_suffix] = down.clone()
        out[name + up_suffix] = up.clone()
        if with_alpha or alpha is not None:
            out[name + ".alpha"] = torch.tensor(float(rank if alpha is None else alpha))
    return out


def write_safetensors(path: Path, spelling: str, **kwargs) -> Path:
    save_file(spelled(spelling, **kwargs), str(path))
    return path


def write_gguf(path: Path, spelling: str = "kohya", matrix_type: str = "Q8_0", **kwargs) -> Path:
    """The LoRA as GGUF: matrices whose rows are a multiple of 32 in ``matrix_type`` (Q8_0, BF16 or F16),
    the rest F16, alphas F32 of shape (1,)."""
    import gguf

    qtype = gguf.GGMLQuantizationType[matrix_type]
    writer = gguf.GGUFWriter(str(path), arch="wan")
    for name, tensor in spelled(spelling, **kwargs).items():
        data = tensor.float().numpy().reshape(tensor.shape or (1,))
        if name.endswith(".alpha"):
            writer.add_tensor(name, data.astype(np.float32), raw_dtype=gguf.GGMLQuantizationType.F32)
        elif data.ndim == 2 and data.shape[-1] % 32 == 0 and matrix_type != "F16":
            writer.add_tensor(name, gguf.quants.quantize(data.astype(np.float32), qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(np.float16), raw_dtype=gguf.GGMLQuantizationType.F16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def build(kind: str, cache: Path, seed: int = 0) -> Path:
    """Cached SVI LoRA files for the workflows: ``svi_lora_high`` / ``svi_lora_low`` (Kijai's spelling,
    lora_A/lora_B with diffusion_model.), ``svi_lora_high.gguf`` / ``svi_lora_low.gguf`` (Q8_0)."""
    base, _, extension = kind.partition(".")
    expert_seed = {"svi_lora_high": 101, "svi_lora_low": 202}[base] + seed
    path = cache / f"{base}-v1-s{seed}{'.gguf' if extension == 'gguf' else '.safetensors'}"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{path.name}")
    if extension == "gguf":
        write_gguf(partial, "diffusers", seed=expert_seed)
    else:
        write_safetensors(partial, "diffusers", seed=expert_seed)
    partial.replace(path)
    return path
