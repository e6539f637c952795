"""A run is a project: scenes keep a fingerprint, a changed input or a changed chained predecessor makes
a scene stale, regenerate_order lists exactly what to render again, re-rendering a scene replaces its
files and nothing else, and Story Render warns about (or stops on) stale scenes.

Real nodes on a real three-scene story (chain_helpers), real MP4 and PNG files in the run folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import chain_helpers as h
import pytest
from conftest import pack_module

ledger = pack_module("nodes.run.ledger")
events = pack_module("nodes.run.events")
freshness = pack_module("nodes.run.freshness")
fingerprint = pack_module("nodes.run.fingerprint")
engine = pack_module("nodes.render.engine")
join = pack_module("nodes.render.join")
images = pack_module("nodes.video.images")
measure = pack_module("nodes.run.measure")
records = pack_module("nodes.run.records")


@pytest.fixture
def story_path(comfy_home):
    return h.write_story(comfy_home / "input" / "gemdirect" / "chain")


def _edit(story_path: Path, change) -> None:
    story = json.loads(story_path.read_text(encoding="utf-8"))
    change(story)
    story_path.write_text(json.dumps(story), encoding="utf-8")


def _scene(story: dict, scene_id: str) -> dict:
    return next(scene for scene in story["scenes"] if scene["id"] == scene_id)


def _states(run, story_path) -> dict[str, tuple[str, list[str]]]:
    states = freshness.scene_states(run, h.load_story(story_path).plan.scenes)
    return {state.scene: (state.state, state.reasons) for state in states}


def _brighter(start_image, end_image):
    return h.render(start_image, end_image, gain=0.12)  # other pixels than h.render: a different take


def _render_all(story_path):
    results = [h.run_scene(story_path, index) for index in (1, 2, 3)]
    assert len({result["run"] for result in results}) == 1
    return results[0]["run"]


def test_the_record_keeps_a_fingerprint_of_what_made_the_scene(story_path):
    run = _render_all(story_path)
    record = ledger.read_scene(run, "b")
    print_ = record["Extra"]["Fingerprint"]
    plan = h.load_story(story_path).plan.scenes[1]
    assert print_["Plan"] == fingerprint.plan_fingerprint(plan)
    assert print_["Plan"]["Seed"] == plan.seed and print_["Plan"]["Prompt"] == "the boat reaches the shore"
    assert print_["Plan"]["KeyframeSha256"] == fingerprint.file_sha256(plan.keyframe)
    assert print_["PlanSha256"] == fingerprint.plan_sha256(print_["Plan"])
    render = print_["Render"]
    assert render["Models"] == record["Models"] and "wan2.2_i2v_high_noise_14B_Q4_K_M.gguf" in render["Models"]
    assert (render["StartSource"], render["PreviousScene"]) == ("previous-scene", "a")
    last_a = images.load_png(ledger.scene_paths(run, "a").last_frame, dtype="uint8", as_torch=False)
    assert render["StartSha256"] == images.pixel_sha256(last_a)  # the frame b started on, hashed
    assert ledger.read_scene(run, "a")["Extra"]["Fingerprint"]["Render"]["StartSource"] == "keyframe"


def test_all_rendered_scenes_are_fresh_and_nothing_needs_regenerating(story_path):
    run = _render_all(story_path)
    states = freshness.scene_states(run, h.load_story(story_path).plan.scenes)
    assert [s.to_json() for s in states] == [{"scene": i, "state": "fresh", "reasons": []} for i in "abc"]
    assert freshness.regenerate_order(states) == []
    assert [s.to_json() for s in freshness.scene_states(run)] == [s.to_json() for s in states]  # recorded story


def test_a_changed_seed_makes_the_scene_and_its_chained_successor_stale(story_path):
    run = _render_all(story_path)
    old_seed = ledger.read_scene(run, "b")["Seed"]
    _edit(story_path, lambda s: _scene(s, "b").update(seed=7))
    states = _states(run, story_path)
    assert states["a"] == ("fresh", [])
    assert states["b"] == ("stale", [f"seed changed ({old_seed} -> 7)"])
    assert states["c"] == ("stale", ["chained to 'b', which is stale"])
    assert freshness.regenerate_order(freshness.scene_states(run, h.load_story(story_path).plan.scenes)) == ["b", "c"]

    h.run_scene(story_path, 2, renderer=_brighter)  # re-render b (the new seed gives other pixels)
    states = _states(run, story_path)
    assert states["b"] == ("fresh", [])
    assert states["c"] == ("stale", ["'b' changed since: its last frame is not the frame this scene started on"])
    order = freshness.regenerate_order(freshness.scene_states(run, h.load_story(story_path).plan.scenes))
    assert order == ["c"]
    h.run_scene(story_path, 3)
    assert {s for s, (state, _) in _states(run, story_path).items() if state != "fresh"} == set()


def test_the_same_pixels_again_leave_the_successor_fresh(story_path):
    run = _render_all(story_path)
    h.run_scene(story_path, 2)  # the same take again: b's last frame is the one c started on
    assert _states(run, story_path)["c"] == ("fresh", [])


def test_each_plan_field_is_named_when_it_changes(story_path):
    run = _render_all(story_path)

    def change(story):
        scene = _scene(story, "a")
        scene.update(prompt="a blue boat", negative="rain", cfg=4.0, steps=14, frames=9)
        scene["loras"] = [{"name": "style.safetensors", "strength": 0.5}]

    _edit(story_path, change)
    (story_path.parent / "kf" / "a.png").write_bytes((story_path.parent / "kf" / "b.png").read_bytes())
    state, reasons = _states(run, story_path)["a"]
    assert state == "stale"
    assert reasons == ["prompt changed", "negative changed", "cfg changed (5.2 -> 4.0)", "steps changed (16 -> 14)",
                       "length (frames) changed (5 -> 9)", "loras changed", "keyframe (file content) changed"]


def test_a_reorder_keeps_the_run_and_marks_the_moved_chains_stale(story_path):
    run = _render_all(story_path)
    _edit(story_path, lambda s: s.update(scenes=[_scene(s, "c"), _scene(s, "a"), _scene(s, "b")]))
    again = h.run_scene(story_path, 1)  # c is scene 1 now; continue keeps the run
    assert again["run"] == run
    assert ledger.story_info(run).scene_ids == ("c", "a", "b")
    states = _states(run, story_path)
    assert states["c"] == ("fresh", [])  # just re-rendered as the first scene
    assert states["a"][0] == "stale" and states["a"][1][0] == "chain changed (False -> True)"
    assert states["b"] == ("stale", ["chained to 'a', which is stale"])
    order = freshness.regenerate_order(freshness.scene_states(run, h.load_story(story_path).plan.scenes))
    assert order == ["a", "b"]


def test_a_predecessor_now_in_another_place_is_named(story_path):
    run = _render_all(story_path)
    _edit(story_path, lambda s: s.update(scenes=[_scene(s, "b"), _scene(s, "a"), _scene(s, "c")]))
    states = _states(run, story_path)
    assert states["c"] == ("stale", ["started on the last frame of 'b', but 'a' plays before it now",
                                     "chained to 'a', which is stale"])


def test_missing_and_failed_scenes_and_a_chain_that_fell_back(story_path):
    h.run_scene(story_path, 1)
    result = h.run_scene(story_path, 3)  # b not rendered: c falls back (no keyframe: mid-grey)
    run = result["run"]
    states = _states(run, story_path)
    assert states["b"] == ("missing", [f"not rendered in run {run.run_id}"])
    assert states["c"][0] == "stale"
    assert states["c"][1][0].startswith("chained to 'b' but rendered from its none start (previous scene 'b' "
                                        "has not been rendered")
    assert states["c"][1][-1] == "chained to 'b', which is missing"
    order = freshness.regenerate_order(freshness.scene_states(run, h.load_story(story_path).plan.scenes))
    assert order == ["b", "c"]

    plan_b = h.load_story(story_path).plan.scenes[1]
    stage = measure.StageMeasurement(stage="scene", scene="b", before=measure.memory_snapshot(),
                                     started_at=events.utc_now(), after=measure.memory_snapshot(),
                                     ended_at=events.utc_now(), elapsed_s=0.0)
    ledger.record_scene(run, records.scene_record(
        **records.scene_plan_fields(plan_b), video_path="scenes/b.mp4", video_status="error",
        video_error="out of memory", success=False, errors=["OutOfMemoryError: out of memory"],
        telemetry=records.run_telemetry(stage, flf2v_source="previous-scene")))
    assert _states(run, story_path)["b"] == ("failed", ["its render failed: OutOfMemoryError: out of memory"])
    assert _states(run, story_path)["c"][1][-1] == "chained to 'b', which is failed"
    os.remove(ledger.scene_paths(run, "a").video)
    assert _states(run, story_path)["a"] == ("missing", ["its video scenes/a.mp4 is gone"])


def test_rerendering_a_scene_replaces_its_files_and_nothing_else(story_path):
    run = _render_all(story_path)

    def snapshot():
        found = {}
        for folder, _dirs, names in os.walk(run.run_dir):
            for name in names:
                path = os.path.join(folder, name)
                stat = os.stat(path)
                found[os.path.relpath(path, run.run_dir)] = (Path(path).read_bytes(), stat.st_mtime_ns, stat.st_ino)
        return found

    before = snapshot()
    h.run_scene(story_path, 2, renderer=_brighter)
    after = snapshot()
    touched = {path for path in set(before) | set(after) if before.get(path) != after.get(path)}
    others = {path for path in touched if not path.startswith(("scenes/b.", "scenes/b_")) and path != "events.jsonl"}
    assert others == set(), others
    changed = {path for path in touched if before.get(path, (None,))[0] != after.get(path, (None,))[0]}
    assert {"scenes/b.json", "scenes/b.mp4", "scenes/b_last.png"} <= changed
    assert ledger.read_scene(run, "b")["AttemptsRun"] == 2


def _render(run, story_path, on_stale):
    settings = engine.RenderSettings(interpolation="off", on_stale=on_stale)
    return engine.render_story(run, settings, story=h.load_story(story_path))


def test_story_render_warns_per_stale_scene_or_stops(story_path):
    run = _render_all(story_path)
    fresh = _render(run, story_path, "warn")
    assert fresh.post["StaleScenes"] == []
    _edit(story_path, lambda s: _scene(s, "b").update(prompt="the boat sinks"))

    with pytest.raises(join.RenderError) as stopped:
        _render(run, story_path, "stop")
    message = str(stopped.value)
    assert "2 scene(s) of run" in message and "'b' (prompt changed)" in message
    assert "'c' (chained to 'b', which is stale)" in message and "set on_stale to warn" in message

    result = _render(run, story_path, "warn")
    assert result.post["StaleScenes"] == [{"SceneId": "b", "Reasons": ["prompt changed"]},
                                          {"SceneId": "c", "Reasons": ["chained to 'b', which is stale"]}]
    report = result.describe()
    assert "WARNING: scene 'b' is stale: prompt changed" in report
    assert "WARNING: scene 'c' is stale: chained to 'b', which is stale" in report
    warned = [e for e in events.read_events(run.run_dir).of_kind(events.WARNING) if "is stale" in e["text"]]
    assert [e["scene"] for e in warned] == ["b", "c"]
    metadata = json.loads(Path(run.metadata_path).read_text(encoding="utf-8"))
    assert metadata["Post"]["StaleScenes"] == result.post["StaleScenes"]
    assert result.problems == []  # the telemetry with StaleScenes keeps the contract
    with pytest.raises(join.RenderError, match="on_stale 'later' is not one of warn, stop"):
        engine.RenderSettings(on_stale="later")


def test_the_run_node_sends_every_scenes_state(story_path):
    comfy = pack_module("nodes.comfy")
    seen: list[dict] = []

    def listener(event, data):
        if event == "gemdirect.run":
            seen.append(data)

    comfy.event_listeners.append(listener)
    try:
        _render_all(story_path)
        _edit(story_path, lambda s: _scene(s, "a").update(steps=18))
        h.run_scene(story_path, 3)
    finally:
        comfy.event_listeners.remove(listener)
    assert seen[0]["scene_states"] == [{"scene": i, "state": "missing", "reasons": [seen[0]["scene_states"][0]
                                                                                   ["reasons"][0]]}
                                       for i in "abc"]
    last = {state["scene"]: state for state in seen[-1]["scene_states"]}
    assert last["a"] == {"scene": "a", "state": "stale", "reasons": ["steps changed (16 -> 18)"]}
    assert last["b"]["state"] == "stale" and last["c"]["state"] == "stale"
    assert seen[-1]["scene_states_error"] is None
