"""gemDirect's rooms and the node registry.

Each room (``nodes/<stage>/``) has a ``nodes.py`` with its node classes, ``NODE_CLASS_MAPPINGS``,
``NODE_DISPLAY_NAME_MAPPINGS`` and ``REQUIRES`` (the third-party modules its nodes need beyond the
standard library). A room whose requirement is missing or broken is left out with one log line
that says which nodes and why; ComfyUI's start-up never fails because of it.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger("gemdirect")

# Rooms in menu order. A room listed here but not yet built is skipped silently.
ROOMS = ("story", "run", "chain", "vram", "interpolate", "upscale", "svi", "vace", "control", "render")


def _missing_requirement(requires: tuple[str, ...]) -> str | None:
    for module in requires:
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or a broken install raising anything else
            return f"needs '{module}' ({type(exc).__name__}: {exc}); install it with: pip install -r requirements.txt"
    return None


def load_rooms() -> tuple[dict[str, type], dict[str, str], dict[str, str]]:
    """Import every room; return (class mappings, display names, disabled room -> reason)."""
    classes: dict[str, type] = {}
    names: dict[str, str] = {}
    disabled: dict[str, str] = {}
    for room in ROOMS:
        try:
            module = importlib.import_module(f".{room}.nodes", __name__)
        except ModuleNotFoundError as exc:
            if exc.name in (f"{__name__}.{room}", f"{__name__}.{room}.nodes"):
                continue  # room not built yet
            disabled[room] = f"failed to import ({type(exc).__name__}: {exc})"
        except Exception as exc:
            disabled[room] = f"failed to import ({type(exc).__name__}: {exc})"
        else:
            reason = _missing_requirement(tuple(getattr(module, "REQUIRES", ())))
            if reason is None:
                classes.update(module.NODE_CLASS_MAPPINGS)
                names.update(module.NODE_DISPLAY_NAME_MAPPINGS)
                continue
            module_nodes = ", ".join(module.NODE_CLASS_MAPPINGS) or "(none)"
            disabled[room] = f"{module_nodes}: {reason}"
        log.warning("[gemDirect] disabled nodes of room '%s': %s", room, disabled[room])
    return classes, names, disabled
