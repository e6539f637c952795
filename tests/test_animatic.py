"""Animatic (nodes/story/animatic.py + the Animatic node): smooth sub-pixel camera moves, exact length."""

from __future__ import annotations

import pytest
import torch
from conftest import pack_module
from story_helpers import base_story, write_story

animatic = pack_module("nodes.story.animatic")
story_nodes = pack_module("nodes.story.nodes")


def _blob_keyframe(width: int = 160, height: int = 120, at: tuple[float, float] = (100.0, 50.0),
                   sigma: float = 8.0) -> torch.Tensor:
    """A white Gaussian blob on black, centred at pixel position ``at`` (x, y): [H,W,3]."""
    y, x = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    blob = torch.exp(-((x - at[0]) ** 2 + (y - at[1]) ** 2) / (2 * sigma**2))
    return blob[..., None].expand(height, width, 3).contiguous()


def _centroids(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Brightness-weighted centre (x, y) in pixels of every frame [T]."""
    weight = frames[..., 0].double()
    total = weight.sum((1, 2))
    xs = torch.arange(frames.shape[2], dtype=torch.float64) + 0.5
    ys = torch.arange(frames.shape[1], dtype=torch.float64)[:, None] + 0.5
    return (weight * xs).sum((1, 2)) / total, (weight * ys).sum((1, 2)) / total


def _texture(width: int = 320, height: int = 240) -> torch.Tensor:
    """Red: diagonal stripes of period 16 px (4 px once shown 4x smaller: detail the output can show).
    Green: a 3 px checkerboard (0.75 px at 4x smaller: finer than the output can show, pure aliasing bait)."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    stripes = 0.5 + 0.5 * torch.sin((x + 0.5 * y) * 2 * torch.pi / 16)
    checks = ((x // 3 + y // 3) % 2).float()
    return torch.stack([stripes, checks, torch.full_like(x, 0.5)], -1)


@pytest.mark.parametrize(("move", "axis", "sign", "extent"), [
    ("pan right", 0, -1, 80), ("pan left", 0, 1, 80), ("tilt up", 1, 1, 60), ("tilt down", 1, -1, 60)])
def test_a_linear_pan_moves_the_picture_the_same_sub_pixel_step_every_frame(move, axis, sign, extent):
    frames = animatic.animatic(_blob_keyframe(at=(80, 60)), 17, move, "linear", 0.2, width=80, height=60)
    assert frames.shape == (17, 60, 80, 3)
    steps = _centroids(frames)[axis].diff()
    expected = sign * 0.2 * extent / 16  # amount x frame size over 16 intervals: 1 px (0.75 px vertically)
    assert steps.tolist() == pytest.approx([expected] * 16, abs=0.01)
    assert _centroids(frames)[1 - axis].diff().abs().max() < 0.01  # no wobble across the move


def test_consecutive_frames_differ_smoothly_without_repeats_or_jumps():
    for move in ("push in", "pull out", "pan right", "tilt down"):
        for easing in animatic.EASINGS:
            frames = animatic.animatic(_blob_keyframe(at=(60, 45)), 13, move, easing, 0.3, width=80, height=60)
            change = (frames[1:] - frames[:-1]).abs().mean((1, 2, 3))
            assert float(change.min()) > 0, f"{move}/{easing}: a frame repeats"
            # no step stands out from the mean more than the easing's own fastest step does
            step = animatic.eased_progress(13, easing).diff()
            allowed = float(step.max() / step.mean())
            assert float(change.max() / change.mean()) <= 1.15 * allowed, f"{move}/{easing}: a jump"


@pytest.mark.parametrize("easing", ["ease-in", "ease-out", "ease-in-out"])
def test_easing_shapes_the_speed_and_the_move_still_ends_where_linear_does(easing):
    keyframe = _blob_keyframe(at=(80, 60))
    eased = _centroids(animatic.animatic(keyframe, 21, "pan right", easing, 0.2, width=80, height=60))[0]
    linear = _centroids(animatic.animatic(keyframe, 21, "pan right", "linear", 0.2, width=80, height=60))[0]
    assert float(eased[0]) == pytest.approx(float(linear[0]), abs=1e-3)
    assert float(eased[-1]) == pytest.approx(float(linear[-1]), abs=1e-3)
    speed = eased.diff().abs()
    if easing == "ease-in":
        assert bool((speed.diff() > 0).all())  # speeds up all the way
    elif easing == "ease-out":
        assert bool((speed.diff() < 0).all())
    else:
        assert speed[0] < speed[10] > speed[-1]


def test_push_in_zooms_about_the_centre_at_a_steady_rate():
    frames = animatic.animatic(_blob_keyframe(at=(120, 60), sigma=6), 11, "push in", "linear", 0.25,
                               width=80, height=60)
    x, y = _centroids(frames)
    # the blob sits 20 output px right of centre and drifts outward to 20 x 1.25 = 25 px
    assert float(x[0]) - 40 == pytest.approx(20, abs=0.1) and float(x[-1]) - 40 == pytest.approx(25, abs=0.15)
    assert x.diff().tolist() == pytest.approx([0.5] * 10, abs=0.03)
    assert y.diff().abs().max() < 0.01


def test_no_shimmer_when_fine_detail_moves():
    """Detail the output can show keeps a steady contrast while it moves; detail finer than a pixel is filtered
    out instead of aliasing into moire that crawls (sampling the keyframe directly, bilinear, leaves the
    checkerboard at 0.38 spread and it pulses by 15% on a push in)."""
    for move in ("pan right", "push in", "tilt up"):
        frames = animatic.animatic(_texture(), 17, move, "linear", 0.15, width=80, height=60)
        mean, spread = frames.mean((1, 2)), frames.std((1, 2))
        assert float((mean.max(0).values - mean.min(0).values).max()) < 0.005, move
        stripes = spread[:, 0]
        assert float(stripes.min()) > 0.28, move  # a sine of amplitude 0.5 has std 0.354
        assert float((stripes.max() - stripes.min()) / stripes.mean()) < 0.05, move
        assert float(spread[:, 1].max()) < 0.03, move  # the sub-pixel checkerboard is grey, not moire


def test_still_holds_the_keyframe():
    keyframe = _blob_keyframe(80, 60, at=(30, 20), sigma=5)
    frames = animatic.animatic(keyframe, 5, "still", "linear", 0.5)
    assert all(torch.equal(frames[0], frame) for frame in frames)
    assert float((frames[0] - keyframe).abs().max()) < 0.02


def test_frames_come_in_chunks_equal_to_the_whole():
    keyframe = _blob_keyframe()
    chunks = list(animatic.iter_animatic(keyframe, 11, "pull out", "ease-out", 0.2, width=40, height=30,
                                         chunk_frames=4))
    assert [c.shape[0] for c in chunks] == [4, 4, 3]
    whole = animatic.animatic(keyframe, 11, "pull out", "ease-out", 0.2, width=40, height=30)
    assert torch.allclose(torch.cat(chunks), whole, atol=1e-6)


def test_another_aspect_is_centre_cropped_not_stretched():
    # a round blob in a 4:3 keyframe stays round in a 16:9 frame
    frames = animatic.animatic(_blob_keyframe(160, 120, at=(80, 60), sigma=10), 1, "still", "linear", 0.0,
                               width=96, height=54)
    weight = frames[0, ..., 0].double()
    xs = torch.arange(96, dtype=torch.float64) + 0.5
    ys = torch.arange(54, dtype=torch.float64)[:, None] + 0.5
    var_x = (weight * (xs - 48) ** 2).sum() / weight.sum()
    var_y = (weight * (ys - 27) ** 2).sum() / weight.sum()
    assert float(var_x.sqrt() / var_y.sqrt()) == pytest.approx(1.0, abs=0.03)


def test_bad_input_is_named():
    keyframe = _blob_keyframe()
    with pytest.raises(ValueError, match="camera move 'dolly' is unknown; use one of push in"):
        animatic.animatic(keyframe, 5, "dolly")
    with pytest.raises(ValueError, match="easing 'bounce' is unknown"):
        animatic.animatic(keyframe, 5, "push in", "bounce")
    with pytest.raises(ValueError, match=r"amount 1\.5 is outside 0\.\.1"):
        animatic.animatic(keyframe, 5, "push in", "linear", 1.5)
    with pytest.raises(ValueError, match="length 0 must be at least 1 frame"):
        animatic.animatic(keyframe, 0, "push in")
    with pytest.raises(ValueError, match=r"keyframe must be one RGB image .*\(120, 160\)"):
        animatic.animatic(keyframe[..., 0], 5, "push in")


def test_node_choices_are_the_engines():
    assert story_nodes.ANIMATIC_MOVES == animatic.MOVES
    assert story_nodes.ANIMATIC_EASINGS == animatic.EASINGS


def test_node_takes_length_and_size_from_the_scene_plan(comfy_home):
    story = base_story()
    story["defaults"].update({"width": 128, "height": 96})
    write_story(comfy_home / "input" / "gemdirect" / "boat", story)
    loaded, _, _ = story_nodes.GemDirectStoryLoader().load("boat/story.json", "none")
    outputs = story_nodes.GemDirectSceneSelect().select(loaded, 3)
    scene, keyframe = outputs[0], outputs[10]
    node = story_nodes.GemDirectAnimatic()
    (frames,) = node.animate(keyframe, 5, "pan left", "ease-in-out", 0.1, scene=scene, unique_id="4")
    assert frames.shape == (scene.length, scene.height, scene.width, 3) == (33, 96, 128, 3)
    (alone,) = node.animate(keyframe, 9, "push in", "linear", 0.1)
    assert alone.shape == (9, 96, 128, 3) and alone.dtype == torch.float32


def test_end_image_dissolves_from_the_start_into_it_under_the_same_camera():
    """An FLF2V animatic: first frame the start image alone, last frame the end image alone, eased between."""
    start = torch.zeros(48, 64, 3)
    start[..., 0] = 1.0  # red
    end = torch.zeros(48, 64, 3)
    end[..., 2] = 1.0  # blue
    frames = animatic.animatic(start, 9, "push in", "linear", 0.1, end_image=end)
    assert frames.shape == (9, 48, 64, 3)
    red, blue = frames[..., 0].mean(dim=(1, 2)), frames[..., 2].mean(dim=(1, 2))
    assert torch.allclose(red[0], torch.tensor(1.0), atol=1e-4) and blue[0] < 1e-4
    assert torch.allclose(blue[-1], torch.tensor(1.0), atol=1e-4) and red[-1] < 1e-4
    assert torch.allclose(blue, torch.linspace(0, 1, 9), atol=1e-3)  # linear easing: equal steps
    without = animatic.animatic(start, 9, "push in", "linear", 0.1)
    assert torch.equal(frames[0], without[0])  # the chain's bookend is untouched by the dissolve
    node_frames = story_nodes.GemDirectAnimatic().animate(start, 9, "push in", "linear", 0.1, end_image=end)[0]
    assert torch.allclose(node_frames, frames)
