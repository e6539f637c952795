"""Run a shipped UI-format workflow in a real ComfyUI as a user's Run press does, on tiny stand-in models.

Driven by what each workflow file holds (node types and widgets, never node ids):

- the API prompt is :func:`workflow_check.to_api_prompt` (checked against the real frontend's
  ``app.graphToPrompt`` by the suite, on every workflow);
- model widgets stay as shipped: :func:`models_wanted` lists (folder, file name, tiny kind) for every
  loader, and the suite writes tiny files under those names into the server's models/;
- only the text encoder is swapped (:func:`swap_text_encoder`): CLIPTextEncode becomes the test-only
  ``GemDirectTestConditioning`` with the same text input, and CLIPLoader is dropped;
- every Story Loader reads the test story; Scene Select's index is set per prompt, as the
  ``increment`` control would between queued prompts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEST_CONDITIONING = "GemDirectTestConditioning"
TEXT_ENCODE = "CLIPTextEncode"
TEXT_LOADERS = ("CLIPLoader", "CLIPLoaderGGUF")
STORY_LOADER = "GemDirectStoryLoader"
SCENE_SELECT = "GemDirectSceneSelect"
SCENE_SAVE = "GemDirectSceneSave"
STORY_RENDER = "GemDirectStoryRender"
VACE_PREP = "GemDirectVACEPrep"
# The test story's scenes are 13 frames: the shipped 8 / 8 / 0 would need 33 (see docs/vace.md).
TEST_VACE_SETTINGS = {"context_frames": 4, "replace_frames": 0, "new_frames": 0}

# Loader -> (widget with the file name, the models/ folder it lists).
MODEL_LOADERS: dict[str, tuple[str, str]] = {
    "UNETLoader": ("unet_name", "diffusion_models"),
    "UnetLoaderGGUF": ("unet_name", "diffusion_models"),
    "VAELoader": ("vae_name", "vae"),
    "LoraLoaderModelOnly": ("lora_name", "loras"),
    "UpscaleModelLoader": ("model_name", "upscale_models"),
    "CheckpointLoaderSimple": ("ckpt_name", "checkpoints"),
    "ImageOnlyCheckpointLoader": ("ckpt_name", "checkpoints"),
    "GemDirectSVILoRALoader": ("lora_name", "loras/svi"),
    "GemDirectRIFELoader": ("model_name", "frame_interpolation"),
    "GemDirectUpscaleModelLoader": ("model_name", "upscale_models"),
}
NO_MODEL_PREFIX = "none ("  # the pack loaders' explicit no-model choices: nothing to install
# The other providers' latent node decides the checkpoint's tiny kind (tests/tiny_providers.py).
PROVIDER_CHECKPOINTS: dict[str, str] = {"SVD_img2vid_Conditioning": "svd_xt", "LTXVImgToVideo": "ltxv"}
# The node that makes the sampler's latent decides the WAN family: (DiT kind, VAE kind) in tiny_models.
WAN_FAMILIES: dict[str, tuple[str, str]] = {
    "WanFirstLastFrameToVideo": ("wan22_i2v", "wan21_vae"),
    "WanImageToVideo": ("wan22_i2v", "wan21_vae"),
    "Wan22ImageToVideoLatent": ("wan22_ti2v_5b", "wan22_vae"),
    "WanVaceToVideo": ("wan21_vace", "wan21_vae"),
    "Wan22FunControlToVideo": ("wan22_fun_control", "wan21_vae"),
    "EmptyHunyuanLatentVideo": ("wan_t2v", "wan21_vae"),
    "GemDirectSVIContinue": ("wan22_i2v", "wan21_vae"),
    "EmptySD3LatentImage": ("lumina2_zimage", "flux_ae"),  # Z-Image Turbo: a Lumina-2 stand-in (tiny_zimage.py)
}
# CLIPLoader type -> (width, attention mask) of the conditioning its model reads; others: umt5-xxl's 4096.
# lumina2 here is qwen_3_4b (Z-Image): 2560 wide, with the mask ComfyUI's Lumina 2 model needs for num_tokens.
TEXT_WIDTHS: dict[str, tuple[int, bool]] = {"lumina2": (2560, True), "ltxv": (4096, True)}  # ltxv: T5, masked


class WorkflowRunError(AssertionError):
    """A prompt of a workflow was refused or failed; the message names the node and the reason."""


@dataclass
class PromptResult:
    prompt_id: str
    entry: dict  # ComfyUI's history entry
    seconds: float


@dataclass
class WorkflowRun:
    name: str
    prompts: list[dict] = field(default_factory=list)
    results: list[PromptResult] = field(default_factory=list)


def of_type(prompt: Mapping[str, dict], *class_types: str) -> list[str]:
    return [key for key, node in prompt.items() if node["class_type"] in class_types]


def wan_family(prompt: Mapping[str, dict]) -> tuple[str, str] | None:
    found = {WAN_FAMILIES[n["class_type"]] for n in prompt.values() if n["class_type"] in WAN_FAMILIES}
    if len(found) > 1:
        raise ValueError(f"the workflow mixes WAN families {sorted(found)}: give each loader its own kind")
    return found.pop() if found else None


def provider_kind(prompt: Mapping[str, dict]) -> str | None:
    """The tiny checkpoint kind of an SVD / LTX-Video workflow (from its latent node), None for others."""
    found = {PROVIDER_CHECKPOINTS[n["class_type"]] for n in prompt.values() if n["class_type"] in PROVIDER_CHECKPOINTS}
    if len(found) > 1:
        raise ValueError(f"the workflow mixes providers {sorted(found)}")
    return found.pop() if found else None


def models_wanted(prompt: Mapping[str, dict]) -> list[tuple[str, str, str]]:
    """(models/ folder, file name as shipped, tiny_models kind) for every model loader in ``prompt``."""
    family = wan_family(prompt)
    wanted = []
    for node in prompt.values():
        loader = MODEL_LOADERS.get(node["class_type"])
        if loader is None:
            continue
        widget, folder = loader
        name = node["inputs"][widget]
        if name.startswith(NO_MODEL_PREFIX):
            continue
        if node["class_type"] in ("UNETLoader", "UnetLoaderGGUF"):
            if family is None:
                raise ValueError(f"{node['class_type']} '{name}' feeds no known WAN latent node")
            kind = family[0] + (".gguf" if node["class_type"] == "UnetLoaderGGUF" else "")
        elif node["class_type"] == "VAELoader":
            kind = family[1] if family else "wan21_vae"
        elif node["class_type"] == "LoraLoaderModelOnly":
            kind = "lora_diffusers"
        elif folder == "checkpoints":
            kind = provider_kind(prompt)
            if kind is None:
                raise ValueError(f"{node['class_type']} '{name}' feeds no known provider latent node")
        elif node["class_type"] == "GemDirectSVILoRALoader":
            kind = ("svi_lora_high" if "HIGH" in name.upper() else "svi_lora_low") \
                + (".gguf" if name.lower().endswith(".gguf") else "")
        elif node["class_type"] == "GemDirectRIFELoader":
            kind = "rife"
        else:
            kind = "esrgan"
        wanted.append((folder, name, kind))
    return wanted


def swap_text_encoder(prompt: Mapping[str, dict]) -> dict[str, dict]:
    """``prompt`` with each CLIPTextEncode replaced by the seeded test conditioning and CLIPLoader removed."""
    swapped = copy.deepcopy(dict(prompt))
    loaders = set(of_type(swapped, *TEXT_LOADERS))
    for key in of_type(swapped, TEXT_ENCODE):
        inputs = swapped[key]["inputs"]
        clip = inputs.get("clip")
        loader = swapped.get(clip[0], {}) if isinstance(clip, list) else {}
        width, mask = TEXT_WIDTHS.get(loader.get("inputs", {}).get("type"), (4096, False))
        swapped[key] = {"class_type": TEST_CONDITIONING,
                        "inputs": {"text": inputs["text"], "tokens": 16, "width": width, "attention_mask": mask},
                        "_meta": {"title": f"{swapped[key].get('_meta', {}).get('title', TEXT_ENCODE)} (test)"}}
    for key, node in swapped.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and value[0] in loaders:
                raise ValueError(f"node {key} ({node['class_type']}) input '{name}' uses the text encoder "
                                 "itself; only CLIPTextEncode can be swapped")
    for key in loaders:
        del swapped[key]
    return swapped


def for_scene(prompt: Mapping[str, dict], story: str, scene_index: int) -> dict[str, dict]:
    """The prompt reading ``story`` (a Story Loader option) at ``scene_index`` (1-based)."""
    out = copy.deepcopy(dict(prompt))
    for key in of_type(out, STORY_LOADER):
        out[key]["inputs"]["story"] = story
    for key in of_type(out, SCENE_SELECT):
        if not isinstance(out[key]["inputs"].get("scene_index"), list):
            out[key]["inputs"]["scene_index"] = scene_index
    return out


def failure_text(response_json: Any) -> str:
    """A refused prompt's reason, naming each node: ``node 11 (WanFirstLastFrameToVideo): ...``."""
    if not isinstance(response_json, dict):
        return str(response_json)
    lines = []
    error = response_json.get("error") or {}
    if error:
        lines.append(f"{error.get('type')}: {error.get('message')} {error.get('details', '')}".strip())
    for node_id, info in (response_json.get("node_errors") or {}).items():
        for item in info.get("errors", []):
            extra = item.get("extra_info") or {}
            lines.append(f"node {node_id} ({info.get('class_type')}): {item.get('type')}: {item.get('message')}; "
                         f"{item.get('details', '')} [input {extra.get('input_name')}]")
    return "\n".join(lines) or json.dumps(response_json)[:2000]


