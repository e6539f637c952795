"""Scene LoRAs without ComfyUI: story.json loras with experts, which LoRAs patch which model, missing files
named with the folder and close matches, and LoRAs in the plan, the telemetry and the fingerprint.
(The patching itself runs in a real ComfyUI: tests/test_comfyui_scene.py.)"""

from __future__ import annotations

import json

import pytest
from conftest import pack_module
from story_helpers import base_story, write_story

loras = pack_module("nodes.control.loras")
control_nodes = pack_module("nodes.control.nodes")
plan_module = pack_module("nodes.story.plan")
fingerprint = pack_module("nodes.run.fingerprint")
records = pack_module("nodes.run.records")
telemetry = pack_module("nodes.run.telemetry")
load = pack_module("nodes.story.load")


def story_with_loras(folder, scene_loras):
    story = base_story()
    story["scenes"][0]["loras"] = scene_loras
    return write_story(folder, story)


SCENE_LORAS = [{"name": "style.safetensors", "strength": 0.8},
               {"name": "motion_high.safetensors", "strength": 1.0, "expert": "high"},
               {"name": "detail_low.safetensors", "strength": 0.5, "expert": "low"},
               {"name": "off.safetensors", "strength": 0.0}]


def test_story_loras_are_planned_with_their_experts_and_shown_in_the_plan(tmp_path):
    loaded = plan_module.load_and_plan(str(story_with_loras(tmp_path, SCENE_LORAS)), "none")
    scene = loaded.plan.scenes[0]
    assert [(lo.name, lo.strength, lo.expert) for lo in scene.loras] == [
        ("style.safetensors", 0.8, "both"), ("motion_high.safetensors", 1.0, "high"),
        ("detail_low.safetensors", 0.5, "low"), ("off.safetensors", 0.0, "both")]
    assert loaded.plan.scenes[1].loras == ()
    text = plan_module.describe_plan(loaded.plan)
    assert "loras: style.safetensors x0.8, motion_high.safetensors x1 (high)" in text


def test_a_bad_expert_names_the_field(tmp_path):
    path = story_with_loras(tmp_path, [{"name": "a.safetensors", "expert": "middle"}])
    with pytest.raises(load.StoryError) as refused:
        plan_module.load_and_plan(str(path), "none")
    assert "scenes[0].loras[0].expert" in str(refused.value) and "'high', 'low' or 'both'" in str(refused.value)


@pytest.mark.parametrize(("role", "applied", "skipped"), [
    (loras.HIGH, ["style.safetensors", "motion_high.safetensors"], ["detail_low.safetensors", "off.safetensors"]),
    (loras.LOW, ["style.safetensors", "detail_low.safetensors"], ["motion_high.safetensors", "off.safetensors"]),
    (loras.SINGLE, ["style.safetensors", "motion_high.safetensors", "detail_low.safetensors"], ["off.safetensors"]),
])
def test_each_model_takes_the_loras_of_its_expert(tmp_path, role, applied, skipped):
    scene = plan_module.load_and_plan(str(story_with_loras(tmp_path, SCENE_LORAS)), "none").plan.scenes[0]
    pick = loras.pick_loras(scene.loras, role, scene.id)
    assert [lo.name for lo in pick.apply] == applied
    assert [lo.name for lo, _ in pick.skipped] == skipped
    # a one-expert LoRA on a single model is applied and warned about, never silently
    assert len(pick.warnings) == (2 if role == loras.SINGLE else 0)
    report = loras.describe_pick(scene.id, role, pick, patched_clip=False)
    assert f"{len(applied)} LoRA(s) applied to MODEL" in report
    assert "off.safetensors x0 not applied: strength 0" in report


