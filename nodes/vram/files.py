"""Model files the guard and Model Info read: listed from ComfyUI's model folders, named
``<folder>/<file>`` (``diffusion_models/wan2.2_ti2v_5B_fp16.safetensors``), inspected once per
file version (path, size, modification time).

GGUF files are listed even when ComfyUI's own lists leave them out (core's ``diffusion_models``
list knows no ``.gguf``; ComfyUI-GGUF lists them under ``unet_gguf``).
"""

from __future__ import annotations

import os
from collections import OrderedDict

from .. import comfy
from .inspect import ModelFileError, ModelFileInfo, inspect_model

# Folders whose files a stage loads, in the order a bare file name is looked up.
MODEL_FOLDERS = ("diffusion_models", "vae", "loras", "upscale_models", "frame_interpolation")
NO_FILES = "(no model files found)"
_CACHE_SIZE = 64
_cache: OrderedDict[tuple[str, int, int], ModelFileInfo] = OrderedDict()


def _gguf_files(folder: str) -> set[str]:
    found: set[str] = set()
    for root in comfy.model_folder_paths(folder):
        if not os.path.isdir(root):
            continue
        for dirpath, _dirs, files in os.walk(root, followlinks=True):
            for name in files:
                if name.lower().endswith(".gguf"):
                    found.add(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return found


def _register_folders() -> None:
    """frame_interpolation is not one of ComfyUI's own folders: register it before listing or resolving,
    or the list depends on whether the RIFE loader happened to be listed first."""
    from ..interpolate.nodes import register_folders

    register_folders()


def model_choices() -> list[str]:
    """Every model file as ``<folder>/<file>``, folders in :data:`MODEL_FOLDERS` order, files sorted."""
    _register_folders()
    choices = []
    for folder in MODEL_FOLDERS:
        names = set(comfy.model_files(folder)) | _gguf_files(folder)
        choices.extend(f"{folder}/{name}" for name in sorted(names))
    return choices or [NO_FILES]


def resolve(choice: str) -> str:
    """Absolute path of a model named ``<folder>/<file>`` or a bare file name (looked up in each folder).

    Raises ModelFileError naming the folders searched.
    """
    choice = choice.strip().replace("\\", "/")
    if not choice or choice == NO_FILES:
        raise ModelFileError("no model file chosen; put model files in ComfyUI's models folders and refresh (R)")
    _register_folders()
    folder, _, rest = choice.partition("/")
    attempts = [(folder, rest)] if folder in MODEL_FOLDERS and rest else []
    attempts += [(name, choice) for name in MODEL_FOLDERS]
    for folder_name, file_name in attempts:
        try:
            return comfy.model_path(folder_name, file_name)
        except FileNotFoundError:
            continue
    raise ModelFileError(f"model file '{choice}' not found in ComfyUI's {', '.join(MODEL_FOLDERS)} folders; "
                         "use a name from Model Info's list (folder/file)")


def inspect_cached(path: str) -> ModelFileInfo:
    """:func:`inspect_model` of ``path``, remembered while the file's size and modification time stay."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    found = _cache.get(key)
    if found is None:
        found = inspect_model(path)
        _cache[key] = found
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return found


def inspect_choices(text: str) -> tuple[ModelFileInfo, ...]:
    """Inspect the files named one per line in ``text`` (file names may hold commas); blank lines skipped."""
    return tuple(inspect_cached(resolve(line)) for line in text.splitlines() if line.strip())
