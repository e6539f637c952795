"""The VRAM guard's engine: estimate a stage, compare with a reading, decide, record it in the run.

Decisions (``policy`` chooses what happens when memory is short):

- ``full`` fit (free >= the stage's full need): pass.
- ``free-then-block``: when free is below the full need and ComfyUI holds other cached models, ask
  ComfyUI to unload them (and empty torch's cache), read again, and decide on what is now *measured*.
- ``block``: touch nothing; count memory held by cached models as available (ComfyUI unloads them
  itself when it loads the next model) and decide on that *prediction*.
- ``warn``: as ``block``, but never stop the prompt: a warning goes to the log, the run and the UI.

After that: at least the full need -> pass; at least the minimum -> pass with a note (the stage runs
in its lean mode: weights streamed from RAM, tiled decode...); below the minimum -> stop the prompt
(``VRAMShortError``) with what is short by how much and which preset, length or quant fits. An open
circuit breaker stops the prompt before any of this (``warn`` only warns).

Weights of the stage's own models that ComfyUI already holds on the device (the WAN model of the
previous scene) need no new room: they are matched by size and subtracted, and kept when freeing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import breaker as breakers
from .advice import sample_advice
from .estimate import (
    COMFY_RESERVED,
    STAGES,
    StageEstimate,
    Workload,
    custom_estimate,
    gb,
    nominal_weights,
    rife_estimate,
    sample_estimate,
    upscale_estimate,
    vae_decode_estimate,
)
from .inspect import ModelFileInfo
from .probe import MB, VramReading

log = logging.getLogger("gemdirect")

POLICIES = ("free-then-block", "block", "warn")
PASS, PASS_AFTER_FREE, WARN, BLOCK = "pass", "pass-after-free", "warn", "block"
FIT_FULL, FIT_PARTIAL, FIT_SHORT = "full", "partial", "short"
EVENT_GUARD = "vram_guard"
RESIDENT_MATCH = 0.02  # a loaded model within 2% of a file's weight bytes is taken to be that file
DEFAULT_RIFE_WEIGHTS = 25 << 20  # RIFE 4.x checkpoints are 10-25 MB; used when no file is given


class VRAMShortError(RuntimeError):
    """The guard stopped the prompt: the stage does not fit (or the circuit breaker is open).

    ``result`` holds the guard's decision and report (already recorded in the run).
    """

    def __init__(self, message: str, result: GuardResult | None = None):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class GuardRequest:
    """What the guard is asked. ``models``: inspected files that will load; ``estimate_bytes``: a stated
    need that replaces the estimate; ``profile``: the WAN profile (else from the model's architecture)."""

    stage: str
    policy: str = "free-then-block"
    workload: Workload | None = None
    models: tuple[ModelFileInfo, ...] = ()
    estimate_bytes: int | None = None
    profile: str | None = None
    scene: str | None = None
    efficient_attention: bool = True
    dtype_bytes: int = 2
    rife_scale: float = 1.0
    upscale_scale: int = 4
    reserved: int = COMFY_RESERVED  # ComfyUI's extra reserved VRAM, bytes (comfy.reserved_vram())

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage '{self.stage}' is not one of {', '.join(STAGES)}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy '{self.policy}' is not one of {', '.join(POLICIES)}")


@dataclass(frozen=True)
class Plan:
    """The estimate for a request, the weight bytes of its own files, and notes on how it was built."""

    estimate: StageEstimate
    own_weights: tuple[int, ...] = ()  # weight bytes of each file the stage loads (to spot them loaded)
    notes: tuple[str, ...] = ()
    profile: str | None = None
    parameters: int | None = None
    quant: str | None = None
    dim: int | None = None
    largest_tensor_params: int | None = None


@dataclass(frozen=True)
class Decision:
    """What the guard decided and why. Bytes throughout."""

    stage: str
    policy: str
    action: str  # pass | pass-after-free | warn | block
    fit: str  # full | partial | short | breaker
    need_full: int
    need_minimum: int
    free_before: int
    free_after: int
    total: int
    cached: int
    resident: int
    short_by: int
    message: str
    advice: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def stops(self) -> bool:
        return self.action == BLOCK

    def event_fields(self) -> dict[str, Any]:
        def mb(value: int) -> float:
            return round(value / MB, 1)

        return {"stage": self.stage, "policy": self.policy, "action": self.action, "fit": self.fit,
                "need_mb": mb(self.need_full), "need_min_mb": mb(self.need_minimum),
                "free_before_mb": mb(self.free_before), "free_after_mb": mb(self.free_after),
                "total_mb": mb(self.total), "cached_models_mb": mb(self.cached), "resident_mb": mb(self.resident),
                "short_by_mb": mb(self.short_by), "message": self.message, "advice": list(self.advice) or None}


# --------------------------------------------------------------------------- estimates


def _dit_models(models: Sequence[ModelFileInfo]) -> list[ModelFileInfo]:
    return [model for model in models if model.architecture.family == "wan-dit"]


def plan_stage(request: GuardRequest) -> Plan:
    """The stage's estimate from the request's files, workload and profile."""
    models, workload, notes = request.models, request.workload, []
    if request.estimate_bytes:
        return Plan(custom_estimate(request.estimate_bytes), tuple(m.weight_bytes for m in models))
    if request.stage == "custom":
        raise ValueError("stage 'custom' needs estimate_gb above 0 (the memory the stage needs, in GB)")
    if workload is None:
        raise ValueError(f"stage '{request.stage}' needs the frame size and length (connect a scene, or set "
                         "width, height and frames)")
    if request.stage == "sample":
        dits = _dit_models(models)
        loras = [model for model in models if model.architecture.family == "lora"]
        ignored = [model for model in models if model not in dits and model not in loras]
        biggest = max(dits, key=lambda model: model.weight_bytes, default=None)
        profile = request.profile or (biggest.architecture.profile if biggest else None)
        if profile is None:
            raise ValueError("sample: no WAN model among the files and no model profile; give the diffusion "
                             "model file (models/diffusion_models or models/unet) or connect a scene")
        if biggest is None:
            weights = nominal_weights(profile)
            notes.append(f"no WAN model file given: assumed {profile} in bf16 ({gb(weights)})")
            dim = largest = parameters = None
            quant = "BF16"
        else:
            # Two experts (A14B high/low noise) take turns: ComfyUI swaps them, so the larger one counts.
            weights = biggest.weight_bytes
            dim = biggest.architecture.details.get("dim")
            largest = biggest.largest_tensor.numel if biggest.largest_tensor else None
            parameters, quant = biggest.parameters or None, biggest.quant_label
            if len(dits) > 1:
                notes.append(f"{len(dits)} WAN models take turns (experts): the largest, {biggest.name}, counts")
        weights += sum(lora.weight_bytes for lora in loras)
        notes.extend(f"not used while sampling, not counted: {model.name} ({model.architecture.label})"
                     for model in ignored)
        estimate = sample_estimate(profile, workload, weights=weights, dim=dim, largest_tensor_params=largest,
                                   efficient_attention=request.efficient_attention, dtype_bytes=request.dtype_bytes,
                                   reserved=request.reserved)
        return Plan(estimate, tuple(m.weight_bytes for m in dits + loras), tuple(notes), profile, parameters, quant,
                    dim, largest)
    if request.stage == "vae-decode":
        vaes = [model for model in models if model.architecture.family == "wan-vae"]
        dits = _dit_models(models)
        if vaes:
            vae, weights = vaes[0].architecture.variant, vaes[0].weight_bytes
        else:
            source = dits[0].architecture.details.get("vae") if dits else request.profile
            if source is None:
                raise ValueError("vae-decode: give the WAN VAE file (models/vae) or connect a scene")
            vae, weights = source, None
            notes.append(f"no VAE file given: assumed the {vae} in bf16")
        estimate = vae_decode_estimate(vae, workload, weights=weights, dtype_bytes=request.dtype_bytes,
                                       reserved=request.reserved)
        return Plan(estimate, tuple(m.weight_bytes for m in vaes), tuple(notes))
    if request.stage == "interpolate":
        weights = sum(model.weight_bytes for model in models) or DEFAULT_RIFE_WEIGHTS
        if not models:
            notes.append(f"no RIFE file given: assumed {gb(DEFAULT_RIFE_WEIGHTS)} of weights")
        rifes = [model for model in models if model.architecture.family == "rife"]
        blocks = max((int(m.architecture.details.get("blocks", 5)) for m in rifes), default=5)
        head = max((int(m.architecture.details.get("head", 16)) for m in rifes), default=16)
        carried = any(m.architecture.details.get("carried", True) for m in rifes) or not rifes
        return Plan(rife_estimate(workload, weights=weights, scale=request.rife_scale, blocks=blocks, head=head,
                                  carried=carried),
                    tuple(m.weight_bytes for m in models), tuple(notes))
    upscalers = [model for model in models if model.architecture.family == "upscaler"]
    channels = max((int(m.architecture.details.get("max_channels", 64)) for m in upscalers), default=64)
    scales = [int(m.architecture.details["scale"]) for m in upscalers if "scale" in m.architecture.details]
    scale = max(scales, default=request.upscale_scale)  # the model's own factor, read from its tensors
    if upscalers and not scales:
        notes.append(f"the upscale model's factor could not be read from its tensors: assumed {scale}x")
    weights = sum(model.weight_bytes for model in models)
    if not models:
        notes.append(f"no upscale model file given: weights not counted, {scale}x assumed")
    return Plan(upscale_estimate(workload, weights=weights, max_channels=channels, scale=scale,
                                 dtype_bytes=request.dtype_bytes),
                tuple(m.weight_bytes for m in models), tuple(notes))


def resident_models(reading: VramReading, own_weights: Sequence[int]) -> tuple[int, tuple[Any, ...]]:
    """Bytes of the stage's own models ComfyUI already holds on the device, and their handles.

    A loaded model is one of ours when its size is within 2% of one of our files' weight bytes.
    """
    resident, handles, unmatched = 0, [], list(own_weights)
    for loaded in reading.loaded:
        for size in unmatched:
            if size and abs(loaded.total - size) <= RESIDENT_MATCH * size:
                resident += loaded.loaded
                handles.append(loaded.handle)
                unmatched.remove(size)
                break
    return resident, tuple(handles)


# --------------------------------------------------------------------------- the decision


FreeMemory = Callable[[int, tuple[Any, ...]], VramReading]  # (bytes wanted free, handles to keep) -> new reading


def decide(request: GuardRequest, plan: Plan, reading: VramReading, *, resident: int = 0,
           keep: tuple[Any, ...] = (), free_memory: FreeMemory | None = None) -> Decision:
    """Decide for one reading. ``resident``: bytes of our weights already on the device. ``free_memory``
    is called (free-then-block only) to unload cached models; without it nothing is freed."""
    estimate = plan.estimate
    own_resident = min(resident, estimate.weights)
    need_full = max(0, estimate.full - own_resident)
    need_minimum = max(0, estimate.minimum - min(own_resident, estimate.minimum_weights))
    unloadable = max(0, reading.cached - resident)
    after, freed = reading, False
    if reading.free < need_full and request.policy == "free-then-block" and unloadable > 0 and free_memory:
        after, freed = free_memory(need_full, keep), True
        available, basis = after.free, "free after unloading cached models"
    elif reading.free >= need_full:
        available, basis = reading.free, "free"
    else:
        available = reading.free + unloadable
        basis = f"free once ComfyUI unloads {gb(unloadable)} of cached models" if unloadable else "free"
    fit = FIT_FULL if available >= need_full else FIT_PARTIAL if available >= need_minimum else FIT_SHORT
    short_by = max(0, need_minimum - available)
    advice: tuple[str, ...] = ()
    if fit != FIT_FULL and request.stage == "sample" and plan.profile and request.workload:
        advice = tuple(sample_advice(plan.profile, request.workload, available, weights=estimate.weights,
                                     parameters=plan.parameters, quant=plan.quant, dim=plan.dim,
                                     largest_tensor_params=plan.largest_tensor_params,
                                     efficient_attention=request.efficient_attention,
                                     dtype_bytes=request.dtype_bytes, reserved=request.reserved,
                                     short=fit == FIT_SHORT))
    elif fit == FIT_SHORT:
        advice = (_stage_advice(request.stage),)
    stage = request.stage
    if fit == FIT_FULL:
        message = f"{stage} fits: needs {gb(need_full)}, {gb(available)} {basis}"
    elif fit == FIT_PARTIAL:
        message = (f"{stage} runs lean: needs {gb(need_full)} at full speed, {gb(available)} {basis} (minimum "
                   f"{gb(need_minimum)}): {estimate.partial_note}")
    else:
        need = f"{gb(need_minimum)}" if need_minimum == need_full else \
            f"{gb(need_minimum)} at least ({gb(need_full)} at full speed)"
        message = f"{stage} needs {need}, {gb(available)} {basis} (short by {gb(short_by)})"
    if advice and fit == FIT_SHORT:
        message += ": " + " or ".join(advice)
    elif advice:
        message += ". " + "; ".join(tip[0].upper() + tip[1:] for tip in advice)
    stop = WARN if request.policy == "warn" else BLOCK
    action = stop if fit == FIT_SHORT else PASS_AFTER_FREE if freed else PASS
    return Decision(stage, request.policy, action, fit, need_full, need_minimum, reading.free, after.free,
                    reading.total, reading.cached, resident, short_by, message, advice, plan.notes)


def _stage_advice(stage: str) -> str:
    return {
        "vae-decode": "decode with VAE Decode (Tiled), or free the GPU (close other programs using it)",
        "interpolate": "set the interpolation scale to 0.5 (or 0.25 for 4K) and batch_size to 1",
        "upscale": "the upscale model itself does not fit: free the GPU, or upscale with Lanczos (no model)",
        "custom": "free the GPU (close other programs using it) or lower the stage's settings",
    }.get(stage, "free the GPU")


# --------------------------------------------------------------------------- one guard call


@dataclass(frozen=True)
class GuardResult:
    """A guard call's outcome: the decision, the reading(s), the run's breaker after it, the report text."""

    decision: Decision
    reading: VramReading
    breaker_state: str | None = None
    report: str = ""
    events: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def run_guard(request: GuardRequest, reading: VramReading, *, run_dir: str | os.PathLike[str] | None = None,
              free_memory: FreeMemory | None = None, prompt_id: str | None = None,
              outcome: breakers.OutcomeLookup | None = None, reset_breaker: bool = False,
              now: float | None = None) -> GuardResult:
    """Estimate, decide, record in the run (events + breaker) and return; raises VRAMShortError to stop.

    ``reading`` is the probe's reading (data: tests pass their own). With ``run_dir``, the decision and
    readings go to ``events.jsonl`` and the breaker in ``breaker.json`` is consulted and updated.
    """
    from ..run.events import WARNING, append_event

    now = time.time() if now is None else now
    plan = plan_stage(request)
    breaker = None
    if run_dir is not None:
        if reset_breaker:
            breakers.reset(run_dir, reason="reset_breaker on the VRAM guard", now=now)
        breaker = breakers.settle(run_dir, prompt_id, outcome, now=now)
    resident, keep = resident_models(reading, plan.own_weights)
    if breaker is not None and breaker.state(now) == breakers.CIRCUIT_OPEN:
        decision = Decision(request.stage, request.policy, WARN if request.policy == "warn" else BLOCK, "breaker",
                            plan.estimate.full, plan.estimate.minimum, reading.free, reading.free, reading.total,
                            reading.cached, resident, 0, breaker.message(now), (), plan.notes)
    else:
        decision = decide(request, plan, reading, resident=resident, keep=keep, free_memory=free_memory)
    written: list[dict[str, Any]] = []
    if run_dir is not None:
        torch_mb = {f"torch_{kind}_mb": None if value is None else round(value / MB, 1)
                    for kind, value in (("allocated", reading.torch_allocated), ("reserved", reading.torch_reserved))}
        written.append(append_event(run_dir, EVENT_GUARD, scene=request.scene, device=reading.name,
                                    device_type=reading.device_type, basis=plan.estimate.basis, **torch_mb,
                                    notes=list(plan.notes) or None, **decision.event_fields()))
        if decision.action in (WARN, BLOCK) or decision.fit == FIT_PARTIAL:
            prefix = "stopped" if decision.stops else "warning"
            written.append(append_event(run_dir, WARNING, scene=request.scene,
                                        text=f"VRAM guard ({prefix}): {decision.message}"))
        if decision.stops and decision.fit != "breaker":
            breaker = breakers.record_failure(run_dir, f"VRAM guard stopped {request.stage}: short by "
                                              f"{gb(decision.short_by)}", scene=request.scene, now=now)
        elif not decision.stops:
            breaker = breakers.arm(run_dir, request.scene, prompt_id, now=now)
    if decision.action == WARN:
        log.warning("[gemDirect] VRAM guard: %s", decision.message)
    report = format_report(decision, reading, plan, None if breaker is None else breaker.state(now))
    result = GuardResult(decision, reading, None if breaker is None else breaker.state(now), report, tuple(written))
    if decision.stops:
        raise VRAMShortError(f"gemDirect VRAM guard stopped the prompt: {decision.message}", result)
    return result


def format_report(decision: Decision, reading: VramReading, plan: Plan, breaker_state: str | None) -> str:
    """The guard's report output: decision, device, need, and how the estimate was built."""
    lines = [f"{decision.action.upper()} ({decision.fit}): {decision.message}",
             f"device: {reading.name} ({reading.device_type}), {gb(reading.free)} free of {gb(reading.total)}"
             + (f", {gb(reading.cached)} in cached models" if reading.cached else "")
             + (f", free after unloading: {gb(decision.free_after)}" if decision.free_after != decision.free_before
                else ""),
             f"estimate: {plan.estimate.basis}"]
    lines.extend(f"note: {note}" for note in (*reading.notes, *plan.notes))
    if breaker_state is not None:
        lines.append(f"circuit breaker: {breaker_state}")
    return "\n".join(lines)
