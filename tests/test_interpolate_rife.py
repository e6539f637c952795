"""RIFE: every version in every key layout, written here with random weights, loads and runs alike."""

from __future__ import annotations

import pickle

import pytest
import torch
from conftest import pack_module
from rife_reference import PUBLISHED, ReferenceIFNet

ifnet = pack_module("nodes.interpolate.ifnet")
loader = pack_module("nodes.interpolate.loader")

ARCHS = list(ifnet.VERSIONS)  # 4.6 ... 4.26.heavy: one per distinct published architecture
CORE_FILES = {  # ComfyUI core's five RIFE files (Comfy-Org/frame_interpolation) and the architecture in each
    "rife_v4.25.safetensors": "4.25",
    "rife_v4.25_lite.safetensors": "4.25.lite",
    "rife_v4.25_heavy.safetensors": "4.25.heavy",
    "rife_v4.26.safetensors": "4.25",
    "rife_v4.26_heavy.safetensors": "4.26.heavy",
}
FILE_NAMES = {  # the names users' files have; detection must not care
    "practical-rife": "flownet.pkl",
    "frame-interpolation": "rife.pth",
    "comfy-core": "rife.safetensors",
}


def random_state(arch: str, seed: int = 0, noise: float = 0.05) -> dict[str, torch.Tensor]:
    """A state dict of ``arch`` in the blockN. spelling, seeded, with non-trivial ``beta``s.

    ``noise`` 0.05 gives large flows (exercises warping) but activations beyond fp16's range;
    0.01 keeps them near 1, as trained weights do.
    """
    torch.manual_seed(seed)
    net = ifnet.build(arch)
    return {k: v + noise * torch.randn_like(v) for k, v in net.state_dict().items()}


def write_checkpoint(folder, arch: str, layout: str, name: str | None = None, seed: int = 0,
                     noise: float = 0.05) -> str:
    """Write ``arch`` with random weights in ``layout`` the way its tool writes it; return the path."""
    state = random_state(arch, seed, noise)
    path = str(folder / (name or FILE_NAMES[layout]))
    if layout == "practical-rife":
        tensors = loader.to_layout(state, layout)
        if len(ifnet.VERSIONS[arch].widths) == 5:  # Practical-RIFE 4.25/4.26 files also hold training-only nets
            tensors["module.teacher.block0.conv0.0.0.weight"] = torch.randn(96, 17, 3, 3)
            tensors["module.teacher.block0.lastconv.0.bias"] = torch.randn(52)
            for i in (0, 2, 4, 6, 8):
                tensors[f"module.caltime.{i}.weight"] = torch.randn(16, 16, 3, 3)
                tensors[f"module.caltime.{i}.bias"] = torch.randn(16)
        torch.save(tensors, path)
    else:
        loader.save_checkpoint(state, path, layout)
    return path


def frames(seed: int = 1, n: int = 2, h: int = 64, w: int = 96) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(n, 3, h, w)


def first_keys(path: str) -> list[str]:
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, "pt") as handle:
            return sorted(handle.keys())
    return sorted(torch.load(path, weights_only=True))


@pytest.mark.parametrize("arch", ARCHS)
def test_each_version_loads_in_every_layout_and_gives_identical_frames(tmp_path, arch):
    a, b = frames(1), frames(2)
    t = torch.tensor([0.25, 0.5])
    outputs = {}
    for layout in loader.LAYOUTS:
        folder = tmp_path / layout
        folder.mkdir()
        path = write_checkpoint(folder, arch, layout)
        model = loader.load_rife(path)
        assert (model.arch, model.layout) == (arch, layout), path
        assert model.method == f"rife-{arch}"
        outputs[layout] = model.net.interpolate(a, b, t)
        assert outputs[layout].shape == a.shape
        assert torch.isfinite(outputs[layout]).all()
    reference = outputs["practical-rife"]
    for layout, out in outputs.items():
        assert torch.equal(out, reference), f"{arch}: {layout} differs from practical-rife"


def test_the_table_is_the_published_architectures():
    assert set(ARCHS) == set(PUBLISHED)
    for arch, spec in ifnet.VERSIONS.items():
        encoder, widths, out, scales, ensemble = PUBLISHED[arch]
        assert spec.widths == widths and spec.block_out == out and spec.ensemble == ensemble, arch
        assert spec.scale_list() == [float(s) for s in scales], arch
        assert spec.head_out == (encoder[2] if encoder else 0), arch
        assert (spec.head.width if spec.head else 0) == (encoder[1] if encoder else 0), arch


