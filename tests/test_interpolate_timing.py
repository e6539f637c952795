"""Frame accounting, scene cuts, duplicates, optical flow quality, streaming and out-of-memory back-off."""

from __future__ import annotations

import re
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
from conftest import pack_module

timing = pack_module("nodes.interpolate.timing")
engine = pack_module("nodes.interpolate.engine")
flow = pack_module("nodes.interpolate.flow")
comfy = pack_module("nodes.comfy")


def texture(seed: int, h: int = 96, w: int = 1600) -> np.ndarray:
    """Smooth random colour texture [h,w,3] float32 0..1 (blurred noise: flow can follow it)."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return (tex - tex.min()) / (tex.max() - tex.min())


def translating(seed: int, count: int, step: float = 8.0, h: int = 64, w: int = 96, first: int = 0) -> np.ndarray:
    """``count`` frames [count,h,w,3] of one texture moving right by ``step`` px a frame."""
    tex = texture(seed, h + 32)
    out = []
    for k in range(first, first + count):
        shift = k * step
        whole = int(np.floor(shift))
        x0 = 1200 - whole
        window = tex[16:16 + h, x0 - 1:x0 + w + 1]
        frac = shift - whole  # sub-pixel shifts by linear interpolation of neighbours
        out.append((1 - frac) * window[:, 1:-1] + frac * window[:, :-2])
    return np.stack(out).astype(np.float32)


class PositionProbe:
    """An interpolator whose frames say where they were sampled: every pixel = (left + t) / 1000."""

    method = "flow"

    def __init__(self):
        self.batches: list[int] = []

    def run(self, jobs):
        self.batches.append(len(jobs))
        h, w, _ = jobs[0].frame_a.shape
        return torch.stack([torch.full((h, w, 3), (j.left + j.t) / 1000.0) for j in jobs])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# --------------------------------------------------------------------------- accounting


def test_81_frames_16_to_24_fps_gives_121_frames_at_k_over_24():
    source, target = Fraction(16), Fraction(24)
    assert timing.output_count(81, source, target) == 121  # floor(80 * 24/16) + 1
    frames = list(timing.plan(81, source, target))
    assert len(frames) == 121
    assert [f.time for f in frames[:4]] == [0, Fraction(1, 24), Fraction(2, 24), Fraction(3, 24)]
    assert frames[-1].time == Fraction(120, 24) == Fraction(80, 16)  # ends on the last source frame
    assert all(f.position == Fraction(2 * f.index, 3) for f in frames)
    assert [(f.left, f.t) for f in frames[:4]] == [(0, 0), (0, Fraction(2, 3)), (1, Fraction(1, 3)), (2, 0)]


def test_81_frames_through_the_engine_land_exactly_where_the_formula_says():
    clip = torch.from_numpy(translating(0, 81))
    probe = PositionProbe()
    out, report = engine.interpolate_images(clip, Fraction(16), Fraction(24), probe, batch_size=8)
    assert out.shape[0] == report.frames_out == 121
    assert report.copied == 41 and report.blended == 80 and report.cuts == []
    for k in range(121):
        position = Fraction(2 * k, 3)
        if position.denominator == 1:
            assert torch.equal(out[k], clip[int(position)]), k  # source frames copied bit for bit
        else:
            assert float(out[k, 0, 0, 0]) == pytest.approx(float(position) / 1000, abs=1e-7), k


@pytest.mark.parametrize("n", [1, 2, 17, 81])
def test_multiplier_2_gives_2n_minus_1(n):
    rate = timing.target_rate(16, multiplier=2)
    assert rate == 32 and timing.output_count(n, Fraction(16), rate) == 2 * n - 1
    clip = torch.from_numpy(translating(1, n, h=16, w=24))
    out, _ = engine.interpolate_images(clip, Fraction(16), rate, PositionProbe())
    assert out.shape[0] == 2 * n - 1


@pytest.mark.parametrize(("source", "target", "n", "expected"), [
    (24, 30, 49, 61),  # floor(48 * 30/24) + 1
    (16, 60, 17, 61),  # floor(16 * 60/16) + 1
    ("24000/1001", "30000/1001", 25, 31),
    (16, 16, 10, 10),
])
def test_any_rate_pair_follows_the_formula(source, target, n, expected):
    src, dst = timing.parse_fps(source), timing.target_rate(source, target_fps=target)
    assert timing.output_count(n, src, dst) == expected
    assert len(list(timing.plan(n, src, dst))) == expected


def test_target_below_source_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="below the source"):
        timing.target_rate(24, target_fps=16)
    with pytest.raises(ValueError, match="either a multiplier or a target"):
        timing.target_rate(24)
    with pytest.raises(ValueError, match="whole number"):
        timing.target_rate(24, multiplier=0)


@pytest.mark.parametrize("chunk_size", [1, 7, 16])
def test_chunk_size_never_changes_the_frames(chunk_size):
    clip = torch.from_numpy(translating(2, 23, h=32, w=48))
    whole, _ = engine.interpolate_images(clip, Fraction(16), Fraction(60), engine.FlowInterpolator(), chunk_size=64)
    chunked, _ = engine.interpolate_images(clip, Fraction(16), Fraction(60), engine.FlowInterpolator(),
                                           chunk_size=chunk_size)
    assert torch.equal(whole, chunked)


# --------------------------------------------------------------------------- cuts and duplicates


def test_a_hard_cut_at_frame_40_is_never_blended():
    clip = np.concatenate([translating(3, 40), translating(4, 41, first=40)])
    images = torch.from_numpy(clip)
    out, report = engine.interpolate_images(images, Fraction(16), Fraction(24), engine.FlowInterpolator())
    assert report.cuts == [39] and report.cut_frames == 1 and out.shape[0] == 121
    # 16 -> 24: output frame k samples source position 2k/3; 59 -> 39 1/3 lies inside the cut pair.
    assert torch.equal(out[59], images[39])
    for k in range(121):
        position = Fraction(2 * k, 3)
        frame = out[k].numpy()
        if 39 < position < 40:
            continue
        side = clip[:40] if position < 40 else clip[40:]  # every other frame stays on its own side of the cut
        other = clip[40:] if position < 40 else clip[:40]
        assert min(np.abs(frame - s).mean() for s in side) < min(np.abs(frame - o).mean() for o in other)
    # Nothing in the output mixes the two shots: each frame is closer to one shot than any blend is.
    blend = (clip[39] + clip[40]) / 2
    assert all(np.abs(out[k].numpy() - blend).mean() > 0.02 for k in range(121))


def test_duplicate_pairs_copy_the_left_frame():
    clip = translating(5, 6, h=32, w=48)
    clip[3] = clip[2]  # a held frame
    probe = PositionProbe()
    out, report = engine.interpolate_images(torch.from_numpy(clip), Fraction(16), Fraction(32), probe)
    assert report.duplicate_frames == 1 and torch.equal(out[5], torch.from_numpy(clip[2]))


def test_cut_detection_can_be_turned_off():
    clip = np.concatenate([translating(3, 3, h=32, w=48), translating(4, 3, h=32, w=48)])
    _, report = engine.interpolate_images(torch.from_numpy(clip), Fraction(16), Fraction(32), PositionProbe(),
                                          cut_ssim=0.0)
    assert report.cuts == [] and report.blended == 5


# --------------------------------------------------------------------------- optical flow


def test_flow_midpoint_of_an_8px_motion_beats_30_db_and_the_plain_average():
    a, truth, b = translating(6, 3, step=4.0, h=96, w=128)  # frames at 0, 4 and 8 px: truth is the half step
    made = flow.interpolate_flow(a, b, 0.5)
    flow_db, average_db = psnr(made, truth), psnr((a + b) / 2, truth)
    print(f"flow midpoint PSNR {flow_db:.2f} dB, plain average {average_db:.2f} dB")
    assert flow_db >= 30.0, f"flow {flow_db:.2f} dB (average {average_db:.2f} dB)"
    assert flow_db - average_db >= 10.0, f"flow {flow_db:.2f} dB vs average {average_db:.2f} dB"


def test_flow_at_other_timesteps_follows_the_motion():
    a, b = translating(7, 2, step=8.0, h=64, w=96)
    truth = translating(7, 5, step=2.0, h=64, w=96)[1]  # 2 px = a quarter of the way
    assert psnr(flow.interpolate_flow(a, b, 0.25), truth) >= 28.0


# --------------------------------------------------------------------------- engine behaviour


class OutOfMemoryAbove:
    """Raises an out-of-memory error for batches above ``limit``; otherwise a PositionProbe."""

    method = "flow"

    def __init__(self, limit: int):
        self.limit = limit
        self.probe = PositionProbe()

    def run(self, jobs):
        if len(jobs) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.probe.run(jobs)


def test_out_of_memory_halves_the_batch_and_gives_the_same_frames():
    clip = torch.from_numpy(translating(8, 12, h=16, w=24))
    expected, _ = engine.interpolate_images(clip, Fraction(16), Fraction(60), PositionProbe(), batch_size=16)
    flaky = OutOfMemoryAbove(3)
    out, report = engine.interpolate_images(clip, Fraction(16), Fraction(60), flaky, batch_size=16)
    assert torch.equal(out, expected)
    assert report.batch_size == 2 and report.oom_halvings == 3  # 16 -> 8 -> 4 -> 2
    assert max(flaky.probe.batches) <= 3


def test_out_of_memory_on_one_frame_says_what_to_do():
    clip = torch.from_numpy(translating(8, 3, h=16, w=24))
    with pytest.raises(MemoryError, match="lower `scale`"):
        engine.interpolate_images(clip, Fraction(16), Fraction(32), OutOfMemoryAbove(0), batch_size=4)


def test_progress_counts_every_output_frame_and_interrupt_stops_between_chunks():
    clip = torch.from_numpy(translating(9, 20, h=16, w=24))
    seen = []
    comfy.Progress.listeners.append(lambda current, total: seen.append((current, total)))
    try:
        engine.interpolate_images(clip, Fraction(16), Fraction(24), PositionProbe(), chunk_size=4)
        assert seen[-1] == (29, 29)
        comfy.request_interrupt()
        with pytest.raises(comfy.Interrupted):
            engine.interpolate_images(clip, Fraction(16), Fraction(24), PositionProbe(), chunk_size=4)
    finally:
        comfy.Progress.listeners.clear()
        comfy.clear_interrupt()


def test_the_stream_holds_one_frame_back_not_the_clip():
    # Feed 50 chunks lazily; each output chunk must arrive before the next input chunk is read.
    read = []

    def source():
        for i in range(50):
            read.append(i)
            yield torch.from_numpy(translating(10, 2, h=8, w=8, first=2 * i))

    produced = 0
    for out in engine.interpolate_chunks(source(), Fraction(16), Fraction(32), PositionProbe(), cut_ssim=0):
        produced += out.shape[0]
        assert produced <= 4 * len(read)
    assert produced == 2 * 100 - 1


def test_telemetry_fields_go_to_the_run(tmp_path):
    events = pack_module("nodes.run.events")
    report = engine.Report("rife-4.25", Fraction(16), Fraction(24000, 1001), elapsed_ms=1234.56)
    fields = engine.record_telemetry(str(tmp_path), report)
    assert fields == {"InterpolationMethod": "rife-4.25", "InterpolationElapsed": 1234.6, "FinalFPS": 23.976}
    logged = events.read_events(str(tmp_path)).of_kind("interpolation")
    assert logged[-1]["post"] == fields and logged[-1]["final_fps_exact"] == "24000/1001"
    # the metadata schema's pattern for InterpolationMethod
    assert re.fullmatch(r"rife-4\.[0-9A-Za-z.]+|flow|none", fields["InterpolationMethod"])


def test_video_file_streams_through_at_the_new_rate(tmp_path):
    video = pack_module("nodes.video")
    source = str(tmp_path / "in.mp4")
    video.encode_video(source, torch.from_numpy(translating(11, 9, h=64, w=96)), 16, crf=10)
    report = engine.interpolate_video(source, str(tmp_path / "out.mp4"), Fraction(24), engine.FlowInterpolator(),
                                      chunk_size=4)
    info = video.probe_video(str(tmp_path / "out.mp4"))
    assert (info.frames, info.fps) == (13, Fraction(24)) == (report.frames_out, report.target_fps)
