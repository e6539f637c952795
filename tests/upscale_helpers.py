"""Tiny random-weight upscale models for the upscale tests, saved in their real key layouts and loaded
back through spandrel's ModelLoader (the way core's UpscaleModelLoader loads them)."""

from __future__ import annotations

import torch
from spandrel import ModelLoader
from spandrel.architectures.Compact import Compact
from spandrel.architectures.ESRGAN import ESRGAN


def _tame(state_dict: dict, seed: int, last_bias: float) -> dict:
    """Random weights that keep a signal alive through the network, and a last layer that lands the
    output mid-range (RRDB: bias 0.5; Compact adds its upsampled input, so no bias). spandrel's
    default init drives every output pixel to the clamp (0 or 1), which would make any
    tiled/untiled comparison pass trivially."""
    generator = torch.Generator().manual_seed(seed)
    convs = [key for key, value in state_dict.items() if key.endswith("weight") and value.dim() == 4]
    out = {}
    for key, value in state_dict.items():
        if key.endswith("weight") and value.dim() == 4:
            out[key] = torch.randn(value.shape, generator=generator) / value[0].numel() ** 0.5
        elif key.endswith("weight"):  # PReLU slopes
            out[key] = torch.full_like(value, 0.2)
        else:
            out[key] = torch.zeros_like(value)
    last = convs[-1]
    out[last] = out[last] * 0.1
    out[last[: -len("weight")] + "bias"] = torch.full_like(state_dict[last[: -len("weight")] + "bias"], last_bias)
    return out


def rrdb_state_dict(scale: int = 4, blocks: int = 1, features: int = 16, seed: int = 0) -> dict:
    """An old-arch ESRGAN (RRDB) state dict: ``model.0.weight``, ``model.1.sub.0.RDB1...`` keys."""
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=features, num_blocks=blocks, scale=scale)
    return _tame(net.state_dict(), seed, 0.5)


def compact_state_dict(scale: int = 4, convs: int = 2, features: int = 16, seed: int = 1) -> dict:
    """A realesr-general/animevideo-style SRVGG compact state dict: ``body.N.weight`` keys."""
    net = Compact(num_in_ch=3, num_out_ch=3, num_feat=features, num_conv=convs, upscale=scale)
    return _tame(net.state_dict(), seed, 0.0)  # Compact adds the upsampled input itself


def save_and_load(state_dict: dict, path) -> object:
    """Save as a .pth file like released checkpoints and load it back through spandrel."""
    torch.save(state_dict, str(path))
    return ModelLoader().load_from_file(str(path)).eval()
