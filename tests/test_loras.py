"""nodes/loras.py: every Wan LoRA spelling (and GGUF) gives the same patch set; foreign files are refused.

Files are written by the tests (tests/tiny_svi.py) in each real key spelling over the tiny WAN 2.2 I2V DiT.
"""

from __future__ import annotations

import pytest
import tiny_models
import tiny_svi
import torch
from conftest import pack_module
from safetensors.torch import save_file

loras = pack_module("nodes.loras")
STRENGTH = 0.75


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tiny_svi.write_safetensors(tmp_path_factory.mktemp("ref") / "ref.safetensors", "diffusers")
    return loras.load_lora(path)


def test_reference_patches_every_attention_and_ffn_weight(reference):
    layout = tiny_svi.dit_layout()
    assert len(reference.patches) == tiny_models.lora_target_count(layout)
    assert all(target in layout for target in reference.patches)
    reference.check_targets(layout)  # shapes agree with the model's
    patch = reference.patches["blocks.1.cross_attn.k.weight"]
    assert patch.shape == layout["blocks.1.cross_attn.k.weight"] and patch.rank == tiny_svi.SVI_RANK
    assert patch.scale(STRENGTH) == pytest.approx(STRENGTH)  # no alpha: alpha = rank


@pytest.mark.parametrize("spelling", sorted(tiny_svi.SPELLINGS))
def test_every_safetensors_spelling_maps_to_the_same_patch_set(tmp_path, reference, spelling):
    lora = loras.load_lora(tiny_svi.write_safetensors(tmp_path / f"{spelling}.safetensors", spelling))
    assert lora.patch_set(STRENGTH) == reference.patch_set(STRENGTH)
    assert not lora.ignored
    for target, patch in lora.patches.items():
        assert torch.equal(patch.delta(STRENGTH), reference.patches[target].delta(STRENGTH)), target


def test_spellings_are_reported(tmp_path):
    lora = loras.load_lora(tiny_svi.write_safetensors(tmp_path / "k.safetensors", "kohya"))
    assert lora.spellings == ("lora_down/lora_up", "lora_unet_ (kohya)")
    lora = loras.load_lora(tiny_svi.write_safetensors(tmp_path / "d.safetensors", "diffusers"))
    assert lora.spellings == ("diffusion_model.", "lora_A/lora_B")


def test_kohya_names_keep_wan_module_names_with_underscores():
    assert loras.kohya_module("blocks_12_cross_attn_norm_k_img") == "blocks.12.cross_attn.norm_k_img"
    assert loras.kohya_module("blocks_0_cross_attn_k_img") == "blocks.0.cross_attn.k_img"
    assert loras.kohya_module("blocks_3_ffn_2") == "blocks.3.ffn.2"
    assert loras.kohya_module("text_embedding_0") == "text_embedding.0"
    assert loras.kohya_module("vace_blocks_0_after_proj") == "vace_blocks.0.after_proj"


def test_scale_is_strength_times_alpha_over_rank(tmp_path):
    lora = loras.load_lora(tiny_svi.write_safetensors(tmp_path / "a.safetensors", "kohya", alpha=2.0))
    patch = lora.patches["blocks.0.ffn.0.weight"]
    assert patch.scale(STRENGTH) == pytest.approx(STRENGTH * 2.0 / tiny_svi.SVI_RANK)
    expected = STRENGTH * 2.0 / tiny_svi.SVI_RANK * (patch.up.float() @ patch.down.float())
    assert torch.allclose(patch.delta(STRENGTH), expected)
    assert patch.delta(0.0).abs().max() == 0


