"""Model inspection from headers only: exact weight bytes, parameters, quant mix, WAN variant."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from conftest import pack_module
from test_vram_files import (
    WAN_CONFIGS,
    RecordingFile,
    deleted_after,
    disk_usage,
    wan_layout,
    write_gguf,
    write_safetensors,
)

inspect = pack_module("nodes.vram.inspect")
estimate = pack_module("nodes.vram.estimate")
gguf = pytest.importorskip("gguf")

# Every type the gguf package writes with real data, and the K-quants it can only store.
GGUF_TENSORS = [
    ("blocks.0.f32", (8, 64), "F32"),
    ("blocks.0.f16", (16, 256), "F16"),
    ("blocks.0.bf16", (16, 256), "BF16"),
    ("blocks.0.q8_0", (24, 256), "Q8_0"),
    ("blocks.0.q4_0", (32, 256), "Q4_0"),
    ("blocks.0.q5_0", (8, 256), "Q5_0"),
    ("blocks.0.q4_k", (64, 256), "Q4_K"),
    ("blocks.0.q6_k", (12, 512), "Q6_K"),
    ("blocks.0.q5_k", (4, 256), "Q5_K"),
    ("blocks.0.q3_k", (4, 256), "Q3_K"),
]


def inspect_recorded(path):
    """Inspect ``path`` through a wrapper that records every read."""
    with open(path, "rb", buffering=0) as handle:
        recorder = RecordingFile(handle)
        info = inspect.inspect_stream(recorder, path.stat().st_size, str(path))
    return info, recorder


def test_gguf_weight_bytes_equal_the_sum_of_tensor_data_sizes_for_every_type(tmp_path):
    path = tmp_path / "mix.gguf"
    written = write_gguf(path, GGUF_TENSORS)
    info = inspect.inspect_model(path)
    assert info.format == "gguf"
    assert info.weight_bytes == sum(written.values())
    assert {t.name: t.nbytes for t in info.tensors} == written
    # the gguf package's own reader agrees, tensor by tensor, and on where the data begins
    reader = gguf.GGUFReader(str(path))
    assert {t.name: int(t.n_bytes) for t in reader.tensors} == written
    assert info.data_offset == reader.data_offset
    assert {t.name: t.dtype for t in info.tensors} == {name: kind for name, _shape, kind in GGUF_TENSORS}
    assert {t.name: t.shape for t in info.tensors} == {name: shape for name, shape, _kind in GGUF_TENSORS}
    assert info.parameters == sum(math.prod(shape) for _name, shape, _kind in GGUF_TENSORS)


def test_gguf_block_sizes_give_exact_bytes():
    # Q4_K: 256 weights in 144 bytes; Q8_0: 32 in 34; Q6_K: 256 in 210; F16: 1 in 2 (gguf's table).
    sizes = gguf.GGML_QUANT_SIZES
    T = gguf.GGMLQuantizationType
    assert sizes[T.Q4_K] == (256, 144) and sizes[T.Q8_0] == (32, 34) and sizes[T.Q6_K] == (256, 210)
    for label in ("Q8_0", "Q6_K", "Q5_K", "Q4_K", "Q3_K", "Q4_0", "Q5_0", "Q2_K", "F16", "BF16", "F32"):
        block, size = sizes[T[label]]
        assert estimate.QUANT_BITS[label] == size * 8 / block, label


def test_quant_mix_and_label(tmp_path):
    path = tmp_path / "q4km.gguf"
    written = write_gguf(path, [("a.weight", (256, 1024), "Q4_K"), ("b.weight", (64, 1024), "Q6_K"),
                                ("a.norm", (1024,), "F32")], kv={"general.file_type": 15})
    info = inspect.inspect_model(path)
    assert info.quant_label == "Q4_K_M"  # llama.cpp's LlamaFileType 15, as the file says
    assert list(info.quant_mix) == ["Q4_K", "Q6_K", "F32"]
    assert info.quant_mix["Q4_K"] == written["a.weight"]
    assert 4.5 < info.bits_per_weight < 6.6
    plain = tmp_path / "plain.gguf"
    write_gguf(plain, [("a.weight", (256, 1024), "Q8_0"), ("a.norm", (1024,), "F32")])
    assert inspect.inspect_model(plain).quant_label == "Q8_0"  # no file type: the type holding most bytes


def test_safetensors_weight_bytes_equal_the_sum_of_tensor_data_sizes(tmp_path):
    path = tmp_path / "model.safetensors"
    tensors = {"a.weight": ("BF16", (64, 32)), "a.bias": ("F32", (64,)), "b.weight": ("F8_E4M3", (16, 16)),
               "steps": ("I64", (1,))}
    data = write_safetensors(path, tensors, metadata={"format": "pt"})
    info = inspect.inspect_model(path)
    assert info.format == "safetensors"
    assert info.weight_bytes == data == path.stat().st_size - info.data_offset
    assert info.parameters == 64 * 32 + 64 + 256 + 1
    assert info.metadata == {"format": "pt"}
    assert info.quant_mix["BF16"] == 64 * 32 * 2


def test_safetensors_from_the_safetensors_package(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tensors = {"x": torch.zeros(3, 5, dtype=torch.bfloat16), "y": torch.ones(7, dtype=torch.float32),
               "z": torch.zeros(2, 2, 2, dtype=torch.float16)}
    path = tmp_path / "saved.safetensors"
    save_file(tensors, str(path))
    info = inspect.inspect_model(path)
    assert info.weight_bytes == sum(t.numel() * t.element_size() for t in tensors.values())
    assert {t.name: t.shape for t in info.tensors} == {k: tuple(v.shape) for k, v in tensors.items()}


def test_torch_zip_checkpoint_weight_bytes_are_its_storages(tmp_path):
    torch = pytest.importorskip("torch")
    state = {"module.conv.weight": torch.zeros(16, 3, 3, 3), "module.conv.bias": torch.zeros(16, dtype=torch.float16)}
    path = tmp_path / "flownet.pkl"
    torch.save(state, str(path))
    info = inspect.inspect_model(path)
    assert info.format == "torch-zip"
    assert info.weight_bytes == 16 * 27 * 4 + 16 * 2
    assert info.parameters == 0  # unknown without unpickling


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
def test_a_2_gib_file_is_inspected_from_its_header_alone(tmp_path, request, kind):
    path = deleted_after(request, tmp_path / f"big.{kind}")
    if kind == "safetensors":
        data = write_safetensors(path, {"blocks.0.ffn.0.weight": ("BF16", (32768, 32768)),
                                        "blocks.0.ffn.0.bias": ("BF16", (32768,))}, sparse=True)
    else:
        sizes = write_gguf(path, [("blocks.0.ffn.0.weight", (32768, 65536), "Q8_0"),
                                  ("blocks.0.ffn.2.weight", (4096, 32768), "Q4_K"),
                                  ("blocks.0.ffn.0.bias", (32768,), "F32")], sparse=True)
        data = sum(sizes.values())
    assert data >= 2 << 30 and path.stat().st_size >= 2 << 30
    assert disk_usage(path) < 1 << 20  # sparse: the gigabytes are not on disk

    started = time.perf_counter()
    info, recorder = inspect_recorded(path)
    elapsed = time.perf_counter() - started

    assert info.weight_bytes == data
    assert recorder.furthest <= info.data_offset, "a read reached into the tensor data"
    assert recorder.bytes_read <= info.data_offset + 8  # the header (its first 8 bytes read twice: format sniff)
    assert recorder.bytes_read < 64 << 10
    assert info.bytes_read == recorder.bytes_read
    assert elapsed < 1.0, f"inspection took {elapsed:.3f} s"


def test_gguf_reads_stop_at_the_header_even_with_long_string_arrays(tmp_path):
    path = tmp_path / "vocab.gguf"
    tokens = [f"token{i}" for i in range(5000)]
    write_gguf(path, [("w", (64, 256), "Q8_0")], kv={"tokenizer.ggml.tokens": tokens, "general.alignment": 64})
    info, recorder = inspect_recorded(path)
    assert recorder.furthest <= info.data_offset
    assert info.data_offset % 64 == 0
    assert info.metadata["tokenizer.ggml.tokens"] == "<array of 5000 strings>"
    assert len(recorder.reads) < 100  # read ahead within the header, not a read per string


@pytest.mark.parametrize(("variant", "label", "clip_image"), [
    ("wan22-ti2v-5b", "WAN 2.2 TI2V 5B", False),
    ("wan22-i2v-14b", "WAN 2.2 I2V 14B", False),
    ("wan22-t2v-14b", "WAN 2.1/2.2 T2V 14B", False),
    ("wan22-i2v-14b", "WAN 2.1 I2V 14B", True),
])
def test_wan_variant_and_parameter_count_from_a_full_layout(tmp_path, request, variant, label, clip_image):
    layout = wan_layout(**WAN_CONFIGS[variant], clip_image=clip_image)
    path = deleted_after(request, tmp_path / "wan.safetensors")
    write_safetensors(path, {f"model.diffusion_model.{k}": ("BF16", v) for k, v in layout.items()}, sparse=True)
    info = inspect.inspect_model(path)
    arch = info.architecture
    assert (arch.family, arch.label, arch.profile) == ("wan-dit", label, variant)
    config = WAN_CONFIGS[variant]
    assert arch.details["dim"] == config["dim"] and arch.details["blocks"] == config["blocks"]
    assert arch.details["in_dim"] == config["in_dim"] and arch.details["out_dim"] == config["out_dim"]
    if not clip_image:
        assert info.parameters == estimate.WAN_PARAMETERS[variant]
    assert info.weight_bytes == info.parameters * 2
    assert info.largest_tensor.numel == estimate.WAN_LARGEST_TENSOR[variant]


def test_wan_gguf_with_orig_shape_metadata_is_detected(tmp_path, request):
    # ComfyUI-GGUF files keep 5D conv weights flattened and record the torch shape in the metadata.
    layout = wan_layout(**WAN_CONFIGS["wan22-ti2v-5b"])
    tensors, kv = [], {"general.file_type": 15}
    for name, shape in layout.items():
        kind = "Q4_K" if len(shape) == 2 and shape[1] % 256 == 0 else "F32"
        if name == "patch_embedding.weight":
            kv[f"comfy.gguf.orig_shape.{name}"] = list(shape)
            shape = (shape[0], math.prod(shape[1:]))
        tensors.append((name, shape, kind))
    path = deleted_after(request, tmp_path / "wan5b-Q4_K_M.gguf")
    sizes = write_gguf(path, tensors, kv=kv, sparse=True)
    info = inspect.inspect_model(path)
    assert info.architecture.variant == "wan22-ti2v-5b" and info.architecture.details["in_dim"] == 48
    assert info.parameters == estimate.WAN_PARAMETERS["wan22-ti2v-5b"]
    assert info.weight_bytes == sum(sizes.values())
    assert info.quant_label == "Q4_K_M"
    assert "WAN 2.2 TI2V 5B" in info.summary() and "dim 3072, 30 blocks" in info.summary()


def test_vae_lora_and_upscaler_are_told_apart(tmp_path):
    vae = tmp_path / "vae.safetensors"
    write_safetensors(vae, {"decoder.middle.0.residual.0.gamma": ("BF16", (384, 1, 1, 1)),
                            "decoder.upsamples.0.upsamples.0.residual.2.weight": ("BF16", (8, 8, 3, 3, 3))})
    assert inspect.inspect_model(vae).architecture.variant == "wan2.2-vae"
    lora = tmp_path / "lora.safetensors"
    write_safetensors(lora, {"diffusion_model.blocks.0.self_attn.q.lora_A.weight": ("BF16", (16, 64)),
                             "diffusion_model.blocks.0.self_attn.q.lora_B.weight": ("BF16", (64, 16))})
    assert inspect.inspect_model(lora).architecture.family == "lora"
    esrgan = tmp_path / "4x.safetensors"
    write_safetensors(esrgan, {"conv_first.weight": ("F16", (64, 3, 3, 3)), "conv_up1.weight": ("F16", (64, 64, 3, 3))})
    found = inspect.inspect_model(esrgan).architecture
    assert found.family == "upscaler" and found.details["max_channels"] == 64
    unknown = tmp_path / "other.safetensors"
    write_safetensors(unknown, {"x": ("F32", (4,))})
    assert inspect.inspect_model(unknown).architecture.family == "unknown"


def test_truncated_gguf_says_how_short_it_is(tmp_path):
    path = tmp_path / "cut.gguf"
    write_gguf(path, [("w", (64, 256), "Q8_0")])
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 1000)
    with pytest.raises(inspect.ModelFileError, match=r"short by \d+.*download it again"):
        inspect.inspect_model(path)


def test_truncated_safetensors_and_garbage_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "cut.safetensors"
    write_safetensors(path, {"w": ("F32", (256, 256))})
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 4)
    with pytest.raises(inspect.ModelFileError, match="damaged or truncated"):
        inspect.inspect_model(path)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.full(64, 0xFF, dtype=np.uint8).tobytes())
    with pytest.raises(inspect.ModelFileError, match="not a safetensors, GGUF or PyTorch zip"):
        inspect.inspect_model(junk)
    with pytest.raises(inspect.ModelFileError, match="not found"):
        inspect.inspect_model(tmp_path / "missing.gguf")
