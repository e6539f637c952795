"""The upscale room: ESRGAN-family upscaling (core's UPSCALE_MODEL, via spandrel), tiled, streamed.

Engine modules import torch lazily; ``nodes.py`` declares the GemDirectUpscale node. See
docs/upscale.md.
"""
