"""SVI in a real ComfyUI on tiny random-weight WAN 2.2 I2V experts: the SVI LoRA loader changes the model's output
(strength 0 equals the unpatched model, the base model is untouched by the patched clone, safetensors and GGUF
LoRAs, safetensors and GGUF experts), and the shipped long-take workflow runs three scenes with the LoRAs
applied, carries each scene's latents through the run ledger into the next, and renders the film.

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout (skipped, saying so, otherwise); see
docs/comfyui-integration.md. Uses the workflow suite's helpers (its story, film check and prompt conversion).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_comfyui_workflows as suite_kit
import tiny_models
import torch
from comfyui_server import TEST_NODES, running_comfyui
from conftest import REPO_ROOT, pack_module
from safetensors.torch import load_file
from workflow_check import to_api_prompt
from workflow_run import models_wanted, of_type, prompts_for, queue_and_wait, run_folders, swap_text_encoder

pytestmark = pytest.mark.integration

LONG_TAKE = REPO_ROOT / "example_workflows" / "story_svi_long_take.json"
I2V_MODEL, I2V_GGUF = "wan22_test_i2v.safetensors", "wan22_test_i2v.gguf"
HIGH, HIGH_GGUF = "svi_test_HIGH.safetensors", "svi_test_HIGH.gguf"
EXTRA = [("diffusion_models", I2V_MODEL, "wan22_i2v"), ("diffusion_models", I2V_GGUF, "wan22_i2v.gguf"),
         ("loras/svi", HIGH, "svi_lora_high"), ("loras/svi", HIGH_GGUF, "svi_lora_high.gguf")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_cache):
    from comfyui_server import comfyui_checkout

    comfyui_checkout()
    base = tmp_path_factory.mktemp("comfyui-svi")
    prompt = to_api_prompt(suite_kit.read_workflow(LONG_TAKE), suite_kit.local_schemas())
    for folder, name, kind in models_wanted(prompt) + EXTRA:
        tiny_models.install(tiny_models.build(kind, model_cache), base / "models", folder, name)
    suite_kit.write_story(base / "input" / "gemdirect" / suite_kit.story_id(LONG_TAKE), suite_kit.story_id(LONG_TAKE),
                          "wan22_i2v", svi=True)
    nodes = {"gemdirect_test_conditioning": TEST_NODES / "gemdirect_test_conditioning"}
    gguf = suite_kit.gguf_pack_source()
    if gguf is not None:
        nodes[suite_kit.GGUF_PACK] = gguf
    with running_comfyui(base, nodes, listen=True) as running:
        running.object_info = running.get("/object_info").json()
        running.has_gguf = gguf is not None
        yield running


model_cache = suite_kit.model_cache  # fixture


def _sample(model: list, seed: int = 3) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": model, "positive": ["c", 0], "negative": ["c", 0], "latent_image": ["l", 0], "seed": seed,
        "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}}


def _save(samples: list, name: str) -> dict:
    return {"class_type": "SaveLatent", "inputs": {"samples": samples, "filename_prefix": f"itest-svi/{name}"}}


def _latent(server, name: str) -> torch.Tensor:
    files = sorted((server.base / "output" / "itest-svi").glob(f"{name}_*.latent"))
    assert files, f"no saved latent {name}"
    return load_file(str(files[-1]))["latent_tensor"]


def _effect_prompt(loader: str, model_name: str, lora_name: str) -> dict:
    """One prompt: base, strength 0 and strength 1 samples of one expert; the base sampled again last."""
    svi = "GemDirectSVILoRALoader"
    prompt = {
        "m": {"class_type": loader, "inputs": {"unet_name": model_name}
              | ({"weight_dtype": "default"} if loader == "UNETLoader" else {})},
        "c": {"class_type": "GemDirectTestConditioning", "inputs": {"text": "svi", "tokens": 16}},
        "l": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5,
                                                                  "batch_size": 1}},
        "z": {"class_type": svi, "inputs": {"model": ["m", 0], "lora_name": lora_name, "strength": 0.0,
                                            "enabled": True, "cast": "none"}},
        "p": {"class_type": svi, "inputs": {"model": ["m", 0], "lora_name": lora_name, "strength": 1.0,
                                            "enabled": True, "cast": "none"}},
        "f": {"class_type": svi, "inputs": {"model": ["m", 0], "lora_name": lora_name, "strength": 1.0,
                                            "enabled": True, "cast": "fp8_e4m3fn"}},
        "sb": _sample(["m", 0]), "sz": _sample(["z", 0]), "sp": _sample(["p", 0]), "sf": _sample(["f", 0]),
    }
    prompt |= {"vb": _save(["sb", 0], "base"), "vz": _save(["sz", 0], "zero"), "vp": _save(["sp", 0], "patched"),
               "vf": _save(["sf", 0], "fp8")}
    return prompt


@pytest.mark.parametrize(("loader", "model_name", "lora_name"), [
    ("UNETLoader", I2V_MODEL, HIGH), ("UNETLoader", I2V_MODEL, HIGH_GGUF), ("UnetLoaderGGUF", I2V_GGUF, HIGH)],
    ids=["safetensors", "gguf-lora", "gguf-model"])
def test_svi_lora_changes_the_output_and_strength_zero_equals_the_base(server, loader, model_name, lora_name):
    if loader == "UnetLoaderGGUF" and not server.has_gguf:
        pytest.skip("needs ComfyUI-GGUF in $COMFYUI_PATH/custom_nodes")
    for old in (server.base / "output" / "itest-svi").glob("*.latent"):
        old.unlink()
    mark = len(server.log_text())
    queue_and_wait(server, _effect_prompt(loader, model_name, lora_name), suite_kit.SCENE_TIMEOUT)
    log = server.log_text()[mark:]
    base, zero, patched, fp8 = (_latent(server, n) for n in ("base", "zero", "patched", "fp8"))
    assert torch.isfinite(patched).all() and torch.isfinite(base).all()
    assert torch.equal(zero, base)  # strength 0 is the unpatched model
    difference = (patched - base).abs().max().item()
    assert difference > 1e-3, difference  # the patched model's output differs
    assert (fp8 - base).abs().max().item() > 1e-3 and (fp8 - patched).abs().max().item() < difference
    weights = tiny_models.lora_target_count(tiny_models.wan_dit_layout(tiny_models.DITS["wan22_i2v"]))
    assert f"applied at strength 1 to {weights} weights" in log, log[-3000:]
    assert "lora key not loaded" not in log and "NOT LOADED" not in log, log[-3000:]
    # the base model, sampled again after the clones: nothing was baked into it
    again = {k: v for k, v in _effect_prompt(loader, model_name, lora_name).items() if k in ("m", "c", "l")}
    again |= {"sb": _sample(["m", 0]), "vb": _save(["sb", 0], "base-again")}
    queue_and_wait(server, again, suite_kit.SCENE_TIMEOUT)
    assert torch.equal(_latent(server, "base-again"), base)


def test_a_disabled_loader_in_comfyui_passes_the_model_and_never_reads_the_file(server):
    prompt = _effect_prompt("UNETLoader", I2V_MODEL, "not-there.safetensors")
    prompt = {k: v for k, v in prompt.items() if k in ("m", "c", "l", "sb", "vb")}
    prompt["p"] = {"class_type": "GemDirectSVILoRALoader", "inputs": {
        "model": ["m", 0], "lora_name": HIGH, "strength": 1.0, "enabled": False, "cast": "none"}}
    prompt |= {"sp": _sample(["p", 0]), "vp": _save(["sp", 0], "disabled")}
    queue_and_wait(server, prompt, suite_kit.SCENE_TIMEOUT)
    assert torch.equal(_latent(server, "disabled"), _latent(server, "base"))


def test_long_take_runs_three_svi_scenes_through_the_ledger_and_renders(server):
    prompt = swap_text_encoder(to_api_prompt(suite_kit.read_workflow(LONG_TAKE), server.object_info))
    story = suite_kit.story_option(LONG_TAKE)
    mark = len(server.log_text())
    for item in prompts_for(prompt, story, suite_kit.SCENES):
        queue_and_wait(server, item, suite_kit.SCENE_TIMEOUT)
    log = server.log_text()[mark:]
    assert "lora key not loaded" not in log, log[-3000:]
    assert log.count("SVI LoRA: SVI_v2_PRO_Wan2.2-I2V-A14B_HIGH") >= 1 and log.count("_LOW_lora") >= 1, log[-3000:]
    runs = run_folders(server.base / "output", suite_kit.story_id(LONG_TAKE))
    assert len(runs) == 1, runs
    render = prompt[of_type(prompt, suite_kit.STORY_RENDER)[0]]["inputs"]
    suite_kit.check_film(server, story, runs[0], suite_kit.SCENES, render)
    metadata = json.loads((runs[0] / "artifact-metadata.json").read_text(encoding="utf-8"))
    records = {r["SceneId"]: r for r in metadata["Scenes"]}
    ledger = pack_module("nodes.run.ledger")
    latents = pack_module("nodes.svi.latents")
    run = ledger.open_run_dir(runs[0])
    for index, scene_id in enumerate(("s1", "s2", "s3")):
        extra = records[scene_id]["Extra"]
        entry = extra["Latents"]
        path = Path(runs[0]) / entry["Path"]
        assert path.is_file() and entry["Shape"][1] == 16 and entry["TotalFrames"] == 3, entry
        kept = load_file(str(path))["last_latents"]
        assert list(kept.shape) == entry["Shape"] and torch.isfinite(kept).all()
        svi = extra["SVI"]
        assert svi["Enabled"] is True and svi["Family"] == "concat", svi
        if index == 0:
            assert svi["Source"] == "anchor-only" and "first scene" in svi["Fallback"], svi
        else:
            assert svi["Source"] == "previous-scene-latents" and svi["PreviousScene"] == f"s{index}", svi
            assert svi["MotionLatentCount"] == 1 and svi["Slots"].startswith("anchor, motion"), svi
            assert svi["EndLatent"] is True and svi["Slots"].endswith("end"), svi  # Chain Start's auto end image
        assert records[scene_id]["CFG"] == 1.5  # the story's svi.cfg
        assert not any(w.startswith("SVI:") for w in records[scene_id]["Warnings"]), records[scene_id]["Warnings"]
        found = latents.load_last_latents(run, scene_id)  # the record vouches for the file (sha256)
        assert found.why_not is None and torch.equal(found.samples, kept)
