"""Per-stage VRAM estimates: ComfyUI's formulas with their numbers, RIFE against a measured peak,
presets against the cards they claim, and the advice built on them."""

from __future__ import annotations

import math
import weakref

import pytest
from conftest import pack_module

estimate = pack_module("nodes.vram.estimate")
advice = pack_module("nodes.vram.advice")
MIB, GIB = 1 << 20, 1 << 30
Workload = estimate.Workload


def test_sampling_is_comfyuis_memory_required_with_its_reserves():
    # WAN 2.2 I2V 14B at 832x480, 81 frames: latent 21 x 60 x 104 (Wan 2.1 VAE, stride 4/8/8).
    found = estimate.sample_estimate("wan22-i2v-14b", Workload(832, 480, 81), weights=9_000_000_000)
    area = 21 * 60 * 104
    factor = 5120 / 2222
    batched = 2 * area * 2 * 0.01 * factor * MIB  # cond + uncond, bf16, flash attention
    single = area * 2 * 0.01 * factor * MIB
    assert found.weights == 9_000_000_000
    assert found.working == int(batched + 400 * MIB)
    assert found.minimum_working == int(single + 400 * MIB)
    assert found.minimum_weights == 6 * 5120 * 5120 * 2  # time_projection dequantised to bf16 (> 128 MiB)
    assert found.full == 9_000_000_000 + int(batched + 400 * MIB)
    assert "21x60x104" in found.basis


def test_sampling_5b_uses_the_wan22_latent_and_no_flash_costs_more():
    # TI2V 5B at 1280x704, 121 frames: latent 31 x 44 x 80 (Wan 2.2 VAE, stride 4/16/16).
    assert estimate.wan_latent_shape("wan22-ti2v-5b", Workload(1280, 704, 121)) == (48, 31, 44, 80)
    flash = estimate.sample_estimate("wan22-ti2v-5b", Workload(1280, 704, 121))
    assert flash.weights == 4_999_787_712 * 2  # no file: the profile's bf16 weights (9.31 GiB)
    plain = estimate.sample_estimate("wan22-ti2v-5b", Workload(1280, 704, 121), efficient_attention=False,
                                     dtype_bytes=4)
    assert plain.minimum_working - 400 * MIB == pytest.approx(31 * 44 * 80 * 0.15 * 3072 / 2222 * MIB, rel=1e-9)
    assert plain.minimum > flash.minimum


def test_small_workloads_still_reserve_comfyuis_minimum_inference_memory():
    tiny = estimate.sample_estimate("wan22-ti2v-5b", Workload(64, 64, 5), weights=0)
    assert tiny.working == tiny.minimum_working == int(0.8 * GIB) + 400 * MIB


def test_vae_decode_is_comfyuis_memory_used_decode_and_its_tiled_fallback():
    wan21 = estimate.vae_decode_estimate("wan22-i2v-14b", Workload(832, 480, 81))
    assert wan21.weights == 126_892_531 * 2
    assert wan21.working == 7000 * 60 * 104 * 64 * 2 + 400 * MIB
    assert wan21.minimum_working == 7000 * 32 * 32 * 64 * 2 + 400 * MIB  # 256 px tiles
    wan22 = estimate.vae_decode_estimate("wan2.2-vae", Workload(1280, 704, 121), weights=1_409_000_000)
    assert wan22.working == 8000 * 44 * 80 * 256 * 2 + 400 * MIB
    assert wan22.minimum_working == 8000 * 16 * 16 * 256 * 2 + 400 * MIB
    with pytest.raises(ValueError, match="unknown VAE"):
        estimate.vae_decode_estimate("sdxl-vae", Workload(64, 64, 1))


def test_upscale_uses_the_upscale_rooms_per_pixel_rule():
    found = estimate.upscale_estimate(Workload(832, 480, 1, batch=2), weights=67_000_000, max_channels=64, scale=4)
    per_px = 2 * 64 * (4 + 2 * 16)
    assert found.working == per_px * 832 * 480 * 2
    assert found.minimum_working == per_px * 64 * 64
    assert found.minimum_weights == found.weights == 67_000_000


