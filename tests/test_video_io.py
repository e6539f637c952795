"""The video room: MP4 encode/decode round trips, exact fps, audio, errors, atomic writes, PNG bookends.

Real files, small sizes, seeded synthetic clips. The whole file runs in well under a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import REPO_ROOT, pack_module

video = pack_module("nodes.video")
encode = pack_module("nodes.video.encode")
comfy = pack_module("nodes.comfy")
atomic = pack_module("nodes.run.atomic")
VideoError = video.VideoError


# --------------------------------------------------------------------------- helpers


def synthetic_frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """[T,H,W,3] float32 0..1: drifting sinusoids and a moving blob, smooth but not trivial."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    freqs = rng.uniform(0.02, 0.12, size=(3, 2)).astype(np.float32)
    phases = rng.uniform(0, 2 * np.pi, size=3).astype(np.float32)
    speeds = rng.uniform(0.05, 0.25, size=3).astype(np.float32)
    out = np.empty((count, height, width, 3), np.float32)
    for t in range(count):
        cx, cy = width * (0.3 + 0.4 * t / max(count, 1)), height * 0.5
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (height / 6) ** 2))
        for c in range(3):
            wave = np.sin(freqs[c, 0] * x + freqs[c, 1] * y + phases[c] + speeds[c] * t)
            out[t, :, :, c] = 0.5 + 0.3 * wave + 0.2 * (blob - 0.5)
    return np.clip(out, 0.0, 1.0)


def in_chunks(frames: np.ndarray, size: int):
    for start in range(0, len(frames), size):
        yield frames[start : start + size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * np.log10(1.0 / mse) if mse else float("inf")


def sine(seconds: float, sample_rate: int, channels: int = 1, hz: float = 440.0) -> dict:
    t = np.arange(round(seconds * sample_rate), dtype=np.float64) / sample_rate
    wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return {"waveform": np.tile(wave, (1, channels, 1)), "sample_rate": sample_rate}


def temp_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if atomic.is_temporary(name)]


@pytest.fixture(scope="module")
def clip49(tmp_path_factory):
    """49 frames of 320x192 at 24000/1001 fps, default CRF, encoded from 16-frame chunks."""
    frames = synthetic_frames(49, 192, 320, seed=1)
    path = tmp_path_factory.mktemp("clip") / "clip49.mp4"
    info = video.encode_video(path, in_chunks(frames, 16), Fraction(24000, 1001))
    return path, frames, info


@pytest.fixture(scope="module")
def small_gop_clip(tmp_path_factory):
    """40 frames with a keyframe every 8, written directly with PyAV, so seeking really skips."""
    frames = synthetic_frames(40, 64, 96, seed=2)
    path = tmp_path_factory.mktemp("gop") / "gop8.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.gop_size = 8
        stream.options = {"crf": "18", "keyint_min": "8", "sc_threshold": "0"}
        for index, pixels in enumerate(video.to_uint8(frames)):
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# --------------------------------------------------------------------------- round trip


def test_49_frames_round_trip_keeps_count_and_quality(clip49):
    path, frames, info = clip49
    decoded = video.read_frames(path, as_torch=False)
    assert info.frames == 49 and decoded.shape == (49, 192, 320, 3) and decoded.dtype == np.float32
    assert (info.width, info.height, info.codec, info.pix_fmt) == (320, 192, "h264", "yuv420p")
    assert psnr(decoded, frames) >= 35.0


def test_fps_24000_1001_comes_back_exact(clip49):
    path, _frames, info = clip49
    probed = video.probe_video(path)
    assert probed.fps == Fraction(24000, 1001) and isinstance(probed.fps, Fraction)
    assert probed == info
    assert probed.duration == pytest.approx(49 * 1001 / 24000, abs=1e-6)
    assert probed.resolution == "320x192" and not probed.has_audio


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (Fraction(24000, 1001), Fraction(24000, 1001)),
        ("24000/1001", Fraction(24000, 1001)),
        (23.976, Fraction(24000, 1001)),
        ("29.97", Fraction(30000, 1001)),
        (59.94, Fraction(60000, 1001)),
        (24, Fraction(24)),
        (25.0, Fraction(25)),
        (12.5, Fraction(25, 2)),
        ("16", Fraction(16)),
    ],
)
def test_parse_fps_gives_exact_rates(given, expected):
    assert encode.parse_fps(given) == expected


