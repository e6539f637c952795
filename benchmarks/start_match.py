"""Where the start-match threshold (28 dB) comes from: PSNR/SSIM of a start image after lossy round trips
that keep its picture, and against frames that do not.

    python benchmarks/start_match.py [--size 832x480]

A chained scene's first frame is the start image after the WAN VAE (encode in WanFirstLastFrameToVideo,
decode in VAE Decode) and the sampler's handling of the first latent frame. The real VAE cannot run here at
full size cheaply, and a random-weight VAE reconstructs nothing (its PSNR measures the random weights), so
this measures round trips of the same kind that can run: JPEG and H.264 at usual and harsh qualities, a
Gaussian blur, and an 8x down/up resample (the VAE's spatial factor with 3 channels instead of its 16: a
far harsher loss than the VAE's). Against them: the same scene's other keyframes, a flipped or shifted copy,
and noise of the same brightness. Images: the demo's three keyframes (smooth paintings) and two synthetic
textures (1/f luma detail under smooth colour, as photographs are; and grey 1/f**0.5 detail, much finer than
photographs, the hardest case for any lossy round trip).

Prints one markdown table (PSNR dB / SSIM) for docs/chaining.md.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile

import numpy as np
from bench import pack_module
from PIL import Image, ImageFilter

metrics = pack_module("nodes.metrics")
bookend = pack_module("nodes.chain.bookend")
demo = pack_module("nodes.story.demo")
encode_video = pack_module("nodes.video.encode").encode_video
read_frames = pack_module("nodes.video.decode").read_frames


def _one_over_f(width: int, height: int, rng: np.random.Generator, exponent: float = 1.0) -> np.ndarray:
    """A plane with amplitude spectrum 1/f**exponent, scaled to 0..1."""
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.rfftfreq(width), indexing="ij")
    falloff = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / max(width, height)) ** exponent
    spectrum = (rng.standard_normal(falloff.shape) + 1j * rng.standard_normal(falloff.shape)) * falloff
    plane = np.fft.irfft2(spectrum, s=(height, width))
    return (plane - plane.min()) / (plane.max() - plane.min())


def natural_texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Photograph-like statistics: 1/f luma detail (natural images' spectrum) under smooth colour (their
    chroma is low-pass, which is why codecs and VAEs may subsample it)."""
    rng = np.random.default_rng(seed)
    luma = _one_over_f(width, height, rng)
    tint = np.stack([_one_over_f(width, height, rng, 2.0) for _ in range(3)], -1)
    rgb = 0.75 * luma[..., None] + 0.25 * tint
    return (rgb * 255).round().astype(np.uint8)


def fine_detail(width: int, height: int, seed: int = 1) -> np.ndarray:
    """The hard case: full-contrast 1/f**0.5 luma (far more fine detail than photographs) in grey."""
    luma = _one_over_f(width, height, np.random.default_rng(seed), 0.5)
    return np.repeat((luma * 255).round().astype(np.uint8)[..., None], 3, -1)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def h264(image: np.ndarray, crf: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "still.mp4")
        encode_video(path, np.repeat(image[None], 5, 0), 16, crf=crf)
        return read_frames(path, count=1, dtype="uint8", as_torch=False)[0]


def resample(image: np.ndarray, factor: int) -> np.ndarray:
    height, width = image.shape[:2]
    small = Image.fromarray(image).resize((width // factor, height // factor), Image.BICUBIC)
    return np.asarray(small.resize((width, height), Image.BICUBIC))


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma)))


def same_brightness_noise(image: np.ndarray, seed: int = 19) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(image.mean(), image.std(), image.shape)
    return np.clip(noise, 0, 255).round().astype(np.uint8)


def measure(start: np.ndarray, first: np.ndarray) -> str:
    match = bookend.start_match(start, first)
    return f"{match.psnr:.1f} / {match.ssim:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="832x480", help="WxH of the images (the demo's size by default)")
    width, height = (int(v) for v in parser.parse_args().size.split("x"))
    looks = [scene["id"] for scene in demo.DEMO_STORY["scenes"]]
    images = {look: np.asarray(demo.paint_keyframe(look, (width, height)).convert("RGB")) for look in looks}
    images["1/f texture"] = natural_texture(width, height)
    images["fine detail"] = fine_detail(width, height)
    keeps = {
        "JPEG q90": lambda im: jpeg(im, 90), "JPEG q75": lambda im: jpeg(im, 75), "JPEG q50": lambda im: jpeg(im, 50),
        "H.264 crf 19": lambda im: h264(im, 19), "H.264 crf 28": lambda im: h264(im, 28),
        "H.264 crf 35": lambda im: h264(im, 35), "blur 1 px": lambda im: blur(im, 1.0),
        "8x down/up": lambda im: resample(im, 8),
    }
    loses = {
        "another keyframe": lambda name, im: images[looks[(looks.index(name) + 1) % 3]] if name in looks
        else images["fine detail" if name == "1/f texture" else "1/f texture"],
        "flipped": lambda _name, im: im[:, ::-1].copy(),
        "shifted 8 px": lambda _name, im: np.roll(im, 8, 1),
        "noise, same brightness": lambda _name, im: same_brightness_noise(im),
    }
    print(f"PSNR dB / SSIM of a {width}x{height} start image against:\n")
    print("| image | " + " | ".join([*keeps, *loses]) + " |")
    print("|---" * (1 + len(keeps) + len(loses)) + "|")
    for name, image in images.items():
        cells = [measure(image, change(image)) for change in keeps.values()]
        cells += [measure(image, change(name, image)) for change in loses.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nthreshold: {bookend.START_MATCH_MIN_PSNR:g} dB (fail below)")


if __name__ == "__main__":
    main()
