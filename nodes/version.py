"""The pack's version, as pyproject.toml states it (what the Comfy Registry and the farm's worker check read)."""

from __future__ import annotations

import functools
import os
import re

PYPROJECT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pyproject.toml")
VERSION_LINE = re.compile(r'^version\s*=\s*"([^"]+)"', re.MULTILINE)  # [project] is pyproject's first table


@functools.cache
def pack_version() -> str:
    """``[project].version`` of pyproject.toml (``0.1.0``), or ``unknown`` when the file is not shipped."""
    try:
        with open(PYPROJECT, encoding="utf-8") as handle:
            found = VERSION_LINE.search(handle.read())
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"
