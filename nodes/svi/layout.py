"""The SVI 2.0 Pro conditioning layout, in latent space (no ComfyUI import).

Published layout (KJNodes' ``WanImageToVideoSVIPro``): for a clip of ``length`` frames the latent has
``T = (length - 1) // 4 + 1`` frames; the image-concat latent is

    [anchor latent (its frames), the previous clip's last ``motion_latent_count`` latents, padding]

where padding is zero *after* the model's latent normalisation (raw value = the latent format's mean,
``process_out(0)``), and the concat mask is 1 everywhere but latent frame 0 (0 = known). The sampler's
latent is zeros ``[B, C, T, H, W]``. An end latent (a keyframe) takes the last slot and that slot's mask
is 0 as well (first/last-frame style).

Two model families:

- 16 channels (WAN 2.2 I2V A14B, WAN 2.1 VAE): the layout goes into the conditioning as
  ``concat_latent_image`` / ``concat_mask``; the DiT reads 16 + 4 mask + 16 channels.
- 48 channels (WAN 2.2 TI2V 5B, WAN 2.2 VAE): the 5B DiT has no image-concat channels (ComfyUI drops
  ``concat_latent_image`` for it), so the same slots are written into the sampler's latent and held by its
  ``noise_mask`` (0 = keep), the way Wan22ImageToVideoLatent holds its start image. Motion latents are then
  kept as they are (re-noising them would lose them), so the 5B continues by overlap, not by SVI's
  soft motion conditioning; :func:`svi_layout` says so in ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where tensors are made: listing the nodes must not load torch
    import torch

# Per-channel means of ComfyUI's Wan21 (16) and Wan22 (48) latent formats: a normalised zero, in raw VAE space.
WAN21_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN22_LATENT_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667)
LATENT_MEANS = {16: WAN21_LATENT_MEAN, 48: WAN22_LATENT_MEAN}
CONCAT_FAMILY, IN_LATENT_FAMILY = "concat", "in-latent"
MAX_MOTION_LATENTS = 8


class SVILayoutError(ValueError):
    """Latents that do not fit the layout; the message names both shapes and the fix."""


@dataclass
class SVILayout:
    """What the continuation node outputs. Tensors are ``[B, C, T, H, W]`` / mask ``[1, 1, T, H, W]``."""

    family: str  # concat (16-channel 14B) | in-latent (48-channel 5B)
    latent: torch.Tensor  # the sampler's latent
    image: torch.Tensor  # the slot layout: anchor, motion, padding (, end)
    mask: torch.Tensor  # 0 = known slot, 1 = generated
    slots: list[str]  # per latent frame: anchor | motion | pad | end
    notes: list[str] = field(default_factory=list)

    def conditioning_values(self) -> dict[str, torch.Tensor]:
        """Values set on positive and negative (concat family); empty for the in-latent family."""
        if self.family != CONCAT_FAMILY:
            return {}
        return {"concat_latent_image": self.image, "concat_mask": self.mask}

    def latent_dict(self) -> dict[str, torch.Tensor]:
        """The LATENT output: zeros to sample (concat), or the slots with a noise_mask (in-latent)."""
        if self.family == CONCAT_FAMILY:
            return {"samples": self.latent}
        return {"samples": self.latent, "noise_mask": self.mask}


def latent_frames(length: int) -> int:
    """Latent frames of a WAN clip of ``length`` (4n+1) frames: 81 -> 21."""
    return (int(length) - 1) // 4 + 1


def normalised_zero(channels: int, like: torch.Tensor) -> torch.Tensor:
    """``[1, C, 1, 1, 1]``: what zero after the latent format's process_in is in raw VAE space."""
    import torch

    if channels not in LATENT_MEANS:
        raise SVILayoutError(f"latents have {channels} channels; SVI continuation knows WAN latents of 16 "
                             "(WAN 2.1 VAE, 14B) or 48 (WAN 2.2 VAE, 5B) channels")
    return torch.tensor(LATENT_MEANS[channels], dtype=like.dtype, device=like.device).view(1, channels, 1, 1, 1)


