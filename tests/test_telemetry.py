"""Telemetry: the contract's field names, the published schema, summary lines, the writer and the run nodes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import run_helpers as h
from conftest import REPO_ROOT, pack_module
from story_helpers import base_story, write_story

ledger = pack_module("nodes.run.ledger")
telemetry = pack_module("nodes.run.telemetry")
summary = pack_module("nodes.run.summary")
writer = pack_module("nodes.run.writer")
records = pack_module("nodes.run.records")
run_nodes = pack_module("nodes.run.nodes")


@pytest.fixture
def root(comfy_home):
    return ledger.runs_root()


def _files(run) -> dict[str, bytes]:
    paths = [run.metadata_path, run.summary_path, os.path.join(run.root, "latest-run.json")]
    return {os.path.basename(p): Path(p).read_bytes() for p in paths if os.path.exists(p)}


def _recorded_run(root, bookends=(None, 55.55)):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=root)
    for index, (scene_id, bookend) in enumerate(zip(("a", "b"), bookends, strict=True), start=1):
        ledger.record_scene(run, h.scene_record(scene_id, index, bookend=bookend))
    return run


# --------------------------------------------------------------------------- the contract


def _fields(model) -> set[str]:
    return set(model.model_fields)


def test_every_field_telemetry_md_lists_is_there_with_its_exact_name():
    t = telemetry
    assert {"Schema", "RunId", "Timestamp", "RunDir", "Story", "Scenes", "Post", "Preset",
            "Warnings"} <= _fields(t.ArtifactMetadata)
    assert _fields(t.StoryTelemetry) == {"Id", "Title", "Logline", "DirectorsVision", "File", "StoryDir",
                                         "SceneCount", "Warnings"}
    assert {"SceneId", "SceneTitle", "Prompt", "NegativePrompt", "KeyframeSource", "Seed", "CFG", "Steps", "Sampler",
            "Models", "Loras", "FrameCount", "DurationSeconds", "FPS", "Resolution", "Success", "Warnings", "Errors",
            "AttemptsRun", "Video", "Telemetry"} <= _fields(t.SceneTelemetry)
    # gemDirect1's five, plus the pack's own Master (the lossless file the render reads)
    assert _fields(t.VideoTelemetry) == {"Path", "DurationSeconds", "Status", "UpdatedAt", "Error", "Master"}
    assert _fields(t.SceneRunTelemetry) == {"QueueStart", "QueueEnd", "DurationSeconds", "GPU", "System",
                                            "FLF2VEnabled", "FLF2VSource", "FLF2VFallback", "BookendSimilarity",
                                            "FLF2VEnd", "StartMatch"}
    assert _fields(t.GPUTelemetry) == {"Name", "Type", "Index", "VramTotal", "VramFreeBefore", "VramFreeAfter",
                                       "VramDelta", "VramBeforeMB", "VramAfterMB", "VramDeltaMB", "VramPeakMB"}
    assert _fields(t.SystemTelemetry) == {"Before", "After", "FallbackNotes"}
    assert _fields(t.BookendTelemetry) == {"Score", "Method", "Status"}
    assert {"InterpolationMethod", "InterpolationElapsed", "UpscaleMethod", "UpscaleElapsed", "TransitionMethod",
            "FinalFPS", "FinalResolution", "FinalFrames", "FinalDurationSeconds", "FinalPath",
            "AudioKept"} <= _fields(t.PostTelemetry)


def test_the_committed_schema_file_equals_the_models_schema():
    committed = Path(telemetry.SCHEMA_FILE)
    assert committed == REPO_ROOT / "docs" / "schema" / "artifact-metadata.schema.json"
    assert committed.read_text(encoding="utf-8") == telemetry.schema_text(), (
        "docs/schema/artifact-metadata.schema.json is out of date: regenerate it with "
        f"'cd {REPO_ROOT.parent} && python -m {REPO_ROOT.name}.nodes.run.export_schema'")
    schema = json.loads(committed.read_text(encoding="utf-8"))
    assert schema["properties"]["Schema"]["const"] == "gemdirect.artifact-metadata/1"
    assert schema["additionalProperties"] is False


def test_schema_errors_name_the_field_path_and_scene():
    data = {"Schema": "gemdirect.artifact-metadata/1", "RunId": "20261123-214501-3fa2",
            "Timestamp": "2026-11-23T21:45:01Z", "RunDir": "/x", "Story": {}, "Post": None, "Preset": "standard",
            "Warnings": [], "Scenes": [h.scene_record("a", 1, AttemptsRun=1), h.scene_record("b", 2, AttemptsRun=1)]}
    data["Scenes"][1]["Seed"] = "42"
    del data["Scenes"][0]["Telemetry"]["GPU"]["VramPeakMB"]
    data["Scenes"][1]["Telemetry"]["DurationSeconds"] = math.nan
    problems = telemetry.metadata_problems(data)
    assert "Story.Id: missing (a required field of gemdirect.artifact-metadata/1)" in problems
    assert ("Scenes[0] (scene 'a').Telemetry.GPU.VramPeakMB: missing (a required field of "
            "gemdirect.artifact-metadata/1)") in problems
    assert "Scenes[1] (scene 'b').Seed: Input should be a valid integer (got '42')" in problems
    assert any(p.startswith("Scenes[1] (scene 'b').Telemetry.DurationSeconds: Input should be a finite number")
               for p in problems)


# --------------------------------------------------------------------------- run-summary.txt lines


def test_summary_lines_have_the_contract_format_and_parse_back():
    line = summary.telemetry_line("21:46:10", "a", duration_s=68.214, vram_before_mb=1234.0, vram_after_mb=1300.5,
                                  vram_delta_mb=66.5, gpu="NVIDIA GeForce RTX 4090", flf2v="keyframe",
                                  bookend_score=87.26, bookend_status="pass")
    assert line == ("[21:46:10] [Scene a] Telemetry: DurationSeconds=68.21s | VRAMBeforeMB=1234.00MB | "
                    "VRAMAfterMB=1300.50MB | VRAMDeltaMB=66.50MB | gpu=NVIDIA GeForce RTX 4090 | FLF2V=keyframe | "
                    "Bookend=87.3 (pass)")
    expected = {
        summary.story_line("21:45:01", "lighthouse", 3): "[21:45:01] Story ready: lighthouse (scenes=3)",
        summary.preset_line("21:45:01", "standard", 832, 480, 49, 5.2, 16):
            "[21:45:01] Preset: standard (832x480, 49 frames, cfg=5.2, steps=16)",
        summary.warning_line("21:46:10", "cfg is\nhigh", "b"): "[21:46:10] [Scene b] WARNING: cfg is high",
        summary.error_line("21:46:10", "out of memory", "c"): "[21:46:10] [Scene c] ERROR: out of memory",
        summary.post_line("21:52:40", interpolation="rife-4.22", interpolation_ms=5120.4, upscale="lanczos",
                          upscale_ms=830, resolution="1664x960", fps=24000 / 1001):
            "[21:52:40] Post: interpolation=rife-4.22 (5120ms) upscale=lanczos (830ms) final=1664x960@23.976fps",
        summary.final_line("21:52:41", "final/lighthouse.mp4", 385, 12.03):
            "[21:52:41] Final video: final/lighthouse.mp4 (385 frames, 12.03s)",
    }
    for produced, contract in expected.items():
        assert produced == contract
    parsed = summary.parse_summary("\n".join([line, *expected]) + "\nnot a summary line\n")
    assert [p.kind for p in parsed] == ["telemetry", "story", "preset", "warning", "error", "post", "final"]
    assert parsed[0].scene == "a" and parsed[0].fields["delta"] == 66.5 and parsed[0].fields["score"] == 87.3
    assert parsed[0].fields["gpu"] == "NVIDIA GeForce RTX 4090" and parsed[0].fields["status"] == "pass"
    assert parsed[5].fields["fps"] == 23.976 and parsed[5].fields["upscale_ms"] == 830
    assert parsed[6].fields == {"path": "final/lighthouse.mp4", "frames": 385, "seconds": 12.03}


def test_a_first_scene_has_no_bookend_and_a_gpu_name_cannot_break_the_line():
    line = summary.telemetry_line("00:00:01", "a", duration_s=1, vram_before_mb=1, vram_after_mb=2, vram_delta_mb=1,
                                  gpu="odd | name", flf2v="none", bookend_score=None, bookend_status=None)
    assert line.endswith("| gpu=odd / name | FLF2V=none | Bookend=n/a (none)")
    parsed = summary.parse_line(line)
    assert parsed.fields["score"] is None and parsed.fields["gpu"] == "odd / name"


# --------------------------------------------------------------------------- the writer


def test_the_writer_consolidates_the_ledger_into_the_three_files(root):
    run = _recorded_run(root)
    ledger.warn(run, "RIFE weights missing: optical flow used", scene="b")
    files = writer.write_telemetry(run)
    metadata = json.loads(Path(run.metadata_path).read_text())
    assert metadata == files.metadata
    assert Path(root, "latest-run.json").read_bytes() == Path(run.metadata_path).read_bytes()
    assert metadata["RunId"] == run.run_id and metadata["Story"]["SceneCount"] == 3
    assert [scene["SceneId"] for scene in metadata["Scenes"]] == ["a", "b"]
    assert metadata["Post"] is None
    assert metadata["Progress"] == {"ScenesDone": ["a", "b"], "ScenesFailed": [], "ScenesPending": ["c"],
                                    "Finished": False}
    assert metadata["Warnings"] == ["[Scene b] RIFE weights missing: optical flow used"]
    kinds = [line.kind for line in summary.parse_summary(files.summary)]
    assert kinds == ["story", "preset", "warning", "telemetry", "telemetry", "warning"]
    by_scene = summary.telemetry_by_scene(summary.parse_summary(files.summary))
    assert abs(by_scene["b"].fields["score"] - 55.55) <= 0.1 and by_scene["b"].fields["delta"] == 256.5
    assert telemetry.metadata_problems(metadata) == []


def test_the_writer_refuses_bad_telemetry_and_leaves_every_file_as_it_was(root):
    run = _recorded_run(root)
    writer.write_telemetry(run)
    before = _files(run)
    record_path = ledger.scene_paths(run, "b").record
    bad = json.loads(Path(record_path).read_text())
    bad["Telemetry"]["GPU"]["VramDeltaMB"] = 12.0  # written around record_scene, as a buggy room might
    Path(record_path).write_text(json.dumps(bad))
    with pytest.raises(telemetry.TelemetryError) as caught:
        writer.write_telemetry(run)
    assert caught.value.problems == [
        "Scenes[1] (scene 'b').Telemetry.GPU.VramDeltaMB = 12 but VramAfterMB - VramBeforeMB = 2304.5 - 2048 = "
        "256.50; VramDeltaMB must be After - Before"]
    del bad["Telemetry"]["GPU"]["VramDeltaMB"]
    bad["Resolution"] = "320 by 192"
    Path(record_path).write_text(json.dumps(bad))
    with pytest.raises(telemetry.TelemetryError, match=r"Scenes\[1\] \(scene 'b'\)\.Telemetry\.GPU\.VramDeltaMB: "
                                                       r"missing") as caught:
        writer.write_telemetry(run)
    assert any("Scenes[1] (scene 'b').Resolution: String should match pattern" in p for p in caught.value.problems)
    assert _files(run) == before
    assert not [n for n in os.listdir(run.run_dir) + os.listdir(run.root) if pack_module(
        "nodes.run.atomic").is_temporary(n)]


def test_latest_run_json_keeps_the_newest_run(root):
    older = _recorded_run(root)
    newer = _recorded_run(root)
    assert writer.write_telemetry(newer).latest_path is not None
    assert writer.write_telemetry(older).latest_path is None
    assert json.loads(Path(root, "latest-run.json").read_text())["RunId"] == newer.run_id


def test_a_recorded_post_reaches_the_metadata_and_the_summary(root):
    run = _recorded_run(root)
    final = ledger.final_video_path(run)
    pack_module("nodes.run.atomic").atomic_write_bytes(final, b"stand-in")
    ledger.record_post(run, records.post_record(
        interpolation_method="rife-4.22", interpolation_ms=5120.44, upscale_method="4x-UltraSharp.pth",
        upscale_ms=830, transition_method="crossfade", final_fps="24000/1001", final_width=1280, final_height=768,
        final_frames=36, final_duration=1.5015, final_path=ledger.relative_path(run, final), audio_kept=True))
    files = writer.write_telemetry(run)
    post = files.metadata["Post"]
    assert post["FinalFPS"] == 23.976 and post["FinalFPSExact"] == "24000/1001"
    assert post["FinalPath"] == "final/test-story.mp4" and files.metadata["Progress"]["Finished"] is True
    assert "Post: interpolation=rife-4.22 (5120ms) upscale=4x-UltraSharp.pth (830ms) final=1280x768@23.976fps" \
        in files.summary
    assert "Final video: final/test-story.mp4 (36 frames, 1.50s)" in files.summary
    with pytest.raises(telemetry.TelemetryError, match=r"Post\.FinalResolution: String should match"):
        ledger.record_post(run, {**post, "FinalResolution": "1280*768"})
    with pytest.raises(telemetry.TelemetryError, match=r"Post\.FinalPath = 'final\\\\x\.mp4' has a backslash"):
        ledger.record_post(run, {**post, "FinalPath": "final\\x.mp4"})


def test_record_builders_keep_the_equations_the_schema_cannot_state():
    gpu = records.gpu_telemetry(name="g", device_type="cuda", index=0, total=8 << 30, free_before=(8 << 30) - 3,
                                free_after=(8 << 30) - (300 << 20) - 7)
    assert gpu["VramDelta"] == gpu["VramFreeBefore"] - gpu["VramFreeAfter"]
    assert gpu["VramDeltaMB"] == round(gpu["VramAfterMB"] - gpu["VramBeforeMB"], 2) == 300.0
    assert [records.bookend_status(s) for s in (10, 24.99, 25, 34.9, 35, 99)] == \
        ["fail", "fail", "warn", "warn", "pass", "pass"]
    assert records.fps_fields("24000/1001") == (23.976, "24000/1001") and records.fps_fields(16) == (16.0, "16")


# --------------------------------------------------------------------------- the nodes


def _real_story(tmp_path):
    plan = pack_module("nodes.story.plan")
    loaded = plan.load_and_plan(write_story(tmp_path / "story", base_story()))
    return loaded, loaded.plan.scenes


def test_run_node_starts_and_joins_runs_of_a_real_story(root, tmp_path):
    story, scenes = _real_story(tmp_path)
    node = run_nodes.GemDirectRun()
    run, run_dir = node.start(story, scenes[0], "continue")
    assert run_dir == run.run_dir and run.story_id == "test-story"
    assert node.start(story, scenes[1], "auto")[0] == run  # the old name of continue
    assert node.start(story, scenes[2], "new")[0] != run
    assert node.start(story, scenes[2], "auto", run_id=run.run_id)[0] == run
    info = ledger.story_info(run)
    assert info.scene_ids == ("a", "b", "c") and info.content_hash == story.content_hash
    assert info.preset_settings == {"width": scenes[0].width, "height": scenes[0].height,
                                    "frames": scenes[0].length, "cfg": scenes[0].cfg, "steps": scenes[0].steps}
    assert json.loads(Path(run.story_path).read_text()) == story.raw
    assert run_nodes.GemDirectRun.VALIDATE_INPUTS("auto", "../etc").startswith("run_id '../etc' is not a run id")
    assert run_nodes.GemDirectRun.VALIDATE_INPUTS("auto", "") is True
    assert math.isnan(run_nodes.GemDirectRun.IS_CHANGED(story=story, scene=scenes[0], mode="auto"))


def test_telemetry_writer_node_writes_and_shows_the_summary(root, tmp_path):
    story, scenes = _real_story(tmp_path)
    run, _ = run_nodes.GemDirectRun().start(story, scenes[0], "auto")
    plan_fields = records.scene_plan_fields(scenes[0])
    ledger.record_scene(run, records.scene_record(
        **plan_fields, video_path="scenes/a.mp4", telemetry=records.run_telemetry(h.fake_stage(),
                                                                                  flf2v_source="keyframe")))
    output = run_nodes.GemDirectTelemetryWriter().write(run)
    assert output["result"][0] == run
    assert output["ui"]["text"] == [output["result"][1]] == [Path(run.summary_path).read_text()]
    metadata = json.loads(Path(run.metadata_path).read_text())
    scene = metadata["Scenes"][0]
    assert scene["KeyframeSource"] == scenes[0].keyframe and scene["FrameCount"] == scenes[0].length
    assert scene["Resolution"] == f"{scenes[0].width}x{scenes[0].height}" and scene["SceneIndex"] == 1
    assert metadata["Story"]["File"] == story.path and metadata["Preset"] == story.plan.preset
