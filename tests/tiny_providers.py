"""Tiny random-weight checkpoints of the other video providers (SVD, LTX-Video) that a real ComfyUI detects.

Unlike the WAN layouts in tiny_models.py (written out by hand), these are large nested UNet/VAE
architectures, so the key layout is taken from ComfyUI's own model classes: a subprocess in the
checkout (``COMFYUI_PATH``) builds each module on the meta device with the sizes below, reads its
state-dict shapes, fills them with seeded random numbers and writes the checkpoint. Building needs a
ComfyUI checkout, which only the integration tests have; nothing here imports ComfyUI into pytest.

What ComfyUI's detection accepts (comfy/model_detection.py, comfy/supported_models.py, comfy/sd.py,
comfy/clip_vision.py, checkout a125cd84):

- **SVD** (``svd_xt``, one checkpoint for ``ImageOnlyCheckpointLoader``): supported_models.SVD_img2vid
  matches only ``model_channels`` 320, ``in_channels`` 8, ``transformer_depth`` [1,1,1,1,1,1,0,0]
  (four levels of two res blocks, attention on the first three), ``context_dim`` 1024,
  ``adm_in_channels`` 768, linear transformer in/out and temporal res blocks + attention. Channel
  multipliers are free: [1,1,1,1] instead of [1,2,4,4] keeps it at 212 M parameters (1.5 B real).
  The VAE (``first_stage_model.``, detected by ``decoder.mid.block_1.mix_factor``) and the CLIP
  vision tower (``conditioner.embedders.0.open_clip.model.visual.``) have fixed configs: the SD VAE
  with the temporal decoder, and ViT-H/14 (32 layers of width 1280, projection 1024; detection looks
  for layer 30, and 1024 is the only projection width matching the UNet's context). Both are full size.
- **LTX-Video** (``ltxv``, one checkpoint for ``CheckpointLoaderSimple``): the DiT is detected by
  ``adaln_single.emb.timestep_embedder.linear_1.bias``; heads are 32 and ``attention_head_dim`` =
  ``transformer_blocks.0.attn2.to_k.weight`` rows / 32, so head width 8 gives a 256-wide model. The
  VAE (``vae.``, detected by ``decoder.up_blocks.0.res_blocks.0.conv1.conv.weight``) is built from
  the checkpoint's ``config`` metadata (``{"vae": {...}}``, as LTX-Video's own files carry): three
  ``compress_all`` blocks on patch 4 keep the fixed 8x32x32 compression ComfyUI assumes, with one
  res block, 13 M parameters. Its 128 latent channels are fixed (comfy/latent_formats.py LTXV).
  The text encoder (T5-XXL, fixed config) is swapped for the test conditioning node: LTXV's
  ``caption_projection`` reads [B, tokens, 4096], the width that node makes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

KINDS = ("svd_xt", "ltxv")

SVD_UNET = {
    "image_size": 32, "in_channels": 8, "model_channels": 320, "out_channels": 4, "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 1, 1, 1], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": 1024, "adm_in_channels": 768, "num_classes": "sequential",
    "use_spatial_transformer": True, "legacy": False, "num_heads": -1, "num_head_channels": 64,
    "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
    "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
    "use_temporal_attention": True, "disable_temporal_crossattention": False,
}
# comfy/sd.py's fixed SVD VAE (the SD VAE encoder with a temporal decoder).
SVD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
           "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
# OpenCLIP ViT-H/14 (comfy/clip_vision_config_h.json): the SVD checkpoint keeps it in open_clip names.
VIT_H = {"width": 1280, "layers": 32, "mlp": 5120, "patch": 14, "image": 224, "projection": 1024}
LTXV_TRANSFORMER = {"attention_head_dim": 8, "num_attention_heads": 32, "cross_attention_dim": 256,
                    "num_layers": 2, "in_channels": 128, "caption_channels": 4096}
LTXV_VAE = {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3, "out_channels": 3,
            "latent_channels": 128, "blocks": [["compress_all", 1], ["compress_all", 1], ["compress_all", 1],
                                               ["res_x", 1]],
            "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4, "latent_log_var": "uniform",
            "use_quant_conv": False, "causal_decoder": False}


def vit_h_layout(prefix: str) -> dict[str, tuple[int, ...]]:
    """OpenCLIP visual tower key -> shape (``conv1``, ``transformer.resblocks.N``, ``proj``)."""
    w, mlp = VIT_H["width"], VIT_H["mlp"]
    tokens = (VIT_H["image"] // VIT_H["patch"]) ** 2 + 1
    layout = {"class_embedding": (w,), "positional_embedding": (tokens, w),
              "conv1.weight": (w, 3, VIT_H["patch"], VIT_H["patch"]), "ln_pre.weight": (w,), "ln_pre.bias": (w,),
              "ln_post.weight": (w,), "ln_post.bias": (w,), "proj": (w, VIT_H["projection"])}
    for index in range(VIT_H["layers"]):
        block = f"transformer.resblocks.{index}."
        layout |= {block + "ln_1.weight": (w,), block + "ln_1.bias": (w,), block + "ln_2.weight": (w,),
                   block + "ln_2.bias": (w,), block + "attn.in_proj_weight": (3 * w, w),
                   block + "attn.in_proj_bias": (3 * w,), block + "attn.out_proj.weight": (w, w),
                   block + "attn.out_proj.bias": (w,), block + "mlp.c_fc.weight": (mlp, w),
                   block + "mlp.c_fc.bias": (mlp,), block + "mlp.c_proj.weight": (w, mlp),
                   block + "mlp.c_proj.bias": (w,)}
    return {prefix + key: shape for key, shape in layout.items()}


# Runs inside the ComfyUI checkout: prints {"section": {key: shape}} of the modules built on the meta device.
_LAYOUT_SCRIPT = r"""
import json, sys, torch
import comfy.options
comfy.options.enable_args_parsing(False)
from comfy.cli_args import args
args.cpu = True
import comfy.ops
kind, spec = sys.argv[1], json.loads(sys.argv[2])
shapes = lambda module: {k: list(v.shape) for k, v in module.state_dict().items()}
out = {}
with torch.device("meta"):
    if kind == "svd_xt":
        from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
        from comfy.ldm.models.autoencoder import AutoencodingEngine
        out["model.diffusion_model."] = shapes(UNetModel(**spec["unet"], operations=comfy.ops.disable_weight_init))
        decoder = dict(spec["vae"], video_kernel_size=[3, 1, 1], alpha=0.0)
        out["first_stage_model."] = shapes(AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": spec["vae"]},
            decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": decoder}))
    else:
        from comfy.ldm.lightricks.model import LTXVModel
        from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE
        dit = LTXVModel(**spec["transformer"], operations=comfy.ops.disable_weight_init)
        out["model.diffusion_model."] = shapes(dit)
        out["vae."] = shapes(VideoVAE(config=spec["vae"]))
print(json.dumps(out))
"""

# Runs inside the checkout on a built file: the model config ComfyUI's detection picks, and its VAE's kind.
_DETECT_SCRIPT = r"""
import json, sys
import comfy.options
comfy.options.enable_args_parsing(False)
from comfy.cli_args import args
args.cpu = True
import comfy.utils, comfy.model_detection
sd, metadata = comfy.utils.load_torch_file(sys.argv[1], return_metadata=True)
config = comfy.model_detection.model_config_from_unet(sd, "model.diffusion_model.", metadata=metadata)
print(json.dumps({"model_config": type(config).__name__ if config is not None else None,
                  "unet_config": {k: v for k, v in (config.unet_config if config else {}).items()
                                  if isinstance(v, (int, float, str, list, bool))}}))
"""


def comfyui_path() -> Path:
    path = os.environ.get("COMFYUI_PATH")
    if not path or not (Path(path).expanduser() / "comfy" / "model_detection.py").is_file():
        raise RuntimeError("building the SVD / LTX-Video tiny models needs COMFYUI_PATH (a ComfyUI checkout): "
                           "their layouts come from ComfyUI's own model classes")
    return Path(path).expanduser()


def _in_comfyui(script: str, *arguments: str) -> dict:
    checkout = comfyui_path()
    env = dict(os.environ, PYTHONPATH=str(checkout))
    done = subprocess.run([sys.executable, "-c", script, *arguments], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"ComfyUI subprocess failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def spec(kind: str) -> dict:
    if kind == "svd_xt":
        return {"unet": SVD_UNET, "vae": SVD_VAE}
    if kind == "ltxv":
        return {"transformer": LTXV_TRANSFORMER, "vae": LTXV_VAE}
    raise ValueError(f"unknown provider kind '{kind}'; known: {', '.join(KINDS)}")


def layout(kind: str) -> dict[str, dict[str, tuple[int, ...]]]:
    """{section prefix: {key: shape}} of a provider checkpoint (sections: diffusion model, VAE, CLIP vision)."""
    sections = {prefix: {k: tuple(v) for k, v in keys.items()}
                for prefix, keys in _in_comfyui(_LAYOUT_SCRIPT, kind, json.dumps(spec(kind))).items()}
    if kind == "svd_xt":
        sections["conditioner.embedders.0.open_clip.model.visual."] = vit_h_layout("")
    return sections


def tensors(sections: dict[str, dict[str, tuple[int, ...]]], seed: int):
    """Seeded weights: the diffusion model ``randn * 0.02`` (as the WAN DiTs); VAEs and the CLIP tower scaled
    like trained nets (biases 0, gains/1-D 1, others randn / sqrt(fan-in)), since a decode must stay finite."""
    import math

    import torch

    generator = torch.Generator().manual_seed(seed)
    out = {}
    for prefix, keys in sections.items():
        dit = prefix == "model.diffusion_model."
        for key, shape in keys.items():
            if dit:
                tensor = torch.randn(shape, generator=generator) * 0.02
            elif key.endswith("bias") or key.endswith("_bias"):
                tensor = torch.zeros(shape)
            elif len(shape) <= 1:
                tensor = torch.ones(shape)
            else:
                tensor = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
            out[prefix + key] = tensor.to(torch.float16)
    return out


def build(kind: str, path: Path, seed: int) -> None:
    """Write the tiny ``kind`` checkpoint to ``path`` (safetensors; LTX-Video's carries its ``config`` metadata)."""
    from safetensors.torch import save_file

    metadata = {"config": json.dumps({"transformer": LTXV_TRANSFORMER, "vae": LTXV_VAE})} if kind == "ltxv" else None
    save_file(tensors(layout(kind), seed), str(path), metadata=metadata)


def detect(path: Path) -> dict:
    """What ComfyUI's model detection makes of a checkpoint: ``{"model_config": class name, "unet_config"}``."""
    return _in_comfyui(_DETECT_SCRIPT, str(path))
