"""The run ledger: run folders, ids, run modes, scene records that replace only their own files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import run_helpers as h
from conftest import pack_module

ledger = pack_module("nodes.run.ledger")
events = pack_module("nodes.run.events")
telemetry = pack_module("nodes.run.telemetry")
atomic = pack_module("nodes.run.atomic")


@pytest.fixture
def root(comfy_home):
    return ledger.runs_root()


def _new(root, **kwargs):
    return ledger.create_run(h.story_info(**kwargs), h.story_raw(), root=root)


def _write_scene_files(run, scene_id: str, content: bytes) -> None:
    paths = ledger.scene_paths(run, scene_id)
    for path in (paths.video, paths.first_frame, paths.last_frame):
        atomic.atomic_write_bytes(path, content)


def _snapshot(folder: str) -> dict[str, tuple[bytes, int]]:
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in sorted(Path(folder).iterdir())}


# --------------------------------------------------------------------------- folders and ids


def test_a_new_run_has_the_documented_layout_under_output_gemdirect(comfy_home, root):
    run = _new(root)
    assert root == str(comfy_home / "output" / "gemdirect")
    assert run.run_dir == os.path.join(root, "test-story", run.run_id)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", run.run_id)
    assert sorted(os.listdir(run.run_dir)) == ["events.jsonl", "final", "run.json", "scenes", "story.json",
                                                "transitions"]
    assert json.loads(Path(run.story_path).read_text()) == h.story_raw()
    assert ledger.story_info(run) == h.story_info()
    assert [e["event"] for e in events.read_events(run.run_dir).events] == ["run_created"]
    assert not [name for name in os.listdir(os.path.dirname(run.run_dir)) if atomic.is_temporary(name)]


def test_run_ids_are_unique_and_runs_list_newest_first(root):
    runs = [_new(root) for _ in range(12)]
    assert len({run.run_id for run in runs}) == 12
    listed = ledger.list_runs("test-story", root=root)
    assert [run.run_id for run in listed] == [run.run_id for run in reversed(runs)]
    assert ledger.list_runs("another-story", root=root) == []


@pytest.mark.parametrize("bad", ["../20261123-214501-3fa2", "20261123-214501-3FA2", "20261123-214501",
                                 "20261123-214501-3fa2/..", "/etc", "", "20261123_214501_3fa2"])
def test_resume_refuses_run_ids_that_are_not_ids(root, bad):
    with pytest.raises(ledger.RunError, match="not a run id: expected YYYYMMDD-HHMMSS-xxxx"):
        ledger.open_run("test-story", bad, root=root)


@pytest.mark.parametrize("bad", ["../up", "a/b", "Upper", ".hidden", ""])
def test_story_ids_that_could_leave_the_runs_folder_are_refused(root, bad):
    with pytest.raises(ledger.RunError, match="cannot name a run folder"):
        ledger.list_runs(bad, root=root)


def test_resuming_an_unknown_run_lists_the_existing_runs(root):
    older, newer = _new(root), _new(root)
    with pytest.raises(ledger.RunError) as caught:
        ledger.open_run("test-story", "20200101-000000-abcd", root=root)
    message = str(caught.value)
    assert "run '20200101-000000-abcd' of story 'test-story' not found" in message
    assert f"existing runs, newest first: {newer.run_id}, {older.run_id}" in message


def test_paths_inside_a_run_may_not_leave_it(root):
    run = _new(root)
    assert ledger.resolve_in_run(run.run_dir, "scenes/a.mp4") == os.path.join(os.path.realpath(run.run_dir),
                                                                              "scenes", "a.mp4")
    for bad in ("../other/x.mp4", "/etc/passwd", "scenes/../../x"):
        with pytest.raises(ledger.RunError, match="leaves the run folder"):
            ledger.resolve_in_run(run.run_dir, bad)
    with pytest.raises(ledger.RunError, match="cannot name a file"):
        ledger.scene_paths(run, "../b")


# --------------------------------------------------------------------------- run modes


def test_continue_mode_renders_every_scene_into_the_storys_newest_run(root):
    info, raw = h.story_info(), h.story_raw()
    first = ledger.resolve_run("continue", info, "a", raw, root=root)  # the story has no run: one is made
    assert ledger.list_runs("test-story", root=root) == [first]
    second = ledger.resolve_run("continue", info, "b", raw, root=root)
    third = ledger.resolve_run("continue", info, "c", raw, root=root)
    again = ledger.resolve_run("continue", info, "a", raw, root=root)  # scene 1 queued again: the same run
    assert second == first and third == first and again == first
    newer = ledger.resolve_run("new", info, "a", raw, root=root)
    assert newer != first
    assert ledger.resolve_run("continue", info, "b", raw, root=root) == newer  # the newest run
    joins = events.read_events(first.run_dir).of_kind("run_joined")
    assert [(e["scene"], e["how"]) for e in joins] == [("b", "continue"), ("c", "continue"), ("a", "continue")]


def test_continue_mode_joins_a_finished_run_and_auto_is_its_old_name(root):
    info, raw = h.story_info(), h.story_raw()
    run = ledger.resolve_run("continue", info, "b", raw, root=root)
    # Finish it: a recorded post with its final video on disk.
    final = ledger.final_video_path(run)
    atomic.atomic_write_bytes(final, b"not really a video")
    post = pack_module("nodes.run.records").post_record(
        interpolation_method="none", interpolation_ms=0, upscale_method="none", upscale_ms=0,
        transition_method="cut", final_fps=16, final_width=320, final_height=192, final_frames=9,
        final_duration=0.56, final_path=ledger.relative_path(run, final), audio_kept=False)
    ledger.record_post(run, post)
    assert ledger.run_status(run).finished
    assert ledger.resolve_run("continue", info, "c", raw, root=root) == run  # re-render in the finished run
    assert ledger.resolve_run("auto", info, "a", raw, root=root) == run  # a saved workflow's old value
    joined = events.read_events(run.run_dir).of_kind("run_joined")[-1]
    assert (joined["how"], joined["mode_alias"]) == ("continue", "auto")
    assert ledger.list_runs("test-story", root=root) == [run]
    with pytest.raises(ledger.RunError, match="mode 'later' is not a run mode: use one of continue, new"):
        ledger.resolve_run("later", info, "a", raw, root=root)


def test_a_reordered_story_keeps_the_run_and_the_manifest_follows_it(root):
    info, raw = h.story_info(), h.story_raw()
    run = ledger.resolve_run("continue", info, "a", raw, root=root)
    reordered = (("c", "Dusk"), ("a", "Dawn"), ("b", "Boat"))
    same = ledger.resolve_run("continue", h.story_info(scenes=reordered, content_hash="hash-2"), "b",
                              h.story_raw(reordered), root=root)
    assert same == run
    assert ledger.story_info(run).scene_ids == ("c", "a", "b")
    assert [s["id"] for s in json.loads(Path(run.story_path).read_text())["scenes"]] == ["c", "a", "b"]


def test_new_mode_always_starts_a_run_and_a_run_id_resumes_that_run(root):
    info, raw = h.story_info(), h.story_raw()
    first = ledger.resolve_run("new", info, "b", raw, root=root)
    second = ledger.resolve_run("new", info, "b", raw, root=root)
    assert first.run_id != second.run_id
    resumed = ledger.resolve_run("new", info, "c", raw, run_id=f" {first.run_id} ", root=root)
    assert resumed == first
    assert events.read_events(first.run_dir).of_kind("run_joined")[-1]["how"] == "resume"
    with pytest.raises(ledger.RunError, match="not a run mode"):
        ledger.resolve_run("sometimes", info, "b", raw, root=root)
    with pytest.raises(ledger.RunError, match="scene 'zz' is not in story 'test-story'"):
        ledger.resolve_run("continue", info, "zz", raw, root=root)


def test_a_joining_scene_with_a_changed_story_updates_the_run_and_warns(root):
    run = ledger.resolve_run("continue", h.story_info(), "a", h.story_raw(), root=root)
    changed_raw = h.story_raw()
    changed_raw["title"] = "Test Story, revised"
    joined = ledger.resolve_run("continue", h.story_info(content_hash="hash-2"), "b", changed_raw, root=root)
    assert joined == run
    assert json.loads(Path(run.story_path).read_text())["title"] == "Test Story, revised"
    assert ledger.story_info(run).content_hash == "hash-2"
    log = events.read_events(run.run_dir)
    assert log.of_kind("story_changed")[0]["old_hash"] == "hash-1"
    assert "story.json changed" in log.of_kind("warning")[0]["text"]


# --------------------------------------------------------------------------- scene records


def test_rerunning_a_scene_replaces_its_files_and_no_other_scenes(root):
    run = _new(root)
    for index, scene_id in enumerate(("a", "b", "c"), start=1):
        _write_scene_files(run, scene_id, f"first render of {scene_id}".encode())
        ledger.record_scene(run, h.scene_record(scene_id, index))
    before = _snapshot(run.scenes_dir)

    _write_scene_files(run, "b", b"second render of b")
    record = ledger.record_scene(run, h.scene_record("b", 2, bookend=61.0))

    after = _snapshot(run.scenes_dir)
    assert set(after) == set(before)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"b.json", "b.mp4", "b_first.png", "b_last.png"}
    assert after["b.mp4"][0] == b"second render of b"
    assert record["AttemptsRun"] == 2 and ledger.read_scene(run, "a")["AttemptsRun"] == 1
    assert ledger.read_scene(run, "b")["Telemetry"]["BookendSimilarity"]["Score"] == 61.0


def test_scene_records_read_back_in_story_order(root):
    run = _new(root)
    for index, scene_id in ((3, "c"), (1, "a")):
        ledger.record_scene(run, h.scene_record(scene_id, index))
    assert [record["SceneId"] for record in ledger.read_scenes(run)] == ["a", "c"]


def test_a_bad_scene_record_is_refused_naming_the_field_and_the_old_record_stays(root):
    run = _new(root)
    good = ledger.record_scene(run, h.scene_record("a", 1))
    bad = h.scene_record("a", 1)
    bad["Telemetry"]["GPU"]["VramDeltaMB"] = 999.0
    with pytest.raises(telemetry.TelemetryError, match=r"scene 'a': Telemetry\.GPU\.VramDeltaMB = 999"):
        ledger.record_scene(run, bad)
    typo = h.scene_record("a", 1)
    typo["Telemetry"]["GPU"]["VramDeltaMb"] = typo["Telemetry"]["GPU"].pop("VramDeltaMB")
    with pytest.raises(telemetry.TelemetryError) as caught:
        ledger.record_scene(run, typo)
    assert "Telemetry.GPU.VramDeltaMB: missing" in str(caught.value)
    assert "Telemetry.GPU.VramDeltaMb: is not a field" in str(caught.value)
    assert ledger.read_scene(run, "a") == good


def test_a_scene_outside_the_runs_story_is_refused(root):
    run = _new(root)
    with pytest.raises(ledger.RunError, match=r"scene 'zz' is not in the story of run .* \(scenes: a, b, c\)"):
        ledger.record_scene(run, h.scene_record("zz", 4))


def test_status_counts_done_failed_and_pending_scenes(root):
    run = _new(root)
    ledger.record_scene(run, h.scene_record("a", 1))
    ledger.record_scene(run, h.scene_record("b", 2, success=False))
    status = ledger.run_status(run)
    assert (status.done, status.failed, status.pending, status.finished) == (("a",), ("b",), ("c",), False)
    assert status.describe() == f"run {run.run_id} (unfinished): 1/3 scenes done, 1 failed, 1 pending"


def test_a_folder_whose_creation_was_interrupted_is_not_listed(root):
    run = _new(root)
    os.makedirs(os.path.join(root, "test-story", "20200101-000000-dead"))  # no run.json
    os.makedirs(os.path.join(root, "test-story", ".20200101-000000-beef.1234.gemdirect-tmp"))
    assert ledger.list_runs("test-story", root=root) == [run]
    with pytest.raises(ledger.RunError, match=r"run\.json is missing"):
        ledger.open_run("test-story", "20200101-000000-dead", root=root)


# --------------------------------------------------------------------------- events


def test_events_are_whole_json_lines_and_a_torn_last_line_is_skipped(root):
    run = _new(root)
    ledger.append_event(run, "stage_start", stage="sample", scene="a")
    with open(run.events_path, "ab") as handle:
        handle.write(b'{"time": "2026-11-23T21:45:01Z", "event": "stage_e')  # a writer killed mid-line
    assert [e["event"] for e in events.read_events(run.run_dir).events] == ["run_created", "stage_start"]
    ledger.append_event(run, "stage_end", stage="sample", scene="a", elapsed_s=1.5)
    log = events.read_events(run.run_dir)
    assert [e["event"] for e in log.events] == ["run_created", "stage_start", "stage_end"]
    assert log.skipped == [3]
    with pytest.raises(ValueError, match="line break"):
        events.append_line(run.events_path, "two\nlines")


def test_measure_stage_logs_start_and_end_with_time_and_memory(root):
    measure = pack_module("nodes.run.measure")
    run = _new(root)
    with measure.measure_stage(run.run_dir, "sample", scene="a") as stage:
        sum(range(1000))
    with pytest.raises(RuntimeError), measure.measure_stage(run.run_dir, "decode", scene="a"):
        raise RuntimeError("out of memory")
    start, end, _start2, failed = events.read_events(run.run_dir).of_kind("stage_start", "stage_end")
    assert start["stage"] == "sample" and start["vram_before_mb"] >= 0
    assert end["elapsed_s"] >= 0 and {"vram_after_mb", "vram_peak_mb", "ram_after_mb"} <= set(end)
    assert failed["error"] == "RuntimeError: out of memory"
    gpu = stage.gpu_telemetry()
    assert gpu["VramDeltaMB"] == round(gpu["VramAfterMB"] - gpu["VramBeforeMB"], 2)
    assert gpu["Type"] == "cpu" and gpu["VramTotal"] > 0
