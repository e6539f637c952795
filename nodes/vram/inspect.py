"""Model files read from their headers only: exact weight bytes, parameter count, quant mix, architecture.

- safetensors: an 8-byte little-endian header length, then a JSON header with each tensor's dtype,
  shape and byte range. Two reads, whatever the file's size.
- GGUF: magic, version, counts, key/value metadata, then a table of tensors (name, dims in ggml order,
  type, offset). Tensor types and their block sizes come from the ``gguf`` package
  (``GGML_QUANT_SIZES``: Q4_K is 256 weights in 144 bytes, Q8_0 32 in 34, F16 1 in 2 ...). The header
  is read front to back through a reader that never reads ahead past the least the header still
  has to hold, so not one byte of tensor data is read. (``gguf.GGUFReader`` memory-maps the whole file
  and walks long arrays element by element in Python; we use its tables, not its reader.)
- PyTorch zip checkpoints (``.pth``/``.pt``/``.pkl`` written by ``torch.save``): the zip's central
  directory lists each tensor storage (``<archive>/data/<n>``) with its size; their sum is the
  weight bytes. Parameter count and dtypes need the pickle, so they stay unknown.

Sizes are bytes throughout. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .detect import UNKNOWN, Architecture, detect_architecture

SAFETENSORS_MAX_HEADER = 100 << 20  # the format's own limit (100 MB)
GGUF_MAGIC = b"GGUF"
GGUF_DEFAULT_ALIGNMENT = 32
READ_AHEAD = 1 << 20  # at most this much is buffered beyond what the parser asked for

# safetensors dtypes and their size in bits (sub-byte types are packed).
SAFETENSORS_DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F6_E2M3": 6, "F6_E3M2": 6, "F4": 4,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64,
    "I64": 64, "U64": 64,
}


class ModelFileError(ValueError):
    """A model file that cannot be inspected; the message names the file, what is wrong and what to do."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it. ``shape`` in torch order; ``nbytes`` its data size."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype (``BF16``) or GGML type (``Q4_K``)
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ModelFileInfo:
    """What a model file's header says. Byte counts are exact; ``parameters`` is 0 when unknown (zip)."""

    path: str
    format: str  # safetensors | gguf | torch-zip
    file_bytes: int
    data_offset: int  # where tensor data begins (the header's size, alignment included)
    bytes_read: int  # bytes inspection read from the file
    tensors: tuple[TensorEntry, ...]
    architecture: Architecture = UNKNOWN
    metadata: Mapping[str, Any] = field(default_factory=dict)
    file_type: str | None = None  # the quant the GGUF says it is (``Q4_K_M``), if it says
    weight_bytes_override: int | None = None  # zip checkpoints: storages, not tensors

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def weight_bytes(self) -> int:
        """Sum of the tensors' data sizes in bytes (padding between tensors not counted)."""
        if self.weight_bytes_override is not None:
            return self.weight_bytes_override
        return sum(tensor.nbytes for tensor in self.tensors)

    @property
    def parameters(self) -> int:
        return sum(tensor.numel for tensor in self.tensors)

    @property
    def largest_tensor(self) -> TensorEntry | None:
        return max(self.tensors, key=lambda tensor: tensor.numel, default=None)

    @property
    def quant_mix(self) -> dict[str, int]:
        """Bytes per tensor type, largest first: ``{"Q4_K": 7.1e9, "Q6_K": 1.9e9, "F32": 3e6}``."""
        mix: dict[str, int] = {}
        for tensor in self.tensors:
            mix[tensor.dtype] = mix.get(tensor.dtype, 0) + tensor.nbytes
        return dict(sorted(mix.items(), key=lambda item: -item[1]))

    @property
    def quant_label(self) -> str:
        """The file's quant: the GGUF's own file type if given, else the type holding most bytes."""
        if self.file_type:
            return self.file_type
        mix = self.quant_mix
        return next(iter(mix)) if mix else "unknown"

    @property
    def bits_per_weight(self) -> float | None:
        return self.weight_bytes * 8 / self.parameters if self.parameters else None

    def to_json(self) -> dict[str, Any]:
        largest = self.largest_tensor
        return {
            "path": self.path, "name": self.name, "format": self.format, "file_bytes": self.file_bytes,
            "data_offset": self.data_offset, "bytes_read": self.bytes_read, "weight_bytes": self.weight_bytes,
            "parameters": self.parameters, "tensor_count": len(self.tensors), "quant": self.quant_label,
            "quant_mix_bytes": self.quant_mix, "bits_per_weight": self.bits_per_weight,
            "largest_tensor": None if largest is None else {"name": largest.name, "shape": list(largest.shape),
                                                            "dtype": largest.dtype, "nbytes": largest.nbytes},
            "architecture": self.architecture.to_json(),
        }

    def summary(self) -> str:
        """A few lines for the UI."""
        lines = [f"{self.name}: {self.architecture.label}",
                 f"weights {format_bytes(self.weight_bytes)} in {len(self.tensors)} tensors"
                 + (f", {self.parameters / 1e9:.3f} B parameters" if self.parameters else "")
                 + (f", {self.bits_per_weight:.2f} bits/weight" if self.bits_per_weight else "")]
        if self.tensors:
            total = max(self.weight_bytes, 1)
            mix = ", ".join(f"{kind} {100 * size / total:.1f}%" for kind, size in self.quant_mix.items())
            lines.append(f"quant {self.quant_label}: {mix}")
        details = self.architecture.details
        if self.architecture.family == "wan-dit":
            lines.append(f"dim {details['dim']}, {details['blocks']} blocks, {details['heads']} heads, "
                         f"ffn {details['ffn_dim']}, in {details['in_dim']} / out {details['out_dim']} channels")
        part = "zip directory" if self.format == "torch-zip" else f"header of {format_bytes(self.data_offset)}"
        lines.append(f"{part} read ({self.bytes_read} bytes) of a {format_bytes(self.file_bytes)} {self.format} file")
        return "\n".join(lines)


