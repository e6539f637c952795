"""IFNet (RIFE v4.x), one network for every supported release, shaped by a small version table.

The releases differ only in data: block widths, how many blocks (four or five), the feature head
that encodes each frame (none, a two-layer encoder, or a four-layer head of some width), how many
channels a block emits (flow 4 + mask 1 + carried features), and whether a block's mask adds to the
previous one or replaces it. Parameter names match the published checkpoints, so their state dicts
load as they are (``block0.conv0.0.0.weight``, ``encode.cnn3.bias``, ...; see ``loader.py``).

Frames are ``[N,3,H,W]`` float in 0..1 inside this module; ``timestep`` is ``[N]`` or ``[N,1,1,1]``
in 0..1 (0 = the first frame, 1 = the second).

Padding rule (see docs/interpolate.md): frames are padded on the right and bottom by repeating the
edge pixels up to a multiple of ``4 x the coarsest scale`` (32 for four blocks, 64 for five, at
``scale`` 1), then cropped back. Edge repetition works for any frame size (reflection cannot pad
more than the frame is wide) and puts no black border next to the picture for the flow to latch on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- the version table


@dataclass(frozen=True)
class HeadSpec:
    """The per-frame feature encoder: conv stride 2, (width->width convs), transposed conv x2 up."""

    names: tuple[str, ...]  # parameter names of its layers, first to last
    width: int  # channels of its hidden layers
    out: int  # feature channels it gives each block (per frame)
    relu_between: bool  # LeakyReLU(0.2) after every layer but the last


@dataclass(frozen=True)
class IFNetSpec:
    """One architecture. ``releases`` share it (and so cannot be told apart by their keys)."""

    arch: str  # the label used in telemetry: rife-<arch>
    releases: tuple[str, ...]
    widths: tuple[int, ...]  # channels of each IFBlock, block0 first
    head: HeadSpec | None
    carried: int  # feature channels a block hands to the next (4.25+), 0 if none
    block_out: int  # channels a block emits after PixelShuffle: flow 4 + mask 1 + carried (min 6)
    mask_accumulates: bool  # 4.6: mask += block mask; 4.7+: mask = block mask
    ensemble: bool  # the release defines a reversed-order pass to average with
    scales: tuple[int, ...] = ()  # each block's downscale at scale 1 when not [.., 4, 2, 1] (4.25.lite)

    @property
    def head_out(self) -> int:
        return self.head.out if self.head else 0

    @property
    def block0_in(self) -> int:
        """img0 3 + img1 3 + both frames' features + timestep 1."""
        return 7 + 2 * self.head_out

    @property
    def block_in(self) -> int:
        """warped0 3 + warped1 3 + warped features + timestep 1 + mask 1 + carried + flow 4."""
        return 12 + 2 * self.head_out + self.carried

    def scale_list(self, scale: float = 1.0) -> list[float]:
        """Downscale factor of each block, coarsest first: [8,4,2,1] or [16,8,4,2,1], divided by ``scale``."""
        count = len(self.widths)
        base = self.scales or tuple(2 ** (count - 1 - i) for i in range(count))
        return [s / scale for s in base]

    def pad_multiple(self, scale: float = 1.0) -> int:
        """Frame sides are padded to a multiple of this: the coarsest block sees H/s, then halves twice."""
        return max(1, math.ceil(4 * self.scale_list(scale)[0]))


_HEAD_47 = HeadSpec(names=("0", "1"), width=16, out=4, relu_between=False)
_HEAD_410 = HeadSpec(names=("0", "2", "4", "6"), width=32, out=8, relu_between=True)
_HEAD_417 = HeadSpec(names=("cnn0", "cnn1", "cnn2", "cnn3"), width=32, out=8, relu_between=True)
_HEAD_425 = HeadSpec(names=("cnn0", "cnn1", "cnn2", "cnn3"), width=16, out=4, relu_between=True)

_HEAD_426H = HeadSpec(names=("cnn0", "cnn1", "cnn2", "cnn3"), width=16, out=16, relu_between=True)
_W4 = (192, 128, 96, 64)  # the four-block widths most releases share
_W5 = (192, 128, 96, 64, 32)

