"""The one door to ComfyUI.

Every call into ComfyUI (``comfy.*``, ``folder_paths``, ``server``) goes through this module, and each
has a standalone fallback so the pack also runs without ComfyUI (tests, the command-line demo).

We are "inside ComfyUI" when ComfyUI's own modules are already imported: ComfyUI imports
``folder_paths`` and ``comfy.model_management`` before it loads custom nodes. We never import them
ourselves, so a ComfyUI checkout that merely sits on ``sys.path`` does not initialise a GPU here.

Standalone, ComfyUI's folders live under one base directory: ``$GEMDIRECT_HOME`` if set, else the
current working directory (``input/``, ``output/``, ``user/``, ``temp/``, ``models/<folder>/``),
the same layout as a ComfyUI install.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

log = logging.getLogger("gemdirect")

MODEL_EXTENSIONS = (".safetensors", ".sft", ".pth", ".pt", ".pkl", ".ckpt", ".bin", ".gguf")


def _loaded(name: str) -> Any | None:
    """ComfyUI's module ``name`` if ComfyUI has imported it, else None."""
    return sys.modules.get(name)


def inside_comfyui() -> bool:
    return _loaded("folder_paths") is not None and _loaded("comfy.model_management") is not None


# --------------------------------------------------------------------------- folders


def standalone_home() -> str:
    """Base directory standing in for ComfyUI's install when ComfyUI is absent."""
    return os.path.abspath(os.environ.get("GEMDIRECT_HOME") or os.getcwd())


def _directory(kind: str) -> str:
    folder_paths = _loaded("folder_paths")
    if folder_paths is not None:
        getter = {
            "input": folder_paths.get_input_directory,
            "output": folder_paths.get_output_directory,
            "temp": folder_paths.get_temp_directory,
            "user": folder_paths.get_user_directory,
        }[kind]
        return os.path.abspath(getter())
    return os.path.join(standalone_home(), kind)


def input_directory() -> str:
    """ComfyUI's input folder (absolute)."""
    return _directory("input")


def output_directory() -> str:
    """ComfyUI's output folder (absolute)."""
    return _directory("output")


def temp_directory() -> str:
    return _directory("temp")


def user_directory() -> str:
    return _directory("user")


def allowed_roots() -> list[str]:
    """The folders HTTP routes and file inputs may touch: ComfyUI's input, output, temp and user."""
    return [input_directory(), output_directory(), temp_directory(), user_directory()]


# Standalone registry of extra model folders: name -> (paths, extensions).
_standalone_folders: dict[str, tuple[list[str], set[str]]] = {}


def register_model_folder(name: str, paths: Iterable[str], extensions: Iterable[str] = MODEL_EXTENSIONS) -> None:
    """Make ``models/<name>`` (and any extra ``paths``) a model folder, as ComfyUI's own are.

    Idempotent; existing paths and extensions of the folder are kept.
    """
    paths = [os.path.abspath(p) for p in paths]
    extensions = set(extensions)
    folder_paths = _loaded("folder_paths")
    registry = folder_paths.folder_names_and_paths if folder_paths is not None else _standalone_folders
    known_paths, known_exts = registry.get(name, ([], set()))
    known_paths = list(known_paths) + [p for p in paths if p not in known_paths]
    known_exts = set(known_exts) | extensions
    registry[name] = (known_paths, known_exts)
    if folder_paths is not None:
        folder_paths.filename_list_cache.pop(name, None)


def model_folder_paths(name: str) -> list[str]:
    """Folders searched for model type ``name`` (may not exist on disk)."""
    folder_paths = _loaded("folder_paths")
    if folder_paths is not None:
        try:
            return folder_paths.get_folder_paths(name)
        except KeyError:
            return []
    paths, _ = _standalone_folders.get(name, ([], set()))
    default = os.path.join(standalone_home(), "models", name)
    return [default] + [p for p in paths if p != default]