@pytest.mark.parametrize("bad", [0, -24, "fast", "1/0", float("nan"), True, 5000, None])
def test_parse_fps_refuses_non_rates(bad):
    with pytest.raises(ValueError, match=r"fps|frame rate|fraction"):
        encode.parse_fps(bad)


def test_fractional_fps_from_float_is_written_exactly(tmp_path):
    info = video.encode_video(tmp_path / "ntsc.mp4", synthetic_frames(5, 32, 32), 29.97, preset="ultrafast")
    assert info.fps == Fraction(30000, 1001) and info.frames == 5


def test_chunked_decode_yields_the_same_frames_as_whole_decode(clip49):
    path, _frames, _info = clip49
    whole = video.read_frames(path, dtype="uint8", as_torch=False)
    for size in (1, 7, 16, 64):
        chunks = list(video.iter_frames(path, size, dtype="uint8", as_torch=False))
        assert [len(c) for c in chunks[:-1]] == [size] * (len(chunks) - 1)
        np.testing.assert_array_equal(np.concatenate(chunks), whole)
    window = list(video.iter_frames(path, 5, start=30, count=12, dtype="uint8", as_torch=False))
    np.testing.assert_array_equal(np.concatenate(window), whole[30:42])


def test_float_chunks_are_the_uint8_chunks_over_255(clip49):
    path, _frames, _info = clip49
    as_bytes = next(video.iter_frames(path, 4, dtype="uint8", as_torch=False))
    as_float = next(video.iter_frames(path, 4, as_torch=False))
    np.testing.assert_array_equal(as_float, as_bytes.astype(np.float32) / 255)


def test_decode_gives_comfyui_image_tensors_by_default(clip49):
    torch = pytest.importorskip("torch")
    path, _frames, _info = clip49
    chunk = next(video.iter_frames(path, 8))
    assert isinstance(chunk, torch.Tensor) and chunk.dtype == torch.float32 and tuple(chunk.shape) == (8, 192, 320, 3)
    assert float(chunk.min()) >= 0.0 and float(chunk.max()) <= 1.0


def test_start_seeks_to_keyframes_and_matches_sequential_decode(small_gop_clip):
    whole = video.read_frames(small_gop_clip, dtype="uint8", as_torch=False)
    for start, count in ((0, 40), (13, 9), (16, 24), (39, 5)):
        got = np.concatenate(list(video.iter_frames(small_gop_clip, 4, start=start, count=count, as_torch=False,
                                                    dtype="uint8")))
        np.testing.assert_array_equal(got, whole[start : start + count])
    assert list(video.iter_frames(small_gop_clip, start=40, as_torch=False)) == []
    with pytest.raises(ValueError, match="past the end"):
        video.iter_frames(small_gop_clip, start=41)


def test_encoder_takes_tensors_uint8_single_arrays_and_single_frames(tmp_path):
    torch = pytest.importorskip("torch")
    frames = synthetic_frames(6, 48, 64, seed=3)
    as_bytes = video.to_uint8(frames)
    sources = {
        "tensor_chunks.mp4": [torch.from_numpy(frames[:4]), torch.from_numpy(frames[4:])],
        "one_uint8_array.mp4": as_bytes,
        "one_tensor.mp4": torch.from_numpy(frames),
        "single_frames.mp4": (frame for frame in frames),
    }
    for name, source in sources.items():
        info = video.encode_video(tmp_path / name, source, 24, crf=10, preset="ultrafast")
        assert info.frames == 6, name
        assert psnr(video.read_frames(tmp_path / name, as_torch=False), frames) > 35, name


# --------------------------------------------------------------------------- odd sizes and bad input


def test_odd_sizes_are_padded_to_even_by_repeating_the_edge(tmp_path):
    frames = synthetic_frames(3, 33, 45, seed=4)
    info = video.encode_video(tmp_path / "odd.mp4", frames, 24, crf=8, preset="ultrafast")
    assert (info.width, info.height) == (46, 34)
    decoded = video.read_frames(tmp_path / "odd.mp4", as_torch=False)
    # The picture sits at the top-left, unscaled: it matches the source far better than a shifted copy.
    assert psnr(decoded[:, :33, :45], frames) > 32
    assert psnr(decoded[:, :33, :45], frames) > psnr(decoded[:, 1:33, 1:45], frames[:, :32, :44]) + 6
    # The added row and column repeat the edge, so they match their neighbours closely.
    assert np.abs(decoded[:, 33, :45] - frames[:, 32]).mean() < 0.02
    assert np.abs(decoded[:, :33, 45] - frames[:, :, 44]).mean() < 0.02


