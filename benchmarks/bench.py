"""What every benchmark needs: the pack imported as ComfyUI imports it, and this process's peak RSS.

Benchmarks run as scripts (``python benchmarks/<name>.py``), so this folder is on ``sys.path`` and
``from bench import pack_module, peak_rss_mb`` works. The pack is loaded by tests/conftest.py's
``load_pack`` (a module named after the repo folder, from the root ``__init__.py``): one definition
for the tests and the benchmarks.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests"))

from conftest import load_pack, pack_module  # noqa: E402

__all__ = ["REPO_ROOT", "load_pack", "pack_module", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """Peak resident set of this process in MB (2**20 bytes).

    From ``VmHWM`` in /proc: ``ru_maxrss`` is not used on Linux because a child started by fork+exec
    from a big parent reports the parent's peak. Elsewhere, ``ru_maxrss`` (KiB; bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
