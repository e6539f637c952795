"""Other video providers: SVD-XT and LTX-Video 2B profiles, the rules planning applies for each, their presets,
VRAM estimates and the Provider Settings node."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from conftest import REPO_ROOT, load_pack, pack_module
from story_helpers import base_story, write_story

plan = pack_module("nodes.story.plan")
load = pack_module("nodes.story.load")
presets = pack_module("nodes.story.presets")
profiles = pack_module("nodes.story.profiles")
provider = pack_module("nodes.story.provider")
estimate = pack_module("nodes.vram.estimate")
advice = pack_module("nodes.vram.advice")
fingerprint = pack_module("nodes.run.fingerprint")


def _plan(tmp_path, story, preset="none"):
    return plan.plan_story(load.load_story(write_story(tmp_path / "s", story)), preset)


def _story(profile, **defaults):
    story = base_story()
    story["defaults"] = {"model_profile": profile, **defaults}
    return story


# --------------------------------------------------------------------------- frame rules


@pytest.mark.parametrize(("asked", "step", "frames"), [
    (50, 8, 49), (53, 8, 57), (52, 8, 49), (97, 8, 97), (1, 8, 9), (100, 8, 97), (101, 8, 105),  # LTX-Video 8n+1
    (14, 1, 14), (25, 1, 25), (1, 1, 2), (50, 4, 49), (51, 4, 53)])  # SVD any count (>= 2); WAN 4n+1 unchanged
def test_frames_round_to_each_providers_step(asked, step, frames):
    assert plan.round_frames(asked, step) == frames
    assert (frames - 1) % step == 0


def test_ltxv_scene_lengths_are_8n_plus_1_and_sizes_multiples_of_32(tmp_path):
    story = _story("ltxv-2b", width=850, height=500)
    story["scenes"][1]["frames"] = 50
    a, b, c = _plan(tmp_path, story).scenes
    assert a.fps == 24 and a.length == 73  # 3 s at its native 24 fps: 72 intervals + 1 = 73 = 8*9+1
    assert b.length == 49 and c.length == 49  # 50 frames -> 49; 2 s at 24 fps -> 49
    assert any("frames: 50 frames rounded to 49 (LTX-Video needs 8n+1 frames)" in w for w in b.warnings)
    assert (a.width, a.height) == (864, 512)
    assert any("width: 850 rounded to 864 (LTX-Video 2B needs multiples of 32)" in w for w in a.warnings)
    assert a.cfg == 3.0 and a.steps == 30 and a.motion is None


def test_svd_takes_any_frame_count_whole_fps_and_multiples_of_64(tmp_path):
    story = _story("svd-xt", width=1000, height=600, fps="24000/1001")
    story["scenes"][1]["frames"] = 14
    result = _plan(tmp_path, story)
    a, b, _ = result.scenes
    assert a.fps == Fraction(24) and all(s.fps.denominator == 1 for s in result.scenes)
    assert any("defaults.fps: 23.976 fps rounded to 24 (SVD-XT's fps conditioning is a whole number)" in w
               for w in a.warnings)
    assert b.length == 14 and not any("frames" in w for w in b.warnings)  # any count is taken as asked
    assert a.length == 73 and any("longer than SVD-XT was trained for (25)" in w for w in a.warnings)
    assert (a.width, a.height) == (1024, 576)
    assert a.cfg == 2.5 and a.steps == 20 and a.motion == 127


def test_svd_fps_rounds_from_the_field_that_set_it(tmp_path):
    story = _story("svd-xt")
    story["scenes"][2]["fps"] = 7.5
    c = _plan(tmp_path, story).scenes[2]
    assert c.fps == 8 and any(w.startswith("scenes[2].fps: 7.5 fps rounded to 8") for w in c.warnings)


def test_svd_motion_layers_scene_over_defaults_and_is_in_the_fingerprint(tmp_path):
    story = _story("svd-xt", motion=40)
    story["scenes"][0]["motion"] = 200
    a, b, _ = _plan(tmp_path, story).scenes
    assert (a.motion, b.motion) == (200, 40)
    assert fingerprint.plan_fingerprint(a)["Motion"] == 200
    assert fingerprint.plan_sha256(fingerprint.plan_fingerprint(a)) != fingerprint.plan_sha256(
        fingerprint.plan_fingerprint(b))


def test_wan_plans_carry_no_motion_so_their_fingerprints_are_unchanged(tmp_path):
    a = _plan(tmp_path, base_story()).scenes[0]
    assert a.motion is None and "Motion" not in fingerprint.plan_fingerprint(a)


def test_motion_on_a_model_without_it_is_ignored_and_said(tmp_path):
    story = _story("ltxv-2b")
    story["scenes"][0]["motion"] = 90
    a = _plan(tmp_path, story).scenes[0]
    assert a.motion is None
    assert any("scenes[0].motion: LTX-Video 2B has no motion input; motion is ignored" in w for w in a.warnings)


@pytest.mark.parametrize("bad", [0, 1024, 12.5, "127"])
def test_motion_out_of_range_is_an_error_naming_the_field(tmp_path, bad):
    story = _story("svd-xt")
    story["scenes"][1]["motion"] = bad
    with pytest.raises(load.StoryError) as caught:
        _plan(tmp_path, story)
    assert "scenes[1].motion" in str(caught.value)


# --------------------------------------------------------------------------- CFG / steps advice per model


def test_cfg_and_steps_advice_follow_the_model(tmp_path):
    story = _story("svd-xt", cfg=4.5, steps=40)
    a = _plan(tmp_path, story).scenes[0]
    assert any("cfg = 4.5 is 4 or more; SVD over-saturates" in w for w in a.warnings)
    assert any("steps = 40 is outside 15 to 30" in w for w in a.warnings)
    wan = _plan(tmp_path, _story("wan22-i2v-14b", cfg=4.5, steps=16)).scenes[0]
    assert not any("cfg" in w for w in wan.warnings)  # 4.5 is fine for WAN (it warns from 6)
    ltxv = _plan(tmp_path, _story("ltxv-2b", cfg=5.2, steps=30)).scenes[0]
    assert any("cfg = 5.2 is 5 or more; LTX-Video burns in" in w for w in ltxv.warnings)


# --------------------------------------------------------------------------- start image, end image, prompt


def test_svd_says_it_uses_no_prompt_and_which_scenes_lack_a_start_image(tmp_path):
    story = _story("svd-xt")
    story["scenes"][2]["chain"] = False  # unchained and without keyframe: would start from grey
    result = _plan(tmp_path, story)
    assert any("SVD-XT takes no text prompt" in w for w in result.warnings)
    a, b, c = result.scenes
    assert not any("start image" in w for w in a.warnings + b.warnings)  # a has a keyframe, b is chained
    assert any(w.startswith("scenes[2]: SVD-XT makes video from a start image") for w in c.warnings)


def test_a_chained_keyframe_is_not_an_end_image_for_svd_or_ltxv(tmp_path):
    for profile_id in ("svd-xt", "ltxv-2b"):
        story = _story(profile_id)
        story["scenes"][1]["keyframe"] = "kf/a.png"  # chained scene 2: WAN would end on it (FLF2V)
        b = _plan(tmp_path, story).scenes[1]
        label = profiles.get_profile(profile_id).label
        assert any(w.startswith(f"scenes[1].keyframe: {label} takes no end image") for w in b.warnings), b.warnings
    wan = _plan(tmp_path, base_story() | {"scenes": story["scenes"]}).scenes[1]
    assert not any("end image" in w for w in wan.warnings)


def test_a_wan_story_plans_exactly_as_before():
    profile = profiles.get_profile("wan22-i2v-14b")
    assert (profile.frame_step, profile.default_cfg, profile.default_steps, profile.cfg_warn) == (4, 5.2, 16, 6.0)
    assert profile.steps_advised == (12, 20) and profile.text_prompt and profile.default_motion is None


# --------------------------------------------------------------------------- presets and VRAM


def test_provider_presets_load_and_plan_with_their_profiles(tmp_path):
    for name, profile_id, step, multiple in (("svd", "svd-xt", 1, 64), ("ltxv", "ltxv-2b", 8, 32)):
        preset = presets.load_preset(name)
        assert preset.model_profile == profile_id and preset.vram.min_gb > 0
        assert preset.width % multiple == 0 and preset.height % multiple == 0
        assert (preset.frames - 1) % step == 0
        story = base_story()
        story["defaults"] = {}
        result = _plan(tmp_path, story, name)
        assert result.model_profile == profile_id and result.scenes[0].cfg == preset.cfg
    assert set(presets.available_presets()) >= {"svd", "ltxv"}


def test_preset_schema_file_still_matches_the_model():
    assert json.loads((REPO_ROOT / "presets" / "preset.schema.json").read_text()) == \
        presets.preset_json_schema()


def test_vram_estimates_cover_both_providers():
    svd = estimate.sample_estimate("svd-xt", estimate.Workload(768, 448, 14))
    # SVD samples its 14 frames as a batch of SD latents: 14 x 56 x 96, cond + uncond, factor 2.0.
    assert svd.basis.startswith("latent 14x56x96 x batch 2")
    assert svd.weights == int(estimate.PROVIDER_PARAMETERS["svd-xt"] * 2)
    expected = 14 * 56 * 96 * 2 * 2 * 0.01 * 2.0 * estimate.MIB
    reserve = estimate.COMFY_RESERVED
    assert svd.working == int(max(estimate.INFERENCE_BASE + reserve, expected + reserve))
    ltxv = estimate.sample_estimate("ltxv-2b", estimate.Workload(768, 512, 97))
    assert ltxv.basis.startswith("latent 13x16x24 x batch 2")  # (97-1)/8+1 latent frames, /32 in space
    assert "ltxv-2b factor 5.5" in ltxv.basis
    for profile_id in ("svd-xt", "ltxv-2b"):
        decode = estimate.vae_decode_estimate(profile_id, estimate.Workload(768, 512, 97))
        assert decode.minimum < decode.full
    # SVD decodes frame by frame: its decode need does not grow with the clip, LTX-Video's does.
    short, long = (estimate.vae_decode_estimate("svd-xt", estimate.Workload(768, 448, n)) for n in (14, 50))
    assert short.full == long.full
    short, long = (estimate.vae_decode_estimate("ltxv-2b", estimate.Workload(768, 512, n)) for n in (17, 97))
    assert long.full > short.full


def test_fastvideo_has_no_vram_estimate_and_says_why():
    with pytest.raises(ValueError, match="FastVideo runs in its own runtime"):
        estimate.sample_estimate("fastvideo-wan21-i2v-480p", estimate.Workload(832, 480, 81))


def test_vram_advice_lists_the_provider_presets():
    fits = {fit.name: fit for fit in advice.preset_fits()}
    assert {"svd", "ltxv"} <= set(fits) and "fastvideo" not in fits  # no estimate outside ComfyUI
    assert fits["ltxv"].estimate.minimum < fits["standard"].estimate.minimum
    assert fits["svd"].estimate.minimum <= fits["svd"].min_gb * estimate.GIB  # fits its card in lean mode


# --------------------------------------------------------------------------- Provider Settings node


def test_provider_settings_gives_svd_its_inputs(tmp_path):
    node = load_pack().NODE_CLASS_MAPPINGS["GemDirectProviderSettings"]()
    story = _story("svd-xt", motion=60)
    a = _plan(tmp_path, story).scenes[0]
    assert node.settings(a, "svd") == (6, 60, 6.0, "")


def test_provider_settings_gives_ltxv_the_exact_frame_rate(tmp_path):
    node = load_pack().NODE_CLASS_MAPPINGS["GemDirectProviderSettings"]()
    a = _plan(tmp_path, _story("ltxv-2b", fps="24000/1001")).scenes[0]
    assert node.settings(a, "ltxv") == (24, 0, pytest.approx(24000 / 1001), "")


def test_provider_settings_refuses_a_story_planned_for_another_model(tmp_path):
    node = load_pack().NODE_CLASS_MAPPINGS["GemDirectProviderSettings"]()
    wan = _plan(tmp_path, base_story()).scenes[0]
    with pytest.raises(ValueError) as caught:
        node.settings(wan, "svd")
    message = str(caught.value)
    assert "planned for WAN 2.2 I2V 14B (model profile wan22-i2v-14b)" in message
    assert "defaults.model_profile to 'svd-xt'" in message and "preset 'svd'" in message
    with pytest.raises(ValueError, match="provider 'sdxl' is not one of"):
        provider.provider_values(wan, "sdxl")


# --------------------------------------------------------------------------- FastVideo: files in, files out


def test_fastvideo_plans_with_wan_rules_and_says_it_drops_the_negative(tmp_path):
    result = _plan(tmp_path, base_story(), "fastvideo")
    a = result.scenes[0]
    assert result.model_profile == "fastvideo-wan21-i2v-480p"
    assert (a.width, a.height, a.steps, a.cfg) == (832, 480, 40, 5.0) and (a.length - 1) % 4 == 0
    assert any("takes no negative prompt" in w for w in result.warnings)


def test_provider_settings_writes_the_start_image_for_fastvideo(tmp_path, comfy_home):
    import numpy as np
    import torch

    node = load_pack().NODE_CLASS_MAPPINGS["GemDirectProviderSettings"]()
    a = _plan(tmp_path, base_story(), "fastvideo").scenes[0]
    image = torch.from_numpy(np.random.default_rng(3).random((1, 48, 64, 3), dtype=np.float32))
    fps, motion, rate, path = node.settings(a, "fastvideo", start_image=image)
    assert (fps, motion, rate) == (16, 0, 16.0)
    assert path == str(comfy_home / "temp" / "gemdirect-provider" / "test-story--a--start.png")
    images = pack_module("nodes.video.images")
    back = images.load_png(path, dtype="uint8", as_torch=False)
    assert back.shape == (48, 64, 3)
    assert np.array_equal(back, np.round(image[0].numpy() * 255).astype(np.uint8))


def _video(folder, frames=7):
    import numpy as np

    encode = pack_module("nodes.video.encode")
    pixels = np.random.default_rng(5).integers(0, 255, (frames, 32, 48, 3), dtype=np.uint8)
    path = folder / "clip.mp4"
    encode.encode_video(path, pixels, 16)
    return path


def test_video_frames_reads_a_video_written_in_comfyuis_output(comfy_home):
    node = load_pack().NODE_CLASS_MAPPINGS["GemDirectVideoFrames"]()
    folder = comfy_home / "output" / "gemdirect-fastvideo"
    folder.mkdir()
    frames, count = node.frames(str(_video(folder)))
    assert count == 7 and tuple(frames.shape) == (7, 32, 48, 3)
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0


def test_video_frames_refuses_paths_outside_comfyuis_folders(comfy_home, tmp_path_factory):
    node = load_pack().NODE_CLASS_MAPPINGS["GemDirectVideoFrames"]()
    outside = _video(tmp_path_factory.mktemp("elsewhere"))
    with pytest.raises(ValueError, match="is outside ComfyUI's folders") as caught:
        node.frames(str(outside))
    assert "output_path" in str(caught.value)
    traversal = str(comfy_home / "output" / ".." / ".." / outside.parent.name / "clip.mp4")
    with pytest.raises(ValueError, match="outside ComfyUI's folders"):
        node.frames(traversal)
    with pytest.raises(ValueError, match="video_path is empty"):
        node.frames("  ")
    with pytest.raises(ValueError, match="does not exist"):
        node.frames(str(comfy_home / "output" / "missing.mp4"))


def test_the_fastvideo_workflow_feeds_the_scene_into_fastvideos_inputs():
    workflow = json.loads((REPO_ROOT / "example_workflows" / "story_fastvideo_wan_i2v.json").read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    feeds = {(nodes[link[3]]["type"], nodes[link[3]]["inputs"][link[4]]["name"]): (nodes[link[1]]["type"], link[2])
             for link in workflow["links"]}
    assert feeds[("InferenceArgs", "image_path")] == ("GemDirectProviderSettings", 3)
    assert feeds[("InferenceArgs", "num_frames")] == ("GemDirectSceneSelect", 8)
    assert feeds[("VideoGenerator", "prompt")] == ("GemDirectSceneSelect", 1)
    assert feeds[("GemDirectVideoFrames", "video_path")] == ("VideoGenerator", 0)
    assert feeds[("GemDirectSceneSave", "frames")] == ("GemDirectVideoFrames", 0)
    generator = next(n for n in workflow["nodes"] if n["type"] == "VideoGenerator")
    assert generator["widgets_values"][1] == "output/gemdirect-fastvideo/"  # inside ComfyUI's output folder
