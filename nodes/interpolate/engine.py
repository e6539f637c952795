"""The interpolation engine: a chunk iterator, so memory does not grow with the clip's length.

``interpolate_chunks`` takes source frames in chunks ``[T,H,W,3]`` (float32 0..1, torch, CPU) and
yields output chunks at the target rate as soon as the frames they need have arrived. It keeps one
source frame from the previous chunk (the left end of the pair that straddles chunks), so it holds
one input chunk, its output, and one batch of model work at a time. Model work is batched across
pairs and timesteps; an out-of-memory error halves the batch and retries the same frames.

``interpolate_images`` (an IMAGE batch) and ``interpolate_video`` (a file to a file) both run on it.
Which frames are made and how is decided by ``timing`` (exact fractions), so every path gives the
same frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import torch

from .. import comfy
from . import timing

log = logging.getLogger("gemdirect")


@dataclass(frozen=True)
class Job:
    """One frame to synthesise: between source frames ``left`` and ``left + 1`` at ``t`` in (0, 1)."""

    left: int
    t: float
    frame_a: torch.Tensor  # [H,W,3]
    frame_b: torch.Tensor  # [H,W,3]


class Interpolator(Protocol):
    method: str  # InterpolationMethod for telemetry: rife-4.x | flow

    def run(self, jobs: list[Job]) -> torch.Tensor:
        """The frames of ``jobs``: [len(jobs),H,W,3] float32 0..1 on the CPU."""
        ...


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/XPU out-of-memory errors and the CPU's MemoryError."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class RIFEInterpolator:
    """RIFE on the model's device and dtype; a batch is any mix of pairs and timesteps.

    Each source frame is prepared once (moved, clamped, padded, its features encoded) and kept while
    a job still needs it, so a frame shared by two pairs is encoded once, as core's FrameInterpolate
    does. A kept frame is only reused when the job's frame is equal to it (cheap next to the network),
    so reusing the interpolator on another clip can never mix frames up.
    """

    def __init__(self, model: Any, scale: float = 1.0, ensemble: bool = False):
        self.model = model  # loader.RIFEModel
        self.scale = float(scale)
        self.ensemble = bool(ensemble) and model.spec.ensemble
        self.method = model.method
        self._prepared: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
        self.rooms: list[Any] = []  # vram.room.RoomRecord: memory asked for before running, and on OOM
        self._room_for: tuple[int, int] | None = None

    def need_bytes(self, height: int, width: int, pairs: int) -> int:
        """Weights plus ``pairs`` pairs' working memory at this frame size (the VRAM guard's RIFE rule)."""
        from ..vram.estimate import Workload, rife_estimate

        weights = sum(p.numel() * p.element_size() for p in self.model.net.parameters())
        spec = self.model.spec
        estimate = rife_estimate(Workload(width, height, 2, batch=max(1, pairs)), weights=weights, scale=self.scale,
                                 blocks=len(spec.widths), head=spec.head_out, carried=spec.carried > 0,
                                 pad_multiple=spec.pad_multiple(self.scale))
        return estimate.full

    def make_room(self, height: int, width: int, pairs: int, reason: str = "start") -> None:
        """Ask ComfyUI to unload cached models until this stage's bytes are free (vram.room)."""
        from ..vram.room import make_room

        device = next(self.model.net.parameters()).device
        if reason == "start":
            self._room_for = (height, width)
        self.rooms.append(make_room("interpolate", self.need_bytes(height, width, pairs), device, reason=reason))

    def _frame(self, index: int, frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        kept = self._prepared.get(index)
        if kept is None or not (kept[0] is frame or torch.equal(kept[0], frame)):
            image, feats = self.model.net.prepare(frame.permute(2, 0, 1).unsqueeze(0), self.scale)
            kept = self._prepared[index] = (frame, image, feats)
        return kept[1], kept[2]

    def run(self, jobs: list[Job]) -> torch.Tensor:
        h, w = jobs[0].frame_a.shape[:2]
        if self._room_for != (h, w):  # not asked for this frame size yet (Story Render asks up front)
            self.make_room(h, w, len(jobs))
        first = min(j.left for j in jobs)
        for index in [i for i in self._prepared if i < first]:
            del self._prepared[index]
        lefts = [self._frame(j.left, j.frame_a) for j in jobs]
        rights = [self._frame(j.left + 1, j.frame_b) for j in jobs]
        a, b = torch.cat([x for x, _ in lefts]), torch.cat([x for x, _ in rights])
        fa = torch.cat([f for _, f in lefts]) if lefts[0][1] is not None else None
        fb = torch.cat([f for _, f in rights]) if rights[0][1] is not None else None
        t = torch.tensor([j.t for j in jobs], dtype=torch.float32)
        out = self.model.net.run_prepared(a, b, t, fa, fb, scale=self.scale, ensemble=self.ensemble)
        return out[:, :, :h, :w].permute(0, 2, 3, 1).float().clamp(0, 1).cpu()


class FlowInterpolator:
    """The weightless ``flow`` method; a pair's flows are computed once for all its timesteps."""

    method = "flow"

    def __init__(self, flow_scale: float = 1.0):
        self.flow_scale = float(flow_scale)
        self._pair: tuple[int, Any] | None = None

    def run(self, jobs: list[Job]) -> torch.Tensor:
        from .flow import FlowPair

        frames = []
        for job in jobs:
            if self._pair is None or self._pair[0] != job.left:
                self._pair = (job.left, FlowPair(job.frame_a.numpy(), job.frame_b.numpy(), self.flow_scale))
            frames.append(torch.from_numpy(self._pair[1].at(job.t)))
        return torch.stack(frames)


@dataclass
class Report:
    """What a run did; filled in while the iterator runs."""

    method: str
    source_fps: Fraction
    target_fps: Fraction
    frames_in: int = 0
    frames_out: int = 0
    copied: int = 0  # output frames that are source frames (t = 0)
    blended: int = 0  # made by the method
    cut_frames: int = 0  # nearest source frame copied because the pair is a scene cut
    duplicate_frames: int = 0  # left frame copied because the pair is a duplicate
    cuts: list[int] = field(default_factory=list)  # pairs (i, i+1) found to be cuts, by i
    batch_size: int = 1
    oom_halvings: int = 0
    elapsed_ms: float = 0.0
    notes: list[str] = field(default_factory=list)

    def telemetry(self) -> dict[str, Any]:
        """The Post fields this stage owns: InterpolationMethod, InterpolationElapsed (ms), FinalFPS."""
        return {"InterpolationMethod": self.method, "InterpolationElapsed": round(self.elapsed_ms, 1),
                "FinalFPS": round(float(self.target_fps), 3)}

    def describe(self) -> str:
        more = " ..." if len(self.cuts) > 12 else ""
        cuts = f" at pairs {', '.join(map(str, self.cuts[:12]))}{more}" if self.cuts else ""
        lines = [
            f"{self.method}: {self.frames_in} frames at {_fps(self.source_fps)} fps -> {self.frames_out} frames at "
            f"{_fps(self.target_fps)} fps in {self.elapsed_ms / 1000:.2f} s",
            f"{self.copied} copied, {self.blended} interpolated, {self.cut_frames} at scene cuts "
            f"({len(self.cuts)} cuts{cuts}), {self.duplicate_frames} in duplicate pairs",
        ]
        if self.oom_halvings:
            lines.append(f"out of memory {self.oom_halvings} time(s): batch lowered to {self.batch_size}")
        return "\n".join(lines + self.notes)


def _fps(rate: Fraction) -> str:
    return str(rate.numerator) if rate.denominator == 1 else f"{float(rate):.3f} ({rate.numerator}/{rate.denominator})"


class _Batcher:
    """Runs jobs in batches; an out-of-memory error halves the batch and retries the same jobs."""

    def __init__(self, interpolator: Interpolator, batch_size: int, report: Report):
        self.interpolator = interpolator
        self.batch = max(1, int(batch_size))
        self.report = report

    def run(self, jobs: list[Job], on_done: Callable[[int], None]) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        i = 0
        while i < len(jobs):
            n = min(self.batch, len(jobs) - i)
            try:
                frames = self.interpolator.run(jobs[i:i + n])
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                if n == 1:
                    raise MemoryError(
                        "interpolation ran out of memory on a single frame; lower `scale` (0.5 for 4K), use "
                        "fp16, or interpolate before upscaling") from exc
                self.batch = max(1, n // 2)
                self.report.oom_halvings += 1
                log.warning("[gemDirect] interpolation out of memory at batch %d; retrying at %d", n, self.batch)
                room = getattr(self.interpolator, "make_room", None)
                if room is not None:  # free ComfyUI's cached models by the bytes the smaller batch needs
                    h, w = jobs[i].frame_a.shape[:2]
                    room(h, w, self.batch, reason="out of memory")
                continue
            out.extend(frames.unbind(0))
            i += n
            on_done(n)
        self.report.batch_size = self.batch
        return out


def interpolate_chunks(chunks: Iterable[torch.Tensor], source_fps: Fraction, target_fps: Fraction,
                       interpolator: Interpolator, *, cut_ssim: float = timing.DEFAULT_CUT_SSIM,
                       batch_size: int = 4, report: Report | None = None,
                       on_frames: Callable[[int], None] | None = None) -> Iterator[torch.Tensor]:
    """Output chunks ``[K,H,W,3]`` float32 at ``target_fps`` from source chunks at ``source_fps``.

    ``cut_ssim``: pairs whose thumbnail SSIM is below it are scene cuts (0: never). ``report`` is
    filled in as chunks go by. ``on_frames(n)`` is told of every n output frames made (progress).
    Interruption is checked between chunks and batches (through ``nodes/comfy.py``).
    """
    source_fps, target_fps = Fraction(source_fps), Fraction(target_fps)
    report = report if report is not None else Report(interpolator.method, source_fps, target_fps)
    batcher = _Batcher(interpolator, batch_size, report)
    notify = on_frames or (lambda _n: None)
    started = time.perf_counter()
    planner = timing.plan(None, source_fps, target_fps)
    pending = next(planner)
    frames: dict[int, torch.Tensor] = {}  # global index -> frame; the last one of a chunk is kept
    thumbs: dict[int, np.ndarray] = {}
    kinds: dict[int, str] = {}  # pair (i, i+1) by i -> timing kind
    base = 0
    try:
        for chunk in chunks:
            comfy.check_interrupt()
            if chunk.ndim != 4 or chunk.shape[-1] != 3:
                raise ValueError(f"frames must be [T,H,W,3] (IMAGE); got shape {tuple(chunk.shape)}")
            chunk = chunk.detach().to("cpu", torch.float32)
            for j in range(chunk.shape[0]):
                frames[base + j] = chunk[j]
            base += chunk.shape[0]
            report.frames_in = base
            last = base - 1
            made: list[tuple[int, torch.Tensor | Job]] = []  # output slot -> frame or job
            while pending.left < last or (pending.left == last and pending.t == 0):
                made.append(_decide(pending, frames, thumbs, kinds, cut_ssim, report))
                pending = next(planner)
            jobs = [item for _, item in made if isinstance(item, Job)]
            copies = len(made) - len(jobs)
            if copies:
                notify(copies)
            results = iter(batcher.run(jobs, notify))
            out = [item if not isinstance(item, Job) else next(results) for _, item in made]
            for index in [i for i in frames if i < last]:  # keep only the frame the next pair needs
                del frames[index]
                thumbs.pop(index, None)
                kinds.pop(index, None)
            frames[last] = frames[last].clone()  # a view would keep the whole chunk alive
            if out:
                report.frames_out += len(out)
                yield torch.stack(out)
    finally:
        report.elapsed_ms += (time.perf_counter() - started) * 1000.0


def _decide(frame: timing.OutputFrame, frames: dict[int, torch.Tensor], thumbs: dict[int, np.ndarray],
            kinds: dict[int, str], cut_ssim: float, report: Report) -> tuple[int, torch.Tensor | Job]:
    """How output ``frame`` is made: a source frame (copy, cut, duplicate) or a Job for the method."""
    if frame.t == 0:
        report.copied += 1
        return frame.index, frames[frame.left]
    i = frame.left
    if i not in kinds:
        for k in (i, i + 1):
            if k not in thumbs:
                thumbs[k] = timing.thumbnail(frames[k].numpy())
        kinds[i], _score = timing.classify_pair(thumbs[i], thumbs[i + 1], cut_ssim)
        if kinds[i] == timing.NEAREST_CUT:
            report.cuts.append(i)
    kind = kinds[i]
    if kind == timing.NEAREST_CUT:
        report.cut_frames += 1
        return frame.index, frames[i if frame.t <= Fraction(1, 2) else i + 1]
    if kind == timing.DUPLICATE:
        report.duplicate_frames += 1
        return frame.index, frames[i]
    report.blended += 1
    return frame.index, Job(i, float(frame.t), frames[i], frames[i + 1])


def _image_chunks(images: torch.Tensor, chunk_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, images.shape[0], chunk_size):
        yield images[start:start + chunk_size]


def interpolate_images(images: torch.Tensor, source_fps: Fraction, target_fps: Fraction,
                       interpolator: Interpolator, *, cut_ssim: float = timing.DEFAULT_CUT_SSIM,
                       batch_size: int = 4, chunk_size: int = 16,
                       node_id: str | None = None) -> tuple[torch.Tensor, Report]:
    """An IMAGE batch ``[B,H,W,3]`` at ``target_fps`` (``floor((B-1)*target/source)+1`` frames) and its report.

    The output is allocated once and filled chunk by chunk (no second copy for joining).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] < 1:
        raise ValueError(f"images must be an IMAGE batch [B,H,W,3] with B >= 1; got {tuple(images.shape)}")
    total = timing.output_count(images.shape[0], source_fps, target_fps)
    progress = comfy.Progress(total, node_id=node_id)
    report = Report(interpolator.method, Fraction(source_fps), Fraction(target_fps))
    out = torch.empty((total, *images.shape[1:]), dtype=torch.float32)
    filled = 0
    for chunk in interpolate_chunks(_image_chunks(images, chunk_size), source_fps, target_fps, interpolator,
                                    cut_ssim=cut_ssim, batch_size=batch_size, report=report,
                                    on_frames=progress.update):
        out[filled:filled + chunk.shape[0]] = chunk
        filled += chunk.shape[0]
    if filled != total:  # the plan and the stream disagree: a bug, never a user error
        raise RuntimeError(f"interpolation made {filled} frames, the plan says {total}")
    return out, report


def interpolate_video(source: str, target: str, target_fps: Fraction | None, interpolator: Interpolator, *,
                      multiplier: int | None = None, cut_ssim: float = timing.DEFAULT_CUT_SSIM,
                      batch_size: int = 4, chunk_size: int = 16, crf: int = 19) -> Report:
    """Stream the video file ``source`` through the method into ``target`` (H.264, audio kept).

    Memory holds one decoded chunk, its output and one batch, whatever the clip's length.
    """
    from ..video import encode_video, iter_frames, probe_video, read_audio

    info = probe_video(source)
    rate = timing.target_rate(info.fps, multiplier=multiplier, target_fps=None if multiplier else target_fps)
    report = Report(interpolator.method, Fraction(info.fps), rate)
    progress = comfy.Progress(timing.output_count(info.frames, info.fps, rate))
    chunks = interpolate_chunks(iter_frames(source, chunk_size), info.fps, rate, interpolator, cut_ssim=cut_ssim,
                                batch_size=batch_size, report=report, on_frames=progress.update)
    encode_video(target, chunks, rate, audio=read_audio(source), crf=crf)
    return report


def record_telemetry(run_dir: str, report: Report) -> dict[str, Any]:
    """Log the stage's Post fields (InterpolationMethod, InterpolationElapsed ms, FinalFPS) to the run.

    Appends an ``interpolation`` event to the run's events.jsonl; the story renderer copies
    ``post`` into the run's Post record. Returns the fields.
    """
    from ..run import events

    fields = report.telemetry()
    events.append_event(run_dir, "interpolation", post=fields, frames_in=report.frames_in,
                        frames_out=report.frames_out, cuts=list(report.cuts), final_fps_exact=str(report.target_fps),
                        oom_halvings=report.oom_halvings)
    return fields