@pytest.mark.parametrize("arch", ARCHS)
def test_every_layout_matches_the_published_forward_within_1e_5(tmp_path, arch):
    # Seeded random weights (noise 0.01: activations like trained weights), written the way each tool
    # writes them, loaded through the pack's loader, against the reference written from the releases.
    reference = ReferenceIFNet(arch).eval()
    reference.load_state_dict(random_state(arch, seed=3, noise=0.01))
    size = 128  # a multiple of every architecture's padding: both see the same pixels
    a, b = frames(11, 2, size, size), frames(12, 2, size, size)
    t = torch.tensor([0.3, 0.7])
    modes = [False, True] if PUBLISHED[arch][4] else [False]
    with torch.no_grad():
        expected = {e: reference(a, b, t.view(2, 1, 1, 1).expand(2, 1, size, size), ensemble=e) for e in modes}
    for layout in loader.LAYOUTS:
        folder = tmp_path / layout
        folder.mkdir()
        model = loader.load_rife(write_checkpoint(folder, arch, layout, seed=3, noise=0.01))
        assert (model.arch, model.layout) == (arch, layout)
        for ensemble in modes:
            out = model.net.interpolate(a, b, t, ensemble=ensemble)
            err = (out - expected[ensemble]).abs().max().item()
            assert err < 1e-5, f"{arch} {layout} ensemble={ensemble}: max error {err}"


def test_cores_five_files_load_by_their_tensors(tmp_path):
    for name, arch in CORE_FILES.items():
        state = random_state(arch, seed=hash(name) % 1000)
        loader.save_checkpoint(state, str(tmp_path / name), "comfy-core")
        keys = first_keys(str(tmp_path / name))
        assert "blocks.4.lastconv.0.bias" in keys and "encode.cnn3.weight" in keys
        model = loader.load_rife(str(tmp_path / name))
        assert (model.arch, model.layout) == (arch, "comfy-core"), name
        assert model.net.state_dict()["block0.conv0.0.0.weight"].equal(state["block0.conv0.0.0.weight"])


def test_key_spellings_are_the_real_ones(tmp_path):
    pkl = write_checkpoint(tmp_path, "4.7", "practical-rife")
    assert "module.block0.conv0.0.0.weight" in first_keys(pkl)
    assert "module.encode.1.weight" in first_keys(pkl)
    core = loader.save_checkpoint(random_state("4.25"), str(tmp_path / "core.safetensors"), "comfy-core")
    assert core is None
    keys = first_keys(str(tmp_path / "core.safetensors"))
    assert {"blocks.0.conv0.0.0.weight", "blocks.4.lastconv.0.bias", "encode.cnn3.weight"} <= set(keys)
    fi = write_checkpoint(tmp_path, "4.17", "frame-interpolation")
    assert {"block0.conv0.0.0.weight", "encode.cnn0.weight"} <= set(first_keys(fi))


def test_teacher_and_caltime_are_dropped_not_loaded(tmp_path):
    model = loader.load_rife(write_checkpoint(tmp_path, "4.25", "practical-rife"))
    assert model.dropped_keys == 12
    assert not any(k.startswith(("teacher", "caltime")) for k in model.net.state_dict())


def test_versions_are_told_apart_by_shapes_not_names(tmp_path):
    # A 4.25 network saved under a 4.7 file name is still 4.25, and the other way round.
    assert loader.load_rife(write_checkpoint(tmp_path, "4.25", "frame-interpolation", "rife47.pth")).arch == "4.25"
    assert loader.load_rife(write_checkpoint(tmp_path, "4.7", "frame-interpolation", "rife426.pth")).arch == "4.7"
    shapes = {arch: loader.expected_shapes(arch) for arch in ARCHS}
    assert shapes["4.7"]["block0.conv0.0.0.weight"][1] == shapes["4.25"]["block0.conv0.0.0.weight"][1] == 15
    assert shapes["4.7"]["block0.lastconv.0.weight"][1] == 24 and shapes["4.25"]["block0.lastconv.0.weight"][1] == 52
    assert "block4.conv0.0.0.weight" in shapes["4.25"] and "block4.conv0.0.0.weight" not in shapes["4.7"]


def test_a_missing_tensor_is_an_error_listing_the_expected_keys(tmp_path):
    state = loader.to_layout(random_state("4.17"), "frame-interpolation")
    del state["block3.lastconv.0.bias"]
    path = str(tmp_path / "rife417.pth")
    torch.save(state, path)
    with pytest.raises(loader.CheckpointError) as caught:
        loader.load_rife(path)
    text = str(caught.value)
    assert "rife417.pth" in text and "Closest is RIFE 4.17" in text
    assert "missing 1 keys: block3.lastconv.0.bias" in text
    assert "block0.conv0.0.0.weight" in text  # the expected keys are listed