def model_files(name: str) -> list[str]:
    """Relative file names of models of type ``name``, sorted, as ComfyUI's dropdowns list them."""
    folder_paths = _loaded("folder_paths")
    if folder_paths is not None:
        try:
            return list(folder_paths.get_filename_list(name))
        except KeyError:
            return []
    _, extensions = _standalone_folders.get(name, ([], set(MODEL_EXTENSIONS)))
    extensions = extensions or set(MODEL_EXTENSIONS)
    found: set[str] = set()
    for root in model_folder_paths(name):
        if not os.path.isdir(root):
            continue
        for dirpath, _dirs, files in os.walk(root, followlinks=True):
            for file in files:
                if os.path.splitext(file)[1].lower() in extensions:
                    found.add(os.path.relpath(os.path.join(dirpath, file), root).replace(os.sep, "/"))
    return sorted(found)


def models_directory() -> str:
    """ComfyUI's models folder (absolute), the parent of ``models/<name>``."""
    folder_paths = _loaded("folder_paths")
    if folder_paths is not None:
        return os.path.abspath(folder_paths.models_dir)
    return os.path.join(standalone_home(), "models")


def custom_nodes_directories() -> list[str]:
    """ComfyUI's custom_nodes folders (absolute; may not exist), to find files other packs downloaded."""
    folder_paths = _loaded("folder_paths")
    if folder_paths is not None:
        try:
            return [os.path.abspath(p) for p in folder_paths.get_folder_paths("custom_nodes")]
        except KeyError:
            return []
    return [os.path.join(standalone_home(), "custom_nodes")]


def model_path(name: str, filename: str) -> str:
    """Absolute path of model ``filename`` of type ``name``; FileNotFoundError names the folders."""
    folder_paths = _loaded("folder_paths")
    if folder_paths is not None:
        path = folder_paths.get_full_path(name, filename)
        if path is not None:
            return path
    else:
        for root in model_folder_paths(name):
            candidate = os.path.abspath(os.path.join(root, filename))
            if candidate.startswith(os.path.abspath(root) + os.sep) and os.path.isfile(candidate):
                return candidate
    folders = ", ".join(model_folder_paths(name)) or f"models/{name}"
    raise FileNotFoundError(f"model file '{filename}' not found in {folders}; put it there and refresh (press R)")


# --------------------------------------------------------------------------- LoRA files


def apply_lora_file(model: Any, clip: Any, path: str, strength_model: float, strength_clip: float) -> tuple[Any, Any]:
    """``(model, clip)`` patched with the LoRA file at ``path`` through ComfyUI's own LoRA loading
    (``comfy.sd.load_lora_for_models``): new clones, the inputs stay untouched. ``clip`` may be None.

    Standalone there is no ComfyUI MODEL to patch: RuntimeError.
    """
    sd = _loaded("comfy.sd")
    if sd is None:
        raise RuntimeError("applying a LoRA needs ComfyUI (comfy.sd); it runs inside ComfyUI only")
    return sd.load_lora_for_models(model, clip, load_state_dict(path), float(strength_model), float(strength_clip))


def load_state_dict(path: str) -> dict:
    """Tensors of a model file on the CPU, read as ComfyUI reads them (``load_torch_file(safe_load=True)``);
    standalone: safetensors, or a weights-only torch pickle (no code in the file runs)."""
    utils = _loaded("comfy.utils")
    if utils is not None:
        return utils.load_torch_file(path, safe_load=True)
    if os.path.splitext(path)[1].lower() in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    import torch

    data = torch.load(path, map_location="cpu", weights_only=True)
    return data.get("state_dict", data) if isinstance(data, dict) else data


# --------------------------------------------------------------------------- device and memory


@dataclass(frozen=True)
class DeviceMemory:
    """Free and total memory of the compute device in bytes (RAM for the CPU)."""

    device: str
    name: str
    free: int
    total: int


def torch_device() -> Any:
    """The device heavy work runs on: ComfyUI's choice inside ComfyUI, else CUDA/MPS/CPU."""
    mm = _loaded("comfy.model_management")
    if mm is not None:
        return mm.get_torch_device()
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def intermediate_device() -> Any:
    """Where IMAGE tensors live between nodes (the CPU in ComfyUI's default setup)."""
    mm = _loaded("comfy.model_management")
    if mm is not None:
        return mm.intermediate_device()
    import torch

    return torch.device("cpu")


