"""Read RIFE checkpoints in every layout users have; detect the architecture from keys and shapes.

Three spellings of the same weights exist (see docs/interpolate.md):

- ``practical-rife``: Practical-RIFE's ``flownet.pkl``, keys prefixed ``module.``; 4.25/4.26 files
  also carry training-only ``module.teacher.*`` and ``module.caltime.*`` (dropped here).
- ``frame-interpolation``: ComfyUI-Frame-Interpolation's ``rife47.pth`` ... ``rife426.pth``, no prefix.
- ``comfy-core``: core ComfyUI's ``models/frame_interpolation/*.safetensors``, ``blockN.`` written
  ``blocks.N.``.

Detection never looks at the file name: the state dict is normalised to the ``blockN.`` spelling and
compared, key by key and shape by shape, with each architecture of :data:`ifnet.VERSIONS`. Only an
exact match loads, so a file can never run on partly random weights.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from . import ifnet

LAYOUTS = ("practical-rife", "frame-interpolation", "comfy-core")
TRAINING_ONLY = ("teacher.", "caltime.")
PICKLE_EXTENSIONS = (".pkl", ".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_EXTENSIONS = (".safetensors", ".sft")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

_CORE_BLOCK = re.compile(r"^blocks\.(\d+)\.")
_OUR_BLOCK = re.compile(r"^block(\d+)\.")


class CheckpointError(ValueError):
    """A file that is not a RIFE checkpoint we can load; the message says what was expected."""


@dataclass
class RIFEModel:
    """The GEMDIRECT_RIFE value: a loaded IFNet and what is known about it."""

    net: ifnet.IFNet
    arch: str  # key of ifnet.VERSIONS, e.g. "4.25"
    layout: str  # one of LAYOUTS: how the file spelled its keys
    path: str
    dtype: torch.dtype
    dropped_keys: int  # training-only tensors skipped (teacher/caltime)

    @property
    def spec(self) -> ifnet.IFNetSpec:
        return self.net.spec

    @property
    def method(self) -> str:
        """Telemetry's InterpolationMethod: ``rife-<arch>`` (4.25 also stands for 4.26: same network)."""
        return f"rife-{self.arch}"

    def describe(self) -> str:
        releases = "/".join(self.spec.releases)
        return (f"RIFE {self.arch} (releases {releases}) from {os.path.basename(self.path)} "
                f"[{self.layout} layout, {str(self.dtype).replace('torch.', '')}]")


# --------------------------------------------------------------------------- reading files


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file on the CPU. Pickles load with ``weights_only=True`` (no code runs)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in SAFETENSORS_EXTENSIONS:
        from safetensors.torch import load_file

        try:
            return load_file(path, device="cpu")
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); download it again") from exc
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} could not be read as a weights-only PyTorch checkpoint ({type(exc).__name__}: {exc}); "
            "it is damaged or holds code, not just tensors. Use a .safetensors copy or download it again") from exc
    # Some trainers wrap the tensors in {"state_dict": ...} or {"model": ...}.
    while isinstance(data, Mapping) and len(data) <= 4:
        inner = next((data[k] for k in ("state_dict", "model", "params", "flownet") if k in data), None)
        if not isinstance(inner, Mapping):
            break
        data = inner
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path} holds a {type(data).__name__}, not a dict of tensors: not a RIFE checkpoint")
    return {str(k): v for k, v in data.items() if torch.is_tensor(v)}


def normalise_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, int]:
    """``(tensors in the blockN. spelling, the layout they came in, training-only tensors dropped)``."""
    prefixed = sum(k.startswith("module.") for k in state)
    layout = "practical-rife" if prefixed and prefixed == len(state) else "frame-interpolation"
    out: dict[str, torch.Tensor] = {}
    dropped = 0
    for key, value in state.items():
        for prefix in ("module.", "flownet."):  # flownet.: a whole RIFE model's state dict saved
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.startswith(TRAINING_ONLY):
            dropped += 1
            continue
        core = _CORE_BLOCK.match(key)
        if core:
            key = f"block{core.group(1)}." + key[core.end():]
            layout = "comfy-core"
        out[key] = value
    return out, layout, dropped