@pytest.mark.parametrize(("matrix_type", "tolerance"), [("Q8_0", 0.02), ("BF16", 0.01), ("F16", 0.001)])
def test_gguf_lora_gives_the_same_patch_set(tmp_path, reference, matrix_type, tolerance):
    lora = loras.load_lora(tiny_svi.write_gguf(tmp_path / f"l-{matrix_type}.gguf", "kohya", matrix_type))
    assert lora.patch_set(STRENGTH).keys() == reference.patch_set(STRENGTH).keys()
    for target, entry in lora.patch_set(STRENGTH).items():
        want = reference.patch_set(STRENGTH)[target]
        assert (entry.shape, entry.rank) == (want.shape, want.rank)
        assert entry.scale == pytest.approx(want.scale)
    for target, patch in lora.patches.items():
        ref = reference.patches[target]
        relative = (patch.delta(1.0) - ref.delta(1.0)).norm() / ref.delta(1.0).norm()
        assert relative < tolerance, (target, float(relative))
    if matrix_type == "Q8_0":
        assert "Q8_0" in lora.stored_dtypes


def test_foreign_file_is_refused_with_example_keys(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"model.layers.0.mlp.weight": torch.zeros(4, 4), "model.embed.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(loras.LoraFileError) as caught:
        loras.load_lora(path)
    message = str(caught.value)
    assert "foreign.safetensors" in message and "model.layers.0.mlp.weight" in message
    assert "lora_A/lora_B" in message


def test_lora_for_another_model_size_is_refused_by_shape(tmp_path, reference):
    bigger = tiny_models.wan_dit_layout(tiny_models.DitShape(in_dim=36, out_dim=16, dim=256, ffn_dim=512))
    with pytest.raises(loras.LoraFileError, match="do not match the model's shapes"):
        reference.check_targets(bigger)
    t2v_no_blocks = {k: v for k, v in tiny_svi.dit_layout().items() if not k.startswith("blocks.")}
    with pytest.raises(loras.LoraFileError, match="none of its"):
        reference.check_targets(t2v_no_blocks)


def test_damaged_rank_is_refused(tmp_path):
    tensors = tiny_svi.spelled("diffusers")
    tensors["diffusion_model.blocks.0.ffn.0.lora_A.weight"] = torch.zeros(3, 128)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(loras.LoraFileError, match="rank 3"):
        loras.load_lora(path)


def test_truncated_file_is_refused_not_a_traceback(tmp_path):
    path = tiny_svi.write_safetensors(tmp_path / "t.safetensors", "diffusers")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(loras.LoraFileError, match=r"t\.safetensors"):
        loras.load_lora(path)


def test_non_lora_keys_beside_pairs_are_listed_as_ignored(tmp_path):
    tensors = tiny_svi.spelled("diffusers") | {"diffusion_model.blocks.0.norm3.diff": torch.zeros(128)}
    path = tmp_path / "extra.safetensors"
    save_file(tensors, str(path))
    assert loras.load_lora(path).ignored == ("diffusion_model.blocks.0.norm3.diff",)


@pytest.mark.parametrize(("cast", "dtype", "bytes_per"),
                         [("bf16", torch.bfloat16, 2), ("fp8_e4m3fn", torch.float8_e4m3fn, 1)])
def test_cast_keeps_the_patch_set_and_saves_memory(tmp_path, reference, cast, dtype, bytes_per):
    lora = loras.load_lora(tiny_svi.write_safetensors(tmp_path / "c.safetensors", "diffusers"), cast=cast)
    assert lora.patch_set(STRENGTH) == reference.patch_set(STRENGTH)
    assert {p.up.dtype for p in lora.patches.values()} == {dtype}
    assert lora.nbytes * 4 == reference.nbytes * bytes_per
    with pytest.raises(loras.LoraFileError, match="cast"):
        loras.load_lora(tmp_path / "c.safetensors", cast="int4")


def test_comfy_state_dict_round_trips_through_normalise(reference):
    patches, spellings, ignored = loras.normalise(reference.comfy_state_dict())
    assert spellings == ("diffusion_model.", "lora_down/lora_up") and not ignored
    assert {t: (p.shape, p.rank, p.scale(1.0)) for t, p in patches.items()} == \
        {t: (e.shape, e.rank, e.scale) for t, e in reference.patch_set(1.0).items()}