def device_memory(device: Any = None) -> DeviceMemory:
    """Free/total bytes of ``device`` (default: the torch device). For the CPU: system RAM."""
    mm = _loaded("comfy.model_management")
    if device is None:
        device = torch_device()
    kind = getattr(device, "type", str(device))
    if mm is not None:
        return DeviceMemory(
            device=str(device),
            name=str(mm.get_torch_device_name(device)),
            free=int(mm.get_free_memory(device)),
            total=int(mm.get_total_memory(device)),
        )
    if kind == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info(device)
        return DeviceMemory(str(device), torch.cuda.get_device_name(device), int(free), int(total))
    import psutil

    vm = psutil.virtual_memory()
    return DeviceMemory(str(device), "cpu", int(vm.available), int(vm.total))


def free_cached_models(bytes_needed: int, device: Any = None, keep: Iterable[Any] = ()) -> None:
    """Ask ComfyUI to unload cached models until ``bytes_needed`` are free (no-op standalone).

    ``keep``: handles (:attr:`LoadedModel.handle`) of loaded models that must stay loaded.
    """
    mm = _loaded("comfy.model_management")
    if mm is None:
        return
    mm.free_memory(bytes_needed, device if device is not None else mm.get_torch_device(), keep_loaded=list(keep))
    mm.soft_empty_cache()


@dataclass(frozen=True)
class TorchMemory:
    """What torch's caching allocator holds on a device, in bytes: in tensors, and reserved in all."""

    allocated: int
    reserved: int


def torch_memory(device: Any = None) -> TorchMemory | None:
    """torch's allocated/reserved bytes on ``device``; None for the CPU, or when torch is not in use yet.

    Never imports torch (a health check must stay fast): only a torch that is already loaded is asked.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    if device is None:
        device = torch_device()
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda" and torch.cuda.is_available():
        return TorchMemory(int(torch.cuda.memory_allocated(device)), int(torch.cuda.memory_reserved(device)))
    if kind == "xpu" and hasattr(torch, "xpu") and torch.xpu.is_available():
        return TorchMemory(int(torch.xpu.memory_allocated(device)), int(torch.xpu.memory_reserved(device)))
    if kind == "mps" and hasattr(torch, "mps"):
        return TorchMemory(int(torch.mps.current_allocated_memory()), int(torch.mps.driver_allocated_memory()))
    return None


def reserved_vram() -> int:
    """Bytes ComfyUI keeps free for other programs (its EXTRA_RESERVED_VRAM, ``--reserve-vram``).

    Standalone: ComfyUI's defaults, 400 MiB (600 MiB on Windows).
    """
    mm = _loaded("comfy.model_management")
    if mm is not None and hasattr(mm, "extra_reserved_memory"):
        return int(mm.extra_reserved_memory())
    return (600 if os.name == "nt" else 400) << 20


def efficient_attention(device: Any = None) -> bool:
    """True when attention runs memory-efficiently (xformers or PyTorch flash/SDPA), as ComfyUI decides.

    ComfyUI's sampling memory estimate depends on it (see docs/vram.md). Standalone: CUDA or XPU.
    """
    mm = _loaded("comfy.model_management")
    if mm is not None:
        return bool(mm.xformers_enabled() or mm.pytorch_attention_flash_attention())
    if device is None:
        device = torch_device()
    return getattr(device, "type", str(device).split(":")[0]) in ("cuda", "xpu")


@dataclass(frozen=True)
class LoadedModel:
    """A model ComfyUI holds on a device between prompts. Sizes in bytes; ``handle`` is ComfyUI's own."""

    name: str
    total: int  # the model's whole size
    loaded: int  # the part of it now on the device (less than total when partly offloaded)
    handle: Any = field(default=None, compare=False, repr=False)


def loaded_models(device: Any = None) -> list[LoadedModel]:
    """Models ComfyUI keeps loaded on ``device`` (default: the torch device); empty standalone."""
    mm = _loaded("comfy.model_management")
    if mm is None:
        return []
    if device is None:
        device = mm.get_torch_device()
    found = []
    for loaded in list(getattr(mm, "current_loaded_models", [])):
        try:
            if loaded.device != device or loaded.model is None:
                continue
            inner = getattr(loaded.model, "model", None)
            name = type(inner).__name__ if inner is not None else type(loaded.model).__name__
            found.append(LoadedModel(name, int(loaded.model_memory()), int(loaded.model_loaded_memory()), loaded))
        except Exception as exc:  # a model being unloaded by another thread: skip it
            log.debug("gemDirect: loaded model unreadable: %s", exc)
    return found


