"""Story Render: scenes joined in the story's current order into one film whose file matches the plan."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from conftest import pack_module
from render_helpers import (
    COLOURS,
    FPS,
    HEIGHT,
    LENGTHS,
    WIDTH,
    centre_colours,
    load,
    nearest_scene,
    save_all,
    start_run,
    story_dict,
    write_story,
    write_wav,
)
from vace_helpers import record_clip

engine = pack_module("nodes.render.engine")
join = pack_module("nodes.render.join")
ledger = pack_module("nodes.run.ledger")
video = pack_module("nodes.video")
validate = pack_module("nodes.run.validate")
sizing = pack_module("nodes.upscale.sizing")

N = 4  # transition frames


def _story_folder(comfy_home):
    return comfy_home / "input" / "gemdirect" / "render"


def _planned_frames(loaded) -> int:
    """What the plan says the joined film holds: sum(lengths) - sum(overlaps)."""
    scenes = loaded.plan.scenes
    return sum(s.length for s in scenes) - sum(s.transition.frames for s in scenes[:-1])


def _check_film(result, loaded, frames: int, fps, size: tuple[int, int]):
    info = video.probe_video(result.path)
    assert info.frames == frames == result.post["FinalFrames"]
    assert info.fps == fps
    assert (info.width, info.height) == size
    assert info.duration == pytest.approx(frames / float(fps), abs=1e-3)
    assert result.problems == []
    assert validate.validate_run(os.path.dirname(os.path.dirname(result.path))) == []
    return info


def _bytes(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _audio_seconds(path: str) -> float:
    audio = video.read_audio(path)
    return audio["waveform"].shape[-1] / audio["sample_rate"]


@pytest.mark.parametrize("kind", ["cut", "crossfade", "vace with clip", "vace without clip"])
def test_three_scenes_join_by_each_transition_kind_as_planned(comfy_home, kind):
    folder = _story_folder(comfy_home)
    transition = {"cut": {"kind": "cut"}, "crossfade": {"kind": "crossfade", "frames": N, "easing": "linear"}}.get(
        kind, {"kind": "vace", "frames": N})
    story = story_dict(("a", "b", "c"), [transition, transition], soundtrack="music.wav")
    write_wav(folder / "music.wav", 1.0)  # shorter than the film: padded with silence
    path = write_story(folder, story)
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    if kind == "vace with clip":  # both transitions recorded (9 frames replacing 4 + 4), in a colour no scene has
        for a, b in (("a", "b"), ("b", "c")):
            record_clip(run, a, b, context=4)

    result = engine.render_story(run, engine.RenderSettings())

    frames = _planned_frames(loaded)
    assert frames == sum(LENGTHS[s] for s in "abc") - (0 if kind == "cut" else 2 * N)
    if kind == "vace with clip":
        frames = sum(LENGTHS[s] for s in "abc") - 2 * (4 + 4) + 2 * 9  # each clip: 9 frames for A's last 4, B's first 4
    info = _check_film(result, loaded, frames, FPS, (WIDTH, HEIGHT))
    assert info.has_audio and result.post["AudioKept"] is True
    assert _audio_seconds(result.path) == pytest.approx(frames / FPS, abs=1024 / 48000)
    scenes = [nearest_scene(colour) for colour in centre_colours(result.path)]
    if kind == "cut":
        assert scenes == ["a"] * 9 + ["b"] * 13 + ["c"] * 17
        assert result.post["TransitionMethod"] == "cut"
    elif kind == "vace with clip":
        assert scenes == ["a"] * 5 + ["d"] * 9 + ["b"] * 5 + ["d"] * 9 + ["c"] * 13
        assert result.post["TransitionMethod"] == "vace" and not result.warnings
        joins = result.post["Joins"]
        assert [(j["Used"], j["Frames"], j["Inserted"], j["Clip"]) for j in joins] == [
            ("vace", 8, 9, "transitions/a--b.mkv"), ("vace", 8, 9, "transitions/b--c.mkv")]
    else:
        assert "d" not in scenes and scenes[0] == "a" and scenes[-1] == "c"
        expected = "crossfade" if kind == "crossfade" else "vace->crossfade"
        assert result.post["TransitionMethod"] == expected
        if kind == "vace without clip":
            assert len(result.warnings) == 2 and all("not made in run" in w for w in result.warnings)
            assert [(j["Clip"], j["Inserted"]) for j in result.post["Joins"]] == [(None, None)] * 2
            metadata = json.loads(_bytes(run.metadata_path))
            assert any("crossfaded 4 frames instead" in w for w in metadata["Warnings"])


def test_crossfade_blends_with_the_easing_and_keeps_both_ends(comfy_home):
    folder = _story_folder(comfy_home)
    path = write_story(folder, story_dict(("a", "b"), [{"kind": "crossfade", "frames": 3, "easing": "linear"}]))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    result = engine.render_story(run, engine.RenderSettings(audio="off"))
    red = np.array([c[0] for c in centre_colours(result.path)], dtype=float)
    # Overlap frames 6..8 (scene a's last 3 with b's first 3) step from red towards green by 1/4, 2/4, 3/4.
    start, end = COLOURS["a"][0], COLOURS["b"][0]
    expected = [start + (end - start) * w for w in (0.25, 0.5, 0.75)]
    assert red[6:9] == pytest.approx(expected, abs=6)
    assert len(red) == 9 + 13 - 3 and result.post["AudioKept"] is False


def test_interpolation_and_upscale_reach_the_planned_rate_and_size_without_blending_cuts(comfy_home):
    folder = _story_folder(comfy_home)
    path = write_story(folder, story_dict(("a", "b", "c"), [{"kind": "cut"}, {"kind": "crossfade", "frames": N}]))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    audio = {"waveform": np.zeros((1, 2, 48000 * 5), np.float32), "sample_rate": 48000}  # longer: cut
    settings = engine.RenderSettings(interpolation="flow", target_fps=24,
                                     upscale=sizing.OutputSize(mode="factor", factor=2.0))
    result = engine.render_story(run, settings, audio=audio)

    joined = _planned_frames(loaded)
    frames = math.floor((joined - 1) * 24 / FPS) + 1
    _check_film(result, loaded, frames, 24, (2 * WIDTH, 2 * HEIGHT))
    assert _audio_seconds(result.path) == pytest.approx(frames / 24, abs=1024 / 48000)
    post = result.post
    assert post["InterpolationMethod"] == "flow" and post["UpscaleMethod"] == "lanczos"
    assert post["TransitionMethod"] == "mixed: cut, crossfade"
    assert post["Extra"]["FramesHeldAtSceneCuts"] >= 1
    # The cut a|b is never blended: every frame up to b's first is pure red or pure green.
    colours = centre_colours(result.path)
    boundary = 9 * 24 // FPS + 2
    for colour in colours[:boundary]:
        assert min(sum((int(x) - int(y)) ** 2 for x, y in zip(colour, COLOURS[s], strict=True))
                   for s in ("a", "b")) < 300, colour


def test_reordered_story_renders_in_the_new_order(comfy_home):
    folder = _story_folder(comfy_home)
    path = write_story(folder, story_dict(("a", "b", "c")))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    first = engine.render_story(run, engine.RenderSettings())
    assert [nearest_scene(c) for c in centre_colours(first.path)] == ["a"] * 9 + ["b"] * 13 + ["c"] * 17

    story = json.loads(path.read_text(encoding="utf-8"))
    story["scenes"] = [story["scenes"][2], story["scenes"][0], story["scenes"][1]]  # c, a, b
    path.write_text(json.dumps(story), encoding="utf-8")
    second = engine.render_story(run, engine.RenderSettings())
    assert [nearest_scene(c) for c in centre_colours(second.path)] == ["c"] * 17 + ["a"] * 9 + ["b"] * 13
    assert second.post["Extra"]["Scenes"] == ["c", "a", "b"] and second.problems == []


def test_missing_and_failed_scenes_are_left_out_with_a_warning_or_stop_the_render(comfy_home):
    from render_helpers import save_scene

    folder = _story_folder(comfy_home)
    crossfade = {"kind": "crossfade", "frames": N}
    path = write_story(folder, story_dict(("a", "b", "c"), [crossfade, crossfade]))
    loaded = load(path)
    run = start_run(path)
    a, b, _c = loaded.plan.scenes
    save_scene(run, a)
    save_scene(run, b, success=False)  # c never rendered

    with pytest.raises(join.RenderError, match=r"scene 'b' failed .*scene 'c' not rendered yet.*on_missing"):
        engine.render_story(run, engine.RenderSettings(on_missing="stop"))
    assert ledger.read_post(run) is None and not os.path.exists(ledger.final_video_path(run))

    result = engine.render_story(run, engine.RenderSettings())
    assert video.probe_video(result.path).frames == LENGTHS["a"]
    assert result.film.skipped == ["b", "c"] and result.post["TransitionMethod"] == "none"
    assert any("scene 'b' failed" in w for w in result.warnings)
    assert any("scene 'c' not rendered yet" in w for w in result.warnings)
    assert result.problems == []


def test_a_transition_into_a_left_out_scene_becomes_a_cut(comfy_home):
    from render_helpers import save_scene

    folder = _story_folder(comfy_home)
    crossfade = {"kind": "crossfade", "frames": N}
    path = write_story(folder, story_dict(("a", "b", "c"), [crossfade, crossfade]))
    loaded = load(path)
    run = start_run(path)
    save_scene(run, loaded.plan.scenes[0])
    save_scene(run, loaded.plan.scenes[2])
    result = engine.render_story(run, engine.RenderSettings())
    assert [nearest_scene(c) for c in centre_colours(result.path)] == ["a"] * 9 + ["c"] * 17
    assert any("cut to 'c' instead" in w for w in result.warnings)


def test_interrupt_leaves_the_previous_film_and_telemetry_intact(comfy_home):
    comfy = pack_module("nodes.comfy")
    folder = _story_folder(comfy_home)
    path = write_story(folder, story_dict(("a", "b", "c")))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    engine.render_story(run, engine.RenderSettings())
    final = ledger.final_video_path(run)
    before = {p: _bytes(p) for p in (final, run.metadata_path, f"{run.final_dir}/post.json")}

    def stop_half_way(current, total):
        if current >= total // 2:
            comfy.request_interrupt()

    comfy.Progress.listeners.append(stop_half_way)
    try:
        with pytest.raises(comfy.Interrupted):
            engine.render_story(run, engine.RenderSettings(interpolation="flow", target_fps=32, chunk_size=2))
    finally:
        comfy.Progress.listeners.remove(stop_half_way)
        comfy.clear_interrupt()
    assert {p: _bytes(p) for p in before} == before
    assert [n for n in os.listdir(run.final_dir) if "tmp" in n] == []
    assert validate.validate_run(run.run_dir) == []


def test_settings_errors_name_the_input_and_the_fix(comfy_home):
    folder = _story_folder(comfy_home)
    path = write_story(folder, story_dict(("a", "b")))
    loaded = load(path)
    run = start_run(path)
    save_all(run, loaded)
    with pytest.raises(join.RenderError, match="connect RIFE Loader"):
        engine.render_story(run, engine.RenderSettings(interpolation="rife", target_fps=24))
    with pytest.raises(join.RenderError, match=r"target_fps: .*below the source"):
        engine.render_story(run, engine.RenderSettings(interpolation="flow", target_fps=8))
    with pytest.raises(join.RenderError, match="interpolation 'fast'"):
        engine.RenderSettings(interpolation="fast")
    path.unlink()
    with pytest.raises(join.RenderError, match="is gone; connect the story input"):
        engine.render_story(run, engine.RenderSettings())
