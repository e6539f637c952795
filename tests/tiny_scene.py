"""Tiny random-weight models for the scene workflows (control, keyframes), in the real key layouts.

- ``wan22_fun_control``: WAN 2.2 Fun Control A14B (either expert). ComfyUI (comfy/model_detection.py)
  sees a WAN DiT (``head.modulation``) without ``img_emb`` (model type t2v) whose ``patch_embedding``
  takes 52 channels: 16 noise latent + 16 control-video latent + 4 mask + 16 start-image latent
  (Wan22FunControlToVideo's concat latent, the mask inserted at channel 16), and a ``ref_conv``
  (``in_dim_ref_conv`` = 16: the reference image's latent, patched 2x2 like the video).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from tiny_models import PATCH, DitShape, dit_tensors, wan_dit_layout

FUN_CONTROL = DitShape(in_dim=52, out_dim=16)
KINDS = ("wan22_fun_control",)


def fun_control_layout() -> dict[str, tuple[int, ...]]:
    layout = wan_dit_layout(FUN_CONTROL)
    layout |= {"ref_conv.weight": (FUN_CONTROL.dim, 16, *PATCH[1:]), "ref_conv.bias": (FUN_CONTROL.dim,)}
    return layout


def build_kind(kind: str, target: Path, seed: int) -> None:
    """Write model ``kind`` (one of :data:`KINDS`) to ``target`` with weights seeded by ``seed``."""
    if kind == "wan22_fun_control":
        save_file(dit_tensors(fun_control_layout(), seed), str(target))
    else:
        raise ValueError(f"unknown scene model kind '{kind}'")
