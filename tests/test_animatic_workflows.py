"""The issue-4 example workflows: the animatic preview runs through the pack's nodes; the WAN 2.2 story renders
take every scene value from Scene Select and the start image from Chain Start, with the presets' safe defaults."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_pack
from workflow_check import WORKFLOW_DIR, pack_schemas, to_api_prompt

WAN_WORKFLOWS = ("story_wan22_5b_ti2v", "story_wan22_5b_ti2v_gguf", "story_wan22_14b_flf2v",
                 "story_wan22_14b_flf2v_gguf")


def _workflow(name: str) -> dict:
    return json.loads((WORKFLOW_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _schemas() -> dict:
    core = json.loads((WORKFLOW_DIR.parent / "tests" / "data" / "object_info_core.json").read_text(encoding="utf-8"))
    pack = load_pack()
    return {**core, **pack_schemas(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)}


def _of_type(prompt: dict, class_type: str) -> list[dict]:
    return [entry["inputs"] for entry in prompt.values() if entry["class_type"] == class_type]


def test_animatic_preview_runs_and_makes_the_planned_clip(comfy_home):
    classes = load_pack().NODE_CLASS_MAPPINGS
    prompt = to_api_prompt(_workflow("story_animatic_preview"), _schemas())
    results: dict[str, tuple] = {}
    for key, entry in sorted(prompt.items(), key=lambda item: int(item[0])):
        if not entry["class_type"].startswith("GemDirect"):
            continue
        inputs = {name: results[value[0]][value[1]] if isinstance(value, list) else value
                  for name, value in entry["inputs"].items()}
        node_class = classes[entry["class_type"]]
        results[key] = getattr(node_class(), node_class.FUNCTION)(**inputs)
    (video,) = _of_type(prompt, "CreateVideo")
    frames = results[video["images"][0]][video["images"][1]]
    select_names = load_pack().NODE_CLASS_MAPPINGS["GemDirectSceneSelect"].RETURN_NAMES
    scene = next(r for r in results.values() if len(r) == len(select_names))[0]
    fps = results[video["fps"][0]][video["fps"][1]]
    assert isinstance(frames, torch.Tensor) and frames.shape == (scene.length, scene.height, scene.width, 3)
    assert fps == float(scene.fps)
    change = (frames[1:] - frames[:-1]).abs().mean((1, 2, 3))
    assert float(change.min()) > 0  # a camera move, not a held frame
    (saver,) = _of_type(prompt, "SaveVideo")
    assert saver["video"][0] in prompt


@pytest.mark.parametrize("name", WAN_WORKFLOWS)
def test_wan_story_workflow_takes_the_scene_from_the_story_and_the_start_from_the_chain(name, comfy_home):
    prompt = to_api_prompt(_workflow(name), _schemas())
    (select_key,) = [k for k, e in prompt.items() if e["class_type"] == "GemDirectSceneSelect"]
    (chain_key,) = [k for k, e in prompt.items() if e["class_type"] == "GemDirectChainStart"]
    select_outputs = {n: i for i, n in enumerate(load_pack().NODE_CLASS_MAPPINGS["GemDirectSceneSelect"].RETURN_NAMES)}

    def from_select(value, output):
        return value == [select_key, select_outputs[output]]

    texts = sorted(from_select(e["text"], "positive") * 1 + from_select(e["text"], "negative") * 2
                   for e in _of_type(prompt, "CLIPTextEncode"))
    assert texts == [1, 2]
    samplers = _of_type(prompt, "KSampler") + _of_type(prompt, "KSamplerAdvanced")
    assert samplers and all(from_select(s.get("seed", s.get("noise_seed")), "seed") and from_select(s["cfg"], "cfg")
                            and from_select(s["steps"], "steps") for s in samplers)
    latent = (_of_type(prompt, "Wan22ImageToVideoLatent") + _of_type(prompt, "WanFirstLastFrameToVideo"))[0]
    assert latent["start_image"] == [chain_key, 0]
    assert all(from_select(latent[n], n) for n in ("width", "height", "length"))
    loaders = _of_type(prompt, "UnetLoaderGGUF" if name.endswith("_gguf") else "UNETLoader")
    (chain,) = _of_type(prompt, "GemDirectChainStart")
    if "flf2v" in name:
        assert latent["end_image"] == [chain_key, 1] and chain["end_image"] == "auto"
        high, low = sorted(samplers, key=lambda s: s["add_noise"] == "disable")
        assert (high["add_noise"], high["return_with_leftover_noise"]) == ("enable", "enable")
        assert (low["add_noise"], low["return_with_leftover_noise"]) == ("disable", "disable")
        # the expert split follows the story's steps: both samplers take Scene Select's split_step
        assert high["start_at_step"] == 0 and low["end_at_step"] == 10000
        assert from_select(high["end_at_step"], "split_step") and from_select(low["start_at_step"], "split_step")
        assert sorted("high" in loader["unet_name"].lower() for loader in loaders) == [False, True]
        note = next(n for n in _workflow(name)["nodes"] if n["type"] == "MarkdownNote")["widgets_values"][0]
        assert "split_step" in note and "8s" not in note
    else:
        assert "end_image" not in latent and chain["end_image"] == "none"  # 5B takes no end image: say so
        assert len(loaders) == 1 and "5B" in loaders[0]["unet_name"]
    (save,) = _of_type(prompt, "GemDirectSceneSave")
    assert save["scene"] == [select_key, 0] and save["frames"][0] in prompt


@pytest.mark.parametrize("name", WAN_WORKFLOWS)
def test_wan_story_workflow_widget_defaults_are_the_presets_safe_ones(name):
    for each in _workflow(name)["nodes"]:
        if each["type"] in ("KSampler", "KSamplerAdvanced"):
            values = each["widgets_values"]
            assert 5.2 in values and any(v == 16 for v in values if isinstance(v, int))
        if each["type"] == "ModelSamplingSD3":
            assert each["widgets_values"] == [8.0]
