"""Wan LoRA files: read them (safetensors or GGUF), map every key spelling onto the DiT's own weight names,
compute the patch set, and explain a file whose keys match nothing. No ComfyUI import: applying the patch
set to a ComfyUI model is :func:`nodes.comfy.apply_lora`'s job.

Public API (stable; the SVI loader and the per-scene LoRA loader share it):

- :func:`load_lora` ``(path, cast="none") -> LoraFile``: the header is inspected first
  (:func:`nodes.vram.inspect.inspect_model`), so a foreign file is refused with example keys before any
  tensor is read; then only the LoRA tensors are loaded.
- :class:`LoraFile`: ``path``, ``file_bytes`` (real size on disk), ``spellings`` (which key spellings the
  file used), ``patches`` (target -> :class:`LoraPatch`), ``ignored`` (keys that are not LoRA pairs),
  ``nbytes`` (bytes the patches hold in memory), ``patch_set(strength)``, ``comfy_state_dict()``,
  ``check_targets(shapes)``.
- :class:`LoraPatch`: ``target`` (the DiT weight, e.g. ``blocks.0.self_attn.q.weight``), ``up``
  ``[out, rank]``, ``down`` ``[rank, in]``, ``alpha``; ``rank``, ``shape``, ``scale(strength)`` =
  strength * alpha / rank, ``delta(strength)`` ``[out, in]`` float32.
- :func:`normalise` ``(tensors) -> (patches, spellings, ignored)`` for tensors already in memory.
- :class:`LoraFileError` (a ValueError): unreadable, foreign or inconsistent files; the message names
  the file, what is wrong and what to do.
- :data:`CAST_CHOICES`: ``none`` | ``bf16`` | ``fp8_e4m3fn`` (the dtype the LoRA weights are kept in).

Spellings understood (module = the DiT weight's name without ``.weight``, e.g. ``blocks.0.ffn.0``):

- ``diffusion_model.<module>.lora_A.weight`` / ``.lora_B.weight`` (musubi-tuner, ai-toolkit, Kijai's SVI)
- ``diffusion_model.<module>.lora_down.weight`` / ``.lora_up.weight`` (+ ``.alpha``)
- ``lora_unet_<module with _>.lora_down.weight`` / ``.lora_up.weight`` + ``.alpha`` (kohya)
- the same without a prefix (``blocks.0...``, DiffSynth-Studio / PEFT), or with ``model.diffusion_model.``
  or ``base_model.model.``, and PEFT's ``.lora_A.default.weight``.

A pair without ``alpha`` scales by 1 (alpha = rank), as ComfyUI does.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .vram.inspect import ModelFileError, inspect_model

if TYPE_CHECKING:  # torch is imported where tensors are made: listing the nodes must not load it
    import torch

CAST_CHOICES = ("none", "bf16", "fp8_e4m3fn")
_CAST_DTYPES = {"bf16": "bfloat16", "fp8_e4m3fn": "float8_e4m3fn"}  # torch dtype names

# (down suffix, up suffix, spelling name); the first that a key ends with wins.
_PAIRS = (
    (".lora_A.default.weight", ".lora_B.default.weight", "lora_A/lora_B (PEFT default)"),
    (".lora_A.weight", ".lora_B.weight", "lora_A/lora_B"),
    (".lora_down.weight", ".lora_up.weight", "lora_down/lora_up"),
)
_PREFIXES = (
    ("model.diffusion_model.", "model.diffusion_model."),
    ("diffusion_model.", "diffusion_model."),
    ("base_model.model.", "base_model.model."),
    ("lora_unet_", "lora_unet_ (kohya)"),
    ("", "no prefix"),
)
# Names of WAN DiT modules that hold an underscore: kohya's spelling turns every dot into one, so these
# are joined back (longest first) when a kohya name is turned back into a module path.
_WAN_COMPOUNDS = frozenset({
    "self_attn", "cross_attn", "k_img", "v_img", "norm_q", "norm_k", "norm_k_img", "text_embedding",
    "time_embedding", "time_projection", "patch_embedding", "img_emb", "emb_pos", "vace_blocks",
    "vace_patch_embedding", "before_proj", "after_proj",
})
_EXAMPLES = 5


class LoraFileError(ValueError):
    """A LoRA file that cannot be used; the message names the file, what is wrong and what to do."""


@dataclass(frozen=True)
class LoraPatch:
    """One low-rank patch: ``weight += scale(strength) * up @ down``. ``up [out, rank]``, ``down [rank, in]``."""

    target: str
    up: torch.Tensor
    down: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """The patched weight's shape ``(out, in)``."""
        return int(self.up.shape[0]), int(self.down.shape[1])

    def scale(self, strength: float) -> float:
        return float(strength) * self.alpha / self.rank

    def delta(self, strength: float) -> torch.Tensor:
        """``[out, in]`` float32: what the patch adds to the weight at ``strength``."""
        return self.scale(strength) * (self.up.float() @ self.down.float())


