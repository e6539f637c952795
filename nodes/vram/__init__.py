"""The VRAM room: decide before a heavy stage whether it fits, instead of failing minutes into it.

- ``inspect``: model files read from their headers only (safetensors, GGUF, torch zip): exact weight
  bytes, parameter count, quant mix.
- ``detect``: what a file is (WAN 5B/14B, WAN VAE, RIFE, ESRGAN, LoRA) from tensor names and shapes.
- ``estimate``: bytes each stage needs, at full speed and at least (ComfyUI's own formulas for WAN
  sampling and VAE decode, a measured bound for RIFE, the upscale room's rule for ESRGAN).
- ``advice``: the preset, clip length or quant that fits instead.
- ``probe``: one reading of the compute device through ``nodes/comfy.py``.
- ``guard``: the decision (pass, lean pass, free cached models, stop), written into the run.
- ``breaker``: the run's circuit breaker (``breaker.json``).
- ``files``: model files from ComfyUI's folders, inspected once per file version.
- ``nodes``: GemDirectModelInfo and GemDirectVRAMGuard.

Nothing here imports torch or ComfyUI at import time; ``gguf`` is imported when a GGUF file is read.
See docs/vram.md.
"""
