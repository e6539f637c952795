"""VACE joiner engine (nodes/vace/layout.py, splice.py): frame accounting, masks, reconstruction, seams, colour."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import pack_module

layout_mod = pack_module("nodes.vace.layout")
splice_mod = pack_module("nodes.vace.splice")
colour = pack_module("nodes.vace.colour")

H, W = 24, 32


def moving_pattern(count: int, step: int = 1) -> torch.Tensor:
    """A continuous clip: a periodic colour texture scrolled ``step`` pixels a frame (every frame holds the same
    colours, so a whole-clip colour match of a true middle part is the identity)."""
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    base = torch.stack([0.5 + 0.3 * torch.sin(2 * torch.pi * x / W), 0.45 + 0.25 * torch.cos(2 * torch.pi * y / H),
                        0.5 + 0.2 * torch.sin(2 * torch.pi * (x / W + y / H))], -1)
    return torch.stack([base.roll(step * i, dims=1) for i in range(count)])


def cut(clip: torch.Tensor, n: int, settings: tuple[int, int, int], chained: bool):
    """A = clip[:n], B after the gap the transition fills (chained: B starts with a copy of A's last frame);
    the generated clip is the ground truth of the region the layout regenerates."""
    context, replace, new = settings
    a = clip[:n]
    b = clip[n + new + 1:]
    if chained:
        b = torch.cat([a[-1:], b])
    layout = layout_mod.plan_layout(context, replace, new, a.shape[0], b.shape[0], chained)
    truth = clip[n - layout.tail:n - layout.tail + layout.length]
    return a, b, layout, truth


def per_frame_motion(clip: torch.Tensor) -> torch.Tensor:
    return (clip[1:] - clip[:-1]).abs().mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------- frame accounting


GRID = list(itertools.product((4, 8, 12), (0, 4, 8), (0, 4, 8), (0, 3), (False, True)))


@pytest.mark.parametrize(("context", "replace", "new", "spare", "chained"), GRID)
def test_frame_accounting_is_exact_over_the_grid(context, replace, new, spare, chained):
    minimum = layout_mod.minimum_frames(context, replace)
    a_frames, b_frames = minimum + spare, minimum + spare + 5 + (1 if chained else 0)
    layout = layout_mod.plan_layout(context, replace, new, a_frames, b_frames, chained)
    assert layout.length == 2 * context + 2 * replace + new + 1
    assert (layout.length - 1) % 4 == 0  # a 4n+1 count
    assert layout.generated == 2 * replace + new + 1
    assert layout.tail == context + replace and layout.head == context + replace + chained
    a = torch.arange(a_frames, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 2, 2, 3) / 1000
    b = (torch.arange(b_frames, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 2, 2, 3) + 500) / 1000
    video, masks = layout_mod.control_inputs(layout, a[layout.a_context], b[layout.b_context])
    assert video.shape[0] == masks.shape[0] == layout.length
    # A's context is the `context` frames right before its replaced tail, B's right after its replaced head
    assert torch.equal(video[:context], a[a_frames - replace - context:a_frames - replace])
    assert torch.equal(video[-context:], b[replace + chained:replace + chained + context])
    clip = torch.full((layout.length, 2, 2, 3), 0.9)
    spliced = splice_mod.splice(layout, a, b, clip)
    assert spliced.shape[0] == layout.spliced_frames == a_frames + b_frames + new + 1 - chained
    # every original frame shown is shown once, in order; a chained duplicate never appears
    kept_a, kept_b = spliced[:a_frames - layout.tail], spliced[a_frames - layout.tail + layout.length:]
    assert torch.equal(kept_a, a[:a_frames - layout.tail]) and torch.equal(kept_b, b[layout.head:])
    if chained:
        assert layout.head - context - replace == 1  # B's first frame (A's last) is dropped with B's head


def test_chained_context_skips_the_duplicate_first_frame():
    layout = layout_mod.plan_layout(4, 4, 0, 20, 20, chained=True)
    assert layout.b_context == slice(5, 9)  # B[0] is A's last frame: B's own frames start at 1
    assert layout_mod.plan_layout(4, 4, 0, 20, 20).b_context == slice(4, 8)


def test_masks_are_exactly_0_and_1_and_grey_exactly_half():
    layout = layout_mod.plan_layout(8, 4, 4, 40, 40)
    rng = torch.Generator().manual_seed(0)
    a, b = torch.rand(40, H, W, 3, generator=rng), torch.rand(40, H, W, 3, generator=rng)
    video, masks = layout_mod.control_inputs(layout, a[layout.a_context], b[layout.b_context])
    assert video.shape == (29, H, W, 3) and masks.shape == (29, H, W) and masks.dtype == torch.float32
    assert torch.all(masks[:8] == 0.0) and torch.all(masks[-8:] == 0.0)
    assert torch.all(masks[8:8 + 13] == 1.0)
    assert torch.all(video[8:8 + 13] == 0.5)
    assert set(masks.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(("field", "values", "needle"), [
    ("context_frames", (6, 8, 0), "context_frames = 6 is not a multiple of 4"),
    ("replace_frames", (8, 3, 0), "4n+1"),
    ("new_frames", (8, 8, 2), "use 0 or 4"),
    ("context_frames", (0, 8, 0), "context_frames = 0 must be a whole number of at least 4"),
])
def test_settings_off_the_4_grid_are_refused_naming_the_field(field, values, needle):
    with pytest.raises(layout_mod.LayoutError) as refused:
        layout_mod.plan_layout(*values, 60, 60)
    assert field in str(refused.value) and needle in str(refused.value)


def test_too_short_clips_get_the_minimum():
    with pytest.raises(layout_mod.LayoutError) as refused:
        layout_mod.plan_layout(8, 8, 0, 32, 40)
    assert "clip A has 32 frames" in str(refused.value) and "(8 + 8) * 2 + 1 = 33" in str(refused.value)
    layout_mod.plan_layout(8, 8, 0, 33, 33)
    with pytest.raises(layout_mod.LayoutError, match="chained duplicate"):
        layout_mod.plan_layout(8, 8, 0, 33, 33, chained=True)


def test_control_size_is_a_multiple_of_16():
    assert layout_mod.control_size(128, 80) == (128, 80)
    assert layout_mod.control_size(130, 90) == (128, 80)


# --------------------------------------------------------------------------- splice


@pytest.mark.parametrize("chained", [False, True])
@pytest.mark.parametrize("settings", [(8, 8, 0), (4, 4, 4), (8, 4, 8)])
def test_splice_of_the_ground_truth_middle_reconstructs_the_continuous_clip(settings, chained):
    clip = moving_pattern(90)
    n = 40
    a, b, layout, truth = cut(clip, n, settings, chained)
    # the model re-renders the context frames a little differently (a VAE round trip): a small blur
    regenerated = truth.clone()
    context = layout.context
    for part in (slice(0, context), slice(layout.length - context, layout.length)):
        frames = regenerated[part]
        regenerated[part] = 0.5 * frames + 0.25 * (frames.roll(1, 2) + frames.roll(-1, 2))
    generated, note = splice_mod.check_generated(layout, regenerated, W, H)
    assert note is None
    transition, report = splice_mod.transition_clip(layout, a[layout.a_context], b[layout.b_context], generated)
    spliced = splice_mod.splice(layout, a, b, transition)
    assert spliced.shape == clip.shape  # chained: the duplicate is counted once, so the pair is the clip again
    difference = (spliced - clip).abs().mean(dim=(1, 2, 3))
    start = n - layout.tail
    faded = set(range(start, start + context)) | set(range(start + layout.length - context, start + layout.length))
    motion = float(per_frame_motion(clip).min())
    for index, value in enumerate(difference.tolist()):
        if index in faded:
            assert value < motion, (index, value, motion)
        else:
            # the kept originals and the generated middle: the clip itself, to below one 8-bit level (the
            # whole-clip colour match sees the slightly blurred context and moves the rest by ~1e-4)
            assert value < 1 / 255, (index, value)
            if index < start or index >= start + layout.length:
                assert value == 0.0, index
    assert report.before < 0.05 and report.after < 0.05


def test_a_generated_clip_of_the_wrong_length_is_refused_with_the_counts():
    layout = layout_mod.plan_layout(8, 8, 0, 40, 40)
    for count in (29, 37):
        with pytest.raises(layout_mod.LayoutError) as refused:
            splice_mod.check_generated(layout, torch.rand(count, H, W, 3), W, H)
        assert f"has {count} frames" in str(refused.value) and "the 33 the transition needs" in str(refused.value)
        assert "TrimVideoLatent" in str(refused.value)


def test_a_generated_clip_of_another_size_is_resized_and_said():
    layout = layout_mod.plan_layout(4, 4, 0, 20, 20)
    frames, note = splice_mod.check_generated(layout, torch.rand(layout.length, 16, 32, 3), W, H)
    assert frames.shape == (layout.length, H, W, 3) and "resized with Lanczos" in note


def shifted(frames: torch.Tensor) -> torch.Tensor:
    """The known VACE shift: brighter and warmer, a gain and offset per channel in linear light (exposure and
    white balance), kept inside 0..1."""
    linear = colour.srgb_to_linear(frames) * torch.tensor([1.25, 1.1, 0.85]) + torch.tensor([0.02, 0.01, 0.0])
    return colour.linear_to_srgb(linear).clamp(0, 1)


@pytest.mark.parametrize("method", ["mkl", "reinhard"])
def test_a_known_colour_shift_in_the_generated_part_is_reduced_by_80_percent(method):
    clip = moving_pattern(90)
    a, b, layout, truth = cut(clip, 40, (8, 8, 0), False)
    generated = shifted(truth)
    context = torch.cat([a[layout.a_context], b[layout.b_context]])
    middle = slice(layout.context, layout.context + layout.generated)
    before = splice_mod.mean_lab_difference(generated[middle], context)
    transition, report = splice_mod.transition_clip(layout, a[layout.a_context], b[layout.b_context], generated,
                                                    method=method, strength=1.0)
    after = splice_mod.mean_lab_difference(transition[middle], context)
    assert before > 3.0  # a visible shift
    assert after <= 0.2 * before, (before, after)
    assert report.before == pytest.approx(before) and report.after == pytest.approx(after, abs=1e-4)
    # the default strength 0.7 blends 70 % of the way to the match: the shift is reduced by about that
    _clip, default = splice_mod.transition_clip(layout, a[layout.a_context], b[layout.b_context], generated)
    assert default.method == "mkl" and default.strength == 0.7 and default.reduction >= 0.6


def test_off_leaves_the_colour_alone():
    clip = moving_pattern(60)
    a, b, layout, truth = cut(clip, 30, (4, 4, 0), False)
    transition, report = splice_mod.transition_clip(layout, a[layout.a_context], b[layout.b_context],
                                                    shifted(truth), method="off")
    middle = slice(layout.context, layout.context + layout.generated)
    assert torch.equal(transition[middle], shifted(truth)[middle]) and report.after == pytest.approx(report.before)


@pytest.mark.parametrize("chained", [False, True])
def test_seams_are_no_larger_than_the_motion_within_either_clip(chained):
    clip = moving_pattern(90, step=2)
    a, b, layout, truth = cut(clip, 40, (8, 8, 0), chained)
    generated = shifted(truth)
    transition, _ = splice_mod.transition_clip(layout, a[layout.a_context], b[layout.b_context], generated,
                                               method="mkl", strength=1.0)
    spliced = splice_mod.splice(layout, a, b, transition)
    changes = per_frame_motion(spliced)
    own_b = b[1:] if chained else b  # a chained B's first frame is A's last (the cut made a gap after it)
    within = max(float(per_frame_motion(a).max()), float(per_frame_motion(own_b).max()))
    start = a.shape[0] - layout.tail
    seams = range(start - 1, start + layout.length)  # every step into, through and out of the transition
    assert max(float(changes[i]) for i in seams) <= within * 1.0 + 1e-6, (changes[list(seams)], within)
    # the shifted clip spliced as it came (no colour match, no context cross-fade) jumps: the test can fail
    raw_changes = per_frame_motion(splice_mod.splice(layout, a, b, generated))
    assert max(float(raw_changes[i]) for i in seams) > within