# Checked against the published IFNet_HDv3 of each release (block widths c=, Head layers, block count,
# scale_list, lastconv 4*6 or 4*13). Releases in one row have the same tensors and shapes: a file cannot
# tell them apart, so they load as one architecture (telemetry names the row: rife-<arch>).
VERSIONS: dict[str, IFNetSpec] = {
    spec.arch: spec
    for spec in (
        IFNetSpec("4.6", ("4.6",), _W4, None, 0, 6, True, True),
        IFNetSpec("4.7", ("4.7", "4.8", "4.9"), _W4, _HEAD_47, 0, 6, False, True),
        IFNetSpec("4.10", ("4.10", "4.11", "4.12"), _W4, _HEAD_410, 0, 6, False, True),
        IFNetSpec("4.17", ("4.13", "4.14", "4.15", "4.17", "4.18", "4.19", "4.24", "4.14.lite"), _W4, _HEAD_417,
                  0, 6, False, True),
        IFNetSpec("4.15.lite", ("4.15.lite", "4.16.lite", "4.17.lite"), (128, 96, 64, 48), _HEAD_425, 0, 6, False,
                  True),
        IFNetSpec("4.20", ("4.20",), (384, 192, 96, 48), _HEAD_417, 0, 6, False, True),
        IFNetSpec("4.21", ("4.21", "4.22", "4.23"), (256, 192, 96, 48), _HEAD_417, 8, 13, False, False),
        IFNetSpec("4.22.lite", ("4.22.lite",), (192, 128, 64, 32), _HEAD_425, 8, 13, False, False),
        IFNetSpec("4.25", ("4.25", "4.26"), _W5, _HEAD_425, 8, 13, False, False),
        IFNetSpec("4.25.lite", ("4.25.lite",), (192, 128, 96, 64, 24), _HEAD_425, 8, 13, False, False,
                  scales=(32, 16, 8, 4, 1)),
        IFNetSpec("4.25.heavy", ("4.25.heavy",), tuple(2 * w for w in _W5), _HEAD_425, 8, 13, False, False),
        IFNetSpec("4.26.heavy", ("4.26.heavy",), _W5, _HEAD_426H, 8, 13, False, False),
    )
}



def supported_releases() -> str:
    """Every release that loads, in table order: '4.6, 4.7, 4.8, ...' (for tooltips and errors)."""
    return ", ".join(r for spec in VERSIONS.values() for r in spec.releases)


# --------------------------------------------------------------------------- layers


