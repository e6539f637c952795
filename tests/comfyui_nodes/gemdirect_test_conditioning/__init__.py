"""Test-only ComfyUI node (never shipped in the pack): seeded text conditioning in place of umt5-xxl.

The WAN text encoder has a fixed configuration (umt5-xxl, about 11 GB) and cannot be made tiny, so the
integration suite swaps CLIPLoader + CLIPTextEncode for this node: CONDITIONING
``[[tensor[1, tokens, 4096] * 0.1, {}]]`` seeded from the text, so the same text always gives the
same tensor and positive and negative prompts differ. ``width`` sets the last dimension for models
that read another text encoder's width (qwen_3_4b: 2560); ``attention_mask`` adds the all-ones mask
a real Lumina 2 / Z-Image text encoder puts in the conditioning (ComfyUI's Lumina 2 model reads the
token count from it). The suite links this folder into the temporary
ComfyUI's custom_nodes/.

LTX-Video's T5 (CLIPLoader type ``ltxv``) also hands the model the token mask (``attention_mask``
[1, tokens], 1 for each real token), which LTXVModel.forward requires: ``attention_mask`` on adds it.
"""

import hashlib

import torch

TEXT_DIM = 4096  # umt5-xxl's width, what WAN's text_embedding expects


class GemDirectTestConditioning:
    CATEGORY = "gemDirect/testing"
    FUNCTION = "encode"
    RETURN_TYPES = ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "tooltip": "The prompt; it seeds the tensor."}),
                "tokens": ("INT", {"default": 16, "min": 1, "max": 512, "tooltip": "Sequence length."}),
            },
            "optional": {
                "width": ("INT", {"default": TEXT_DIM, "min": 1, "max": 8192,
                                  "tooltip": "The text encoder's width the model reads (umt5-xxl 4096)."}),
                "attention_mask": ("BOOLEAN", {"default": False,
                                               "tooltip": "Add an all-ones attention_mask (LTXV, Lumina 2)."}),
            },
        }

    def encode(self, text, tokens=16, width=TEXT_DIM, attention_mask=False):
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") & (2**63 - 1)
        generator = torch.Generator().manual_seed(seed)
        cond = torch.randn((1, int(tokens), int(width)), generator=generator) * 0.1
        extra = {"attention_mask": torch.ones((1, int(tokens)), dtype=torch.long)} if attention_mask else {}
        return ([[cond, extra]],)


class GemDirectTestReserveMemory:
    """Sets ComfyUI's reserved memory (what ``--reserve-vram`` sets) while the server runs, and passes
    ``value`` through so it runs before the node fed from it. On the CPU, free memory is the machine's
    available RAM, which no tiny model can exhaust; a reserve larger than the RAM makes every "is
    there room?" question answer no, so the memory tests can see ComfyUI unload its cached models."""

    CATEGORY = "gemDirect/testing"
    FUNCTION = "reserve"
    RETURN_TYPES = ("STORY",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STORY", {}), "reserve_gb": ("FLOAT", {"default": 0.4, "min": 0.0,
                                                                                "max": 100000.0})}}

    @classmethod
    def IS_CHANGED(cls, **_inputs):
        return float("nan")

    def reserve(self, value, reserve_gb):
        from comfy import model_management

        model_management.EXTRA_RESERVED_VRAM = int(reserve_gb * 1024 ** 3)
        return (value,)


NODE_CLASS_MAPPINGS = {"GemDirectTestConditioning": GemDirectTestConditioning,
                       "GemDirectTestReserveMemory": GemDirectTestReserveMemory}
NODE_DISPLAY_NAME_MAPPINGS = {"GemDirectTestConditioning": "Test Conditioning (gemDirect tests only)",
                              "GemDirectTestReserveMemory": "Test Reserve Memory (gemDirect tests only)"}