def to_layout(state: Mapping[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Tensors in the ``blockN.`` spelling re-spelled for ``layout`` (one of :data:`LAYOUTS`)."""
    if layout == "practical-rife":
        return {f"module.{k}": v for k, v in state.items()}
    if layout == "frame-interpolation":
        return dict(state)
    if layout == "comfy-core":
        return {_OUR_BLOCK.sub(lambda m: f"blocks.{m.group(1)}.", k): v for k, v in state.items()}
    raise ValueError(f"unknown layout '{layout}'; use one of {', '.join(LAYOUTS)}")


def save_checkpoint(state: Mapping[str, torch.Tensor], path: str, layout: str) -> None:
    """Write RIFE weights (any spelling) to ``path`` in ``layout``: safetensors or a torch pickle by extension."""
    normal, _, _ = normalise_keys(state)
    tensors = {k: v.detach().contiguous().cpu() for k, v in to_layout(normal, layout).items()}
    if os.path.splitext(path)[1].lower() in SAFETENSORS_EXTENSIONS:
        from safetensors.torch import save_file

        save_file(tensors, path)
    else:
        torch.save(tensors, path)


# --------------------------------------------------------------------------- detection


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Every key and shape the architecture's state dict has (built on the meta device: no memory)."""
    with torch.device("meta"):
        net = ifnet.build(arch)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


_EXPECTED: dict[str, dict[str, tuple[int, ...]]] = {}


def _expected(arch: str) -> dict[str, tuple[int, ...]]:
    if arch not in _EXPECTED:
        _EXPECTED[arch] = expected_shapes(arch)
    return _EXPECTED[arch]


def _mismatch(state: Mapping[str, torch.Tensor], arch: str) -> tuple[list[str], list[str], list[str]]:
    expected = _expected(arch)
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(f"{k} is {tuple(state[k].shape)}, expected {shape}"
                   for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape)
    return missing, unexpected, wrong


def detect_arch(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> str:
    """The architecture whose every key and shape the (normalised) state dict has exactly.

    CheckpointError otherwise, naming the closest architecture, what differs, and the keys expected.
    """
    scores = []
    for arch in ifnet.VERSIONS:
        missing, unexpected, wrong = _mismatch(state, arch)
        if not (missing or unexpected or wrong):
            return arch
        scores.append((len(missing) + len(unexpected) + len(wrong), arch, missing, unexpected, wrong))
    _, arch, missing, unexpected, wrong = min(scores)

    def listing(items: list[str], limit: int = 8) -> str:
        more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    lines = [f"{source} is not a RIFE IFNet checkpoint this pack can load "
             f"(supported releases: {ifnet.supported_releases()})."]
    if not any(k.startswith("block0.") for k in state):
        lines.append(f"It has no block0.* keys; its first keys are: {listing(sorted(state), 6)}.")
    lines.append(f"Closest is RIFE {arch}, but:")
    if missing:
        lines.append(f"  missing {len(missing)} keys: {listing(missing)}")
    if wrong:
        lines.append(f"  wrong shapes: {listing(wrong, 4)}")
    if unexpected:
        lines.append(f"  unexpected {len(unexpected)} keys: {listing(unexpected)}")
    expected = _expected(arch)
    lines.append(f"A RIFE {arch} file has {len(expected)} tensors, e.g. {listing(sorted(expected), 6)} "
                 "(prefixed 'module.' in Practical-RIFE's flownet.pkl, 'blocks.N.' in ComfyUI's safetensors).")
    lines.append("Use rife47.pth/rife49.pth, rife417.pth, rife426.pth, a Practical-RIFE flownet.pkl "
                 "of a release above, or one of ComfyUI's rife_v4.25*/rife_v4.26* safetensors.")
    raise CheckpointError("\n".join(lines))


def auto_dtype(device: torch.device | str | None) -> torch.dtype:
    """``auto``: fp16 on CUDA/MPS/XPU; on the CPU bf16 when it computes bf16 natively (AVX512-BF16 or
    AMX, the upscale room's test), else fp32 (fp16 convolutions are slow on CPUs)."""
    from ..upscale.model import cpu_has_bf16

    kind = getattr(device, "type", str(device or "cpu").split(":")[0])
    if kind in ("cuda", "mps", "xpu"):
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16() else torch.float32


def load_rife(path: str, dtype: str | torch.dtype = "fp32", device: torch.device | str | None = None) -> RIFEModel:
    """Load the RIFE checkpoint at ``path`` in eval mode, every expected tensor present.

    ``dtype``: "auto" | "fp32" | "fp16" | "bf16" (or a torch dtype). ``device`` defaults to the CPU.
    """
    if dtype == "auto":
        dtype = auto_dtype(device)
    torch_dtype = DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    raw = read_state_dict(path)
    state, layout, dropped = normalise_keys(raw)
    arch = detect_arch(state, os.path.basename(path))
    net = ifnet.build(arch)
    result = net.load_state_dict(state, strict=True)  # strict: detect_arch proved every key matches
    if result.missing_keys or result.unexpected_keys:  # pragma: no cover - strict raises first
        raise CheckpointError(f"{path}: keys did not load: {result}")
    net = net.to(device=device or "cpu", dtype=torch_dtype, memory_format=torch.channels_last)
    net = net.eval().requires_grad_(False)  # channels-last weights: measured faster on this CPU (benchmark)
    return RIFEModel(net=net, arch=arch, layout=layout, path=os.path.abspath(path), dtype=torch_dtype,
                     dropped_keys=dropped)