def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    """3x3 conv scaled per channel by ``beta``, plus the input, then LeakyReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # beta folded into the conv (the same sum, one pass over the feature map fewer); then the
        # residual and the LeakyReLU in place on the conv's fresh output
        beta = self.beta.reshape(-1)
        out = F.conv2d(x, self.conv.weight * beta.reshape(-1, 1, 1, 1), self.conv.bias * beta, 1, 1)
        return F.leaky_relu_(out.add_(x), 0.2)


class Head(nn.Module):
    """Per-frame feature encoder (4.7+): [N,3,H,W] -> [N,out,H,W]."""

    def __init__(self, spec: HeadSpec):
        super().__init__()
        self.relu_between = spec.relu_between
        last = len(spec.names) - 1
        for i, name in enumerate(spec.names):
            if i == 0:
                layer: nn.Module = nn.Conv2d(3, spec.width, 3, 2, 1)
            elif i == last:
                layer = nn.ConvTranspose2d(spec.width, spec.out, 4, 2, 1)
            else:
                layer = nn.Conv2d(spec.width, spec.width, 3, 1, 1)
            self.add_module(name, layer)
        self.layer_names = spec.names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layer_names) - 1
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if self.relu_between and i < last:
                x = F.leaky_relu(x, 0.2)
        return x


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by ``factor`` (align_corners=False, as the releases); 1 is the identity and is skipped."""
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class IFBlock(nn.Module):
    """One coarse-to-fine step: look at the inputs at 1/scale, emit flow (4), mask (1), features."""

    def __init__(self, cin: int, width: int, out: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(cin, width // 2, 2), _conv(width // 2, width, 2))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * out, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, parts: list[torch.Tensor], flow: torch.Tensor | None, scale: float) -> torch.Tensor:
        """``parts`` in channel order, each resized on its own (the same numbers as resizing their
        concatenation, without a full-size copy); a part of spatial size 1x1 is a per-sample constant
        (the timestep), expanded at the small size. Returns the output at full size, flow not yet scaled."""
        small = [None if p.shape[-1] == 1 else _resize(p, 1.0 / scale) for p in parts]
        size = next(p for p in small if p is not None).shape[-2:]
        x = [p if p is not None else q.expand(-1, -1, *size) for p, q in zip(small, parts, strict=True)]
        if flow is not None:
            x.append(_resize(flow, 1.0 / scale) / scale)
        x = torch.cat(x, 1).to(self.lastconv[0].weight.dtype)  # the convolutions run in the model's dtype
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN/cuDNN's fast layout (weights too: loader)
        return _resize(self.lastconv(self.convblock(self.conv0(x))).float(), scale)  # flow and mask in fp32


_grids: dict[tuple, torch.Tensor] = {}


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` [N,C,H,W] at each pixel plus ``flow`` [N,2,H,W] (pixels, x then y); edges repeat.

    Always in float32: in fp16 a coordinate in -1..1 is only good to about 1/1000, a whole pixel at 1080p.
    """
    h, w = flow.shape[-2:]
    key = (flow.device, h, w)
    dtype = image.dtype
    grid = _grids.get(key)
    if grid is None:
        ys = torch.linspace(-1.0, 1.0, h, device=flow.device)
        xs = torch.linspace(-1.0, 1.0, w, device=flow.device)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).unsqueeze(0)  # [1,H,W,2]
        if len(_grids) > 16:  # frame sizes change rarely; keep the cache small anyway
            _grids.clear()
        _grids[key] = grid
    per_px = torch.tensor([(w - 1.0) / 2.0, (h - 1.0) / 2.0], device=flow.device)
    coords = grid + flow.float().permute(0, 2, 3, 1) / per_px
    return F.grid_sample(image.float(), coords, mode="bilinear", padding_mode="border",
                         align_corners=True).to(dtype)


def _swap(flow: torch.Tensor) -> torch.Tensor:
    """(flow t->0, flow t->1) as (flow t->1, flow t->0): the flow seen with the frames swapped."""
    return torch.cat((flow[:, 2:4], flow[:, :2]), 1)


# --------------------------------------------------------------------------- the network


class IFNet(nn.Module):
    """RIFE's IFNet for one :class:`IFNetSpec`. Weights load from the release's state dict as is.

    Speed (the same numbers as the releases' forward, fewer passes over full-size memory): each
    frame's features can be computed once and reused for every pair it is in (``prepare``); block
    inputs are resized piece by piece instead of concatenated at full size; the timestep is a
    constant expanded only at the block's size; resizes by 1 are skipped; one warp moves both frames
    and their features at once.
    """

    def __init__(self, spec: IFNetSpec):
        super().__init__()
        self.spec = spec
        for i, width in enumerate(spec.widths):
            cin = spec.block0_in if i == 0 else spec.block_in
            self.add_module(f"block{i}", IFBlock(cin, width, spec.block_out))
        if spec.head is not None:
            self.encode = Head(spec.head)

    @property
    def blocks(self) -> list[IFBlock]:
        return [getattr(self, f"block{i}") for i in range(len(self.spec.widths))]

    def _block(self, block: IFBlock, parts: list[torch.Tensor], flow: torch.Tensor | None,
               scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        out = block(parts, flow, scale)
        carried = out[:, 5:5 + self.spec.carried] if self.spec.carried else None
        delta = out[:, :4] if scale == 1 else out[:, :4] * scale
        return delta, out[:, 4:5], carried

    @staticmethod
    def _warp_pair(source: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``source`` = frame 0's and frame 1's tensors stacked on the batch axis; each moved by its flow."""
        n = flow.shape[0]
        moved = warp(source, torch.cat((flow[:, :2], flow[:, 2:4]), 0))
        return moved[:n], moved[n:]

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor,
                scale_list: list[float], ensemble: bool = False, feat0: torch.Tensor | None = None,
                feat1: torch.Tensor | None = None) -> torch.Tensor:
        """Frame at ``timestep`` between ``img0`` and ``img1`` ([N,3,H,W], sides already padded).

        ``timestep``: [N] or [N,1,1,1]. ``feat0``/``feat1``: the frames' features from
        :meth:`features` (computed here when not given). ``ensemble`` also runs each block on the
        swapped pair and averages the two answers before the flow is updated (``spec.ensemble``).
        """
        spec = self.spec
        n = img0.shape[0]
        t = timestep.reshape(n, 1, 1, 1).to(img0.dtype)
        if spec.head is not None and feat0 is None:
            feats = self.encode(torch.cat((img0, img1), 0))
            feat0, feat1 = feats[:n], feats[n:]
        heads = [feat0, feat1] if spec.head is not None else []
        images = torch.cat((img0, img1), 0).float()  # warped and blended in fp32 whatever the model's dtype
        with_heads = torch.cat((torch.cat((img0, feat0), 1), torch.cat((img1, feat1), 1)), 0) if heads else images
        flow = mask = carried = None
        warped0, warped1, moved_heads = img0, img1, heads
        count = len(spec.widths)
        for i, block in enumerate(self.blocks):
            scale = scale_list[i]
            if flow is None:
                flow, mask, carried = self._block(block, [img0, img1, *heads, t], None, scale)
                if ensemble:
                    flow_r, mask_r, _ = self._block(block, [img1, img0, *heads[::-1], 1 - t], None, scale)
                    flow = (flow + _swap(flow_r)) / 2
                    mask = (mask - mask_r) / 2
            else:
                extra = [carried] if carried is not None else []
                delta, block_mask, carried = self._block(
                    block, [warped0, warped1, *moved_heads, t, mask, *extra], flow, scale)
                if ensemble:
                    delta_r, mask_r, _ = self._block(
                        block, [warped1, warped0, *moved_heads[::-1], 1 - t, -mask], _swap(flow), scale)
                    delta = (delta + _swap(delta_r)) / 2
                    block_mask = (block_mask - mask_r) / 2
                flow = flow + delta
                mask = mask + block_mask if spec.mask_accumulates else block_mask
            if i < count - 1 and heads:
                moved0, moved1 = self._warp_pair(with_heads, flow)
                warped0, warped1 = moved0[:, :3], moved1[:, :3]
                moved_heads = [moved0[:, 3:], moved1[:, 3:]]
            else:
                warped0, warped1 = self._warp_pair(images, flow)
        return torch.lerp(warped1.float(), warped0.float(), torch.sigmoid(mask))

    def features(self, frames: torch.Tensor) -> torch.Tensor | None:
        """Per-frame features [N,head,H,W] of prepared frames (None for 4.6, which has no head)."""
        return self.encode(frames) if self.spec.head is not None else None

    @torch.no_grad()
    def prepare(self, frames: torch.Tensor, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames [N,3,H,W] (0..1, any size) ready for :meth:`forward`: on the model's device and dtype,
        clamped to 0..1, padded by edge repetition (module docstring); and their features."""
        param = next(self.parameters())
        frames = frames.to(param.device, param.dtype).clamp(0, 1)
        h, w = frames.shape[-2:]
        multiple = self.spec.pad_multiple(scale)
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if pad_h or pad_w:
            frames = F.pad(frames, (0, pad_w, 0, pad_h), mode="replicate")
        return frames.contiguous(), self.features(frames)

    @torch.no_grad()
    def interpolate(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor | float,
                    scale: float = 1.0, ensemble: bool = False) -> torch.Tensor:
        """Frames between ``img0`` and ``img1`` ([N,3,H,W] float, any size, 0..1) at ``timestep``.

        ``timestep``: a float or [N] in 0..1. ``scale`` < 1 estimates motion on a coarser grid (0.5 for
        4K). Pads by edge repetition (module docstring), clamps inputs to 0..1, crops the result back
        to HxW. Convolutions run in the model's dtype on its device; flow, mask, warps and the blend in
        fp32 (a bf16 flow would be off by half a pixel at 1080p motion). Returns float32.
        """
        h, w = img0.shape[-2:]
        (a, fa), (b, fb) = self.prepare(img0, scale), self.prepare(img1, scale)
        return self.run_prepared(a, b, timestep, fa, fb, scale, ensemble)[:, :, :h, :w]

    @torch.no_grad()
    def run_prepared(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor | float,
                     feat0: torch.Tensor | None, feat1: torch.Tensor | None, scale: float = 1.0,
                     ensemble: bool = False) -> torch.Tensor:
        """:meth:`forward` on frames and features from :meth:`prepare` (padded size out)."""
        if ensemble and not self.spec.ensemble:
            raise ValueError(f"RIFE {self.spec.arch} has no ensemble mode; turn ensemble off")
        n = img0.shape[0]
        if not torch.is_tensor(timestep):
            timestep = torch.full((n,), float(timestep))
        timestep = timestep.to(img0.device, img0.dtype).reshape(n, 1, 1, 1)
        return self.forward(img0, img1, timestep, self.spec.scale_list(scale), ensemble, feat0, feat1)


def build(arch: str) -> IFNet:
    """A randomly initialised IFNet of architecture ``arch`` (a key of :data:`VERSIONS`)."""
    try:
        return IFNet(VERSIONS[arch])
    except KeyError:
        raise ValueError(f"unknown RIFE architecture '{arch}'; known: {', '.join(VERSIONS)}") from None