def test_an_unrelated_checkpoint_is_refused_with_the_files_that_work(tmp_path):
    path = str(tmp_path / "film_net_fp32.pth")
    torch.save({"extract.conv.weight": torch.zeros(8, 3, 3, 3), "fusion.out.bias": torch.zeros(3)}, path)
    with pytest.raises(loader.CheckpointError) as caught:
        loader.load_rife(path)
    text = str(caught.value)
    assert "no block0.* keys" in text and "extract.conv.weight" in text
    assert "rife426.pth" in text and "flownet.pkl" in text


class _Payload:
    pass


def test_pickles_holding_code_are_not_executed(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"block0.conv0.0.0.weight": _Payload()}, handle, protocol=2)
    with pytest.raises(loader.CheckpointError, match="weights-only"):
        loader.load_rife(str(path))


def test_zero_output_layers_give_the_plain_average(tmp_path):
    # With every block's last layer zeroed the flow stays 0 and the mask 0 (sigmoid 0.5): (a + b) / 2.
    for arch in ("4.6", "4.25"):
        state = {k: (torch.zeros_like(v) if ".lastconv." in k else v) for k, v in random_state(arch).items()}
        net = ifnet.build(arch)
        net.load_state_dict(state)
        a, b = frames(3, 1), frames(4, 1)
        assert torch.allclose(net.eval().interpolate(a, b, 0.3), (a + b) / 2, atol=1e-4), arch


def test_warp_moves_pixels_by_the_flow():
    image = torch.rand(1, 3, 16, 20)
    flow = torch.zeros(1, 2, 16, 20)
    flow[:, 0] = 3.0  # sample 3 px to the right
    moved = ifnet.warp(image, flow)
    assert torch.allclose(moved[..., :-3], image[..., 3:], atol=1e-5)


@pytest.mark.parametrize("size", [(30, 30), (17, 61), (64, 96)])
def test_any_frame_size_is_padded_and_cropped_back(size):
    net = ifnet.build("4.25").eval()
    net.load_state_dict(random_state("4.25"))
    a, b = frames(5, 1, *size), frames(6, 1, *size)
    out = net.interpolate(a, b, 0.5)
    assert out.shape == a.shape and torch.isfinite(out).all()
    assert ifnet.VERSIONS["4.25"].pad_multiple() == 64 and ifnet.VERSIONS["4.6"].pad_multiple() == 32
    assert ifnet.VERSIONS["4.6"].pad_multiple(0.5) == 64


def test_ensemble_only_where_the_release_has_it():
    a, b = frames(7, 1), frames(8, 1)
    net = ifnet.build("4.17").eval()
    net.load_state_dict(random_state("4.17"))
    plain, both = net.interpolate(a, b, 0.5), net.interpolate(a, b, 0.5, ensemble=True)
    assert not torch.equal(plain, both)
    with pytest.raises(ValueError, match="no ensemble"):
        ifnet.build("4.25").eval().interpolate(a, b, 0.5, ensemble=True)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_loads_and_stays_close(tmp_path, dtype):
    path = write_checkpoint(tmp_path, "4.7", "frame-interpolation", noise=0.01)
    exact = loader.load_rife(path).net.interpolate(frames(9, 1), frames(10, 1), 0.5)
    half = loader.load_rife(path, dtype)
    assert next(half.net.parameters()).dtype == loader.DTYPES[dtype]
    out = half.net.interpolate(frames(9, 1), frames(10, 1), 0.5).float()
    assert (out - exact).abs().mean() < 0.05


def test_auto_precision_follows_the_device_and_keeps_flow_in_fp32(tmp_path):
    upscale_model = pack_module("nodes.upscale.model")
    path = write_checkpoint(tmp_path, "4.25", "comfy-core", noise=0.01)
    auto = loader.load_rife(path, "auto")
    expected = torch.bfloat16 if upscale_model.cpu_has_bf16() else torch.float32
    assert auto.dtype == expected and next(auto.net.parameters()).dtype == expected
    assert loader.auto_dtype("cuda:0") == torch.float16
    exact = loader.load_rife(path, "fp32")
    smooth = torch.nn.functional.avg_pool2d(frames(13, 2, 128, 128), 9, 1, 4)  # trained nets see images
    a, b = smooth[:1], smooth[1:]
    out = auto.net.interpolate(a, b, 0.5)
    assert out.dtype == torch.float32  # flow, warps and blend in fp32 whatever the convolutions ran in
    difference = (out - exact.net.interpolate(a, b, 0.5)).abs()
    assert difference.max() < 0.03 and difference.mean() < 0.003, (difference.max(), difference.mean())
