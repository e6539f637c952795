"""The tiny WAN stand-ins (tests/tiny_models.py) carry what ComfyUI reads from real WAN files.

Runs everywhere (no ComfyUI). The integration suite loads them in a real ComfyUI; these tests pin
the facts its model detection keys on (see ../shared/notes/tiny-wan.md), so a layout change is caught
without one.
"""

from __future__ import annotations

import math

import gguf
import numpy as np
import pytest
import tiny_models
from safetensors import safe_open


@pytest.mark.parametrize(("kind", "in_dim", "out_dim"), [
    ("wan22_i2v", 36, 16), ("wan_t2v", 16, 16), ("wan22_ti2v_5b", 48, 48), ("wan21_vace", 16, 16),
    ("wan21_flf2v", 36, 16)])
def test_dit_layout_gives_the_shapes_comfyui_infers(kind, in_dim, out_dim):
    layout = tiny_models.wan_dit_layout(tiny_models.DITS[kind])
    assert layout["patch_embedding.weight"][1] == in_dim
    assert layout["head.head.weight"][0] // 4 == out_dim
    assert layout["head.modulation"][-1] // 128 == 1  # heads = dim // 128
    assert layout["text_embedding.0.weight"] == (128, 4096)
    assert len({key.split(".")[1] for key in layout if key.startswith("blocks.")}) == 2
    assert ("img_emb.proj.0.bias" in layout) == (kind in ("wan21_flf2v", "wan21_i2v"))
    assert ("img_emb.emb_pos" in layout) == (kind == "wan21_flf2v")
    if kind == "wan21_vace":
        assert layout["vace_patch_embedding.weight"][1] == 96
        assert any(key.startswith("vace_blocks.0.") for key in layout)


def test_vae_layouts_are_told_apart_as_comfyui_does_and_have_their_full_size():
    v21, v22 = tiny_models.wan21_vae_layout(), tiny_models.wan22_vae_layout()
    for layout in (v21, v22):
        assert "decoder.middle.0.residual.0.gamma" in layout
    assert "decoder.upsamples.0.upsamples.0.residual.2.weight" in v22
    assert "decoder.upsamples.0.upsamples.0.residual.2.weight" not in v21
    assert v21["conv2.weight"][0] == 16 and v22["conv2.weight"][0] == 48  # latent channels
    assert round(sum(math.prod(s) for s in v21.values()) / 1e6, 1) == 126.9  # ComfyUI's fixed config


def test_vae_weights_keep_a_random_decoder_finite():
    layout = {k: v for k, v in tiny_models.wan21_vae_layout().items() if k.startswith("decoder.head")}
    tensors = tiny_models.vae_tensors(layout, seed=1)
    assert bool((tensors["decoder.head.0.gamma"] == 1).all()) and bool((tensors["decoder.head.2.bias"] == 0).all())
    weight = tensors["decoder.head.2.weight"].float()
    assert weight.std().item() == pytest.approx(1 / math.sqrt(96 * 27), rel=0.1)


def test_cached_files_are_seeded_and_reused(tmp_path):
    first = tiny_models.build("wan_t2v", tmp_path / "a")
    again = tiny_models.build("wan_t2v", tmp_path / "b")
    assert first.read_bytes() == again.read_bytes()
    stamp = first.stat().st_mtime_ns
    assert tiny_models.build("wan_t2v", tmp_path / "a").stat().st_mtime_ns == stamp
    with safe_open(str(first), "pt") as handle:
        assert set(handle.keys()) == set(tiny_models.wan_dit_layout(tiny_models.DITS["wan_t2v"]))


def test_gguf_file_reads_back_with_architecture_quant_and_original_shapes(tmp_path):
    path = tiny_models.build("wan22_ti2v_5b.gguf", tmp_path)
    reader = gguf.GGUFReader(str(path))
    arch = reader.get_field("general.architecture")
    assert str(arch.parts[arch.data[-1]], encoding="utf-8") == "wan"
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blocks.0.self_attn.q.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    patch = tensors["patch_embedding.weight"]
    assert patch.tensor_type == gguf.GGMLQuantizationType.F16
    field = reader.get_field("comfy.gguf.orig_shape.patch_embedding.weight")
    assert tuple(int(field.parts[i][0]) for i in field.data) == (128, 48, 1, 2, 2)
    original = tiny_models.dit_tensors(tiny_models.wan_dit_layout(tiny_models.DITS["wan22_ti2v_5b"]),
                                       tiny_models._seed("wan22_ti2v_5b", 0))
    values = np.asarray(patch.data, dtype=np.float32).reshape(128, 48, 1, 2, 2)
    assert np.allclose(values, original["patch_embedding.weight"].numpy(), atol=1e-3)


@pytest.mark.parametrize("style", ["diffusers", "kohya"])
def test_lora_covers_every_block_matrix_in_its_spelling(style):
    layout = tiny_models.wan_dit_layout(tiny_models.DITS["wan22_i2v"])
    tensors = tiny_models.lora_tensors(layout, style)
    down = [k for k in tensors if k.endswith((".lora_A.weight", ".lora_down.weight"))]
    assert len(down) == tiny_models.lora_target_count(layout) > 0
    first = "diffusion_model.blocks.0.self_attn.q.lora_A.weight" if style == "diffusers" else \
        "lora_unet_blocks_0_self_attn_q.lora_down.weight"
    assert tensors[first].shape == (4, 128)