@dataclass(frozen=True)
class PatchEntry:
    """What one patch does, comparable across files: target weight, its shape, rank and scale."""

    target: str
    shape: tuple[int, int]
    rank: int
    scale: float


@dataclass(frozen=True)
class LoraFile:
    path: str
    file_bytes: int
    spellings: tuple[str, ...]
    patches: Mapping[str, LoraPatch]
    ignored: tuple[str, ...] = ()
    stored_dtypes: tuple[str, ...] = ()
    cast: str = "none"
    extras: Mapping[str, object] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def nbytes(self) -> int:
        """Bytes the patches hold in memory (after the cast)."""
        return sum(p.up.element_size() * p.up.numel() + p.down.element_size() * p.down.numel()
                   for p in self.patches.values())

    def patch_set(self, strength: float) -> dict[str, PatchEntry]:
        """target -> :class:`PatchEntry` at ``strength`` (the same for every spelling of the same LoRA)."""
        return {t: PatchEntry(t, p.shape, p.rank, p.scale(strength)) for t, p in sorted(self.patches.items())}

    def comfy_state_dict(self) -> dict[str, torch.Tensor]:
        """The patches in one spelling ComfyUI's ``comfy.lora.load_lora`` maps onto a WAN model:
        ``diffusion_model.<module>.lora_up.weight`` / ``.lora_down.weight`` / ``.alpha``."""
        import torch

        out: dict[str, torch.Tensor] = {}
        for target, patch in self.patches.items():
            module = "diffusion_model." + target[: -len(".weight")]
            out[f"{module}.lora_up.weight"] = patch.up
            out[f"{module}.lora_down.weight"] = patch.down
            out[f"{module}.alpha"] = torch.tensor(float(patch.alpha))
        return out

    def check_targets(self, shapes: Mapping[str, Iterable[int]]) -> None:
        """Refuse the file unless every patch's target is a weight of the model with the patch's shape.

        ``shapes``: the model's weight name (``blocks.0.self_attn.q.weight``) -> shape.
        """
        missing = [t for t in self.patches if t not in shapes]
        wrong = [(t, p.shape, tuple(shapes[t])) for t, p in self.patches.items()
                 if t in shapes and tuple(int(s) for s in shapes[t])[:2] != p.shape]
        if missing and len(missing) == len(self.patches):
            raise LoraFileError(
                f"LoRA '{self.name}': none of its {len(self.patches)} target weights is in this model "
                f"(e.g. {', '.join(missing[:_EXAMPLES])}); it is for another model, pick a LoRA made for it")
        if missing:
            raise LoraFileError(
                f"LoRA '{self.name}': {len(missing)} of {len(self.patches)} target weights are not in this model "
                f"(e.g. {', '.join(missing[:_EXAMPLES])}); it was made for another variant (14B vs 5B, I2V vs T2V)")
        if wrong:
            examples = "; ".join(f"{t} LoRA {a} vs model {b}" for t, a, b in wrong[:_EXAMPLES])
            raise LoraFileError(f"LoRA '{self.name}': {len(wrong)} weights do not match the model's shapes "
                                f"({examples}); it was made for another model size")


# --------------------------------------------------------------------------- key spellings


