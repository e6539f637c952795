"""SVI: the conditioning layout (14B 16-channel, 5B 48-channel), the LoRA loader (disabled opens no file),
latents kept in the ledger by Scene Save and continued from by SVI Continue, per-scene svi in the plan."""

from __future__ import annotations

import json
import os
import sys
from typing import ClassVar

import chain_helpers as h
import pytest
import tiny_svi
import torch
from conftest import pack_module

layout = pack_module("nodes.svi.layout")
engine = pack_module("nodes.svi.engine")
latents = pack_module("nodes.svi.latents")
svi_nodes = pack_module("nodes.svi.nodes")
comfy = pack_module("nodes.comfy")
ledger = pack_module("nodes.run.ledger")
fingerprint = pack_module("nodes.run.fingerprint")
loras = pack_module("nodes.loras")


def _latent(channels: int, frames: int, height: int = 6, width: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randn((1, channels, frames, height, width), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the layout


@pytest.mark.parametrize("channels", [16, 48])
def test_layout_is_anchor_then_motion_then_normalised_zeros(channels):
    anchor, previous = _latent(channels, 1, seed=1), _latent(channels, 8, seed=2)
    built = layout.svi_layout(anchor, 81, previous, motion_latent_count=2)
    assert built.image.shape == (1, channels, 21, 6, 10) and built.mask.shape == (1, 1, 21, 6, 10)
    assert torch.equal(built.image[:, :, :1], anchor)
    assert torch.equal(built.image[:, :, 1:3], previous[:, :, -2:])  # the previous clip's LAST latents, in order
    mean = torch.tensor(layout.LATENT_MEANS[channels]).view(1, channels, 1, 1, 1)
    assert torch.allclose(built.image[:, :, 3:], mean.expand(1, channels, 18, 6, 10))  # zero after process_in
    assert built.slots == ["anchor", "motion", "motion"] + ["pad"] * 18
    if channels == 16:  # 14B: concat conditioning, only latent frame 0 masked, zeros to sample
        assert built.family == "concat"
        assert built.mask[0, 0, :, 0, 0].tolist() == [0.0] + [1.0] * 20
        assert torch.count_nonzero(built.latent) == 0 and built.latent.shape == (1, 16, 21, 6, 10)
        values = built.conditioning_values()
        assert values["concat_latent_image"] is built.image and values["concat_mask"] is built.mask
        assert set(built.latent_dict()) == {"samples"}
    else:  # 5B: no concat channels; the slots are held in the latent by its noise_mask
        assert built.family == "in-latent" and built.conditioning_values() == {}
        assert built.mask[0, 0, :, 0, 0].tolist() == [0.0, 0.0, 0.0] + [1.0] * 18
        assert torch.equal(built.latent_dict()["samples"], built.image)
        assert built.latent_dict()["noise_mask"] is built.mask
        assert "noise_mask" in built.notes[0]


@pytest.mark.parametrize("channels", [16, 48])
def test_end_latent_locks_the_last_slot(channels):
    anchor, previous, end = _latent(channels, 1, seed=1), _latent(channels, 4, seed=2), _latent(channels, 1, seed=3)
    built = layout.svi_layout(anchor, 33, previous, motion_latent_count=1, end=end)
    assert built.slots == ["anchor", "motion"] + ["pad"] * 6 + ["end"]
    assert torch.equal(built.image[:, :, -1:], end) and torch.equal(built.image[:, :, 1:2], previous[:, :, -1:])
    expected = [0.0, 1.0] + [1.0] * 6 + [0.0] if channels == 16 else [0.0, 0.0] + [1.0] * 6 + [0.0]
    assert built.mask[0, 0, :, 0, 0].tolist() == expected


def test_first_clip_is_anchor_and_zeros_only():
    built = layout.svi_layout(_latent(16, 1), 9, None, motion_latent_count=1)
    assert built.slots == ["anchor", "pad", "pad"]


def test_layout_refuses_latents_of_another_size_naming_both():
    with pytest.raises(layout.SVILayoutError, match=r"80x48 vs 96x48"):
        layout.svi_layout(_latent(16, 1, width=12), 81, _latent(16, 4, width=10), motion_latent_count=1)
    with pytest.raises(layout.SVILayoutError, match="channels"):
        layout.svi_layout(_latent(16, 1), 81, _latent(48, 4), motion_latent_count=1)
    with pytest.raises(layout.SVILayoutError, match="kept only 2"):
        layout.svi_layout(_latent(16, 1), 81, _latent(16, 2), motion_latent_count=3)
    with pytest.raises(layout.SVILayoutError, match="make the scene longer"):
        layout.svi_layout(_latent(16, 1), 5, _latent(16, 4), motion_latent_count=2)


# --------------------------------------------------------------------------- the LoRA loader


@pytest.fixture
def svi_lora_file(comfy_home):
    folder = comfy_home / "models" / "loras" / "svi"
    folder.mkdir(parents=True)
    return tiny_svi.write_safetensors(folder / "SVI_test_HIGH.safetensors", "diffusers")


def _base_model():
    tiny_models = sys.modules.get("tiny_models") or __import__("tiny_models")
    return tiny_models.dit_tensors(tiny_svi.dit_layout(), seed=5)


class _OpenHook:
    """Records every file the process opens (Python's audit events ``open``) while active."""

    hooks_installed: ClassVar[list] = []

    def __init__(self):
        self.opened: list[str] = []
        self.active = False
        if not _OpenHook.hooks_installed:
            sys.addaudithook(_OpenHook._dispatch)
        _OpenHook.hooks_installed.append(self)

    @staticmethod
    def _dispatch(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            for hook in _OpenHook.hooks_installed:
                if hook.active:
                    hook.opened.append(os.fsdecode(args[0]))


@pytest.fixture
def open_hook():
    hook = _OpenHook()
    yield hook
    hook.active = False
    _OpenHook.hooks_installed.remove(hook)


def test_disabled_loader_opens_no_file_and_passes_the_model_through(svi_lora_file, open_hook, monkeypatch):
    svi_nodes._cache.clear()
    reads = []
    monkeypatch.setattr(loras, "inspect_model", lambda path: reads.append(path))  # must never be reached
    model = _base_model()
    open_hook.active = True
    patched, report = svi_nodes.GemDirectSVILoRALoader().load(model, svi_lora_file.name, 1.0, False)
    open_hook.active = False
    assert patched is model and "off" in report
    assert not [path for path in open_hook.opened if "SVI_test" in path] and not reads


def test_enabled_loader_is_seen_by_the_open_hook_and_patches_every_weight(svi_lora_file, open_hook):
    svi_nodes._cache.clear()
    model = _base_model()
    open_hook.active = True
    patched, report = svi_nodes.GemDirectSVILoRALoader().load(model, svi_lora_file.name, 1.0, True)
    open_hook.active = False
    assert [path for path in open_hook.opened if path.endswith("SVI_test_HIGH.safetensors")]  # the hook sees opens
    lora = loras.load_lora(svi_lora_file)
    changed = [key for key in model if not torch.equal(model[key], patched[key])]
    assert sorted(changed) == sorted(lora.patches)
    for target, patch in lora.patches.items():
        assert torch.allclose(patched[target] - model[target], patch.delta(1.0), atol=1e-6)
    assert f"{os.path.getsize(svi_lora_file) / 1024:.1f} KiB on disk" in report
    assert f"to {__import__('tiny_models').lora_target_count(tiny_svi.dit_layout())} weights" in report
    zero, _ = svi_nodes.GemDirectSVILoRALoader().load(model, svi_lora_file.name, 0.0, True)
    assert all(torch.equal(zero[key], model[key]) for key in model)


def test_loader_follows_the_scene_svi_setting_without_opening_the_file(svi_lora_file, open_hook, comfy_home):
    story = h.load_story(h.write_story(comfy_home / "input" / "s", h.story_dict()))
    scene = story.plan.scenes[1]
    assert not scene.svi.enabled
    model = _base_model()
    open_hook.active = True
    patched, report = svi_nodes.GemDirectSVILoRALoader().load(model, svi_lora_file.name, 1.0, True, scene=scene)
    open_hook.active = False
    assert patched is model and "svi off in the story" in report
    assert not [path for path in open_hook.opened if "SVI_test" in path]


def test_loader_refuses_a_lora_for_another_model(svi_lora_file):
    svi_nodes._cache.clear()
    tiny_models = __import__("tiny_models")
    other = tiny_models.dit_tensors(tiny_models.wan_dit_layout(tiny_models.DitShape(36, 16, dim=256, ffn_dim=512)))
    with pytest.raises(loras.LoraFileError, match="do not match the model's shapes"):
        svi_nodes.GemDirectSVILoRALoader().load(other, svi_lora_file.name, 1.0, True)


def test_svi_loras_are_listed_on_their_own(svi_lora_file, comfy_home):
    (comfy_home / "models" / "loras" / "other.safetensors").write_bytes(b"x")
    (comfy_home / "models" / "loras" / "svi" / "low.gguf").write_bytes(b"x")
    assert svi_nodes.svi_lora_choices() == ["SVI_test_HIGH.safetensors", "low.gguf"]


# --------------------------------------------------------------------------- the story's svi


SVI_STORY = h.story_dict(defaults={**h.STORY["defaults"], "svi": {"enabled": True, "motion_latent_count": 1,
                                                                   "lora_strength": 0.8, "cfg": 1.5}})


def test_svi_per_scene_defaults_and_preset_layer_into_the_plan(comfy_home):
    story = json.loads(json.dumps(SVI_STORY))
    story["scenes"][2]["svi"] = False
    story["scenes"][1]["svi"] = {"motion_latent_count": 2}
    story["scenes"][1]["cfg"] = 3.0
    plan = h.load_story(h.write_story(comfy_home / "input" / "s", story)).plan
    a, b, c = plan.scenes
    assert (a.svi.enabled, b.svi.enabled, c.svi.enabled) == (True, True, False)
    assert (b.svi.motion_latent_count, b.svi.lora_strength, b.svi.source) == (2, 0.8, "defaults")
    assert (a.cfg, b.cfg, c.cfg) == (1.5, 3.0, 5.2)  # SVI's cfg for SVI scenes without their own
    assert plan.post.svi
    assert any("first scene has no previous scene" in w for w in a.warnings)
    cinematic_story = h.story_dict(defaults={**h.STORY["defaults"], "preset": "cinematic"})
    for scene in cinematic_story["scenes"]:
        scene["transition"] = {"kind": "cut"}
    cinematic = h.load_story(h.write_story(comfy_home / "input" / "c", cinematic_story)).plan
    assert all(s.svi.enabled and s.svi.source == "preset" for s in cinematic.scenes)
    standard_story = json.loads(json.dumps(SVI_STORY))
    standard_story["defaults"]["preset"] = "standard"
    for scene in standard_story["scenes"]:
        scene["transition"] = {"kind": "cut"}
    standard = h.load_story(h.write_story(comfy_home / "input" / "d", standard_story)).plan
    assert all(s.svi.enabled and s.svi.source == "defaults" for s in standard.scenes)  # off presets never force off


def test_svi_enters_the_fingerprint_only_when_on_and_changes_make_the_scene_stale(comfy_home):
    plan = h.load_story(h.write_story(comfy_home / "input" / "s", SVI_STORY)).plan
    off = h.load_story(h.write_story(comfy_home / "input" / "o", h.story_dict())).plan
    on_print, off_print = fingerprint.plan_fingerprint(plan.scenes[1]), fingerprint.plan_fingerprint(off.scenes[1])
    assert on_print["SVI"] == {"MotionLatentCount": 1, "LoraStrength": 0.8} and "SVI" not in off_print
    assert fingerprint.plan_changes(off_print, on_print) == ["cfg changed (5.2 -> 1.5)", "svi changed (off -> on)"]
    changed = dict(on_print, SVI={"MotionLatentCount": 2, "LoraStrength": 0.8})
    assert fingerprint.plan_changes(on_print, changed) == ["svi settings changed"]


# --------------------------------------------------------------------------- the ledger and SVI Continue


class PoolVAE:
    """Stand-in for the WAN 2.1 VAE's encode: 8x8 average pool and a fixed 3 -> 16 channel projection."""

    def __init__(self):
        self.projection = torch.randn((16, 3), generator=torch.Generator().manual_seed(9))

    def encode(self, pixels):
        pooled = torch.nn.functional.avg_pool2d(pixels.movedim(-1, 1), 8)  # [T,3,h,w]
        latent = torch.einsum("ct,bthw->bchw", self.projection, pooled)
        return latent.movedim(0, 1).unsqueeze(0)  # [1,16,T,h,w]


def _svi_scene(story_path, index, vae, *, latent_seed, connect_latent=True, end=False):
    """One prompt of an SVI scene: Run, Chain Start, SVI Continue, a stand-in sampler, Scene Save with the LATENT."""
    story = h.load_story(story_path)
    scene, *_values = h.node("GemDirectSceneSelect").select(story, index)
    run, _ = h.node("GemDirectRun").start(story, scene, "continue")
    start, end_image, _source = h.node("GemDirectChainStart").start(run, scene, "crop", "from story", "auto")
    cond = [[torch.zeros(1, 4, 8), {"pooled_output": None}]]
    out = svi_nodes.GemDirectSVIContinue().build(cond, cond, vae, run, scene,
                                                 end_image=end_image if end else None)
    positive_out, _negative_out, latent, report = out["result"]
    sampled = {"samples": _latent(16, latent["samples"].shape[2], 8, 10, seed=latent_seed)}
    frames = h.render(start, end_image)
    h.node("GemDirectSceneSave").save(frames, scene, run, "off", 1.0, latent=sampled if connect_latent else None)
    return {"run": run, "scene": scene, "positive": positive_out, "latent": latent, "report": report,
            "sampled": sampled}


def test_three_svi_scenes_continue_from_the_ledger_latents(comfy_home):
    story_path = h.write_story(comfy_home / "input" / "gemdirect" / "svi", SVI_STORY)
    vae = PoolVAE()
    first = _svi_scene(story_path, 1, vae, latent_seed=11)
    assert "first scene has no previous scene" in first["report"]
    second = _svi_scene(story_path, 2, vae, latent_seed=12)
    third = _svi_scene(story_path, 3, vae, latent_seed=13)
    run = first["run"]
    for before, after in ((first, second), (second, third)):
        concat = after["positive"][0][1]["concat_latent_image"]
        assert torch.equal(concat[:, :, 1:2], before["sampled"]["samples"][:, :, -1:])  # motion = previous' last
        assert after["positive"][0][1]["concat_mask"][0, 0, :, 0, 0].tolist() == [0.0] + [1.0] * 1
        assert "from the run ledger" in after["report"]
    anchor = second["positive"][0][1]["concat_latent_image"][:, :, :1]
    reference = h.pack_module("nodes.video.images").load_png(ledger.scene_paths(run, "a").first_frame)
    assert torch.allclose(anchor, vae.encode(reference.unsqueeze(0)), atol=1e-5)  # anchor = story reference
    record = ledger.read_scene(run, "c")
    assert record["Extra"]["SVI"]["Source"] == "previous-scene-latents"
    assert record["Extra"]["SVI"]["PreviousScene"] == "b" and record["Extra"]["SVI"]["Enabled"] is True
    entry = record["Extra"]["Latents"]
    assert entry["Path"] == "scenes/c_latents.safetensors" and entry["TotalFrames"] == 2
    kept = latents.load_last_latents(run, "c")
    assert torch.equal(kept.samples, third["sampled"]["samples"][:, :, -8:])


def test_a_tampered_or_missing_latents_file_falls_back_to_the_anchor_and_warns(comfy_home):
    sent = []
    comfy.event_listeners.append(lambda event, data: sent.append(data) if event == "gemdirect.svi" else None)
    story_path = h.write_story(comfy_home / "input" / "gemdirect" / "svi", SVI_STORY)
    vae = PoolVAE()
    first = _svi_scene(story_path, 1, vae, latent_seed=11)
    path = latents.latents_path(first["run"], "a")
    with open(path, "r+b") as handle:
        handle.seek(-4, os.SEEK_END)
        handle.write(b"\x00\x01\x02\x03")
    second = _svi_scene(story_path, 2, vae, latent_seed=12, connect_latent=False)
    assert "not the file its record names" in second["report"] and "starts from its anchor" in second["report"]
    assert torch.allclose(second["positive"][0][1]["concat_latent_image"][:, :, 1:],
                          torch.tensor(layout.WAN21_LATENT_MEAN).view(1, 16, 1, 1, 1).expand(1, 16, 1, 8, 10))
    record = ledger.read_scene(first["run"], "b")
    assert any(w.startswith("SVI: previous scene 'a'") for w in record["Warnings"])
    assert record["Extra"]["Latents"] is None
    assert sent[-1]["scene"] == "b" and sent[-1]["warning"].startswith("SVI: previous scene 'a'")
    comfy.event_listeners.pop()
    third = _svi_scene(story_path, 3, vae, latent_seed=13)
    assert "was saved without its latents" in third["report"]


def test_svi_continue_refuses_an_anchor_of_another_size(comfy_home):
    story_path = h.write_story(comfy_home / "input" / "gemdirect" / "svi", SVI_STORY)
    story = h.load_story(story_path)
    scene = story.plan.scenes[0]
    run, _ = h.node("GemDirectRun").start(story, scene, "continue")
    with pytest.raises(engine.SVIError, match=r"96x64 but scene 'a' renders at 80x64"):
        svi_nodes.GemDirectSVIContinue().build([], [], PoolVAE(), run, scene, anchor_image=torch.zeros(1, 64, 96, 3))


def test_scene_save_refuses_a_latent_that_is_not_a_video_latent(comfy_home):
    story_path = h.write_story(comfy_home / "input" / "gemdirect" / "svi", SVI_STORY)
    story = h.load_story(story_path)
    scene = story.plan.scenes[0]
    run, _ = h.node("GemDirectRun").start(story, scene, "continue")
    with pytest.raises(ValueError, match=r"not a video latent"):
        h.node("GemDirectSceneSave").save(torch.zeros(5, 64, 80, 3), scene, run, latent={"samples": torch.zeros(1, 4)})
    assert not os.path.exists(ledger.scene_paths(run, "a").video)
