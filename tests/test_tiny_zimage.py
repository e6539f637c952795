"""The Z-Image workflow's stand-ins (tests/tiny_zimage.py) carry what the pinned ComfyUI reads, and the
suite's text-encoder swap gives that model the conditioning it needs. Runs everywhere (no ComfyUI);
the integration suite runs the workflow on them (tests/test_comfyui_workflows.py)."""

from __future__ import annotations

import json
import math

import pytest
import tiny_zimage
from conftest import REPO_ROOT
from workflow_check import to_api_prompt
from workflow_run import TEST_CONDITIONING, models_wanted, of_type, swap_text_encoder

WORKFLOW = REPO_ROOT / "example_workflows" / "story_keyframes_zimage_turbo.json"
WAN_T2I = REPO_ROOT / "example_workflows" / "story_keyframes_wan_t2i.json"


def params(layout) -> int:
    return sum(math.prod(shape) for shape in layout.values())


def test_nextdit_layout_is_what_lumina_2_detection_reads():
    layout = tiny_zimage.nextdit_layout()
    # detection: cap_embedder.1.weight makes it Lumina 2; its second dimension is the caption width
    assert layout["cap_embedder.1.weight"] == (2304, 2560)
    assert {key.split(".")[1] for key in layout if key.startswith("layers.")} == {"0"}
    for refiner in ("noise_refiner", "context_refiner"):
        assert {key.split(".")[1] for key in layout if key.startswith(f"{refiner}.")} == {"0", "1"}
    assert layout["layers.0.attention.qkv.weight"] == ((24 + 2 * 8) * 96, 2304)
    assert layout["x_embedder.weight"] == (2304, 2 * 2 * 16)
    assert "context_refiner.0.adaLN_modulation.1.weight" not in layout  # context refiners: no modulation
    assert params(layout) == 427_547_136  # counted from the pinned ComfyUI's NextDiT at these settings
    assert params(tiny_zimage.nextdit_layout(layers=2)) - params(layout) == 87_312_576  # one more layer


def test_flux_vae_layout_is_the_full_ldm_autoencoder_without_quant_convs():
    layout = tiny_zimage.flux_vae_layout()
    assert layout["decoder.conv_in.weight"] == (512, 16, 3, 3)  # 16 latent channels
    assert layout["encoder.conv_out.weight"] == (32, 512, 3, 3)
    assert "decoder.up.3.upsample.conv.weight" in layout and "decoder.up.0.upsample.conv.weight" not in layout
    assert not any("quant_conv" in key for key in layout)  # Flux's ae has none: ComfyUI's AutoencodingEngine
    assert params(layout) == 83_819_683


def test_flux_vae_weights_are_bf16_with_unit_norms():
    layout = {k: v for k, v in tiny_zimage.flux_vae_layout().items() if k.startswith("decoder.conv_out")
              or k.startswith("decoder.norm_out")}
    tensors = tiny_zimage.flux_vae_tensors(layout, seed=3)
    assert all(t.dtype.is_floating_point and str(t.dtype) == "torch.bfloat16" for t in tensors.values())
    assert bool((tensors["decoder.norm_out.weight"] == 1).all()) and bool((tensors["decoder.conv_out.bias"] == 0).all())
    assert tensors["decoder.conv_out.weight"].float().std().item() == pytest.approx(1 / math.sqrt(128 * 9), rel=0.2)


def prompt_of(path, schemas):
    return to_api_prompt(json.loads(path.read_text(encoding="utf-8")), schemas)


@pytest.fixture(scope="module")
def schemas():
    from test_comfyui_workflows import local_schemas

    return local_schemas()


def test_the_zimage_workflow_gets_the_stand_ins_and_a_2560_wide_masked_conditioning(schemas):
    prompt = prompt_of(WORKFLOW, schemas)
    assert sorted((folder, name, kind) for folder, name, kind in models_wanted(prompt)) == [
        ("diffusion_models", "z_image_turbo_bf16.safetensors", "lumina2_zimage"),
        ("vae", "ae.safetensors", "flux_ae")]
    swapped = swap_text_encoder(prompt)
    assert not of_type(swapped, "CLIPLoader", "CLIPTextEncode")
    encoders = [swapped[key]["inputs"] for key in of_type(swapped, TEST_CONDITIONING)]
    assert len(encoders) == 1 and encoders[0]["width"] == 2560 and encoders[0]["attention_mask"] is True
    sampler = swapped[of_type(swapped, "KSampler")[0]]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == \
        (8, 1.0, "res_multistep", "simple")
    assert swapped[of_type(swapped, "ModelSamplingAuraFlow")[0]]["inputs"]["shift"] == 3.0


def test_a_wan_workflow_keeps_the_umt5_width_and_no_mask(schemas):
    swapped = swap_text_encoder(prompt_of(WAN_T2I, schemas))
    for key in of_type(swapped, TEST_CONDITIONING):
        assert (swapped[key]["inputs"]["width"], swapped[key]["inputs"]["attention_mask"]) == (4096, False)