def test_yuv444p_keeps_odd_sizes_as_they_are(tmp_path):
    info = video.encode_video(tmp_path / "odd444.mp4", synthetic_frames(2, 33, 45), 24, pix_fmt="yuv444p",
                              preset="ultrafast")
    assert (info.width, info.height, info.pix_fmt) == (45, 33, "yuv444p")


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([np.zeros((2, 32, 32, 3), np.uint8), np.zeros((2, 32, 48, 3), np.uint8)], "48x32 but the video is 32x32"),
        ([np.zeros((2, 32, 32, 4), np.float32)], "drop the alpha channel"),
        ([np.zeros((32, 32), np.float32)], "expected \\[T,H,W,3\\]"),
        ([np.zeros((2, 32, 32, 3), np.int64)], "expected float 0..1 or uint8"),
        ([], "no frames to encode"),
    ],
)
def test_bad_frames_give_a_video_error_and_leave_no_file(tmp_path, chunks, message):
    target = tmp_path / "bad.mp4"
    with pytest.raises(VideoError, match=message) as caught:
        video.encode_video(target, iter(chunks), 24, preset="ultrafast")
    assert str(target) in str(caught.value)
    assert not target.exists() and temp_files(tmp_path) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [({"crf": 60}, "crf"), ({"preset": "warp"}, "preset"), ({"pix_fmt": "rgb24"}, "pix_fmt")],
)
def test_bad_encoder_options_are_refused_before_any_work(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        video.encode_video(tmp_path / "x.mp4", synthetic_frames(1, 16, 16), 24, **options)


def test_unknown_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"name it \.mp4"):
        video.encode_video(tmp_path / "clip.avi", synthetic_frames(1, 16, 16), 24)


# --------------------------------------------------------------------------- audio


@pytest.mark.parametrize("sample_rate", [44100, 48000])
def test_one_second_sine_comes_back_with_its_rate_and_length(tmp_path, sample_rate):
    path = tmp_path / f"sine{sample_rate}.mp4"
    info = video.encode_video(path, synthetic_frames(24, 32, 32), 24, audio=sine(1.0, sample_rate), preset="ultrafast")
    assert info.has_audio and info.audio_sample_rate == sample_rate and info.audio_channels == 1
    assert info.audio_duration == pytest.approx(1.0, abs=1024 / sample_rate)
    track = video.read_audio(path, as_torch=False)
    waveform = track["waveform"]
    assert track["sample_rate"] == sample_rate and waveform.shape[:2] == (1, 1) and waveform.dtype == np.float32
    assert abs(waveform.shape[2] - sample_rate) <= 1024
    # Still a 440 Hz tone: the spectrum peaks there.
    spectrum = np.abs(np.fft.rfft(waveform[0, 0]))
    assert np.fft.rfftfreq(waveform.shape[2], 1 / sample_rate)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_audio_is_kept_whole_unless_trimmed(tmp_path):
    frames = synthetic_frames(12, 32, 32)  # 0.5 s at 24 fps
    kept = video.encode_video(tmp_path / "kept.mp4", frames, 24, audio=sine(2.0, 48000, channels=2),
                              preset="ultrafast")
    trimmed = video.encode_video(tmp_path / "trim.mp4", frames, 24, audio=sine(2.0, 48000, channels=2),
                                 preset="ultrafast", trim_audio=True)
    assert kept.audio_channels == 2 and kept.audio_duration == pytest.approx(2.0, abs=1024 / 48000)
    assert trimmed.audio_duration == pytest.approx(0.5, abs=1024 / 48000)
    assert video.read_audio(tmp_path / "trim.mp4", as_torch=False)["waveform"].shape[1] == 2


def test_audio_tensor_round_trip_and_no_audio_is_none(tmp_path, clip49):
    torch = pytest.importorskip("torch")
    audio = sine(0.5, 44100)
    audio["waveform"] = torch.from_numpy(audio["waveform"])
    path = tmp_path / "tensor_audio.mp4"
    video.encode_video(path, synthetic_frames(12, 32, 32), 24, audio=audio, preset="ultrafast")
    track = video.read_audio(path)
    assert isinstance(track["waveform"], torch.Tensor) and track["waveform"].shape[1] == 1
    assert video.read_audio(clip49[0]) is None


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ({"waveform": np.zeros((1, 1, 100), np.float32), "sample_rate": 12345}, "resample to 48000"),
        ({"waveform": np.zeros((2, 1, 100), np.float32), "sample_rate": 48000}, "2 tracks"),
        ({"waveform": np.zeros((1, 6, 100), np.float32), "sample_rate": 48000}, "6 channels"),
        ({"samples": []}, "ComfyUI AUDIO dict"),
    ],
)
def test_bad_audio_gives_a_video_error(tmp_path, audio, message):
    with pytest.raises(VideoError, match=message):
        video.encode_video(tmp_path / "a.mp4", synthetic_frames(2, 16, 16), 24, audio=audio)


