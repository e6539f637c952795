"""Model files for the VRAM tests, written here (no weights can be downloaded), and the helpers that
write them: safetensors and GGUF files with real data, and *sparse* ones (the header written, the
data region made by extending the file: gigabytes that cost no disk and no time).

Other ``test_vram_*`` modules import the helpers from here.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

SAFETENSORS_BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "I64": 8, "U8": 1}


# --------------------------------------------------------------------------- writers


def write_safetensors(path: Path, tensors: Mapping[str, tuple[str, Sequence[int]]], *, sparse: bool = False,
                      metadata: Mapping[str, str] | None = None, seed: int = 0) -> int:
    """Write a safetensors file of ``{name: (dtype, shape)}``; returns the data bytes (sum of tensor sizes).

    ``sparse``: write only the header and extend the file to its full size (no data written or stored).
    """
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * SAFETENSORS_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the format pads the header to 8 bytes
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        if sparse:
            handle.truncate(8 + len(encoded) + offset)
        else:
            handle.write(np.random.default_rng(seed).integers(0, 256, offset, dtype=np.uint8).tobytes())
    return offset


def write_gguf(path: Path, tensors: Iterable[tuple[str, Sequence[int], str]], *, sparse: bool = False,
               kv: Mapping[str, object] | None = None, arch: str = "wan", seed: int = 0) -> dict[str, int]:
    """Write a GGUF file with the ``gguf`` package: ``(name, torch shape, type)`` each, type a GGML type
    name (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K...). Returns ``{name: data bytes}`` as written.

    Types the package can quantise get real quantised data; K-quants (it cannot quantise them) get
    random blocks of the exact size. ``sparse``: header and tensor table only, then the file is
    extended to where the data would end.
    """
    import gguf

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in (kv or {}).items():
        if isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_uint32(key, int(value))
    sizes = {}
    for name, shape, kind in tensors:
        qtype = gguf.GGMLQuantizationType[kind]
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = math.prod(shape) // block * type_size
        sizes[name] = nbytes
        if sparse:
            writer.add_tensor_info(name, list(shape), np.dtype(np.float32), nbytes, raw_dtype=qtype)
            continue
        if kind == "F32":
            writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
        elif kind == "F16":
            writer.add_tensor(name, rng.standard_normal(shape).astype(np.float16))
        else:
            data = rng.standard_normal(shape).astype(np.float32)
            try:
                raw = gguf.quants.quantize(data, qtype)
            except NotImplementedError:  # K-quants: the package reads them but cannot make them
                raw = rng.integers(0, 256, gguf.quants.quant_shape_to_byte_shape(tuple(shape), qtype), dtype=np.uint8)
            writer.add_tensor(name, raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    if sparse:
        writer.write_ti_data_to_file()
        writer.close()
        header_end = os.path.getsize(path)
        data_start = -(-header_end // 32) * 32
        total = sum(-(-size // 32) * 32 for size in sizes.values())
        with open(path, "r+b") as handle:
            handle.truncate(data_start + total)
    else:
        writer.write_tensors_to_file()
        writer.close()
    return sizes


def wan_layout(dim: int, blocks: int, ffn: int, in_dim: int, out_dim: int, *, clip_image: bool = False,
               text_dim: int = 4096, freq_dim: int = 256) -> dict[str, tuple[int, ...]]:
    """The WAN diffusion model's key layout ``{name: shape}`` (ComfyUI's WanModel state dict)."""
    layout: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (dim, in_dim, 1, 2, 2), "patch_embedding.bias": (dim,),
        "text_embedding.0.weight": (dim, text_dim), "text_embedding.0.bias": (dim,),
        "text_embedding.2.weight": (dim, dim), "text_embedding.2.bias": (dim,),
        "time_embedding.0.weight": (dim, freq_dim), "time_embedding.0.bias": (dim,),
        "time_embedding.2.weight": (dim, dim), "time_embedding.2.bias": (dim,),
        "time_projection.1.weight": (dim * 6, dim), "time_projection.1.bias": (dim * 6,),
        "head.modulation": (1, 2, dim), "head.head.weight": (out_dim * 4, dim), "head.head.bias": (out_dim * 4,),
    }
    if clip_image:
        layout.update({"img_emb.proj.0.weight": (1280,), "img_emb.proj.0.bias": (1280,),
                       "img_emb.proj.1.weight": (1280, 1280), "img_emb.proj.1.bias": (1280,),
                       "img_emb.proj.3.weight": (dim, 1280), "img_emb.proj.3.bias": (dim,),
                       "img_emb.proj.4.weight": (dim,), "img_emb.proj.4.bias": (dim,)})
    for i in range(blocks):
        block = f"blocks.{i}."
        layout[block + "modulation"] = (1, 6, dim)
        for attention in ("self_attn", "cross_attn"):
            for proj in ("q", "k", "v", "o"):
                layout[f"{block}{attention}.{proj}.weight"] = (dim, dim)
                layout[f"{block}{attention}.{proj}.bias"] = (dim,)
            layout[f"{block}{attention}.norm_q.weight"] = (dim,)
            layout[f"{block}{attention}.norm_k.weight"] = (dim,)
        if clip_image:
            for proj in ("k_img", "v_img"):
                layout[f"{block}cross_attn.{proj}.weight"] = (dim, dim)
                layout[f"{block}cross_attn.{proj}.bias"] = (dim,)
            layout[f"{block}cross_attn.norm_k_img.weight"] = (dim,)
        layout[block + "norm3.weight"] = (dim,)
        layout[block + "norm3.bias"] = (dim,)
        layout[block + "ffn.0.weight"] = (ffn, dim)
        layout[block + "ffn.0.bias"] = (ffn,)
        layout[block + "ffn.2.weight"] = (dim, ffn)
        layout[block + "ffn.2.bias"] = (dim,)
    return layout


# The Wan team's configs (dim, blocks, ffn, in_dim, out_dim); see nodes/vram/detect.py.
WAN_CONFIGS = {
    "wan22-ti2v-5b": dict(dim=3072, blocks=30, ffn=14336, in_dim=48, out_dim=48),
    "wan22-i2v-14b": dict(dim=5120, blocks=40, ffn=13824, in_dim=36, out_dim=16),
    "wan22-t2v-14b": dict(dim=5120, blocks=40, ffn=13824, in_dim=16, out_dim=16),
}


class RecordingFile:
    """A binary file wrapper that records every read as (offset, bytes): what inspection really read."""

    def __init__(self, handle):
        self._handle = handle
        self.reads: list[tuple[int, int]] = []

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def read(self, count: int = -1) -> bytes:
        start = self._handle.tell()
        data = self._handle.read(count)
        self.reads.append((start, len(data)))
        return data

    @property
    def bytes_read(self) -> int:
        return sum(length for _start, length in self.reads)

    @property
    def furthest(self) -> int:
        """One past the last byte read."""
        return max((start + length for start, length in self.reads), default=0)


def disk_usage(path: Path) -> int:
    """Bytes the file really occupies on disk (allocated blocks)."""
    return os.stat(path).st_blocks * 512


def deleted_after(request: pytest.FixtureRequest, path: Path) -> Path:
    """``path``, deleted when the test ends (sparse files look huge to tools that sum file sizes)."""
    request.addfinalizer(lambda: path.unlink(missing_ok=True))
    return path


# --------------------------------------------------------------------------- the helpers' own tests


def test_sparse_safetensors_is_2_gib_long_and_costs_no_disk(tmp_path, request):
    path = deleted_after(request, tmp_path / "big.safetensors")
    data = write_safetensors(path, {"a": ("BF16", (32768, 32768))}, sparse=True)
    assert data == 2 << 30
    assert path.stat().st_size > 2 << 30
    assert disk_usage(path) < 1 << 20


def test_wan_layout_has_comfyuis_key_count():
    # ComfyUI's WanModel state dict has 825 keys for 30-block models and 1095 for 40 blocks (1303 with
    # WAN 2.1's CLIP image projection), counted on the meta device.
    assert len(wan_layout(**WAN_CONFIGS["wan22-ti2v-5b"])) == 825
    assert len(wan_layout(**WAN_CONFIGS["wan22-i2v-14b"])) == 1095
    assert len(wan_layout(**WAN_CONFIGS["wan22-i2v-14b"], clip_image=True)) == 1303