class PeakLive:
    """Peak bytes of tensor storages alive at once, among those created inside the block (CPU, exact)."""

    def __enter__(self):
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self
        self.live = self.peak = 0
        self.seen: set[int] = set()

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for tensor in tree_flatten(out)[0]:
                    if isinstance(tensor, torch.Tensor):
                        tracker._track(tensor.untyped_storage())
                return out

        self._mode = Mode()
        self._mode.__enter__()
        return self

    def _track(self, storage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if key in self.seen or size == 0:
            return
        self.seen.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)

        def release(size=size, key=key):
            self.live -= size
            self.seen.discard(key)

        weakref.finalize(storage, release)

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)


@pytest.mark.parametrize("arch", list(pack_module("nodes.interpolate.ifnet").VERSIONS))
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_rife_estimate_bounds_the_measured_peak(arch, scale):
    torch = pytest.importorskip("torch")
    ifnet = pack_module("nodes.interpolate.ifnet")
    torch.manual_seed(0)
    net = ifnet.build(arch).eval()
    height, width = 192, 320
    first, second = torch.rand(1, 3, height, width), torch.rand(1, 3, height, width)
    with torch.no_grad(), PeakLive() as peak:
        net.interpolate(first, second, 0.5, scale=scale)
    spec = net.spec
    found = estimate.rife_estimate(Workload(width, height, 2), weights=0, scale=scale, blocks=len(spec.widths),
                                   head=spec.head_out, carried=spec.carried > 0, pad_multiple=spec.pad_multiple(scale))
    assert found.minimum_working >= peak.peak, f"RIFE {arch} at scale {scale}: {peak.peak} B measured"
    assert found.minimum_working <= 3 * peak.peak  # an upper bound, but not a wild one


def test_every_preset_runs_at_least_lean_on_the_smallest_card_it_claims():
    fits = advice.preset_fits("BF16")
    assert {fit.name for fit in fits} >= {"fast", "standard", "cinematic"}
    for fit in fits:
        # the card's total less what ComfyUI and the desktop keep (about 0.8 GB on an idle card)
        assert fit.estimate.minimum <= (fit.min_gb - 0.8) * GIB, (fit.name, estimate.gb(fit.estimate.minimum))


def test_longest_clip_that_fits_is_4n_plus_1_and_fits():
    workload = Workload(832, 480, 81)
    available = 5 * GIB
    frames = advice.max_frames_that_fit("wan22-i2v-14b", workload, available, weights=9 * GIB)
    assert frames is not None and (frames - 1) % 4 == 0 and frames < 81
    fitting = estimate.sample_estimate("wan22-i2v-14b", Workload(832, 480, frames), weights=9 * GIB)
    longer = estimate.sample_estimate("wan22-i2v-14b", Workload(832, 480, frames + 4), weights=9 * GIB)
    assert fitting.minimum <= available < longer.minimum


def test_quant_that_fits_picks_the_best_smaller_quant():
    params = estimate.WAN_PARAMETERS["wan22-i2v-14b"]
    label, size = advice.quant_that_fits(params, 9 * GIB, "BF16")
    assert label == "Q4_K_M" and size == int(params * 4.5 / 8) <= 9 * GIB
    assert advice.quant_that_fits(params, 100 * GIB, "Q4_K_M") == ("Q3_K_M", int(params * 3.4375 / 8))
    assert advice.quant_that_fits(params, 1 * GIB, "BF16") is None


def test_workload_and_quant_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="frames = 0 must be a whole number of at least 1"):
        Workload(832, 480, 0)
    with pytest.raises(ValueError, match="unknown quant 'Q9'"):
        estimate.quant_bits("Q9")
    assert estimate.gb(9.31 * GIB) == "9.3 GB" and estimate.gb(0.25 * GIB) == "0.25 GB"
    assert math.isclose(estimate.quant_bits("q4_k_m"), 4.5)


def test_comfyuis_reserve_is_honoured():
    comfy = pack_module("nodes.comfy")
    assert comfy.reserved_vram() == 400 * MIB  # standalone Linux default (ComfyUI's EXTRA_RESERVED_VRAM)
    workload = Workload(832, 480, 81)
    default = estimate.sample_estimate("wan22-i2v-14b", workload)
    reserving = estimate.sample_estimate("wan22-i2v-14b", workload, reserved=2 * GIB)  # --reserve-vram 2
    assert reserving.minimum - default.minimum == 2 * GIB - 400 * MIB