# --------------------------------------------------------------------------- broken files


@pytest.fixture(scope="module")
def clip_with_audio(tmp_path_factory):
    path = tmp_path_factory.mktemp("av") / "with_audio.mp4"
    video.encode_video(path, synthetic_frames(48, 64, 64), 24, audio=sine(2.0, 48000), preset="ultrafast")
    return path


@pytest.fixture
def broken_files(tmp_path, clip_with_audio):
    data = clip_with_audio.read_bytes()
    truncated = tmp_path / "cut_in_half.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.mp4"
    text.write_text("scene 1: a lighthouse at dusk\n" * 20)
    return {"truncated": truncated, "text": text, "missing": tmp_path / "never_rendered.mp4"}


READERS = {
    "probe_video": lambda p: video.probe_video(p),
    "iter_frames": lambda p: list(video.iter_frames(p)),
    "read_frames": lambda p: video.read_frames(p),
    "first_and_last": lambda p: video.first_and_last(p),
    "read_audio": lambda p: video.read_audio(p),
}


@pytest.mark.parametrize("kind", ["truncated", "text", "missing"])
@pytest.mark.parametrize("reader", list(READERS))
def test_broken_files_give_a_video_error_naming_the_file(broken_files, kind, reader):
    path = broken_files[kind]
    with pytest.raises(VideoError) as caught:
        READERS[reader](path)
    message = str(caught.value)
    assert str(path) in message
    expected = {"truncated": "truncated", "text": "text file", "missing": "not found"}[kind]
    assert expected in message


def test_truncated_stream_is_caught_while_decoding_without_verification(broken_files):
    # Even if the up-front check were skipped, decoding a cut file fails with a VideoError, not PyAV's.
    info = video.probe_video(broken_files["truncated"], verify=False)
    decode = pack_module("nodes.video.decode")
    with pytest.raises(VideoError, match=r"cut_in_half\.mp4"):
        list(decode.rgb_frames(info))


def test_file_without_video_stream_is_named(tmp_path):
    path = tmp_path / "voice.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48000)
        samples = sine(0.2, 48000)["waveform"][0]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoError, match=r"voice\.m4a: has no video stream"):
        video.probe_video(path)
    assert video.read_audio(path, as_torch=False)["sample_rate"] == 48000


# --------------------------------------------------------------------------- atomic writes, interrupt, progress


def test_failing_frame_source_leaves_the_previous_file_and_no_temp(tmp_path):
    target = tmp_path / "scene-001.mp4"
    first = video.encode_video(target, synthetic_frames(4, 32, 32), 24, preset="ultrafast")
    before = target.read_bytes()

    def generator_that_breaks():
        yield synthetic_frames(3, 32, 32)
        yield synthetic_frames(3, 32, 32)
        raise RuntimeError("sampler crashed")

    with pytest.raises(RuntimeError, match="sampler crashed"):
        video.encode_video(target, generator_that_breaks(), 24, preset="ultrafast")
    assert target.read_bytes() == before and video.probe_video(target) == first
    assert temp_files(tmp_path) == []


def test_interrupt_between_chunks_stops_the_encode_atomically(tmp_path):
    target = tmp_path / "interrupted.mp4"
    seen = []

    def chunks():
        for index in range(5):
            if index == 2:
                comfy.request_interrupt()  # the user presses Cancel while chunk 2 is generated
            seen.append(index)
            yield synthetic_frames(2, 32, 32)

    try:
        with pytest.raises(comfy.Interrupted):
            video.encode_video(target, chunks(), 24, preset="ultrafast")
    finally:
        comfy.clear_interrupt()
    assert seen == [0, 1, 2] and not target.exists() and temp_files(tmp_path) == []