# --------------------------------------------------------------------------- progress and interrupt


class Interrupted(Exception):
    """Raised standalone when :func:`request_interrupt` was called (ComfyUI raises its own)."""


_interrupt = threading.Event()


def request_interrupt() -> None:
    """Standalone stand-in for ComfyUI's Cancel button (tests, the CLI's Ctrl+C)."""
    _interrupt.set()


def clear_interrupt() -> None:
    _interrupt.clear()


def check_interrupt() -> None:
    """Raise if the user asked to stop. Call between chunks of long work."""
    mm = _loaded("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()
        return
    if _interrupt.is_set():
        _interrupt.clear()
        raise Interrupted("stopped on request")


class Progress:
    """Progress of long work: ComfyUI's ProgressBar inside ComfyUI, a callback standalone.

    ``update(n)`` adds n steps; each update is also an interrupt point.
    """

    # Standalone listeners get (current, total); the CLI prints, tests record.
    listeners: ClassVar[list[Callable[[int, int], None]]] = []

    def __init__(self, total: int, node_id: str | None = None):
        self.total = max(int(total), 1)
        self.current = 0
        utils = _loaded("comfy.utils")
        self._bar = utils.ProgressBar(self.total, node_id=node_id) if utils is not None else None

    def update(self, steps: int = 1) -> None:
        self.set(self.current + steps)

    def set(self, value: int) -> None:
        self.current = min(int(value), self.total)
        if self._bar is not None:
            self._bar.update_absolute(self.current, self.total)
        else:
            for listener in list(Progress.listeners):
                listener(self.current, self.total)
        check_interrupt()


# --------------------------------------------------------------------------- websocket


# Standalone listeners get (event, data); the panel's tests and the CLI subscribe here.
event_listeners: list[Callable[[str, dict], None]] = []


def send_event(event: str, data: dict) -> None:
    """Send ``event`` with JSON-able ``data`` to the ComfyUI frontend (all clients)."""
    server = _loaded("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None) if server else None
    if instance is not None:
        try:
            instance.send_sync(event, data)
        except Exception as exc:  # a closed socket must never fail a render
            log.debug("gemDirect: websocket send of %s failed: %s", event, exc)
    for listener in list(event_listeners):
        listener(event, data)


def prompt_server() -> Any | None:
    """ComfyUI's PromptServer instance (for route registration), or None standalone."""
    server = _loaded("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None) if server else None


# --------------------------------------------------------------------------- the prompt queue


@dataclass(frozen=True)
class QueueLength:
    """ComfyUI's prompt queue: prompts running now and prompts waiting."""

    running: int
    pending: int


def queue_length() -> QueueLength | None:
    """The length of ComfyUI's prompt queue, or None standalone."""
    queue = getattr(prompt_server(), "prompt_queue", None)
    if queue is None:
        return None
    if hasattr(queue, "get_current_queue_volatile"):
        running, pending = queue.get_current_queue_volatile()
        return QueueLength(len(running), len(pending))
    return QueueLength(0, int(queue.get_tasks_remaining()))


def current_prompt_id() -> str | None:
    """Id of the prompt ComfyUI is executing now, or None standalone."""
    prompt_id = getattr(prompt_server(), "last_prompt_id", None)
    return str(prompt_id) if prompt_id else None


@dataclass(frozen=True)
class PromptOutcome:
    """How a finished prompt ended: ``success``, ``error`` or ``interrupted``; ``message`` for errors."""

    status: str
    message: str = ""


def prompt_outcome(prompt_id: str) -> PromptOutcome | None:
    """How prompt ``prompt_id`` ended, from ComfyUI's history; None if unknown (still running,
    forgotten by a restart, or standalone)."""
    queue = getattr(prompt_server(), "prompt_queue", None)
    if queue is None or not prompt_id:
        return None
    found = queue.get_history(prompt_id=prompt_id, map_function=lambda item: item.get("status"))
    status = found.get(prompt_id) if isinstance(found, dict) and prompt_id in found else None
    if not isinstance(status, dict):
        return None
    messages = status.get("messages") or []
    for item in messages:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            continue
        kind, data = item
        if kind == "execution_interrupted":
            return PromptOutcome("interrupted")
        if kind == "execution_error":
            data = data if isinstance(data, dict) else {}
            text = f"{data.get('exception_type', 'error')}: {data.get('exception_message', '')}".strip()
            return PromptOutcome("error", f"{text} (in node {data.get('node_type', '?')})")
    if status.get("status_str") == "success":
        return PromptOutcome("success")
    if status.get("status_str") == "error":
        return PromptOutcome("error", "the prompt failed")
    return None


# --------------------------------------------------------------------------- models: LoRA patches, VAE


DIFFUSION_PREFIX = "diffusion_model."


def model_weight_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """The DiT's weight names (``blocks.0.self_attn.q.weight``, no ``diffusion_model.`` prefix) -> shape.

    Inside ComfyUI ``model`` is a ModelPatcher (GGUF weights report their real shape); standalone, a state
    dict of tensors.
    """
    if hasattr(model, "model") and hasattr(model.model, "state_dict"):
        state = model.model.state_dict()
        shapes = {key[len(DIFFUSION_PREFIX):]: tuple(int(s) for s in value.shape)
                  for key, value in state.items() if key.startswith(DIFFUSION_PREFIX)}
        # Linear layers know their logical size; ComfyUI-GGUF's quantised weights may report packed bytes
        for name, module in model.model.diffusion_model.named_modules():
            if f"{name}.weight" in shapes and hasattr(module, "in_features") and hasattr(module, "out_features"):
                shapes[f"{name}.weight"] = (int(module.out_features), int(module.in_features))
        return shapes
    return {key: tuple(int(s) for s in value.shape) for key, value in dict(model).items()}


def apply_lora(model: Any, lora_state: dict[str, Any], strength: float) -> tuple[Any, int]:
    """``model`` with a LoRA applied at ``strength``: ``(patched model, weights patched)``.

    ``lora_state`` is in the spelling ``diffusion_model.<module>.lora_up.weight`` / ``.lora_down.weight`` /
    ``.alpha`` (:meth:`nodes.loras.LoraFile.comfy_state_dict`). Inside ComfyUI: ComfyUI's own LoRA path
    (``comfy.lora.model_lora_keys_unet`` + ``load_lora``) onto a ``ModelPatcher.clone()`` via
    ``add_patches`` (nothing baked; the input model is untouched). Standalone: ``model`` is a state dict
    and a new dict with ``weight + strength * alpha / rank * up @ down`` is returned.
    """
    lora = _loaded("comfy.lora")
    if lora is not None and hasattr(model, "clone"):
        key_map = lora.model_lora_keys_unet(model.model, {})
        patches = lora.load_lora(lora_state, key_map, log_missing=False)
        patched = model.clone()
        done = patched.add_patches(patches, float(strength))
        return patched, len(done)
    weights = dict(model)
    count = 0
    for key, up in lora_state.items():
        if not key.endswith(".lora_up.weight"):
            continue
        module = key[: -len(".lora_up.weight")]
        target = module[len(DIFFUSION_PREFIX):] + ".weight"
        if target not in weights:
            continue
        down = lora_state[module + ".lora_down.weight"]
        alpha = float(lora_state[module + ".alpha"]) if module + ".alpha" in lora_state else float(down.shape[0])
        delta = (float(strength) * alpha / down.shape[0]) * (up.float() @ down.float())
        weights[target] = (weights[target].float() + delta.reshape(weights[target].shape)).to(weights[target].dtype)
        count += 1
    return weights, count


def vae_encode(vae: Any, pixels: Any) -> Any:
    """IMAGE ``[T,H,W,3]`` -> the VAE's latent ``[B,C,T',H',W']`` (ComfyUI's VAE.encode; the same call standalone)."""
    return vae.encode(pixels[:, :, :, :3])
