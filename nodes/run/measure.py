"""Time and memory of one stage (sampling a scene, interpolating, upscaling), logged as events.

``measure_stage`` reads device memory before and after (through ``nodes/comfy.py``: ComfyUI's
numbers inside ComfyUI, CUDA or system RAM standalone), system RAM, and the CUDA peak when torch is
already in use. It writes ``stage_start``/``stage_end`` events and hands back a
:class:`StageMeasurement` whose ``gpu_telemetry()``/``system_telemetry()`` are the scene's blocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .. import comfy
from . import events
from .records import MB, gpu_telemetry, system_telemetry

log = logging.getLogger("gemdirect")


@dataclass(frozen=True)
class MemorySnapshot:
    """Device and system memory at one moment. Device figures in bytes, RAM in MB (2**20 bytes)."""

    device_type: str
    device_name: str
    device_index: int | None
    vram_total: int
    vram_free: int
    ram_used_mb: float | None

    @property
    def vram_used_mb(self) -> float:
        return round((self.vram_total - self.vram_free) / MB, 2)


def _ram_used_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    vm = psutil.virtual_memory()
    return round((vm.total - vm.available) / MB, 2)


def memory_snapshot(device: Any = None) -> MemorySnapshot:
    """Free/total memory of ``device`` (default: the device heavy work runs on) and RAM in use.

    A device that cannot be read gives zeros and the name ``unknown`` rather than failing a render.
    """
    try:
        memory = comfy.device_memory(device)
        kind, _, index = memory.device.partition(":")
        return MemorySnapshot(kind or "cpu", memory.name, int(index) if index.isdigit() else None,
                              int(memory.total), int(memory.free), _ram_used_mb())
    except Exception as exc:  # telemetry must never stop a render
        log.debug("gemDirect: device memory unreadable: %s", exc)
        return MemorySnapshot("unknown", "unknown", None, 0, 0, _ram_used_mb())


def _cuda_peak_reset(snapshot: MemorySnapshot) -> int | None:
    """Reset torch's CUDA peak counter; returns the reserved bytes now (None if not measurable)."""
    torch = sys.modules.get("torch")  # only measure what is already in use; never import torch for it
    if torch is None or snapshot.device_type != "cuda" or not torch.cuda.is_available():
        return None
    index = snapshot.device_index or 0
    torch.cuda.reset_peak_memory_stats(index)
    return int(torch.cuda.memory_reserved(index))


def _cuda_peak_mb(snapshot: MemorySnapshot, reserved_at_start: int | None) -> float | None:
    torch = sys.modules.get("torch")
    if reserved_at_start is None or torch is None:
        return None
    growth = max(0, int(torch.cuda.max_memory_reserved(snapshot.device_index or 0)) - reserved_at_start)
    return round(snapshot.vram_used_mb + growth / MB, 2)


@dataclass
class StageMeasurement:
    """One stage's timing and memory. Filled when the ``measure_stage`` block ends."""

    stage: str
    scene: str | None
    before: MemorySnapshot
    started_at: str  # UTC ISO-8601
    after: MemorySnapshot | None = None
    ended_at: str | None = None
    elapsed_s: float = 0.0
    peak_mb: float | None = None  # highest device memory use in MB (CUDA only; else the larger reading)

    def gpu_telemetry(self) -> dict[str, Any]:
        """The ``Telemetry.GPU`` block (call after the stage ended)."""
        after = self.after or self.before
        return gpu_telemetry(name=self.before.device_name, device_type=self.before.device_type,
                             index=self.before.device_index, total=self.before.vram_total,
                             free_before=self.before.vram_free, free_after=after.vram_free, peak_mb=self.peak_mb)

    def system_telemetry(self, notes: Iterable[str] = ()) -> dict[str, Any]:
        """The ``Telemetry.System`` block: RAM used before/after in MB plus fallback notes."""
        after = self.after or self.before
        return system_telemetry(self.before.ram_used_mb, after.ram_used_mb, notes)


@contextlib.contextmanager
def measure_stage(run_dir: str | os.PathLike[str], stage: str, *, scene: str | None = None,
                  device: Any = None) -> Iterator[StageMeasurement]:
    """Measure the block as stage ``stage`` (of ``scene``) and log it to the run's events.jsonl.

    The ``stage_end`` event carries ``elapsed_s``, ``vram_before_mb``, ``vram_after_mb``,
    ``vram_peak_mb``, ``ram_before_mb``, ``ram_after_mb`` and, if the block raised, ``error``.
    """
    before = memory_snapshot(device)
    reserved = _cuda_peak_reset(before)
    measurement = StageMeasurement(stage=stage, scene=scene, before=before, started_at=events.utc_now())
    events.append_event(run_dir, events.STAGE_START, stage=stage, scene=scene, device=before.device_name,
                        vram_before_mb=before.vram_used_mb, ram_before_mb=before.ram_used_mb)
    clock = time.perf_counter()
    error: str | None = None
    try:
        yield measurement
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        measurement.elapsed_s = time.perf_counter() - clock
        measurement.after = memory_snapshot(device)
        measurement.ended_at = events.utc_now()
        measurement.peak_mb = _cuda_peak_mb(before, reserved)
        if measurement.peak_mb is None:
            measurement.peak_mb = max(before.vram_used_mb, measurement.after.vram_used_mb)
        events.append_event(run_dir, events.STAGE_END, stage=stage, scene=scene,
                            elapsed_s=round(measurement.elapsed_s, 3), vram_before_mb=before.vram_used_mb,
                            vram_after_mb=measurement.after.vram_used_mb, vram_peak_mb=measurement.peak_mb,
                            ram_before_mb=before.ram_used_mb, ram_after_mb=measurement.after.ram_used_mb,
                            error=error)
