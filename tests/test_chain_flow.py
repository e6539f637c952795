"""Three scenes through the run ledger, one prompt each: exact chaining, telemetry, QA, events, failures."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import chain_helpers as h
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, pack_module

ledger = pack_module("nodes.run.ledger")
events = pack_module("nodes.run.events")
validate_run = pack_module("nodes.run.validate").validate_run
images = pack_module("nodes.video.images")
probe_video = pack_module("nodes.video.probe").probe_video
save = pack_module("nodes.chain.save")
drift = pack_module("nodes.chain.drift")
scene_events = h.scene_events  # fixture

@pytest.fixture
def story_path(comfy_home):
    return h.write_story(comfy_home / "input" / "gemdirect" / "chain")


def _write_telemetry(run):
    return h.node("GemDirectTelemetryWriter").write(run)


def test_three_scenes_in_three_prompts_chain_exactly_and_pass_the_validator(story_path, scene_events):
    results = [h.run_scene(story_path, index) for index in (1, 2, 3)]
    run = results[0]["run"]
    assert all(result["run"] == run for result in results)
    assert [result["source"] for result in results] == ["keyframe", "previous-scene", "previous-scene"]
    for before, after in itertools.pairwise(results):
        last_png = images.load_png(ledger.scene_paths(run, before["scene"].id).last_frame)
        assert torch.equal(after["start"][0], last_png)  # bit-exact: lossless PNG, no resampling
        rendered_last = np.rint(before["frames"][-1].numpy() * 255) / 255
        assert np.array_equal(after["start"][0].numpy(), rendered_last.astype(np.float32))

    _write_telemetry(run)
    assert validate_run(run.run_dir) == []
    metadata = json.loads(Path(run.metadata_path).read_text(encoding="utf-8"))
    scenes = {scene["SceneId"]: scene for scene in metadata["Scenes"]}
    assert [scene["Telemetry"]["FLF2VSource"] for scene in metadata["Scenes"]] == [
        "keyframe", "previous-scene", "previous-scene"]
    assert [scene["Telemetry"]["FLF2VEnabled"] for scene in metadata["Scenes"]] == [False, True, True]
    assert all(scene["Telemetry"]["FLF2VFallback"] is None for scene in metadata["Scenes"])
    assert scenes["a"]["Telemetry"]["BookendSimilarity"] is None
    for scene_id in ("b", "c"):
        assert scenes[scene_id]["Telemetry"]["BookendSimilarity"] == {"Score": 100.0, "Method": "pixel",
                                                                     "Status": "pass"}
        assert scenes[scene_id]["Extra"]["Bookend"]["SSIM"] == pytest.approx(1.0)
    assert scenes["a"]["Models"] == ["wan2.2_i2v_high_noise_14B_Q4_K_M.gguf", "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                                     "wan_2.1_vae.safetensors", "lightx2v_4step.safetensors"]
    assert scenes["a"]["KeyframeSource"].endswith("kf/a.png") and scenes["c"]["KeyframeSource"] is None
    assert metadata["Progress"]["ScenesDone"] == ["a", "b", "c"]
    summary = Path(run.summary_path).read_text(encoding="utf-8")
    assert "[Scene b] Telemetry:" in summary and "FLF2V=previous-scene" in summary and "Bookend=100" in summary
    states = [(event["scene"], event["state"]) for event in scene_events]
    assert states == [(scene, state) for scene in "abc" for state in ("queued", "rendering", "saving", "done")]


def test_scene_save_writes_mp4_pngs_record_and_a_video_preview(story_path, comfy_home, scene_events):
    result = h.run_scene(story_path, 1)
    run, saved = result["run"], result["saved"]
    paths = ledger.scene_paths(run, "a")
    info = probe_video(paths.video)
    assert (info.width, info.height, info.frames, info.fps) == (h.WIDTH, h.HEIGHT, h.FRAMES, 16)
    assert torch.equal(images.load_png(paths.first_frame), torch.from_numpy(
        np.rint(result["frames"][0].numpy() * 255).astype(np.float32) / 255))
    assert saved["ui"] == {"images": [{"filename": "a.mp4", "subfolder": f"gemdirect/chain-story/{run.run_id}/scenes",
                                       "type": "output"}], "animated": (True,)}
    out_run, frames, report = saved["result"]
    assert out_run == run and torch.equal(frames, result["frames"])
    assert "Scene 'a' (1): 5 frames 80x64 @ 16 fps -> scenes/a.mp4" in report and "FLF2V: keyframe" in report
    record = ledger.read_scene(run, "a")
    assert record["Success"] is True and record["AttemptsRun"] == 1 and record["Video"]["Status"] == "ready"
    assert record["Extra"]["Files"] == {"FirstFrame": "scenes/a_first.png", "LastFrame": "scenes/a_last.png",
                                        "Master": "scenes/a.mkv"}
    assert record["Video"]["Path"] == "scenes/a.mp4" and record["Video"]["Master"] == "scenes/a.mkv"
    master = pack_module("nodes.video.master")
    kept = np.concatenate(list(master.iter_source_frames(paths.master, 4, dtype="uint8", as_torch=False)))
    assert np.array_equal(kept, np.rint(result["frames"].numpy() * 255).astype(np.uint8))  # bit-exact
    assert "Master: scenes/a.mkv (ffv1, 5 frames" in report
    done = scene_events[-1]
    assert done["state"] == "done" and done["video"] == "scenes/a.mp4" and done["frames"] == h.FRAMES
    assert done["master"] == "scenes/a.mkv"


def test_elapsed_runs_from_chain_start_to_the_end_of_the_save(story_path):
    result = h.run_scene(story_path, 1)
    run = result["run"]
    log = events.read_events(run.run_dir).events
    start = [e for e in log if e["event"] == "stage_start" and e.get("stage") == "scene"][-1]
    end = [e for e in log if e["event"] == "stage_end" and e.get("stage") == "scene"][-1]
    telemetry = ledger.read_scene(run, "a")["Telemetry"]
    assert telemetry["QueueStart"] == start["time"] and telemetry["QueueStart"] <= telemetry["QueueEnd"]
    assert telemetry["DurationSeconds"] == pytest.approx(end["elapsed_s"], abs=0.002)
    assert telemetry["GPU"]["VramBeforeMB"] == start["vram_before_mb"]
    assert telemetry["System"]["FallbackNotes"] == [] or all("drift" in n for n in telemetry["System"]["FallbackNotes"])


def test_without_chain_start_the_save_still_records_and_says_what_the_time_covers(story_path):
    story = h.load_story(story_path)
    scene, *_values, keyframe, _split_step = h.node("GemDirectSceneSelect").select(story, 1)
    run, _ = h.node("GemDirectRun").start(story, scene, "auto")
    frames = keyframe.repeat(h.FRAMES, 1, 1, 1)
    h.node("GemDirectSceneSave").save(frames, scene, run, "off", 1.0)
    telemetry = ledger.read_scene(run, "a")["Telemetry"]
    assert telemetry["FLF2VSource"] == "none" and "Chain Start did not run" in telemetry["FLF2VFallback"]
    assert any("cover saving only" in note for note in telemetry["System"]["FallbackNotes"])
    assert ledger.read_scene(run, "a")["Models"] == []


def test_a_failed_save_is_recorded_and_the_next_scene_falls_back_to_its_keyframe(story_path, scene_events,
                                                                                  monkeypatch):
    h.run_scene(story_path, 1)

    def broken_encoder(*_args, **_kwargs):
        raise OSError("No space left on device")

    with monkeypatch.context() as patched, pytest.raises(OSError, match="No space left"):
        patched.setattr(save, "encode_video", broken_encoder)
        h.run_scene(story_path, 2)
    assert scene_events[-1]["state"] == "failed" and "No space left" in scene_events[-1]["error"]
    run = h.run_scene(story_path, 3)
    assert run["source"] == "none"  # scene c has no keyframe: mid-grey
    record_b = ledger.read_scene(run["run"], "b")
    assert record_b["Success"] is False and record_b["Video"]["Status"] == "error"
    assert "OSError: No space left on device" in record_b["Errors"][0]
    record_c = ledger.read_scene(run["run"], "c")
    assert "previous scene 'b' failed" in record_c["Telemetry"]["FLF2VFallback"]
    assert record_c["Telemetry"]["BookendSimilarity"] is None
    assert any("not chained: previous scene 'b' failed" in w for w in record_c["Warnings"])
    _write_telemetry(run["run"])
    assert validate_run(run["run"].run_dir) == []


def test_a_rerendered_scene_replaces_its_files_and_counts_the_attempt(story_path):
    first = h.run_scene(story_path, 1)
    second = h.run_scene(story_path, 1, mode="continue")
    assert second["run"] == first["run"]  # continue: scene 1 queued again renders into the same run
    assert ledger.read_scene(second["run"], "a")["AttemptsRun"] == 2
    newer = h.run_scene(story_path, 1, mode="new")
    assert newer["run"] != first["run"]
    assert ledger.read_scene(newer["run"], "a")["AttemptsRun"] == 1


def test_a_bad_bookend_is_scored_and_warned_about(story_path):
    h.run_scene(story_path, 1)

    def inverted(start_image, _end_image):
        """Every pixel pushed to the far end from where the previous scene ended: a hard cut."""
        return (start_image < 0.5).float().repeat(h.FRAMES, 1, 1, 1)

    result = h.run_scene(story_path, 2, renderer=inverted)
    record = ledger.read_scene(result["run"], "b")
    bookend = record["Telemetry"]["BookendSimilarity"]
    assert bookend["Method"] == "pixel" and bookend["Score"] < 35 and bookend["Status"] in ("warn", "fail")
    assert any("bookend" in w and "the join will jump" in w for w in record["Warnings"])


def test_a_scene_that_shares_nothing_with_its_start_fails_the_start_match_the_bookend_passes(story_path,
                                                                                           scene_events):
    h.run_scene(story_path, 1)

    def unrelated(start_image, _end_image):
        """Frames of seeded noise around the start image's mean: nothing of its picture, similar brightness."""
        rng = np.random.default_rng(19)
        noise = rng.random((h.FRAMES, h.HEIGHT, h.WIDTH, 3)).astype(np.float32) * 0.5 - 0.25
        return (torch.from_numpy(noise) + start_image.mean()).clamp(0, 1)

    result = h.run_scene(story_path, 2, renderer=unrelated)
    record = ledger.read_scene(result["run"], "b")
    telemetry = record["Telemetry"]
    assert telemetry["FLF2VSource"] == "previous-scene"
    # the gemDirect1 pixel score is fooled by matching brightness; the start match is not
    assert telemetry["BookendSimilarity"]["Status"] == "pass"
    match = telemetry["StartMatch"]
    assert match["Verdict"] == "fail" and match["Threshold"] == 28.0
    assert match["PSNR"] < 20 and abs(match["SSIM"]) < 0.2
    assert any(w.startswith("start match") and "not the start image it was given" in w for w in record["Warnings"])
    report = result["saved"]["result"][2]
    assert f"Start match: PSNR {match['PSNR']:.1f} dB" in report and "(fail, threshold 28 dB)" in report
    done = [e for e in scene_events if e["state"] == "done" and e["scene"] == "b"][-1]
    assert done["start_match"] == match  # the panel's seam badge reads it from the scene event