def execution_failure(entry: Mapping[str, Any]) -> str | None:
    """A failed prompt's reason from its history entry, naming the node; None when it succeeded."""
    status = entry.get("status", {})
    if status.get("status_str") == "success":
        return None
    for kind, data in status.get("messages", []):
        if kind == "execution_error":
            return (f"node {data.get('node_id')} ({data.get('node_type')}): {data.get('exception_type')}: "
                    f"{data.get('exception_message')}")
        if kind == "execution_interrupted":
            return f"interrupted in node {data.get('node_id')} ({data.get('node_type')})"
    return f"status {status.get('status_str')}"


def queue_and_wait(server: Any, prompt: Mapping[str, dict], timeout: float) -> PromptResult:
    """Queue ``prompt``; its result once it succeeded. WorkflowRunError names the node and reason otherwise."""
    import time

    started = time.monotonic()
    response = server.queue(dict(prompt))
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        raise WorkflowRunError(f"ComfyUI refused the prompt (HTTP {response.status_code}):\n{failure_text(body)}")
    prompt_id = response.json()["prompt_id"]
    entry = server.wait_for(prompt_id, timeout=timeout)
    problem = execution_failure(entry)
    if problem:
        raise WorkflowRunError(f"the prompt failed: {problem}\n{server.log_tail(30)}")
    return PromptResult(prompt_id, entry, time.monotonic() - started)


