"""Make room for a stage before it puts its model and tensors on the device, as core does.

Core's ImageUpscaleWithModel and model loading call ``model_management.free_memory(bytes, device)``
with the bytes the job needs before moving a model; ComfyUI then unloads cached models (the WAN DiT
of the last scene, the VAE) until that much is free, and stops as soon as it is. Asking for 0 frees
nothing. :func:`make_room` asks for the stage's need plus ComfyUI's reserve (``--reserve-vram``, as
its own loader adds), only when less than that is free, and records what happened: the figures go
into the run's telemetry (``Post.Memory``) so a user can see that a post stage freed memory first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from .. import comfy

log = logging.getLogger("gemdirect")
MB = 1 << 20


@dataclass
class RoomRecord:
    """One request for room: bytes asked, free and cached-model bytes before and after, what was unloaded."""

    stage: str  # interpolate | upscale
    device: str
    need: int  # the stage's bytes plus ComfyUI's reserve
    free_before: int
    free_after: int
    cached_before: int  # bytes of models ComfyUI held on the device
    cached_after: int
    unloaded: list[str] = field(default_factory=list)
    reason: str = "start"  # start | out of memory

    @property
    def freed(self) -> bool:
        return self.cached_after < self.cached_before

    def telemetry(self) -> dict[str, Any]:
        """``Post.Memory[]`` entry (MB, 2**20 bytes)."""
        return {"Stage": self.stage, "Reason": self.reason, "Device": self.device,
                "NeedMB": round(self.need / MB, 1), "FreeBeforeMB": round(self.free_before / MB, 1),
                "FreeAfterMB": round(self.free_after / MB, 1),
                "CachedModelsBeforeMB": round(self.cached_before / MB, 1),
                "CachedModelsAfterMB": round(self.cached_after / MB, 1), "Unloaded": list(self.unloaded)}

    def describe(self) -> str:
        if not self.freed:
            return (f"{self.stage}: needs {self.need / MB:.0f} MB, {self.free_before / MB:.0f} MB free on "
                    f"{self.device}: nothing unloaded")
        return (f"{self.stage}: needs {self.need / MB:.0f} MB, {self.free_before / MB:.0f} MB were free on "
                f"{self.device}: unloaded {', '.join(self.unloaded) or 'cached models'} "
                f"({(self.cached_before - self.cached_after) / MB:.0f} MB), {self.free_after / MB:.0f} MB free now")


def make_room(stage: str, need: int, device: Any = None, *, reason: str = "start",
              keep: tuple[Any, ...] = ()) -> RoomRecord:
    """Unload ComfyUI's cached models until ``need`` bytes (plus ComfyUI's reserve) are free on ``device``.

    Asks only when less is free (ComfyUI's own check, so nothing is unloaded needlessly). Standalone
    there is no cache: the record shows the free memory and nothing unloaded.
    """
    device = device if device is not None else comfy.torch_device()
    total = int(need) + comfy.reserved_vram()
    before = comfy.device_memory(device)
    cached = comfy.loaded_models(device)
    if before.free < total:
        comfy.free_cached_models(total, device, keep=keep)
    after = comfy.device_memory(device)
    left = comfy.loaded_models(device)
    remaining = {id(m.handle) for m in left}
    record = RoomRecord(stage, str(device), total, before.free, after.free, sum(m.loaded for m in cached),
                        sum(m.loaded for m in left), [m.name for m in cached if id(m.handle) not in remaining],
                        reason)
    (log.info if not record.freed else log.warning)("[gemDirect] %s", record.describe())
    return record
