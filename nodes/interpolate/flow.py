"""The weightless method ``flow``: OpenCV dense optical flow both ways, warp, occlusion-aware blend.

For frames A (t=0) and B (t=1):

1. DIS optical flow (Kroeger et al. 2016, OpenCV's ``DISOpticalFlow``, medium preset) A->B
   (``f_ab``) and B->A (``f_ba``) on grey frames. Farneback was tried first: on fine texture it
   leaves wrong patches (27-29 dB on the test pattern where DIS gives 38 dB) and is slower.
2. Occlusion: a pixel of A whose flow, followed to B and back, does not return near itself is not
   visible in B (forward-backward check of Sundaram et al. 2010); the same for B.
3. Flow from the middle frame back to each end, assuming straight, even motion (Super SloMo's
   approximation): ``f_t0 = -(1-t) t f_ab + t^2 f_ba`` and ``f_t1 = (1-t)^2 f_ab - t (1-t) f_ba``.
4. Both ends are warped to time t; each pixel blends them weighted by closeness in time
   (``1-t`` and ``t``) times the end's visibility there (occluded or off-frame: 0).

Frames are ``[H,W,3]`` float32 numpy arrays in 0..1.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_DIS_SIDE = 16
_dis: dict[int, object] = {}  # one DIS instance per thread would be safer; ComfyUI runs one prompt at a time


def _grey_u8(frame: np.ndarray) -> np.ndarray:
    grey = np.asarray(frame, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)


def dense_flow(a: np.ndarray, b: np.ndarray, flow_scale: float = 1.0) -> np.ndarray:
    """Flow ``[H,W,2]`` (pixels, x then y) taking each pixel of ``a`` to where it is in ``b``.

    ``flow_scale`` < 1 estimates on a smaller copy (faster on large frames) and scales back up.
    """
    grey_a, grey_b = _grey_u8(a), _grey_u8(b)
    h, w = grey_a.shape
    if flow_scale != 1.0:
        size = (max(8, round(w * flow_scale)), max(8, round(h * flow_scale)))
        grey_a = cv2.resize(grey_a, size, interpolation=cv2.INTER_AREA)
        grey_b = cv2.resize(grey_b, size, interpolation=cv2.INTER_AREA)
    if min(grey_a.shape) >= MIN_DIS_SIDE:
        dis = _dis.get(0)
        if dis is None:
            dis = _dis[0] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow = dis.calc(grey_a, grey_b, None)
    else:  # DIS needs 12+ px; thumbnails-sized frames take Farneback
        flow = cv2.calcOpticalFlowFarneback(grey_a, grey_b, None, 0.5, 2, 5, 3, 5, 1.1, 0)
    if flow.shape[:2] != (h, w):
        sy, sx = h / flow.shape[0], w / flow.shape[1]
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= sx
        flow[..., 1] *= sy
    return flow


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``out(x) = image(x + flow(x))``, bilinear, edges repeated. ``image`` [H,W] or [H,W,C]."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def _inside(flow: np.ndarray) -> np.ndarray:
    """1 where ``x + flow(x)`` lands inside the frame, else 0 ([H,W] float32)."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    return ((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)).astype(np.float32)


def visibility(f_ab: np.ndarray, f_ba: np.ndarray) -> np.ndarray:
    """``[H,W]`` float32: 1 where a pixel of A is seen in B (forward-backward consistent), else 0."""
    back = backward_warp(f_ba, f_ab)  # f_ba at each A pixel's landing point in B
    error = np.sum((f_ab + back) ** 2, axis=-1)
    bound = 0.01 * (np.sum(f_ab ** 2, axis=-1) + np.sum(back ** 2, axis=-1)) + 0.5
    return ((error <= bound).astype(np.float32)) * _inside(f_ab)


class FlowPair:
    """Flows and visibilities of one frame pair, computed once and reused for every timestep."""

    def __init__(self, a: np.ndarray, b: np.ndarray, flow_scale: float = 1.0):
        self.a = np.ascontiguousarray(a, dtype=np.float32)
        self.b = np.ascontiguousarray(b, dtype=np.float32)
        self.f_ab = dense_flow(self.a, self.b, flow_scale)
        self.f_ba = dense_flow(self.b, self.a, flow_scale)
        self.vis_a = visibility(self.f_ab, self.f_ba)
        self.vis_b = visibility(self.f_ba, self.f_ab)

    def at(self, t: float) -> np.ndarray:
        """The frame at ``t`` in (0, 1): ``[H,W,3]`` float32 0..1."""
        f_t0 = -(1 - t) * t * self.f_ab + t * t * self.f_ba
        f_t1 = (1 - t) ** 2 * self.f_ab - t * (1 - t) * self.f_ba
        warped_a = backward_warp(self.a, f_t0)
        warped_b = backward_warp(self.b, f_t1)
        weight_a = (1 - t) * backward_warp(self.vis_a, f_t0) * _inside(f_t0)
        weight_b = t * backward_warp(self.vis_b, f_t1) * _inside(f_t1)
        total = weight_a + weight_b
        # Seen from neither end (rare): plain time weighting keeps the pixel sensible.
        none = total < 1e-3
        weight_a = np.where(none, 1 - t, weight_a)
        weight_b = np.where(none, t, weight_b)
        total = np.where(none, 1.0, total)
        out = (warped_a * weight_a[..., None] + warped_b * weight_b[..., None]) / total[..., None]
        return np.clip(out, 0.0, 1.0).astype(np.float32)


def interpolate_flow(a: np.ndarray, b: np.ndarray, t: float, flow_scale: float = 1.0) -> np.ndarray:
    """One frame at ``t`` between ``a`` and ``b`` ([H,W,3] float32 0..1) by optical flow."""
    return FlowPair(a, b, flow_scale).at(t)