def for_transition(prompt: Mapping[str, dict], story: str, transition_index: int) -> dict[str, dict]:
    """The prompt reading ``story`` and making its ``transition_index``-th VACE transition (the test settings)."""
    out = for_scene(prompt, story, 1)
    for key in of_type(out, VACE_PREP):
        out[key]["inputs"].update(TEST_VACE_SETTINGS, transition_index=transition_index)
    return out


def prompts_for(workflow_prompt: Mapping[str, dict], story: str, scene_count: int) -> list[dict]:
    """One prompt per scene in order (Scene Select's index as ``increment`` sets it); a workflow that only
    renders (a Story Render and no Scene Save) is one prompt; a VACE workflow one prompt per join (VACE
    Prep's index as ``increment`` sets it; every join of the test story is a vace transition)."""
    if of_type(workflow_prompt, VACE_PREP):
        return [for_transition(workflow_prompt, story, index) for index in range(1, scene_count)]
    if of_type(workflow_prompt, STORY_RENDER) and not of_type(workflow_prompt, SCENE_SAVE):
        return [for_scene(workflow_prompt, story, scene_count)]
    return [for_scene(workflow_prompt, story, index) for index in range(1, scene_count + 1)]


def run_folders(output_dir: Path, story_id: str) -> list[Path]:
    return sorted(p.parent for p in (output_dir / "gemdirect" / story_id).glob("*/run.json"))
