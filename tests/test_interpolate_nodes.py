"""The interpolation nodes as ComfyUI loads them: model folders, loading, interpolating, errors."""

from __future__ import annotations

import pytest
import torch
from conftest import pack_module
from test_interpolate_rife import write_checkpoint
from test_interpolate_timing import translating

nodes = pack_module("nodes.interpolate.nodes")
ledger = pack_module("nodes.run.ledger")
comfy = pack_module("nodes.comfy")


@pytest.fixture(autouse=True)
def fresh_model_folders(monkeypatch):
    """Standalone folder registrations hold absolute paths: start each test's comfy_home clean."""
    monkeypatch.setattr(comfy, "_standalone_folders", {})


def test_models_are_found_in_all_three_folders(comfy_home):
    for sub in ("models/frame_interpolation", "models/rife", "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife"):
        (comfy_home / sub).mkdir(parents=True)
    write_checkpoint(comfy_home / "models/frame_interpolation", "4.25", "comfy-core", "rife_v4.26.safetensors")
    write_checkpoint(comfy_home / "models/rife", "4.6", "practical-rife", "flownet.pkl")
    write_checkpoint(comfy_home / "custom_nodes/ComfyUI-Frame-Interpolation/ckpts/rife", "4.7",
                     "frame-interpolation", "rife49.pth")
    listed = nodes.GemDirectRIFELoader.INPUT_TYPES()["required"]["model_name"][0]
    assert listed[0] == nodes.NONE and set(listed[1:]) == {"rife_v4.26.safetensors", "flownet.pkl", "rife49.pth"}
    loaded = {name: nodes.GemDirectRIFELoader().load(name, "fp32")[0] for name in listed[1:]}
    assert {name: m.arch for name, m in loaded.items()} == {
        "rife_v4.26.safetensors": "4.25", "flownet.pkl": "4.6", "rife49.pth": "4.7"}
    description = nodes.GemDirectRIFELoader().load("rife49.pth", "bf16")[1]
    assert "RIFE 4.7" in description and "frame-interpolation layout" in description and "bfloat16" in description


def test_no_model_names_the_folders_and_the_files_that_work(comfy_home):
    listed = nodes.GemDirectRIFELoader.INPUT_TYPES()["required"]["model_name"][0]
    assert listed == [nodes.NONE]  # the explicit "no model" choice is always there, and first
    model, description = nodes.GemDirectRIFELoader().load(nodes.NONE, "fp32")
    assert model is None and "optical flow" in description
    with pytest.raises(FileNotFoundError) as caught:
        nodes.GemDirectRIFELoader().load("rife47.pth", "fp32")
    text = str(caught.value)
    assert "models/frame_interpolation" in text.replace("\\", "/") and "models/rife" in text.replace("\\", "/")
    assert "rife426.pth" in text and "optical flow" in text


def _interpolate(images, model=None, **overrides):
    inputs = dict(images=images, source_fps=16.0, mode="target_fps", multiplier=2, target_fps=24.0, scale="1.0",
                  scene_cut_threshold=0.4, ensemble=False, batch_size=4, rife_model=model)
    inputs.update(overrides)
    return nodes.GemDirectInterpolate().interpolate(**inputs)


def test_interpolate_with_rife_and_with_flow(comfy_home):
    (comfy_home / "models/rife").mkdir(parents=True)
    write_checkpoint(comfy_home / "models/rife", "4.17", "frame-interpolation", "rife417.pth", noise=0.01)
    model = nodes.GemDirectRIFELoader().load("rife417.pth", "fp32")[0]
    images = torch.from_numpy(translating(12, 5, h=64, w=96))
    out, fps, report = _interpolate(images, model, ensemble=True)
    assert out.shape == (7, 64, 96, 3) and fps == 24.0 and report.startswith("rife-4.17:")
    assert torch.equal(out[0], images[0]) and torch.equal(out[-1], images[-1])
    out, fps, report = _interpolate(images, None, mode="multiplier", multiplier=3)
    assert out.shape[0] == 13 and fps == 48.0 and report.startswith("flow:")


def test_ensemble_on_a_release_without_it_is_reported_not_fatal(comfy_home):
    (comfy_home / "models/rife").mkdir(parents=True)
    write_checkpoint(comfy_home / "models/rife", "4.25", "frame-interpolation", "rife426.pth", noise=0.01)
    model = nodes.GemDirectRIFELoader().load("rife426.pth", "fp32")[0]
    _, _, report = _interpolate(torch.from_numpy(translating(12, 3, h=32, w=48)), model, ensemble=True)
    assert "ensemble ignored: RIFE 4.25 has no ensemble mode" in report


def test_a_target_below_the_source_names_the_input(comfy_home):
    with pytest.raises(ValueError, match="Interpolate: target fps 12 is below the source's 16"):
        _interpolate(torch.rand(3, 16, 16, 3), target_fps=12.0)
    assert nodes.GemDirectInterpolate.VALIDATE_INPUTS(mode="sideways").startswith("mode 'sideways'")


def test_a_connected_run_gets_the_stage_telemetry(comfy_home):
    events = pack_module("nodes.run.events")
    run = ledger.Run(run_id="20260101-000000-abcd", story_id="demo", run_dir=str(comfy_home / "run"),
                     created="2026-01-01T00:00:00.000Z")
    _interpolate(torch.from_numpy(translating(12, 3, h=32, w=48)), None, run=run)
    post = events.read_events(run.run_dir).of_kind("interpolation")[-1]["post"]
    assert post["InterpolationMethod"] == "flow" and post["FinalFPS"] == 24.0 and post["InterpolationElapsed"] >= 0
