"""Story Render's post-stage choices: scale/ensemble widgets, no silent method swaps, memory figures."""

from __future__ import annotations

import json
from fractions import Fraction

import torch
from conftest import pack_module
from render_helpers import load, save_all, start_run, story_dict, write_story

plan = pack_module("nodes.story.plan")
render_nodes = pack_module("nodes.render.nodes")
ifnet = pack_module("nodes.interpolate.ifnet")
loader = pack_module("nodes.interpolate.loader")

CINEMATIC = plan.PostPlan(interpolation=True, interpolation_method="rife", target_fps=Fraction(24), upscale=True,
                          upscale_factor=2.0, upscale_method="model", svi=False)
WIDGETS = dict(interpolation="from story", target_fps=24.0, upscale="from story", factor=2.0, long_side=1920,
               width=1920, height=1080, on_missing="render what exists", audio="auto", crf=19)


def test_a_preset_asking_for_models_that_are_not_chosen_falls_back_and_says_so():
    settings = render_nodes.render_settings(CINEMATIC, rife_connected=False, upscale_connected=False, **WIDGETS)
    assert settings.interpolation == "flow" and "asks for RIFE" in settings.interpolation_fallback
    assert "none (optical flow)" in settings.interpolation_fallback
    assert "model upscale" in settings.upscale_fallback and "Lanczos" in settings.upscale_fallback
    chosen = render_nodes.render_settings(CINEMATIC, rife_connected=True, upscale_connected=True, scale="0.5",
                                          ensemble=True, **WIDGETS)
    assert chosen.interpolation == "rife" and chosen.interpolation_fallback is None and chosen.upscale_fallback is None
    assert (chosen.rife_scale, chosen.ensemble) == (0.5, True)
    # The user's own choice (target fps, factor) is not a fallback: nothing asked for a model.
    own = render_nodes.render_settings(CINEMATIC, rife_connected=False, **(WIDGETS | {"interpolation": "target fps",
                                                                                     "upscale": "factor"}))
    assert own.interpolation_fallback is None and own.upscale_fallback is None


def _tiny_rife(folder):
    torch.manual_seed(0)
    state = {k: v + 0.01 * torch.randn_like(v) for k, v in ifnet.build("4.17").state_dict().items()}
    loader.save_checkpoint(state, str(folder / "rife417.pth"), "frame-interpolation")
    return loader.load_rife(str(folder / "rife417.pth"))


def test_render_reports_the_fallback_and_the_memory_it_asked_for(pack, comfy_home):
    path = write_story(comfy_home / "input" / "gemdirect" / "post", story_dict(("a", "b"),
                       defaults={"fps": 16, "width": 64, "height": 64, "model_profile": "wan22-i2v-14b",
                                 "cfg": 5.2, "steps": 16, "preset": "standard"}))
    loaded = load(path)
    assert loaded.plan.post.interpolation_method == "rife"
    run = start_run(path)
    save_all(run, loaded)
    node = pack.NODE_CLASS_MAPPINGS["GemDirectStoryRender"]()
    report = node.render(run, story=loaded)["result"][2]  # Standard asks for RIFE; none is chosen
    assert "WARNING: the preset asks for RIFE interpolation" in report and "interpolation: flow" in report
    meta = json.loads((comfy_home / "output" / "gemdirect" / "latest-run.json").read_text(encoding="utf-8"))
    assert "optical flow used instead" in meta["Post"]["InterpolationFallback"]
    assert meta["Post"]["UpscaleFallback"] is None and meta["Post"]["Memory"] == []
    assert any("asks for RIFE" in w for w in meta["Warnings"])
    assert "validator: the run keeps the telemetry contract" in report

    rife = _tiny_rife(comfy_home)
    report = node.render(run, story=loaded, rife_model=rife, ensemble=True)["result"][2]
    meta = json.loads((comfy_home / "output" / "gemdirect" / "latest-run.json").read_text(encoding="utf-8"))
    assert meta["Post"]["InterpolationMethod"] == "rife-4.17" and meta["Post"]["InterpolationFallback"] is None
    memory = meta["Post"]["Memory"]
    assert [m["Stage"] for m in memory] == ["interpolate"] and memory[0]["Reason"] == "start"
    assert memory[0]["NeedMB"] > 0 and memory[0]["FreeBeforeMB"] > 0 and memory[0]["Unloaded"] == []
    assert "memory: interpolate: needs" in report and "validator: the run keeps the telemetry contract" in report