def test_a_chained_scene_that_starts_on_its_start_image_passes_the_start_match(story_path, scene_events):
    first = h.run_scene(story_path, 1)
    assert first["end"] is None  # scene 1 starts on its keyframe: auto gives no end image
    assert ledger.read_scene(first["run"], "a")["Telemetry"]["StartMatch"] is None  # not chained: nothing to check

    def through_a_codec(start_image, end_image):
        """The stand-in render with its first frame through an 8-bit JPEG (q 90): a lossy round trip."""
        import io

        from PIL import Image

        frames = h.render(start_image, end_image)
        buffer = io.BytesIO()
        Image.fromarray((frames[0].numpy() * 255).round().astype(np.uint8)).save(buffer, "JPEG", quality=90)
        frames[0] = torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).astype(np.float32) / 255)
        return frames

    exact = h.run_scene(story_path, 2)
    match = ledger.read_scene(exact["run"], "b")["Telemetry"]["StartMatch"]
    assert match == {"PSNR": 100.0, "SSIM": 1.0, "Verdict": "pass", "Threshold": 28.0}
    lossy = h.run_scene(story_path, 2, renderer=through_a_codec)
    match = ledger.read_scene(lossy["run"], "b")["Telemetry"]["StartMatch"]
    assert match["Verdict"] == "pass" and 28.0 <= match["PSNR"] < 100 and match["SSIM"] > 0.9
    assert "Start match: PSNR" in lossy["saved"]["result"][2] and "(pass" in lossy["saved"]["result"][2]