def _check(name: str, tensor: torch.Tensor, anchor: torch.Tensor) -> None:
    if tensor.ndim != 5:
        raise SVILayoutError(f"{name}: latent of shape {list(tensor.shape)} is not a video latent [B,C,T,H,W]")
    if tensor.shape[1] != anchor.shape[1] or tensor.shape[-2:] != anchor.shape[-2:]:
        raise SVILayoutError(
            f"{name}: latent {list(tensor.shape)} does not match the anchor's {list(anchor.shape)} (channels and "
            f"size must agree: {tensor.shape[-1] * 8}x{tensor.shape[-2] * 8} vs {anchor.shape[-1] * 8}x"
            f"{anchor.shape[-2] * 8} pixels at the VAE's 8x); render every scene of an SVI chain at one size and "
            "with one VAE")


def svi_layout(anchor: torch.Tensor, length: int, motion: torch.Tensor | None = None, motion_latent_count: int = 1,
               end: torch.Tensor | None = None) -> SVILayout:
    """The SVI layout for a clip of ``length`` frames.

    anchor: ``[B, C, Ta, H, W]`` (usually Ta = 1: one VAE-encoded image). motion: the previous clip's latents
    ``[B, C, Tp, H, W]`` (its last ``motion_latent_count`` frames are used), or None for a first clip.
    end: ``[B, C, 1+, H, W]`` (its first frame locks the last slot), or None.
    """
    import torch

    _check("anchor", anchor, anchor)
    channels = int(anchor.shape[1])
    zero = normalised_zero(channels, anchor)
    total = latent_frames(length)
    parts, slots = [anchor], ["anchor"] * int(anchor.shape[2])
    count = max(0, int(motion_latent_count))
    if count > MAX_MOTION_LATENTS:
        raise SVILayoutError(f"motion_latent_count = {count} is above {MAX_MOTION_LATENTS}; SVI uses 1 (more "
                             "freezes motion)")
    if motion is not None and count:
        _check("previous latents", motion, anchor)
        if motion.shape[2] < count:
            raise SVILayoutError(f"motion_latent_count = {count} but the previous scene kept only {motion.shape[2]} "
                                 "latent frames; lower motion_latent_count")
        parts.append(motion[:, :, -count:].to(anchor.dtype))
        slots += ["motion"] * count
    end_frames = 0
    if end is not None:
        _check("end latent", end, anchor)
        end_frames = 1
    used = len(slots) + end_frames
    if used > total:
        raise SVILayoutError(f"length {length} gives {total} latent frames, fewer than the {used} the anchor, "
                             f"motion latents{' and end latent' if end_frames else ''} need; make the scene longer "
                             "or lower motion_latent_count")
    batch, height, width = int(anchor.shape[0]), int(anchor.shape[3]), int(anchor.shape[4])
    padding = zero.expand(batch, channels, total - used, height, width)
    parts.append(padding)
    slots += ["pad"] * (total - used)
    if end_frames:
        parts.append(end[:, :, :1].to(anchor.dtype))
        slots.append("end")
    image = torch.cat(parts, dim=2).contiguous()
    mask = torch.ones((1, 1, total, height, width), dtype=anchor.dtype, device=anchor.device)
    mask[:, :, :1] = 0.0
    if end_frames:
        mask[:, :, -1:] = 0.0
    if channels == 16:
        latent = torch.zeros((batch, channels, total, height, width), dtype=torch.float32, device=anchor.device)
        return SVILayout(CONCAT_FAMILY, latent, image, mask, slots)
    # 48 channels (5B): slots held in the latent itself; motion latents must be held too or the noise erases them.
    held = mask.clone()
    held[:, :, [i for i, slot in enumerate(slots) if slot == "motion"]] = 0.0
    notes = ["48-channel latents (WAN 2.2 5B): no image-concat channels, so the anchor, motion and end latents are "
             "held in the sampler's latent by its noise_mask (continuation by overlap, not SVI's soft conditioning)"]
    return SVILayout(IN_LATENT_FAMILY, image.float().clone(), image, held, slots, notes)
