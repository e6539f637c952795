"""Upscale: video file in/out with audio, telemetry fields, and the GemDirectUpscale node as ComfyUI loads it."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import pack_module
from upscale_helpers import compact_state_dict, rrdb_state_dict, save_and_load

video = pack_module("nodes.video")
upscale_video = pack_module("nodes.upscale.video")
engine = pack_module("nodes.upscale.engine")
sizing = pack_module("nodes.upscale.sizing")
nodes = pack_module("nodes.upscale.nodes")


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    return save_and_load(compact_state_dict(scale=2), tmp_path_factory.mktemp("m") / "compact_x2.pth")


def _clip(path, frames=7, height=40, width=56, fps=Fraction(24000, 1001), seconds_audio=None):
    t = np.linspace(0, 1, frames, dtype=np.float32)[:, None, None, None]
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, None, :, None]
    pixels = np.broadcast_to(0.2 + 0.6 * ramp * (0.5 + 0.5 * t), (frames, height, width, 3)).copy()
    audio = None
    if seconds_audio:
        rate = 48000
        n = int(seconds_audio * rate)
        wave = 0.3 * np.sin(2 * math.pi * 440 * np.arange(n) / rate).astype(np.float32)
        audio = {"waveform": torch.from_numpy(np.stack([wave, wave]))[None], "sample_rate": rate}
    return video.encode_video(path, pixels, fps, audio=audio)


@pytest.mark.parametrize("with_model", [True, False], ids=["model", "lanczos"])
def test_video_with_audio_upscaled_2x_keeps_frames_fps_and_audio(tmp_path, compact, with_model):
    source = _clip(tmp_path / "in.mp4", seconds_audio=0.5)
    before = video.read_audio(source.path)
    settings = engine.UpscaleSettings(output=sizing.OutputSize(mode="factor", factor=2.0), tile=32, overlap=16,
                                      device=torch.device("cpu"))
    result = upscale_video.upscale_video(source.path, tmp_path / "out.mp4", compact if with_model else None,
                                         settings, chunk_size=3)
    out = video.probe_video(result.path)
    assert (out.width, out.height) == (112, 80) == (result.width, result.height)
    assert out.frames == source.frames == result.frames == 7
    assert out.fps == source.fps == Fraction(24000, 1001)
    after = video.read_audio(result.path)
    assert after is not None and result.audio_kept
    assert after["sample_rate"] == before["sample_rate"]
    assert after["waveform"].shape == before["waveform"].shape


def test_video_upscale_looks_like_the_source(tmp_path, compact):
    source = _clip(tmp_path / "in.mp4")
    result = upscale_video.upscale_video(source.path, tmp_path / "out.mp4", None, chunk_size=4)
    small = video.read_frames(source.path)
    big = video.read_frames(result.path)
    down = torch.nn.functional.avg_pool2d(big.movedim(-1, 1), 2).movedim(1, -1)
    assert (down - small).abs().mean().item() < 0.02


def test_post_telemetry_fields_and_the_ledger_event(tmp_path, compact):
    source = _clip(tmp_path / "in.mp4", frames=3)
    run_dir = tmp_path / "run"
    result = upscale_video.upscale_video(source.path, tmp_path / "out.mp4", compact,
                                         engine.UpscaleSettings(device=torch.device("cpu")),
                                         method_name="2x_compact.pth", run_dir=run_dir)
    fields = result.post_fields()
    assert fields["UpscaleMethod"] == "2x_compact.pth"
    assert fields["FinalResolution"] == "112x80"
    assert isinstance(fields["UpscaleElapsed"], float) and fields["UpscaleElapsed"] > 0
    event = json.loads((run_dir / "events.jsonl").read_text().splitlines()[-1])
    assert event["event"] == "upscale_done" and event["final_resolution"] == "112x80"
    assert event["method"] == "2x_compact.pth" and event["elapsed_ms"] == fields["UpscaleElapsed"]
    lanczos = upscale_video.upscale_video(source.path, tmp_path / "l.mp4")
    assert lanczos.post_fields()["UpscaleMethod"] == "lanczos"


def _node_args(**overrides):
    args = dict(size_mode="model scale", factor=2.0, long_side=1920, width=1920, height=1080, tile=0, overlap=32,
                precision="auto", alpha="keep")
    args.update(overrides)
    return args


def test_node_upscales_with_the_model_and_reports_progress(pack, tmp_path):
    comfy = pack_module("nodes.comfy")
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectUpscale"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["GemDirectUpscale"] == "Upscale (gemDirect)"
    assert node_class.CATEGORY == "gemDirect/upscale"
    assert node_class.INPUT_TYPES()["optional"]["upscale_model"][0] == "UPSCALE_MODEL"
    model = save_and_load(rrdb_state_dict(), tmp_path / "RealESRGAN_x4plus.pth")
    image = torch.rand(10, 40, 56, 3)
    seen = []
    comfy.Progress.listeners.append(lambda current, total: seen.append((current, total)))
    try:
        (out,) = node_class().upscale(image, **_node_args(tile=32, overlap=16, precision="fp32"), upscale_model=model)
    finally:
        comfy.Progress.listeners.clear()
    assert out.shape == (10, 160, 224, 3) and out.dtype == torch.float32
    assert seen[-1] == (10, 10)
    reference = model(image[:1].movedim(-1, 1)).movedim(1, -1)
    assert (out[:1] - reference).abs().max().item() <= 1e-3


@pytest.mark.parametrize("overrides, size", [
    (dict(), (64, 48)),
    (dict(size_mode="long side", long_side=100), (100, 75)),
    (dict(size_mode="exact", width=50, height=20), (50, 20)),
])
def test_node_without_a_model_resizes_with_lanczos(pack, overrides, size):
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectUpscale"]
    (out,) = node_class().upscale(torch.rand(2, 24, 32, 3), **_node_args(**overrides))
    assert (out.shape[2], out.shape[1]) == size and out.shape[0] == 2


def test_node_keeps_or_drops_alpha(pack):
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectUpscale"]
    rgba = torch.rand(1, 24, 32, 4)
    assert node_class().upscale(rgba, **_node_args())[0].shape == (1, 48, 64, 4)
    assert node_class().upscale(rgba, **_node_args(alpha="drop"))[0].shape == (1, 48, 64, 3)


def test_node_refuses_a_four_channel_model(pack, tmp_path):
    from spandrel import ModelLoader
    from spandrel.architectures.Compact import Compact

    torch.save(Compact(num_in_ch=4, num_out_ch=4, num_feat=8, num_conv=2, upscale=2).state_dict(), tmp_path / "m.pth")
    model = ModelLoader().load_from_file(str(tmp_path / "m.pth"))
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectUpscale"]
    with pytest.raises(ValueError, match=r"upscale_model .* takes 4 and gives 4 channels"):
        node_class().upscale(torch.rand(1, 24, 32, 3), **_node_args(), upscale_model=model)
