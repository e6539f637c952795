"""A reference RIFE IFNet written from the published architectures, independent of nodes/interpolate/ifnet.py.

``PUBLISHED`` restates, release by release, what each published IFNet_HDv3 declares: the feature
encoder (none; 4.7's two-layer ``encode.0``/``encode.1``; 4.10's Sequential ``encode.0,2,4,6``; the
``Head`` ``cnn0..cnn3`` of some width and output), the block widths ``c=``, the ``lastconv`` output
(4*6 or 4*13 channels), the ``scale_list`` and whether the release has an ensemble pass. The network
below follows the published forward step by step (frames clamped, features encoded per frame, warped
features, carried block features for 4.21+, ``mask = mask + m`` for 4.6), so a bug in the pack's
table-driven network shows up as a difference. The benchmark's core-style path uses it too
(``benchmarks/interpolate.py``), with features passed in as ComfyUI's FrameInterpolate caches them.

Parameter names are the frame-interpolation layout (``block0.conv0.0.0.weight``, ``encode.cnn3.bias``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# release -> (encoder, widths, lastconv channels / 4, scale_list, ensemble)
_HEAD16, _HEAD32 = ("head", 16, 4), ("head", 32, 8)
PUBLISHED = {
    "4.6": (None, (192, 128, 96, 64), 6, (8, 4, 2, 1), True),
    "4.7": (("seq2", 16, 4), (192, 128, 96, 64), 6, (8, 4, 2, 1), True),
    "4.10": (("seq4", 32, 8), (192, 128, 96, 64), 6, (8, 4, 2, 1), True),
    "4.17": (_HEAD32, (192, 128, 96, 64), 6, (8, 4, 2, 1), True),
    "4.15.lite": (_HEAD16, (128, 96, 64, 48), 6, (8, 4, 2, 1), True),
    "4.20": (_HEAD32, (384, 192, 96, 48), 6, (8, 4, 2, 1), True),
    "4.21": (_HEAD32, (256, 192, 96, 48), 13, (8, 4, 2, 1), False),
    "4.22.lite": (_HEAD16, (192, 128, 64, 32), 13, (8, 4, 2, 1), False),
    "4.25": (_HEAD16, (192, 128, 96, 64, 32), 13, (16, 8, 4, 2, 1), False),
    "4.25.lite": (_HEAD16, (192, 128, 96, 64, 24), 13, (32, 16, 8, 4, 1), False),
    "4.25.heavy": (_HEAD16, (384, 256, 192, 128, 64), 13, (16, 8, 4, 2, 1), False),
    "4.26.heavy": (("head", 16, 16), (192, 128, 96, 64, 32), 13, (16, 8, 4, 2, 1), False),
}


def _conv(cin, cout, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2, True))


class Head(nn.Module):
    def __init__(self, width, out):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, width, 3, 2, 1)
        self.cnn1 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn2 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(width, out, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        x = x.clamp(0.0, 1.0)
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


def _encoder(kind, width, out):
    if kind == "seq2":
        return nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ConvTranspose2d(width, out, 4, 2, 1))
    if kind == "seq4":
        return nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.LeakyReLU(0.2, True),
                             nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(0.2, True),
                             nn.Conv2d(width, width, 3, 1, 1), nn.LeakyReLU(0.2, True),
                             nn.ConvTranspose2d(width, out, 4, 2, 1))
    return Head(width, out)


class ResConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    def __init__(self, in_planes, c, out):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 2), _conv(c // 2, c, 2))
        self.convblock = nn.Sequential(*(ResConv(c) for _ in range(8)))
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * out, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x, flow=None, scale=1):
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear")
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear") / scale
            x = torch.cat((x, flow), 1)
        tmp = self.lastconv(self.convblock(self.conv0(x)))
        tmp = F.interpolate(tmp, scale_factor=scale, mode="bilinear")
        return tmp[:, :4] * scale, tmp[:, 4:5], tmp[:, 5:]


def warp(img, flow):
    _, _, h, w = flow.shape
    ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(flow.shape[0], -1, -1, w)
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(flow.shape[0], -1, h, -1)
    grid = torch.cat((xs, ys), 1)
    flow = torch.cat((flow[:, 0:1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)), 1)
    return F.grid_sample(img, (grid + flow).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border",
                         align_corners=True)


class ReferenceIFNet(nn.Module):
    def __init__(self, release: str):
        super().__init__()
        encoder, widths, out, scales, ensemble = PUBLISHED[release]
        feat = 2 * encoder[2] if encoder else 0
        carried = out - 5 if out == 13 else 0
        self.release, self.scales, self.has_ensemble, self.count = release, scales, ensemble, len(widths)
        for i, c in enumerate(widths):
            cin = 7 + feat if i == 0 else 8 + 4 + feat + carried
            self.add_module(f"block{i}", IFBlock(cin, c, out))
        if encoder:
            self.encode = _encoder(*encoder)
        self.carries = carried > 0

    def features(self, img):
        return self.encode(img.clamp(0.0, 1.0)) if hasattr(self, "encode") else None

    def forward(self, img0, img1, timestep, ensemble=False, f0=None, f1=None):
        """``timestep`` [N,1,H,W]; ``f0``/``f1`` cached per-frame features (else encoded here)."""
        img0, img1 = img0.clamp(0.0, 1.0), img1.clamp(0.0, 1.0)
        if hasattr(self, "encode") and f0 is None:
            f0, f1 = self.features(img0), self.features(img1)
        heads = [f0, f1] if f0 is not None else []
        warped0, warped1 = img0, img1
        flow = mask = feat = None
        for i in range(self.count):
            block, scale = getattr(self, f"block{i}"), self.scales[i]
            if flow is None:
                flow, mask, feat = block(torch.cat((img0, img1, *heads, timestep), 1), None, scale)
                if ensemble:
                    f_, m_, _ = block(torch.cat((img1, img0, *heads[::-1], 1 - timestep), 1), None, scale)
                    flow = (flow + torch.cat((f_[:, 2:4], f_[:, :2]), 1)) / 2
                    mask = (mask + (-m_)) / 2
            else:
                wf = [warp(f0, flow[:, :2]), warp(f1, flow[:, 2:4])] if heads else []
                extra = [feat] if self.carries else []
                fd, m0, feat_next = block(torch.cat((warped0, warped1, *wf, timestep, mask, *extra), 1), flow, scale)
                if ensemble:
                    f_, m_, _ = block(torch.cat((warped1, warped0, *wf[::-1], 1 - timestep, -mask), 1),
                                      torch.cat((flow[:, 2:4], flow[:, :2]), 1), scale)
                    fd = (fd + torch.cat((f_[:, 2:4], f_[:, :2]), 1)) / 2
                    m0 = (m0 + (-m_)) / 2
                feat = feat_next
                mask = mask + m0 if self.release == "4.6" else m0
                flow = flow + fd
            warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        mask = torch.sigmoid(mask)
        return warped0 * mask + warped1 * (1 - mask)