def test_a_missing_lora_names_the_folder_and_the_closest_files(comfy_home):
    folder = comfy_home / "models" / "loras"
    (folder / "wan").mkdir(parents=True)
    for name in ("wan22_style.safetensors", "wan/wan22_motion.safetensors", "other.safetensors"):
        (folder / name).write_bytes(b"x")
    assert loras.lora_file("wan/wan22_motion.safetensors") == str(folder / "wan" / "wan22_motion.safetensors")
    with pytest.raises(loras.LoraFileError) as missing:
        loras.lora_file("wan22_stlye.safetensors")
    message = str(missing.value)
    assert str(folder) in message and "did you mean 'wan22_style.safetensors'" in message, message
    assert "loras[].name" in message
    (folder / "wan22_style.safetensors").unlink()
    (folder / "wan" / "wan22_motion.safetensors").unlink()
    (folder / "other.safetensors").unlink()
    with pytest.raises(loras.LoraFileError, match="the folder has no LoRA files"):
        loras.lora_file("wan22_style.safetensors")


def test_the_node_finds_every_file_before_patching_and_says_standalone_it_needs_comfyui(comfy_home, tmp_path):
    scene = plan_module.load_and_plan(str(story_with_loras(tmp_path / "s", SCENE_LORAS[:2])), "none").plan.scenes[0]
    model = object()
    node = control_nodes.GemDirectSceneLoRAs()
    with pytest.raises(loras.LoraFileError, match=r"style\.safetensors"):
        node.apply(model, scene, loras.HIGH)
    (comfy_home / "models" / "loras").mkdir(parents=True)
    for name in ("style.safetensors", "motion_high.safetensors"):
        (comfy_home / "models" / "loras" / name).write_bytes(b"x")
    with pytest.raises(RuntimeError, match="needs ComfyUI"):
        node.apply(model, scene, loras.HIGH)
    clean = plan_module.load_and_plan(str(story_with_loras(tmp_path / "t", [])), "none").plan.scenes[0]
    same, clip, report = node.apply(model, clean, loras.SINGLE)
    assert same is model and clip is None and "0 LoRA(s) applied" in report  # nothing to apply: untouched


def test_a_lora_change_makes_the_fingerprint_differ_and_says_so(tmp_path):
    path = story_with_loras(tmp_path, SCENE_LORAS[:1])
    before = fingerprint.plan_fingerprint(plan_module.load_and_plan(str(path), "none").plan.scenes[0])
    assert before["Loras"] == [{"Name": "style.safetensors", "Strength": 0.8}]  # no Expert for both: as before
    for changed in ([{"name": "style.safetensors", "strength": 0.6}],
                    [{"name": "style.safetensors", "strength": 0.8, "expert": "high"}],
                    [{"name": "style.safetensors", "strength": 0.8}, {"name": "b.safetensors"}], []):
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["scenes"][0]["loras"] = changed
        path.write_text(json.dumps(raw), encoding="utf-8")
        now = fingerprint.plan_fingerprint(plan_module.load_and_plan(str(path), "none").plan.scenes[0])
        assert fingerprint.plan_sha256(now) != fingerprint.plan_sha256(before)
        assert fingerprint.plan_changes(before, now) == ["loras changed"]


def test_the_scene_record_keeps_the_loras_and_validates_against_the_telemetry_schema(tmp_path):
    scene = plan_module.load_and_plan(str(story_with_loras(tmp_path, SCENE_LORAS[:2])), "none").plan.scenes[0]
    fields = records.scene_plan_fields(scene)
    record = records.scene_record(**fields, video_path="scenes/a.mp4", telemetry={})
    assert record["Loras"] == [{"Name": "style.safetensors", "Strength": 0.8},
                               {"Name": "motion_high.safetensors", "Strength": 1.0, "Expert": "high"}]
    assert [lo.model_dump(exclude_none=True) for lo in
            (telemetry.Lora.model_validate(entry) for entry in record["Loras"])] == record["Loras"]
    with pytest.raises(ValueError):
        telemetry.Lora.model_validate({"Name": "x", "Strength": 1.0, "Expert": "both"})  # both is written as absent
    assert fingerprint.plan_from_record(record)["Loras"] == record["Loras"]
