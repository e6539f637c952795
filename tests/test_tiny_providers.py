"""The tiny SVD and LTX-Video checkpoints (tests/tiny_providers.py): the shapes ComfyUI's detection keys on,
and (with a ComfyUI checkout) that its detection picks the right model for the built files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import tiny_models
import tiny_providers


def test_svd_unet_spec_holds_what_svd_img2vid_matches():
    unet = tiny_providers.SVD_UNET
    # comfy/supported_models.py SVD_img2vid.unet_config, matched key by key
    assert (unet["model_channels"], unet["in_channels"], unet["context_dim"], unet["adm_in_channels"]) == \
        (320, 8, 1024, 768)
    assert unet["transformer_depth"] == [1, 1, 1, 1, 1, 1, 0, 0]
    assert unet["use_linear_in_transformer"] and unet["use_temporal_attention"] and unet["use_temporal_resblock"]
    # four levels of two res blocks: the depth list has one entry per input res block
    assert len(unet["channel_mult"]) * 2 == len(unet["transformer_depth"]) and unet["num_res_blocks"] == [2] * 4


def test_the_clip_vision_tower_is_vit_h_in_open_clip_names():
    layout = tiny_providers.vit_h_layout("conditioner.embedders.0.open_clip.model.visual.")
    prefix = "conditioner.embedders.0.open_clip.model.visual."
    blocks = {key.split(".")[8] for key in layout if ".transformer.resblocks." in key}
    assert len(blocks) == 32  # detection asks for layer 30; clip_vision_config_h.json has 32
    assert layout[prefix + "proj"] == (1280, 1024)  # the projection width the UNet's context takes
    assert layout[prefix + "positional_embedding"] == (257, 1280)  # (224 / 14)^2 patches + class token
    assert layout[prefix + "transformer.resblocks.0.attn.in_proj_weight"] == (3840, 1280)
    assert sum(math.prod(shape) for shape in layout.values()) == 632_076_800


def test_ltxv_spec_keeps_comfyuis_fixed_compression_and_detected_width():
    dit, vae = tiny_providers.LTXV_TRANSFORMER, tiny_providers.LTXV_VAE
    assert dit["num_attention_heads"] == 32  # detection: attention_head_dim = to_k rows // 32
    assert dit["cross_attention_dim"] == dit["attention_head_dim"] * 32
    assert dit["in_channels"] == vae["latent_channels"] == 128 and dit["caption_channels"] == 4096
    compress = [block for block in vae["blocks"] if block[0] == "compress_all"]
    assert len(compress) == 3 and vae["patch_size"] == 4  # 4 x 2^3 = 32 px, 2^3 = 8 frames (comfy/sd.py)
    assert vae["blocks"][-1][0] == "res_x"  # the decoder's up_blocks.0 is a res block: its detection key


def test_weights_are_seeded_and_scaled_by_kind():
    sections = {"model.diffusion_model.": {"a.weight": (64, 64)},
                "first_stage_model.": {"conv.weight": (8, 4, 3, 3), "conv.bias": (8,), "norm.weight": (8,)}}
    one, two = tiny_providers.tensors(sections, seed=3), tiny_providers.tensors(sections, seed=3)
    assert all(bool((one[key] == two[key]).all()) for key in one)
    assert 0.01 < float(one["model.diffusion_model.a.weight"].float().std()) < 0.03
    assert float(one["first_stage_model.conv.bias"].abs().max()) == 0.0
    assert bool((one["first_stage_model.norm.weight"] == 1).all())
    assert 0.8 < float(one["first_stage_model.conv.weight"].float().std()) * 6 < 1.2  # randn / sqrt(36)
    assert all(tensor.dtype.itemsize == 2 for tensor in one.values())  # fp16 as released


def test_building_without_comfyui_says_what_it_needs(monkeypatch, tmp_path):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    with pytest.raises(RuntimeError, match="needs COMFYUI_PATH"):
        tiny_providers.build("ltxv", tmp_path / "x.safetensors", 0)


@pytest.mark.integration
@pytest.mark.parametrize(("kind", "config", "expected"), [
    ("svd_xt", "SVD_img2vid", {"model_channels": 320, "context_dim": 1024, "channel_mult": [1, 1, 1, 1]}),
    ("ltxv", "LTXV", {"image_model": "ltxv", "num_layers": 2, "attention_head_dim": 8,
                      "cross_attention_dim": 256})])
def test_comfyuis_detection_picks_the_model_for_the_built_file(kind, config, expected, request):
    from comfyui_server import comfyui_checkout

    comfyui_checkout()
    cache = Path(os.environ.get("GEMDIRECT_TINY_MODELS") or request.config.cache.mkdir("gemdirect-tiny-models"))
    found = tiny_providers.detect(tiny_models.build(kind, cache))
    assert found["model_config"] == config
    assert {key: found["unet_config"][key] for key in expected} == expected