def test_scene_1_of_the_demo_gets_no_end_image_under_auto_or_the_next_keyframe_when_asked(comfy_home):
    loader = h.node("GemDirectStoryLoader")
    loader.INPUT_TYPES()  # lists the stories: installs the demo
    demo = comfy_home / "input" / "gemdirect" / "demo" / "story.json"
    for mode, expected in (("auto", "none"), ("next scene's keyframe", "next-keyframe")):
        result = h.run_scene(demo, 1, end_image=mode)
        telemetry = ledger.read_scene(result["run"], result["scene"].id)["Telemetry"]
        assert telemetry["FLF2VEnd"] == expected
        if expected == "none":
            assert result["end"] is None
        else:
            assert result["end"].shape == result["start"].shape
            assert not torch.allclose(result["end"], result["start"], atol=1 / 255)  # never its own start
        assert f"FLF2V end: {expected}" in result["saved"]["result"][2]


def test_models_are_read_from_the_prompts_widget_values_only():
    assert save.prompt_models(h.PROMPT) == ["wan2.2_i2v_high_noise_14B_Q4_K_M.gguf",
                                            "umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan_2.1_vae.safetensors",
                                            "lightx2v_4step.safetensors"]
    assert save.prompt_models({"1": {"class_type": "DualCLIPLoader",
                                     "inputs": {"clip_name1": "a.safetensors", "clip_name2": "b.safetensors"}},
                               "2": {"class_type": "X", "inputs": {"unet_name": ["1", 0]}}}) == [
        "a.safetensors", "b.safetensors"]
    assert save.prompt_models(None) == []


