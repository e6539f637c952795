"""The scene's last latents in the run ledger: ``scenes/<id>_latents.safetensors`` beside its master.

Scene Save keeps the last :data:`KEEP_LATENT_FRAMES` latent frames of the sampler's output (``[B, C, T, H, W]``,
batch 0, float32) and records the file in the scene record's ``Extra.Latents`` (``Path``, ``Shape``,
``Frames``, ``TotalFrames``, ``Sha256`` of the file). A reader trusts the file only when the scene's record
says Success and the file's sha256 is the one recorded, so latents of an earlier attempt (or a file
another process is replacing) are never continued from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..paths import file_sha256
from ..run import ledger
from ..run.atomic import atomic_path

KEEP_LATENT_FRAMES = 8  # = layout.MAX_MOTION_LATENTS: enough for any motion_latent_count
LATENTS_KEY = "last_latents"


def latents_path(run: ledger.Run, scene_id: str) -> str:
    return ledger.scene_paths(run, scene_id).record[: -len(".json")] + "_latents.safetensors"


def as_samples(latent: Any) -> Any:
    """A LATENT (``{"samples": [B,C,T,H,W]}``) or a tensor -> the tensor; ValueError names the problem."""
    samples = latent.get("samples") if isinstance(latent, Mapping) else latent
    if samples is None or not hasattr(samples, "ndim"):
        raise ValueError("latent: not a LATENT; connect the sampler's LATENT output")
    if samples.ndim != 5:
        raise ValueError(f"latent: shape {list(samples.shape)} is not a video latent [B,C,T,H,W] (WAN); "
                         "connect the video sampler's output")
    return samples


def save_last_latents(run: ledger.Run, scene_id: str, latent: Any) -> dict[str, Any]:
    """Write the scene's last latent frames (atomically); returns the record's ``Extra.Latents`` entry."""
    from safetensors.torch import save_file

    samples = as_samples(latent)
    kept = samples[:1, :, -KEEP_LATENT_FRAMES:].detach().to("cpu").float().contiguous()
    target = latents_path(run, scene_id)
    metadata = {"scene": scene_id, "total_frames": str(int(samples.shape[2])), "format": "gemdirect.latents/1"}
    with atomic_path(target) as temp:
        save_file({LATENTS_KEY: kept}, temp, metadata=metadata)
    return {"Path": ledger.relative_path(run, target), "Shape": list(kept.shape), "Frames": int(kept.shape[2]),
            "TotalFrames": int(samples.shape[2]), "Sha256": file_sha256(target)}


def remove_last_latents(run: ledger.Run, scene_id: str) -> bool:
    """Remove a latents file an earlier save left (this save has no LATENT); True if one was there."""
    try:
        os.unlink(latents_path(run, scene_id))
        return True
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class PreviousLatents:
    scene_id: str
    samples: Any | None  # [1, C, T, H, W] float32, or None
    why_not: str | None  # set when samples is None
    path: str | None = None


def load_last_latents(run: ledger.Run, scene_id: str) -> PreviousLatents:
    """Scene ``scene_id``'s kept latents if its record vouches for them, else why not (never raises for a
    missing or stale file: the caller starts from the anchor and says so)."""
    from safetensors import safe_open

    record = ledger.read_scene(run, scene_id)
    if record is None:
        return PreviousLatents(scene_id, None, f"previous scene '{scene_id}' has not been rendered in run {run.run_id}")
    if record.get("Success") is not True:
        return PreviousLatents(scene_id, None, f"previous scene '{scene_id}' failed in run {run.run_id}")
    entry = (record.get("Extra") or {}).get("Latents")
    if not entry:
        return PreviousLatents(scene_id, None, f"previous scene '{scene_id}' was saved without its latents (connect "
                               "the sampler's LATENT to Scene Save's latent input)")
    path = ledger.resolve_in_run(run.run_dir, entry["Path"])
    if not os.path.isfile(path):
        return PreviousLatents(scene_id, None, f"previous scene '{scene_id}': its latents file {entry['Path']} is gone")
    if file_sha256(path) != entry.get("Sha256"):
        return PreviousLatents(scene_id, None, f"previous scene '{scene_id}': {entry['Path']} is not the file its "
                               "record names (changed since it was saved); re-render that scene")
    with safe_open(path, framework="pt", device="cpu") as handle:
        samples = handle.get_tensor(LATENTS_KEY)
    return PreviousLatents(scene_id, samples, None, entry["Path"])