def kohya_module(name: str) -> str:
    """``blocks_0_self_attn_k_img`` -> ``blocks.0.self_attn.k_img`` (WAN module names)."""
    parts = name.split("_")
    out: list[str] = []
    index = 0
    while index < len(parts):
        for length in (3, 2):
            joined = "_".join(parts[index:index + length])
            if index + length <= len(parts) and joined in _WAN_COMPOUNDS:
                out.append(joined)
                index += length
                break
        else:
            out.append(parts[index])
            index += 1
    return ".".join(out)


def _split(key: str) -> tuple[str, str, str, str] | None:
    """key -> (module, prefix spelling, role 'down'|'up'|'alpha', pair spelling), or None if not LoRA."""
    for down, up, pair in _PAIRS:
        for suffix, role in ((down, "down"), (up, "up")):
            if key.endswith(suffix):
                return (*_strip_prefix(key[: -len(suffix)]), role, pair)
    if key.endswith(".alpha"):
        return (*_strip_prefix(key[: -len(".alpha")]), "alpha", "alpha")
    return None


def _strip_prefix(stem: str) -> tuple[str, str]:
    for prefix, spelling in _PREFIXES:
        if stem.startswith(prefix):
            rest = stem[len(prefix):]
            return (kohya_module(rest) if prefix == "lora_unet_" else rest), spelling
    raise AssertionError("unreachable: the empty prefix matches everything")


def classify(keys: Iterable[str]) -> tuple[dict[str, dict[str, str]], set[str], list[str]]:
    """Group LoRA keys by module: ``{module: {role: key}}``, the spellings seen, keys that are not LoRA."""
    modules: dict[str, dict[str, str]] = {}
    spellings: set[str] = set()
    ignored: list[str] = []
    for key in keys:
        found = _split(key)
        if found is None or not _looks_like_module(found[0]):
            ignored.append(key)
            continue
        module, prefix, role, pair = found
        modules.setdefault(module, {})[role] = key
        spellings.add(prefix)
        if pair != "alpha":
            spellings.add(pair)
    complete = {m: roles for m, roles in modules.items() if "down" in roles and "up" in roles}
    for module, roles in modules.items():
        if module not in complete:
            ignored.extend(roles.values())
    return complete, spellings, sorted(ignored)


_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


def _looks_like_module(module: str) -> bool:
    return bool(module) and bool(_MODULE.match(module))


def foreign_file_message(name: str, keys: list[str]) -> str:
    examples = ", ".join(keys[:_EXAMPLES]) or "(the file holds no tensors)"
    return (f"LoRA '{name}': none of its {len(keys)} keys is a Wan LoRA pair (e.g. {examples}). Understood: "
            "diffusion_model.<module>.lora_A/lora_B.weight, diffusion_model.<module>.lora_down/lora_up.weight "
            "(+ .alpha), lora_unet_<module>.lora_down/lora_up.weight + .alpha, or the same without prefix. "
            "Convert the file to one of these (or pick a LoRA made for Wan)")


def normalise(tensors: Mapping[str, torch.Tensor],
              name: str = "tensors") -> tuple[dict[str, LoraPatch], tuple[str, ...], tuple[str, ...]]:
    """LoRA tensors in any supported spelling -> (target -> :class:`LoraPatch`, spellings, ignored keys).

    Raises :class:`LoraFileError` when no key is a LoRA pair (with example keys) or a pair's ranks differ.
    """
    modules, spellings, ignored = classify(tensors.keys())
    if not modules:
        raise LoraFileError(foreign_file_message(name, sorted(tensors.keys())))
    patches: dict[str, LoraPatch] = {}
    for module, roles in sorted(modules.items()):
        down, up = tensors[roles["down"]], tensors[roles["up"]]
        down, up = down.reshape(down.shape[0], -1), up.reshape(up.shape[0], -1)
        if down.shape[0] != up.shape[1]:
            raise LoraFileError(f"LoRA '{name}': {roles['down']} has rank {down.shape[0]} but {roles['up']} has "
                                f"rank {up.shape[1]}; the file is damaged or not a LoRA (re-download it)")
        rank = int(down.shape[0])
        alpha = float(tensors[roles["alpha"]].float().reshape(-1)[0]) if "alpha" in roles else float(rank)
        target = module + ".weight"
        if target in patches:
            raise LoraFileError(f"LoRA '{name}': {target} is patched twice (two spellings of the same module); "
                                "keep one spelling")
        patches[target] = LoraPatch(target, up, down, alpha)
    return patches, tuple(sorted(spellings)), tuple(ignored)