def test_scene_save_refuses_a_run_of_another_story_and_bad_frames(story_path, comfy_home):
    other = h.write_story(comfy_home / "input" / "gemdirect" / "other", h.story_dict(id="other-story"))
    other_result = h.run_scene(other, 1)
    story = h.load_story(story_path)
    scene, *_ = h.node("GemDirectSceneSelect").select(story, 1)
    node = h.node("GemDirectSceneSave")
    with pytest.raises(ValueError, match="of story 'other-story', but the SCENE is from story 'chain-story'"):
        node.save(other_result["frames"], scene, other_result["run"], "off", 1.0)
    run, _ = h.node("GemDirectRun").start(story, scene, "auto")
    with pytest.raises(ValueError, match=r"frames: shape \[5, 64, 80, 4\] is not an RGB IMAGE batch .*alpha"):
        node.save(torch.zeros(5, 64, 80, 4), scene, run, "off", 1.0)
    with pytest.raises(ValueError, match="color_match 'sepia' is not one of off, reinhard, histogram, mkl"):
        node.save(other_result["frames"], scene, run, "sepia", 1.0)
    assert ledger.read_scene(run, "a") is None  # refused input records nothing


def test_drift_is_recorded_against_the_first_scenes_first_frame(story_path):
    h.run_scene(story_path, 1)
    result = h.run_scene(story_path, 2)
    record = ledger.read_scene(result["run"], "b")
    measured = record["Extra"]["Drift"]
    assert measured["Reference"] == "scenes/a_first.png" and measured["Space"] == "CIELab"
    assert len(measured["MeanDeltaLab"]) == 3 and measured["MeanDeltaE"] > 0
    assert measured["LastFrameDeltaE"] > 0


def test_colour_match_pulls_a_drifted_scene_back_towards_the_reference(story_path):
    h.run_scene(story_path, 1)

    def drifted(start_image, end_image):
        return (h.render(start_image, start_image, gain=0.0) * 0.8 + 0.15).clamp(0, 1)

    result = h.run_scene(story_path, 2, color_match="reinhard", renderer=drifted)
    record = ledger.read_scene(result["run"], "b")
    before, after = record["Extra"]["Drift"]["MeanDeltaE"], record["Extra"]["DriftAfterColorMatch"]["MeanDeltaE"]
    assert after < 0.5 * before
    assert record["Extra"]["ColorMatch"] == {"Method": "reinhard", "Strength": 1.0, "Reference": "scenes/a_first.png"}


SCENE_IN_A_FRESH_PROCESS = """
import importlib.util, json, os, sys
root = {root!r}
sys.path.insert(0, os.path.join(root, "tests"))
import chain_helpers as h
from pathlib import Path
result = h.run_scene(Path({story!r}), {index})
print(json.dumps({{"run": result["run"].run_dir, "source": result["source"]}}))
"""


def test_three_scenes_in_three_separate_processes(story_path, comfy_home):
    """As three ComfyUI sessions would: nothing shared but the run folder on disk."""
    outputs = []
    for index in (1, 2, 3):
        code = SCENE_IN_A_FRESH_PROCESS.format(root=str(REPO_ROOT), story=str(story_path), index=index)
        env = dict(os.environ, GEMDIRECT_HOME=str(comfy_home))
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=120, env=env, cwd=str(REPO_ROOT / "tests"))
        assert done.returncode == 0, done.stderr
        outputs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len({output["run"] for output in outputs}) == 1
    assert [output["source"] for output in outputs] == ["keyframe", "previous-scene", "previous-scene"]
    run = ledger.open_run_dir(outputs[0]["run"])
    scenes = {record["SceneId"]: record for record in ledger.read_scenes(run)}
    assert [scenes[s]["Telemetry"]["BookendSimilarity"]["Score"] for s in ("b", "c")] == [100.0, 100.0]
    assert len({record["Telemetry"]["QueueStart"] for record in scenes.values()}) == 3
    _write_telemetry(run)
    assert validate_run(run.run_dir) == []


def test_an_end_image_that_could_not_be_given_is_in_the_record_and_the_report_once(story_path):
    for index in (1, 2):
        h.run_scene(story_path, index)
    result = h.run_scene(story_path, 3, end_image="keyframe")  # scene c has no keyframe
    record = ledger.read_scene(result["run"], "c")
    why = "end_image 'keyframe' asked for, but the scene has no keyframe: no end image (image-to-video)"
    assert result["end"] is None and record["Telemetry"]["FLF2VEnd"] == "none"
    assert record["Warnings"].count(why) == 1
    report = result["saved"]["result"][2]
    assert report.count(why) == 1 and f"WARNING: {why}" in report and "FLF2V end: none\n" in report
