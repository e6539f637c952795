"""The upscale engine: frames in, bigger frames out, chunk by chunk.

``Upscaler`` turns chunks of frames ([T,H,W,C] float32 0..1, C = 3, or 4 with alpha) into upscaled
chunks. With a model (core's UPSCALE_MODEL, a spandrel ImageModelDescriptor) it runs tiled
inference: tiles sized from free memory (or fixed), several frames per tile pass, the model in
fp16/bf16 where it supports that, the input handed over channels-last as core does, overlapping
tiles cross-faded (see tiles.py), and on out-of-memory it halves the frames per pass, then the tile,
and retries. The model's output is then brought to the requested size with an antialiased Lanczos
resize. Without a model the whole job is a Lanczos resize (``lanczos``, a real resampling).

Only one chunk and its output are held at a time, so memory does not grow with clip length.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from .. import comfy
from .model import (
    ModelInfo,
    activation_bytes_per_pixel,
    inspect_model,
    model_label,
    model_on,
    resolve_precision,
)
from .resample import lanczos_resize
from .sizing import OutputSize
from .tiles import blend_weights, tile_grid

log = logging.getLogger("gemdirect")

ALPHA_MODES = ("keep", "drop")
MIN_TILE = 16
MAX_AUTO_TILE = 1024
MAX_FRAMES_PER_PASS = 8
# Share of free memory one tile pass may use: the GPU holds little else during the pass; on the CPU
# the same RAM also holds the chunk, its output and everything else running.
GPU_BUDGET = 0.6
CPU_BUDGET = 0.25
CPU_BUDGET_CAP = 4 << 30


@dataclass(frozen=True)
class UpscaleSettings:
    """How to upscale.

    tile: tile side in input px (0: from free memory). overlap: input px shared by neighbouring
    tiles (at most half the tile; the outer quarter is context, the next quarter is cross-faded).
    frames_per_pass: frames sent through the model at once (0: from free memory, at most 8 on a GPU,
    1 on the CPU where batching measured no gain).
    precision: auto|fp32|fp16|bf16. alpha: keep (alpha resized with Lanczos) or drop.
    device: torch device to run on (None: ComfyUI's device).
    """

    output: OutputSize = field(default_factory=OutputSize)
    tile: int = 0
    overlap: int = 32
    frames_per_pass: int = 0
    precision: str = "auto"
    alpha: str = "keep"
    device: Any = None

    def __post_init__(self) -> None:
        if self.tile != 0 and self.tile < MIN_TILE:
            raise ValueError(f"tile = {self.tile} is below {MIN_TILE} px; use 0 (from free memory) or {MIN_TILE}+")
        if self.overlap < 0:
            raise ValueError(f"overlap = {self.overlap} must be 0 or more (32 is a good default)")
        if self.frames_per_pass < 0:
            raise ValueError(f"frames_per_pass = {self.frames_per_pass} must be 0 (auto) or more")
        if self.alpha not in ALPHA_MODES:
            raise ValueError(f"alpha '{self.alpha}' is not one of {', '.join(ALPHA_MODES)}")


@dataclass(frozen=True)
class TilePlan:
    """Tile side and overlap (input px) and frames per model call."""

    tile: int
    overlap: int
    frames_per_pass: int


def _round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def memory_budget(device: Any) -> int:
    """Bytes one tile pass may use on ``device``: a share of its free memory."""
    free = comfy.device_memory(device).free
    if getattr(device, "type", str(device)) == "cpu":
        return int(min(free * CPU_BUDGET, CPU_BUDGET_CAP))
    return int(free * GPU_BUDGET)


def plan_tiles(info: ModelInfo, height: int, width: int, *, element_size: int, budget: int, tile: int = 0,
               overlap: int = 32, frames_per_pass: int = 0, max_frames: int = MAX_FRAMES_PER_PASS) -> TilePlan:
    """Tile side, overlap and frames per pass for ``height`` x ``width`` frames within ``budget`` bytes.

    Auto tile (0): the whole frame when it fits, else the largest square that does (a multiple of 8
    and of the model's ``multiple_of``), capped at 1024 px. Models that tile internally get the
    whole frame. Auto frames per pass: as many as fit, at most ``max_frames``.
    """
    per_pixel = activation_bytes_per_pixel(info, element_size)
    step = math.lcm(8, info.multiple_of)
    if info.tiling == "internal":
        tile = max(height, width)
    elif tile == 0:
        if per_pixel * height * width <= budget:
            tile = max(height, width)
        else:
            tile = min(_round_down(math.isqrt(max(budget // per_pixel, 1)), step), MAX_AUTO_TILE)
            tile = max(tile, MIN_TILE)
    tile = max(tile, info.minimum)
    overlap = min(overlap, tile // 2)
    if frames_per_pass == 0:
        fit = budget // max(per_pixel * min(tile, height) * min(tile, width), 1)
        frames_per_pass = int(min(max(fit, 1), max_frames))
    return TilePlan(tile=tile, overlap=overlap, frames_per_pass=frames_per_pass)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError and the CPU allocator's RuntimeError."""
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if isinstance(exc, oom_types):
        return True
    if isinstance(exc, (RuntimeError, MemoryError)):
        text = str(exc).lower()
        return isinstance(exc, MemoryError) or any(marker in text for marker in (
            "out of memory", "can't allocate memory", "cannot allocate memory", "defaultcpuallocator",
            "not enough memory", "failed to allocate"))
    return False


def smaller_plan(plan: TilePlan, info: ModelInfo) -> TilePlan | None:
    """The next plan to try after an out-of-memory error, or None when nothing smaller is left.

    Frames per pass halve first (the batch is our addition to core's loop), then the tile halves.
    """
    if plan.frames_per_pass > 1:
        return replace(plan, frames_per_pass=plan.frames_per_pass // 2)
    tile = _round_down(plan.tile // 2, math.lcm(8, info.multiple_of))
    if tile < max(MIN_TILE, info.minimum) or tile >= plan.tile:
        return None
    return replace(plan, tile=tile, overlap=min(plan.overlap, tile // 2))


class Upscaler:
    """Upscales chunks of frames with one model (or Lanczos) and one set of settings.

    ``model``: a spandrel ImageModelDescriptor (core's UPSCALE_MODEL) or None for lanczos.
    ``progress``: called with the number of frames just finished (e.g. ``Progress.update``).
    After a run, ``plan`` holds the tile plan actually used (smaller after an out-of-memory back-off).
    """

    def __init__(self, model: Any | None, settings: UpscaleSettings | None = None, *,
                 progress: Callable[[int], None] | None = None):
        self.model = model
        self.settings = settings or UpscaleSettings()
        self.info = inspect_model(model) if model is not None else None
        self.progress = progress
        self.plan: TilePlan | None = None
        self._plan_size: tuple[int, int] | None = None
        self.backoffs = 0
        self.rooms: list[Any] = []  # vram.room.RoomRecord: memory asked for before the model moved, and on OOM
        self.device = None
        self.dtype = None
        if self.info is not None:
            self.device = self.settings.device if self.settings.device is not None else comfy.torch_device()
            self.dtype = resolve_precision(self.settings.precision, self.info, self.device)

    @property
    def method(self) -> str:
        """``lanczos`` or the model's label (``ESRGAN 4x``), for telemetry."""
        return "lanczos" if self.model is None else model_label(self.model)

    @property
    def scale(self) -> int | None:
        return None if self.info is None else self.info.scale

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) px of the output for a ``width`` x ``height`` input."""
        return self.settings.output.resolve(width, height, self.scale)

    def upscale(self, frames: Any) -> Any:
        """One batch [B,H,W,C] -> [B,H',W',C] float32 on the CPU (C = 3, or 4 if alpha is kept)."""
        return next(iter(self.run([frames])))

    def run(self, chunks: Iterable[Any]) -> Iterator[Any]:
        """Upscale each chunk [T,H,W,C] float32 0..1 as it arrives; yields [T,H',W',C'] float32 0..1.

        The model is lent to the device for the whole iteration (and given back when it ends or the
        generator is closed). Frame sizes may change between chunks; each size gets its own plan.
        """
        if self.model is None:
            for chunk in chunks:
                yield self._finish(chunk, None)
            return
        chunks = iter(chunks)
        first = next(chunks, None)
        if first is None:
            return
        # As core's ImageUpscaleWithModel: free the bytes the job needs before moving the model.
        self.make_room(first.shape[1], first.shape[2], first.shape[0])
        with model_on(self.model, self.device, self.dtype) as runner:
            for chunk in itertools.chain([first], chunks):
                yield self._finish(chunk, runner)

    def need_bytes(self, height: int, width: int, frames: int, plan: TilePlan | None = None) -> int:
        """The model's weights, one tile pass's activations and (on the CPU) the chunk's output, in bytes.

        The tile is the plan's, else the engine's largest auto tile (or the node's fixed ``tile``)."""
        import torch

        element_size = torch.empty((), dtype=self.dtype).element_size()
        weights = sum(p.numel() for p in self.model.model.parameters()) * element_size
        side = plan.tile if plan is not None else (self.settings.tile or MAX_AUTO_TILE)
        per_pass = plan.frames_per_pass if plan is not None else max(1, self.settings.frames_per_pass)
        working = activation_bytes_per_pixel(self.info, element_size) * min(side, height) * min(side, width)
        need = weights + working * per_pass
        if getattr(self.device, "type", str(self.device)) == "cpu":
            need += frames * height * width * self.info.scale ** 2 * 3 * 4
        return int(need)

    def make_room(self, height: int, width: int, frames: int, plan: TilePlan | None = None,
                  reason: str = "start") -> None:
        """Ask ComfyUI to unload cached models until this stage's bytes are free (vram.room)."""
        from ..vram.room import make_room

        self.rooms.append(make_room("upscale", self.need_bytes(height, width, frames, plan), self.device,
                                    reason=reason))

    # ------------------------------------------------------------------ internals

    def _finish(self, chunk: Any, runner: Any | None) -> Any:
        import torch

        if not isinstance(chunk, torch.Tensor):
            chunk = torch.as_tensor(chunk)
        if chunk.dim() == 3:
            chunk = chunk[None]
        if chunk.dim() != 4 or chunk.shape[-1] not in (3, 4):
            raise ValueError(f"image must be [B,H,W,3] or [B,H,W,4] (RGBA), got shape {tuple(chunk.shape)}")
        if chunk.dtype == torch.uint8:
            chunk = chunk.float().div_(255)
        chunk = chunk.float()
        count, height, width = chunk.shape[:3]
        target_w, target_h = self.output_size(width, height)
        rgb = chunk[..., :3]
        if runner is None:
            out = lanczos_resize(rgb, target_w, target_h)
        else:
            out = self._model_chunk(runner, rgb)
            if out.shape[1:3] != (target_h, target_w):
                out = lanczos_resize(out, target_w, target_h)
        if chunk.shape[-1] == 4 and self.settings.alpha == "keep":
            alpha = lanczos_resize(chunk[..., 3:], target_w, target_h)
            out = torch.cat([out, alpha], dim=-1)
        if runner is None and self.progress is not None:
            self.progress(count)
        return out

    def _model_chunk(self, runner: Any, frames: Any) -> Any:
        """[T,H,W,3] float32 CPU -> [T,H*s,W*s,3] float32 on the intermediate device."""
        import torch

        count, height, width = frames.shape[:3]
        scale = self.info.scale
        if self.plan is None or self._plan_size != (height, width):
            self.plan = self._make_plan(height, width)
            self._plan_size = (height, width)
            log.info("[gemDirect] upscale %s: tile %d, overlap %d, %d frame(s) a pass, %s on %s",
                     self.method, self.plan.tile, self.plan.overlap, self.plan.frames_per_pass,
                     str(self.dtype).replace("torch.", ""), self.device)
        out = torch.empty((count, height * scale, width * scale, 3), dtype=torch.float32,
                          device=comfy.intermediate_device())
        start = 0
        while start < count:
            stop = min(start + self.plan.frames_per_pass, count)
            try:
                self._pass(runner, frames[start:stop], out[start:stop])
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._back_off(exc)
                self.make_room(height, width, count, self.plan, reason="out of memory")
                continue
            if self.progress is not None:
                self.progress(stop - start)
            start = stop
        return out

    def _make_plan(self, height: int, width: int) -> TilePlan:
        import torch

        element_size = torch.empty((), dtype=self.dtype).element_size()
        settings = self.settings
        budget = memory_budget(self.device)
        # Batching frames fills a GPU; on the CPU it measured no faster than one frame a call (and
        # costs memory), so the CPU's auto is one frame.
        max_frames = 1 if getattr(self.device, "type", str(self.device)) == "cpu" else MAX_FRAMES_PER_PASS
        return plan_tiles(self.info, height, width, element_size=element_size, budget=budget,
                          tile=settings.tile, overlap=settings.overlap, frames_per_pass=settings.frames_per_pass,
                          max_frames=max_frames)

    def _back_off(self, exc: BaseException) -> None:
        import torch

        if getattr(self.device, "type", "") == "cuda":
            torch.cuda.empty_cache()
        smaller = smaller_plan(self.plan, self.info)
        if smaller is None:
            raise RuntimeError(
                f"upscale ran out of memory on {self.device} even at {self.plan.tile}px tiles, one frame a "
                f"pass ({type(exc).__name__}: {exc}); free memory (close other programs, unload models), "
                "use precision fp16/bf16 or a smaller model, or lanczos") from exc
        log.warning("[gemDirect] upscale: out of memory at tile %d x %d frame(s); retrying with tile %d x %d",
                    self.plan.tile, self.plan.frames_per_pass, smaller.tile, smaller.frames_per_pass)
        self.plan = smaller
        self.backoffs += 1

    def _pass(self, runner: Any, frames: Any, out: Any) -> None:
        """Run ``frames`` [t,H,W,3] through the model tile by tile into ``out`` [t,H*s,W*s,3]."""
        import torch

        scale = self.info.scale
        height, width = frames.shape[1:3]
        plan = self.plan
        # [t,H,W,3] -> [t,3,H,W] as a view: channels-last memory, what core hands the model.
        nchw = frames.movedim(-1, 1)
        grid = tile_grid(height, width, plan.tile, plan.overlap)
        if len(grid) == 1:
            result = runner(self._tile_input(nchw))
            out.copy_(result.movedim(1, -1))
            comfy.check_interrupt()
            return
        out.zero_()
        weight_sum = torch.zeros((height * scale, width * scale, 1), dtype=torch.float32, device=out.device)
        for tile in grid:
            crop = nchw[:, :, tile.y0:tile.y1, tile.x0:tile.x1]
            result = runner(self._tile_input(crop))
            weights = blend_weights(tile, scale, plan.overlap).to(result.device)
            weighted = (result.float() * weights).movedim(1, -1).to(out.device)
            rows = slice(tile.y0 * scale, tile.y1 * scale)
            cols = slice(tile.x0 * scale, tile.x1 * scale)
            out[:, rows, cols, :] += weighted
            weight_sum[rows, cols, :] += weights.to(out.device)[:, :, None]
            comfy.check_interrupt()
        out.div_(weight_sum)

    def _tile_input(self, crop: Any) -> Any:
        import torch

        return crop.to(device=self.device, dtype=self.dtype).contiguous(memory_format=torch.channels_last)
