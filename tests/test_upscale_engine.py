"""Upscale engine: tiled equals untiled, half precision, sizes, alpha, model checks, OOM back-off."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import pack_module
from upscale_helpers import compact_state_dict, rrdb_state_dict, save_and_load

engine = pack_module("nodes.upscale.engine")
sizing = pack_module("nodes.upscale.sizing")
tiles = pack_module("nodes.upscale.tiles")
model_mod = pack_module("nodes.upscale.model")
resample = pack_module("nodes.upscale.resample")

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def rrdb(tmp_path_factory):
    return save_and_load(rrdb_state_dict(), tmp_path_factory.mktemp("m") / "RealESRGAN_tiny_x4.pth")


@pytest.fixture(scope="module")
def compact(tmp_path_factory):
    return save_and_load(compact_state_dict(), tmp_path_factory.mktemp("m") / "realesr-tiny-x4v3.pth")


def _frames(count=2, height=40, width=56, channels=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((count, height, width, channels), generator=generator)


def _run(model, frames, **settings):
    settings.setdefault("device", CPU)
    upscaler = engine.Upscaler(model, engine.UpscaleSettings(**settings))
    return upscaler, upscaler.upscale(frames)


def test_the_test_models_are_what_core_loads_and_give_mid_range_output(rrdb, compact):
    assert (rrdb.architecture.name, rrdb.scale) == ("ESRGAN", 4)
    assert (compact.architecture.name, compact.scale) == ("RealESRGAN Compact", 4)
    for model in (rrdb, compact):
        out = model(_frames(1).movedim(-1, 1))
        inside = ((out > 0.01) & (out < 0.99)).float().mean().item()
        assert inside > 0.9 and out.std() > 0.01  # not clamped flat: comparisons below mean something


@pytest.mark.parametrize("name, size, tile, overlap", [
    ("rrdb", (40, 56), 32, 16),     # 2 x 3 tiles, uneven last stride
    ("rrdb", (41, 57), 24, 12),     # odd sizes, 3 x 4 tiles
    ("compact", (40, 56), 32, 16),
    ("compact", (45, 70), 32, 16),  # tile ends at no multiple of 32
    ("compact", (90, 130), 64, 32),  # the default overlap
])
def test_tiled_output_equals_untiled_in_fp32(request, name, size, tile, overlap):
    # Exact when the model's receptive field fits in the overlap/4 px of context every kept pixel has
    # (compact, 4 convs: 4 px); RRDB's residual scaling makes far context fade below 1e-3 by 4 px.
    model = request.getfixturevalue(name)
    frames = _frames(3, *size)
    _, whole = _run(model, frames, tile=max(size), precision="fp32")
    upscaler, tiled = _run(model, frames, tile=tile, overlap=overlap, frames_per_pass=2, precision="fp32")
    assert len(tiles.tile_grid(*size, tile, overlap)) >= 4
    assert upscaler.plan.tile == tile and upscaler.plan.frames_per_pass == 2
    assert tiled.shape == (3, size[0] * 4, size[1] * 4, 3)
    assert (tiled - whole).abs().max().item() <= 1e-3


def test_without_overlap_tiles_show_seams(rrdb):
    # The same comparison fails when the cross-fade has no context to work with: the check has teeth.
    frames = _frames(1)
    _, whole = _run(rrdb, frames, tile=64, precision="fp32")
    _, tiled = _run(rrdb, frames, tile=24, overlap=0, precision="fp32")
    assert (tiled - whole).abs().max().item() > 1e-2


def test_tiled_equals_the_model_called_on_the_whole_frame(compact):
    frames = _frames(2)
    reference = compact(frames.movedim(-1, 1).contiguous()).movedim(1, -1)
    _, tiled = _run(compact, frames, tile=32, overlap=16, precision="fp32")
    assert (tiled - reference).abs().max().item() <= 1e-3


@pytest.mark.parametrize("name", ["rrdb", "compact"])
def test_fp16_within_1e_2_of_fp32(request, name):
    model = request.getfixturevalue(name)
    frames = _frames(2)
    _, full = _run(model, frames, tile=64, precision="fp32")
    upscaler, half = _run(model, frames, tile=32, overlap=16, precision="fp16")
    assert upscaler.dtype == torch.float16
    assert model.dtype == torch.float32  # the caller's (cached) model is not converted
    assert (half - full).abs().max().item() <= 1e-2


def test_bf16_runs_and_stays_close(compact):
    frames = _frames(1)
    _, full = _run(compact, frames, precision="fp32")
    _, brain = _run(compact, frames, precision="bf16")
    assert (brain - full).abs().max().item() <= 3e-2  # bf16 keeps 8 mantissa bits


def test_auto_precision_on_the_cpu_is_bf16_only_where_the_cpu_has_it(rrdb):
    upscaler = engine.Upscaler(rrdb, engine.UpscaleSettings(device=CPU))
    assert upscaler.dtype == (torch.bfloat16 if model_mod.cpu_has_bf16() else torch.float32)
    info = model_mod.inspect_model(rrdb)
    no_bf16 = model_mod.ModelInfo(**{**info.__dict__, "supports_bfloat16": False})
    assert model_mod.resolve_precision("auto", no_bf16, CPU) == torch.float32
    assert model_mod.resolve_precision("auto", info, torch.device("cuda")) == torch.float16


def test_auto_frames_per_pass_is_one_on_the_cpu(compact):
    upscaler, _ = _run(compact, _frames(3), precision="fp32")
    assert upscaler.plan.frames_per_pass == 1


@pytest.mark.parametrize("output, expected", [
    (dict(mode="model scale"), (224, 160)),
    (dict(mode="factor", factor=2.0), (112, 80)),
    (dict(mode="factor", factor=1.5), (84, 60)),
    (dict(mode="factor", factor=6.0), (336, 240)),
    (dict(mode="long side", long_side=301), (301, 215)),
    (dict(mode="exact", width=250, height=99), (250, 99)),
    (dict(mode="exact", width=30, height=17), (30, 17)),
])
def test_each_size_mode_gives_the_exact_size(compact, output, expected):
    _, out = _run(compact, _frames(2), output=sizing.OutputSize(**output))
    assert (out.shape[2], out.shape[1]) == expected
    assert out.dtype == torch.float32 and 0.0 <= out.min() and out.max() <= 1.0


def test_long_side_follows_the_longer_axis_of_portrait_frames():
    assert sizing.OutputSize(mode="long side", long_side=1920).resolve(480, 832, 4) == (1108, 1920)


def test_lanczos_method_resamples_for_real():
    frames = _frames(1)
    _, out = _run(None, frames, output=sizing.OutputSize(mode="model scale", factor=2.0))
    assert out.shape == (1, 80, 112, 3)
    # A real filter: not nearest-neighbour copies, and it keeps the mean.
    assert not torch.equal(out[0, 0::2, 0::2], frames[0])
    assert abs(out.mean().item() - frames.mean().item()) < 0.01
    flat = torch.full((1, 40, 56, 3), 0.3)
    assert (engine.Upscaler(None).upscale(flat) - 0.3).abs().max().item() < 1e-5


def test_lanczos_downscale_is_antialiased():
    # A one-pixel checkerboard halved must become flat grey, not a new pattern (aliasing).
    board = (torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2
    frames = board.float()[None, :, :, None].expand(1, 64, 64, 3).contiguous()
    out = resample.lanczos_resize(frames, 21, 21)
    assert (out - 0.5).abs().max().item() < 0.05


def test_alpha_is_kept_resized_or_dropped(compact):
    frames = _frames(1, channels=4)
    frames[..., 3] = 1.0
    frames[:, :10, :, 3] = 0.0
    _, kept = _run(compact, frames, output=sizing.OutputSize(mode="factor", factor=2.0))
    assert kept.shape == (1, 80, 112, 4)
    assert kept[0, :16, :, 3].max() < 0.05 and kept[0, 24:, :, 3].min() > 0.95
    _, dropped = _run(compact, frames, alpha="drop")
    assert dropped.shape == (1, 160, 224, 3)


def test_four_channel_model_is_refused_with_the_fix(tmp_path):
    from spandrel import ModelLoader
    from spandrel.architectures.Compact import Compact

    net = Compact(num_in_ch=4, num_out_ch=4, num_feat=8, num_conv=2, upscale=2)
    torch.save(net.state_dict(), tmp_path / "rgba.pth")
    model = ModelLoader().load_from_file(str(tmp_path / "rgba.pth"))
    with pytest.raises(model_mod.UpscaleModelError, match=r"takes 4 and gives 4 channels.*3-in/3-out"):
        engine.Upscaler(model)


@pytest.mark.parametrize("thing, message", [
    (torch.nn.Conv2d(3, 3, 3), "not an image model from spandrel.*Load Upscale Model"),
    ("RealESRGAN_x4plus.pth", "not an image model from spandrel"),
])
def test_non_image_models_are_refused_with_the_fix(thing, message):
    with pytest.raises(model_mod.UpscaleModelError, match=message):
        engine.Upscaler(thing)


def test_inpainting_descriptor_is_refused():
    masked = type("MaskedImageModelDescriptor", (), {"architecture": type("A", (), {"name": "LaMa"})()})()
    with pytest.raises(model_mod.UpscaleModelError, match="inpainting model \\(LaMa"):
        engine.Upscaler(masked)


def test_bad_frames_name_the_expected_shape(compact):
    with pytest.raises(ValueError, match=r"\[B,H,W,3\] or \[B,H,W,4\]"):
        engine.Upscaler(compact, engine.UpscaleSettings(device=CPU)).upscale(torch.rand(1, 20, 20, 2))


class _RunsOutOfMemory:
    """A descriptor stand-in that fails like the CPU allocator on tiles above a size."""

    def __init__(self, model, largest, error):
        self._model, self.largest, self.error, self.calls = model, largest, error, []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def to(self, *args, **kwargs):
        self._model.to(*args, **kwargs)
        return self

    def __call__(self, image):
        self.calls.append(tuple(image.shape))
        if image.shape[0] * image.shape[2] * image.shape[3] > self.largest:
            raise self.error
        return self._model(image)


@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 4294967296 bytes."),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
])
def test_out_of_memory_halves_frames_then_tile_and_still_matches(compact, error):
    frames = _frames(4)
    _, whole = _run(compact, frames, tile=64, precision="fp32")
    flaky = _RunsOutOfMemory(compact, largest=32 * 32, error=error)
    upscaler, out = _run(flaky, frames, tile=64, overlap=16, frames_per_pass=4, precision="fp32")
    assert upscaler.plan.frames_per_pass == 1 and upscaler.plan.tile == 32
    assert upscaler.backoffs == 3  # 4 -> 2 -> 1 frames, then 64 -> 32 px
    assert (out - whole).abs().max().item() <= 1e-3


def test_out_of_memory_at_the_smallest_tile_says_what_to_do(compact):
    flaky = _RunsOutOfMemory(compact, largest=0, error=RuntimeError("CUDA out of memory"))
    with pytest.raises(RuntimeError, match=r"even at 16px tiles, one frame a pass.*free memory"):
        _run(flaky, _frames(1), tile=16, overlap=8, precision="fp32")


def test_other_errors_are_not_mistaken_for_out_of_memory(compact):
    flaky = _RunsOutOfMemory(compact, largest=0, error=RuntimeError("Expected 4D input"))
    with pytest.raises(RuntimeError, match="Expected 4D input"):
        _run(flaky, _frames(1), tile=32, precision="fp32")


def test_tile_plan_comes_from_free_memory(rrdb):
    info = model_mod.inspect_model(rrdb)
    per_pixel = model_mod.activation_bytes_per_pixel(info, 4)
    roomy = engine.plan_tiles(info, 480, 832, element_size=4, budget=per_pixel * 480 * 832 * 20)
    assert roomy.tile == 832 and roomy.frames_per_pass == 8  # the GPU's limit
    tight = engine.plan_tiles(info, 480, 832, element_size=4, budget=per_pixel * 300 * 300)
    assert tight.tile == 296 and tight.frames_per_pass == 1 and tight.overlap == 32
    half = engine.plan_tiles(info, 480, 832, element_size=2, budget=per_pixel * 300 * 300)
    assert half.tile > tight.tile  # fp16 halves activations: bigger tiles in the same memory


def test_tiles_cover_every_pixel_with_full_weight_inside_and_overlap_at_least_asked():
    for size, tile, overlap in [(100, 32, 16), (33, 32, 16), (1000, 512, 32), (97, 24, 12)]:
        starts = tiles.axis_starts(size, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, size) == size
        assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))
    grid = tiles.tile_grid(45, 70, 32, 16)
    total = torch.zeros(45 * 2, 70 * 2)
    for tile in grid:
        total[tile.y0 * 2:tile.y1 * 2, tile.x0 * 2:tile.x1 * 2] += tiles.blend_weights(tile, 2, 16)
    assert total.min() >= 1.0 - 1e-6


def test_progress_counts_every_frame_and_interrupt_stops(compact):
    comfy = pack_module("nodes.comfy")
    seen = []
    upscaler = engine.Upscaler(compact, engine.UpscaleSettings(device=CPU, frames_per_pass=2), progress=seen.append)
    list(upscaler.run([_frames(3), _frames(2)]))
    assert sum(seen) == 5
    comfy.request_interrupt()
    try:
        with pytest.raises(comfy.Interrupted):
            engine.Upscaler(compact, engine.UpscaleSettings(device=CPU, tile=32)).upscale(_frames(1))
    finally:
        comfy.clear_interrupt()