def test_progress_reports_frames_done(tmp_path, monkeypatch):
    calls = []
    video.encode_video(tmp_path / "p.mp4", in_chunks(synthetic_frames(10, 16, 16), 4), 24, preset="ultrafast",
                       progress=calls.append)
    assert calls == [4, 8, 10]
    updates = []
    monkeypatch.setattr(comfy.Progress, "listeners", [lambda current, total: updates.append((current, total))])
    video.encode_video(tmp_path / "q.mp4", in_chunks(synthetic_frames(10, 16, 16), 4), 24, preset="ultrafast",
                       progress=comfy.Progress(10))
    assert updates == [(4, 10), (8, 10), (10, 10)]


def test_a_lone_long_array_is_encoded_in_slices(tmp_path):
    calls = []
    info = video.encode_video(tmp_path / "lone.mp4", video.to_uint8(synthetic_frames(40, 16, 16)), 24,
                              preset="ultrafast", progress=calls.append)
    assert info.frames == 40 and calls == [16, 32, 40]


# --------------------------------------------------------------------------- conversions and PNG bookends


def test_to_uint8_rounds_clamps_and_agrees_for_numpy_and_torch():
    torch = pytest.importorskip("torch")
    values = np.array([-0.5, 0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 0.5, 1.0, 2.0, np.nan], np.float32)
    expected = np.array([0, 0, 0, 1, 2, 128, 255, 255, 0], np.uint8)  # 0.5/255 rounds half to even
    np.testing.assert_array_equal(video.to_uint8(values), expected)
    np.testing.assert_array_equal(video.to_uint8(torch.from_numpy(values)), expected)
    every_byte = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(video.to_uint8(video.to_float32(every_byte)), every_byte)


def test_png_round_trip_is_exact_for_bytes_and_rounds_floats(tmp_path):
    torch = pytest.importorskip("torch")
    frame = video.to_uint8(synthetic_frames(1, 40, 56, seed=5))[0]
    path = video.save_png(tmp_path / "bookends" / "scene-001_last.png", frame)
    assert path == str(tmp_path / "bookends" / "scene-001_last.png")
    np.testing.assert_array_equal(video.load_png(path, dtype="uint8", as_torch=False), frame)
    as_image = torch.from_numpy(frame[None].astype(np.float32) / 255)  # a one-frame IMAGE batch
    video.save_png(tmp_path / "from_tensor.png", as_image)
    loaded = video.load_png(tmp_path / "from_tensor.png")
    assert isinstance(loaded, torch.Tensor) and tuple(loaded.shape) == (40, 56, 3) and loaded.dtype == torch.float32
    np.testing.assert_array_equal(video.to_uint8(loaded), frame)
    assert temp_files(tmp_path) == []


def test_png_errors_name_the_file(tmp_path):
    (tmp_path / "keyframe.png").write_text("not an image")
    for path, message in ((tmp_path / "keyframe.png", "not an image"), (tmp_path / "gone.png", "not found")):
        with pytest.raises(VideoError, match=message) as caught:
            video.load_png(path)
        assert str(path) in str(caught.value)
    with pytest.raises(VideoError, match="expected one RGB frame"):
        video.save_png(tmp_path / "two.png", np.zeros((2, 8, 8, 3), np.uint8))


@pytest.mark.parametrize("fixture", ["clip49", "small_gop_clip"])
def test_first_and_last_match_a_full_decode(request, fixture):
    value = request.getfixturevalue(fixture)
    path = value[0] if isinstance(value, tuple) else value
    whole = video.read_frames(path, dtype="uint8", as_torch=False)
    first, last = video.first_and_last(path, dtype="uint8", as_torch=False)
    np.testing.assert_array_equal(first, whole[0])
    np.testing.assert_array_equal(last, whole[-1])


def test_first_and_last_of_a_one_frame_video(tmp_path):
    frames = synthetic_frames(1, 32, 32)
    video.encode_video(tmp_path / "still.mp4", frames, 24, preset="ultrafast")
    first, last = video.first_and_last(tmp_path / "still.mp4", as_torch=False)
    np.testing.assert_array_equal(first, last)


# --------------------------------------------------------------------------- import cost


def test_video_room_imports_without_torch():
    code = (
        "import sys, importlib, importlib.util;"
        f"sys.path.insert(0, {str(REPO_ROOT / 'tests')!r});"
        "from conftest import pack_module; pack_module('nodes.video');"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (owner-only); the finished file must be readable as open() makes it."""
    atomic = pack_module("nodes.run.atomic")
    info = video.encode_video(tmp_path / "clip.mp4", synthetic_frames(5, 32, 32), 24, preset="ultrafast")
    assert os.stat(info.path).st_mode & 0o777 == atomic.FILE_MODE