# --------------------------------------------------------------------------- reading files


def _read_safetensors(path: str, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(path, framework="pt", device="cpu") as handle:
        return {key: handle.get_tensor(key) for key in keys}


def _read_gguf(path: str, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Dequantise GGUF tensors to float32 (Q8_0, F16, BF16, F32 and the other types ``gguf`` knows).

    Shape: ``comfy.gguf.orig_shape.<name>`` when present, else the GGUF shape reversed (GGML order).
    """
    import gguf
    import numpy as np
    import torch

    wanted = set(keys)
    reader = gguf.GGUFReader(path)
    out: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        if tensor.name not in wanted:
            continue
        shape = tuple(int(v) for v in reversed(tensor.shape))
        field_ = reader.get_field(f"comfy.gguf.orig_shape.{tensor.name}")
        if field_ is not None:
            shape = tuple(int(field_.parts[i][0]) for i in field_.data)
        try:
            values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError as exc:
            raise LoraFileError(f"LoRA '{os.path.basename(path)}': tensor {tensor.name} is "
                                f"{tensor.tensor_type.name}, which gguf cannot dequantise ({exc}); "
                                "use a Q8_0, F16 or BF16 GGUF") from None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            out[tensor.name] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)
    return out


def _cast(patches: dict[str, LoraPatch], cast: str, name: str) -> dict[str, LoraPatch]:
    if cast not in CAST_CHOICES:
        raise LoraFileError(f"cast = '{cast}' is not one of {', '.join(CAST_CHOICES)}")
    if cast == "none":
        return patches
    import torch

    dtype = getattr(torch, _CAST_DTYPES[cast], None)
    if dtype is None:
        raise LoraFileError(f"LoRA '{name}': this torch has no {cast}; use cast bf16 or none")
    return {t: LoraPatch(t, p.up.to(dtype), p.down.to(dtype), p.alpha) for t, p in patches.items()}


def load_lora(path: str | os.PathLike[str], cast: str = "none") -> LoraFile:
    """Read the LoRA at ``path`` (``.safetensors`` or ``.gguf``): header first, then only the LoRA tensors.

    ``cast``: keep the LoRA weights as stored (``none``) or cast them to ``bf16`` / ``fp8_e4m3fn``.
    Raises :class:`LoraFileError` for unreadable or foreign files (example keys in the message).
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        info = inspect_model(path)
    except ModelFileError as exc:
        raise LoraFileError(f"LoRA '{name}': {exc}") from None
    if info.format not in ("safetensors", "gguf"):
        raise LoraFileError(f"LoRA '{name}' is a {info.format} file; LoRAs are read from .safetensors or .gguf "
                            "(convert it to safetensors)")
    keys = [t.name for t in info.tensors]
    modules, _spellings, _ignored = classify(keys)
    if not modules:
        raise LoraFileError(foreign_file_message(name, sorted(keys)))
    wanted = sorted({key for roles in modules.values() for key in roles.values()})
    reader = _read_gguf if info.format == "gguf" else _read_safetensors
    try:
        tensors = reader(path, wanted)
    except LoraFileError:
        raise
    except Exception as exc:  # a truncated or corrupt file: name it, never a bare traceback
        raise LoraFileError(f"LoRA '{name}' could not be read ({type(exc).__name__}: {exc}); re-download it") from None
    patches, spellings, ignored = normalise(tensors, name)
    ignored = tuple(sorted(set(ignored) | (set(keys) - set(wanted))))
    dtypes = tuple(sorted({t.dtype for t in info.tensors if t.name in set(wanted)}))
    return LoraFile(path=path, file_bytes=info.file_bytes, spellings=spellings, patches=_cast(patches, cast, name),
                    ignored=ignored, stored_dtypes=dtypes, cast=cast)
