"""The VRAM probe: one reading of the compute device, through ``nodes/comfy.py`` (ComfyUI's view of
free memory inside ComfyUI; torch or psutil standalone).

A reading is plain data (bytes), so the guard and the health route are tested with readings made up
in the test. Honest about devices without their own memory: on the CPU the figures are system RAM,
on Apple's MPS they are the unified memory the system shares with the GPU (ComfyUI reports system
RAM there too), and the note says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .. import comfy

MB = 1 << 20


@dataclass(frozen=True)
class VramReading:
    """Device memory at one moment, in bytes. ``cached``: held by models ComfyUI keeps loaded between
    prompts (it unloads them when it needs room); ``torch_allocated``/``torch_reserved``: what torch's
    allocator holds (None when not measurable: CPU, or torch not in use yet)."""

    device_type: str  # cuda | mps | xpu | cpu | ...
    device_index: int | None
    name: str
    total: int
    free: int
    cached: int = 0
    torch_allocated: int | None = None
    torch_reserved: int | None = None
    notes: tuple[str, ...] = ()
    loaded: tuple[comfy.LoadedModel, ...] = field(default=(), compare=False, repr=False)

    @property
    def used(self) -> int:
        return max(0, self.total - self.free)

    def to_json(self) -> dict[str, Any]:
        def mb(value: int | None) -> float | None:
            return None if value is None else round(value / MB, 1)

        return {"type": self.device_type, "index": self.device_index, "name": self.name,
                "total_mb": mb(self.total), "free_mb": mb(self.free), "used_mb": mb(self.used),
                "cached_models_mb": mb(self.cached), "torch_allocated_mb": mb(self.torch_allocated),
                "torch_reserved_mb": mb(self.torch_reserved), "notes": list(self.notes)}


def clean_device_name(raw: str, device: str) -> str:
    """ComfyUI names devices ``cuda:0 NVIDIA GeForce RTX 4070 : cudaMallocAsync``; keep the card's name."""
    name = raw.strip()
    if name.startswith(device):
        name = name[len(device):].strip()
    name = re.sub(r"\s*:\s*(cudaMallocAsync|native|[A-Za-z]*[Aa]lloc[A-Za-z]*)\s*$", "", name)
    return name or device


def _device_notes(kind: str) -> tuple[str, ...]:
    if kind == "cpu":
        return ("the compute device is the CPU: figures are system RAM",)
    if kind == "mps":
        return ("Apple MPS: the GPU shares unified memory with the system; free is the system's available RAM",)
    return ()


def read_vram(device: Any = None) -> VramReading:
    """Read the compute device now (default: the one ComfyUI uses). Raises if the device cannot be read;
    callers that must not fail (the health route) catch and report the reason."""
    memory = comfy.device_memory(device)
    kind, _, index = memory.device.partition(":")
    kind = kind or "cpu"
    torch_memory = comfy.torch_memory(device)
    loaded = tuple(comfy.loaded_models(device))
    return VramReading(
        device_type=kind,
        device_index=int(index) if index.isdigit() else (0 if kind in ("cuda", "xpu") else None),
        name=clean_device_name(memory.name, memory.device),
        total=int(memory.total),
        free=int(memory.free),
        cached=sum(model.loaded for model in loaded),
        torch_allocated=None if torch_memory is None else torch_memory.allocated,
        torch_reserved=None if torch_memory is None else torch_memory.reserved,
        notes=_device_notes(kind),
        loaded=loaded,
    )