def format_bytes(value: float) -> str:
    """``9.31 GiB`` / ``254.0 MiB`` / ``512 B`` (binary units, as ComfyUI logs them)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= size:
            return f"{value / size:.2f} {unit}" if unit == "GiB" else f"{value / size:.1f} {unit}"
    return f"{int(value)} B"


# --------------------------------------------------------------------------- reading


class HeaderReader:
    """Reads a header front to back from a binary stream (``seek``/``read``), counting bytes read.

    Read-ahead never goes past :attr:`floor`, the least offset the header is known to reach, so the
    reader cannot touch the data that follows the header. Parsers raise the floor as they learn more.
    """

    def __init__(self, stream: IO[bytes], size: int, path: str = ""):
        self.stream = stream
        self.size = size
        self.path = path
        self.pos = 0
        self.floor = 0
        self.tail = 0  # bytes the header holds at least after the item being parsed (parsers set it)
        self.bytes_read = 0
        self._buffer = b""
        self._buffer_start = 0

    def at_least(self, end: int) -> None:
        """The header reaches at least offset ``end``."""
        self.floor = max(self.floor, min(end, self.size))

    def read(self, count: int) -> bytes:
        if count < 0 or self.pos + count > self.size:
            raise ModelFileError(f"{self.path}: the header runs past the end of the file at byte {self.pos} "
                                 f"(needs {count} more, the file has {self.size}); the file is truncated or "
                                 "not a model file: download it again")
        offset = self.pos - self._buffer_start
        if offset < 0 or offset + count > len(self._buffer):
            # Keep the unread tail of the buffer and read on from its end: no byte is read twice.
            kept = self._buffer[offset:] if 0 <= offset <= len(self._buffer) else b""
            start = self.pos + len(kept)
            end = max(self.pos + count, min(self.pos + READ_AHEAD, self.floor))
            self.stream.seek(start)
            data = self.stream.read(end - start)
            self.bytes_read += len(data)
            if len(kept) + len(data) < count:
                raise ModelFileError(f"{self.path}: short read at byte {self.pos}; the file changed while read")
            self._buffer, self._buffer_start, offset = kept + data, self.pos, 0
        self.pos += count
        return self._buffer[offset:offset + count]

    def skip(self, count: int) -> None:
        """Move past ``count`` bytes without reading them (if they are not buffered already)."""
        if self.pos + count > self.size:
            self.read(count)  # raises the truncation error
        self.pos += count

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))


def _tensors_to_info(path: str, fmt: str, file_bytes: int, data_offset: int, reader_bytes: int,
                     tensors: list[TensorEntry], **extra: Any) -> ModelFileInfo:
    architecture = detect_architecture({tensor.name: tensor.shape for tensor in tensors})
    return ModelFileInfo(path=path, format=fmt, file_bytes=file_bytes, data_offset=data_offset,
                         bytes_read=reader_bytes, tensors=tuple(tensors), architecture=architecture, **extra)


def read_safetensors_header(stream: IO[bytes], size: int, path: str = "") -> ModelFileInfo:
    """Inspect a safetensors file from ``stream`` (``size`` bytes long): two reads, the header only."""
    reader = HeaderReader(stream, size, path)
    reader.at_least(8)
    if size < 8:
        raise ModelFileError(f"{path}: {size} bytes is too short for a safetensors file")
    (length,) = reader.unpack("<Q")
    if length > SAFETENSORS_MAX_HEADER or 8 + length > size:
        raise ModelFileError(f"{path}: not a safetensors file (header length {length} bytes, file {size} bytes); "
                             "use a .safetensors or .gguf model file")
    reader.at_least(8 + length)
    try:
        header = json.loads(reader.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the safetensors header is not valid JSON ({exc}); download the file again") \
            from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_bytes = size - 8 - length
    tensors = []
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{path}: tensor '{name}' has no dtype/shape/data_offsets in the header") from None
        bits = SAFETENSORS_DTYPE_BITS.get(dtype)
        if bits is None:
            raise ModelFileError(f"{path}: tensor '{name}' has unknown dtype {dtype}; update the pack "
                                 f"(known: {', '.join(SAFETENSORS_DTYPE_BITS)})")
        expected = (math.prod(shape) * bits + 7) // 8
        if end - begin != expected or begin < 0 or end > data_bytes:
            raise ModelFileError(f"{path}: tensor '{name}' ({dtype} {list(shape)}) should take {expected} bytes but "
                                 f"spans {begin}..{end} of {data_bytes} data bytes; the file is damaged or truncated")
        tensors.append(TensorEntry(name, shape, dtype, end - begin))
    tensors.sort(key=lambda tensor: tensor.name)
    return _tensors_to_info(path, "safetensors", size, 8 + length, reader.bytes_read, tensors,
                            metadata=dict(metadata))


# GGUF value types (gguf.GGUFValueType): id -> struct format of a scalar; 8 is STRING, 9 is ARRAY.
_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_KEEP_STRING = 1024  # strings longer than this are summarised, not kept
_KEEP_ARRAY = 64  # numeric arrays up to this length are kept (comfy.gguf.orig_shape.*), longer skipped
_MIN_KV = 8 + 4 + 1  # key length + value type + the smallest value
_MIN_TENSOR_INFO = 8 + 4 + 8 + 4 + 8  # name length + n_dims + one dim + type + offset


def _gguf_string(reader: HeaderReader, keep: bool = True) -> str | None:
    (length,) = reader.unpack("<Q")
    if keep and length <= _KEEP_STRING:
        return reader.read(length).decode("utf-8", errors="replace")
    reader.skip(length)
    return None if not keep else f"<string of {length} bytes>"


def _gguf_value(reader: HeaderReader, kind: int) -> Any:
    if kind in _GGUF_SCALARS:
        return reader.unpack(_GGUF_SCALARS[kind])[0]
    if kind == _GGUF_STRING:
        return _gguf_string(reader)
    if kind == _GGUF_ARRAY:
        item_kind, count = reader.unpack("<IQ")
        if item_kind in _GGUF_SCALARS:
            width = struct.calcsize(_GGUF_SCALARS[item_kind])
            if count <= _KEEP_ARRAY:
                return list(struct.unpack(f"<{count}{_GGUF_SCALARS[item_kind][1]}", reader.read(width * count)))
            reader.skip(width * count)
            return f"<array of {count}>"
        if item_kind == _GGUF_STRING:
            for index in range(count):
                # every string left has at least its 8-byte length, and the header goes on after the array
                reader.at_least(reader.pos + 8 * (count - index) + reader.tail)
                _gguf_string(reader, keep=False)
            return f"<array of {count} strings>"
        return [_gguf_value(reader, item_kind) for _ in range(count)]
    raise ModelFileError(f"{reader.path}: unknown GGUF value type {kind} at byte {reader.pos}; update gguf "
                         "(pip install -U gguf) or re-convert the file")


def _ggml_types() -> tuple[dict[int, str], dict[int, tuple[int, int]]]:
    """GGML tensor type id -> name, and id -> (weights per block, bytes per block), from the gguf package."""
    try:
        import gguf
    except ImportError as exc:
        raise ModelFileError(f"reading GGUF files needs the 'gguf' package ({exc}); install it with: "
                             "pip install -r requirements.txt") from None
    names = {int(kind): kind.name for kind in gguf.GGMLQuantizationType}
    sizes = {int(kind): (int(block), int(size)) for kind, (block, size) in gguf.GGML_QUANT_SIZES.items()}
    return names, sizes


def _gguf_file_type(value: Any) -> str | None:
    """``general.file_type`` (llama.cpp's LlamaFileType number) as a quant label: 15 -> ``Q4_K_M``."""
    if not isinstance(value, int):
        return None
    try:
        import gguf

        name = gguf.LlamaFileType(value).name
    except (ImportError, ValueError):
        return None
    return None if name == "GUESSED" else name.removeprefix("MOSTLY_")


def read_gguf_header(stream: IO[bytes], size: int, path: str = "") -> ModelFileInfo:
    """Inspect a GGUF file from ``stream`` (``size`` bytes long) without reading any tensor data."""
    type_names, type_sizes = _ggml_types()
    reader = HeaderReader(stream, size, path)
    reader.at_least(24)
    magic = reader.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path}: not a GGUF file (starts with {magic!r})")
    version, tensor_count, kv_count = reader.unpack("<IQQ")
    if version not in (2, 3):
        hint = "big-endian GGUF files are not supported" if version > 0xFFFF else "re-convert it with a current gguf"
        raise ModelFileError(f"{path}: GGUF version {version} is not supported (2 and 3 are); {hint}")
    if tensor_count * _MIN_TENSOR_INFO + kv_count * _MIN_KV > size:
        raise ModelFileError(f"{path}: the header claims {tensor_count} tensors and {kv_count} keys, more than the "
                             f"file's {size} bytes can hold; the file is damaged")
    metadata: dict[str, Any] = {}
    for index in range(kv_count):
        reader.tail = (kv_count - index - 1) * _MIN_KV + tensor_count * _MIN_TENSOR_INFO
        reader.at_least(reader.pos + _MIN_KV + reader.tail)
        key = _gguf_string(reader)
        (kind,) = reader.unpack("<I")
        metadata[str(key)] = _gguf_value(reader, kind)
    raw = []
    for index in range(tensor_count):
        reader.at_least(reader.pos + (tensor_count - index) * _MIN_TENSOR_INFO)
        (name_length,) = reader.unpack("<Q")
        name = reader.read(name_length).decode("utf-8", errors="replace")
        (n_dims,) = reader.unpack("<I")
        reader.at_least(reader.pos + 8 * n_dims + 12)
        dims = reader.unpack(f"<{n_dims}Q") if n_dims else ()
        kind, offset = reader.unpack("<IQ")
        raw.append((name, dims, kind, offset))
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ModelFileError(f"{path}: general.alignment = {alignment!r} is not a power of two")
    data_offset = -(-reader.pos // alignment) * alignment
    data_bytes = size - data_offset
    tensors = []
    for name, dims, kind, offset in raw:
        if kind not in type_sizes:
            raise ModelFileError(f"{path}: tensor '{name}' has GGML type {kind}, unknown to gguf "
                                 f"{_gguf_version()}; update it: pip install -U gguf")
        block, block_bytes = type_sizes[kind]
        count = math.prod(dims)
        if count % block:
            raise ModelFileError(f"{path}: tensor '{name}' has {count} weights, not a multiple of "
                                 f"{type_names[kind]}'s block of {block}; the file is damaged")
        nbytes = count // block * block_bytes
        if offset + nbytes > data_bytes:
            raise ModelFileError(f"{path}: tensor '{name}' ends at data byte {offset + nbytes}, but the file holds "
                                 f"{data_bytes} data bytes (short by {offset + nbytes - data_bytes}); the download "
                                 "is incomplete: download it again")
        orig = metadata.get(f"comfy.gguf.orig_shape.{name}")
        shape = tuple(int(d) for d in orig) if isinstance(orig, list) and math.prod(orig) == count \
            else tuple(int(d) for d in reversed(dims))
        tensors.append(TensorEntry(name, shape, type_names[kind], nbytes))
    tensors.sort(key=lambda tensor: tensor.name)
    return _tensors_to_info(path, "gguf", size, data_offset, reader.bytes_read, tensors, metadata=metadata,
                            file_type=_gguf_file_type(metadata.get("general.file_type")))


def _gguf_version() -> str:
    try:
        from importlib.metadata import version

        return version("gguf")
    except Exception:
        return "(unknown version)"


class _CountingStream:
    """Wraps a binary stream and counts bytes read (zipfile reads the central directory itself)."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self.bytes_read = 0

    def read(self, count: int = -1) -> bytes:
        data = self._stream.read(count)
        self.bytes_read += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def read_torch_zip(stream: IO[bytes], size: int, path: str = "") -> ModelFileInfo:
    """Inspect a ``torch.save`` zip checkpoint: weight bytes = the sizes of its tensor storages."""
    counting = _CountingStream(stream)
    try:
        with zipfile.ZipFile(counting) as archive:  # type: ignore[arg-type]
            entries = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path}: not a readable zip checkpoint ({exc}); convert it to safetensors") from None
    storages = [entry for entry in entries if "/data/" in entry.filename and not entry.filename.endswith("/")]
    if not storages:
        raise ModelFileError(f"{path}: a zip without torch storages (no <archive>/data/ entries); not a "
                             "PyTorch checkpoint")
    weights = sum(entry.file_size for entry in storages)
    first = min((entry.header_offset for entry in storages), default=0)
    return ModelFileInfo(path=path, format="torch-zip", file_bytes=size, data_offset=first,
                         bytes_read=counting.bytes_read, tensors=(), weight_bytes_override=weights)


def inspect_stream(stream: IO[bytes], size: int, path: str = "") -> ModelFileInfo:
    """Inspect a model file from an open binary stream, telling the format by its first bytes."""
    stream.seek(0)
    head = stream.read(8)
    stream.seek(0)
    if head[:4] == GGUF_MAGIC:
        info = read_gguf_header(stream, size, path)
    elif head[:2] == b"PK":
        info = read_torch_zip(stream, size, path)
    elif len(head) == 8 and struct.unpack("<Q", head)[0] <= SAFETENSORS_MAX_HEADER:
        info = read_safetensors_header(stream, size, path)
    else:
        raise ModelFileError(f"{path}: not a safetensors, GGUF or PyTorch zip file; legacy pickle checkpoints "
                             "cannot be sized without loading them: convert the file to safetensors, or give the "
                             "guard an estimate in GB")
    return replace(info, bytes_read=info.bytes_read + len(head))  # the format sniff counts too


def inspect_model(path: str | os.PathLike[str]) -> ModelFileInfo:
    """Inspect the model file at ``path`` from its header (unbuffered reads: what is counted is what is read)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb", buffering=0) as stream:
            return inspect_stream(stream, size, path)
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a folder, not a model file") from None
