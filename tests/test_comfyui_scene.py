"""Scene LoRAs in a real ComfyUI on a tiny WAN model: a LoRA changes the sample, strength 0 equals the base,
and the scene after a LoRA scene samples with the clean model (the patch was on a clone).

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout (skipped otherwise), with its own server and
``--base-directory``; the tiny models come from tests/tiny_models.py (``GEMDIRECT_TINY_MODELS`` cache).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tiny_models
from comfyui_server import TEST_NODES, running_comfyui
from conftest import load_pack
from safetensors.torch import load_file
from workflow_run import queue_and_wait

pytestmark = pytest.mark.integration

DIT = "wan_scene_t2v_tiny.safetensors"
LORA = "wan_scene_style.safetensors"
VAE = "wan_2.1_vae.safetensors"
TIMEOUT = 600.0


def write_story(folder: Path, sid: str, strength: float, expert: str = "both") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    story = {"schema": "gemdirect.story/1", "id": sid, "title": sid,
             "defaults": {"transition": {"kind": "cut"}},
             "scenes": [{"id": "s1", "prompt": "a lighthouse", "frames": 5, "width": 64, "height": 64,
                         "loras": [{"name": LORA, "strength": strength, "expert": expert}]},
                        {"id": "s2", "prompt": "a lighthouse", "frames": 5, "width": 64, "height": 64}]}
    (folder / "story.json").write_text(json.dumps(story), encoding="utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    from comfyui_server import comfyui_checkout

    comfyui_checkout()
    cache = Path(os.environ.get("GEMDIRECT_TINY_MODELS") or request.config.cache.mkdir("gemdirect-tiny-models"))
    base = tmp_path_factory.mktemp("comfyui-scene")
    tiny_models.install(tiny_models.build("wan_t2v", cache), base / "models", "diffusion_models", DIT)
    tiny_models.install(tiny_models.build("lora_diffusers", cache), base / "models", "loras", LORA)
    write_story(base / "input" / "gemdirect" / "lora-one", "lora-one", 1.0)
    write_story(base / "input" / "gemdirect" / "lora-zero", "lora-zero", 0.0)
    write_story(base / "input" / "gemdirect" / "lora-run", "lora-run", 0.7, expert="high")
    tiny_models.install(tiny_models.build("wan21_vae", cache), base / "models", "vae", VAE)
    nodes = {"gemdirect_test_conditioning": TEST_NODES / "gemdirect_test_conditioning"}
    with running_comfyui(base, nodes) as running:
        yield running


def widget_defaults(node_type: str) -> dict:
    """The default of every required widget input of a pack node (what the frontend would send)."""
    required = load_pack().NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()["required"]
    defaults = {}
    for name, spec in required.items():
        options = spec[1] if len(spec) > 1 else {}
        if isinstance(spec[0], list):
            defaults[name] = options.get("default", spec[0][0])
        elif "default" in options:
            defaults[name] = options["default"]
    return defaults


def sample(server, name: str, story: str | None = None, scene_index: int = 1, *, expect_error: bool = False):
    """One 1-step sample of the tiny T2V model, through Scene LoRAs when ``story`` is given; its latent."""
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT, "weight_dtype": "default"}},
        "4": {"class_type": "GemDirectTestConditioning", "inputs": {"text": "a lighthouse", "tokens": 16}},
        "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 1,
                                                                  "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "seed": 3, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": f"scene/{name}"}},
    }
    if story is not None:
        prompt["2"] = {"class_type": "GemDirectStoryLoader", "inputs": {"story": story, "preset": "none"}}
        prompt["3"] = {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["2", 0], "scene_index": scene_index}}
        prompt["8"] = {"class_type": "GemDirectSceneLoRAs", "inputs": {"model": ["1", 0], "scene": ["3", 0],
                                                                      "model_is": "single model"}}
        prompt["6"]["inputs"]["model"] = ["8", 0]
    queue_and_wait(server, prompt, TIMEOUT)
    files = sorted((server.base / "output" / "scene").glob(f"{name}_*.latent"))
    assert files, f"no latent saved for {name}"
    return load_file(str(files[-1]))["latent_tensor"]


def test_a_scene_lora_changes_the_sample_and_the_next_scene_samples_clean(server):
    base = sample(server, "base")
    with_lora = sample(server, "scene1-lora", "lora-one/story.json", 1)
    after = sample(server, "scene2-after-lora", "lora-one/story.json", 2)  # same cached UNETLoader model
    assert not with_lora.equal(base), "the LoRA did not change the sample"
    assert (with_lora - base).abs().max() > 1e-4
    assert after.equal(base), "scene 2 (no LoRA) did not sample with the clean model"
    log = server.log_text()
    assert "lora key not loaded" not in log, log[-3000:]


def test_strength_zero_equals_the_base(server):
    base = sample(server, "base-zero")
    zero = sample(server, "scene1-zero", "lora-zero/story.json", 1)
    assert zero.equal(base)


def test_a_scene_rendered_with_a_lora_records_it_in_its_telemetry_and_fingerprint(server):
    """Run + Scene LoRAs + Scene Save: the record keeps the LoRA with its expert, and a one-expert LoRA on a
    single model is applied with a warning in the run's ledger (never silently)."""
    prompt = {
        "1": {"class_type": "GemDirectStoryLoader", "inputs": {"story": "lora-run/story.json", "preset": "none"}},
        "2": {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["1", 0], "scene_index": 1}},
        "3": {"class_type": "GemDirectRun", "inputs": {"story": ["1", 0], "scene": ["2", 0], "mode": "new"}},
        "4": {"class_type": "UNETLoader", "inputs": {"unet_name": DIT, "weight_dtype": "default"}},
        "5": {"class_type": "GemDirectSceneLoRAs", "inputs": {"model": ["4", 0], "scene": ["2", 0],
                                                             "model_is": "single model", "run": ["3", 0]}},
        "6": {"class_type": "GemDirectTestConditioning", "inputs": {"text": "a lighthouse", "tokens": 16}},
        "7": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": ["2", 6], "height": ["2", 7],
                                                                  "length": ["2", 8], "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"model": ["5", 0], "positive": ["6", 0], "negative": ["6", 0],
                                                   "latent_image": ["7", 0], "seed": ["2", 3], "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "9": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["9", 0]}},
        "11": {"class_type": "GemDirectSceneSave", "inputs": widget_defaults("GemDirectSceneSave") | {
            "frames": ["10", 0], "scene": ["2", 0], "run": ["3", 0]}},
    }
    queue_and_wait(server, prompt, TIMEOUT)
    runs = sorted((server.base / "output" / "gemdirect" / "lora-run").glob("*/run.json"))
    assert len(runs) == 1, runs
    record = json.loads((runs[0].parent / "scenes" / "s1.json").read_text(encoding="utf-8"))
    assert record["Loras"] == [{"Name": LORA, "Strength": 0.7, "Expert": "high"}]
    assert record["Extra"]["Fingerprint"]["Plan"]["Loras"] == record["Loras"]
    events = [json.loads(line) for line in (runs[0].parent / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    warnings = [e for e in events if e.get("event") == "warning" and e.get("scene") == "s1"]
    assert any("marked expert 'high'" in w["text"] and "single model" in w["text"] for w in warnings), warnings
