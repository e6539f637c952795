"""How long ComfyUI's import of the pack takes, in fresh interpreters (not a test).

    python benchmarks/import_time.py [--runs 7]

Each run starts a new Python, imports the pack the way ComfyUI does (module named after the folder,
from the root __init__.py) and reports the wall time of that import alone, next to the import of the
third-party libraries the pack needs (numpy, pydantic, Pillow) as the reference measured in the same
run. Also reports whether torch got imported (it must not: the pack does no torch work at import).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib.util, json, os, sys, time
root = sys.argv[1]
start = time.perf_counter()
if root == "-":
    import numpy, pydantic, PIL.Image  # noqa: F401  (the libraries the pack's rooms need)
else:
    name = os.path.basename(root)
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "torch": "torch" in sys.modules, "modules": len(sys.modules)}))
"""


def measure(target: str, runs: int) -> list[dict]:
    results = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE, target], capture_output=True, text=True, check=True,
                             cwd=str(ROOT.parent))
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    pack = measure(str(ROOT), args.runs)
    reference = measure("-", args.runs)
    pack_s = statistics.median(r["seconds"] for r in pack)
    ref_s = statistics.median(r["seconds"] for r in reference)
    print(f"pack import: median {pack_s * 1000:.0f} ms over {args.runs} runs "
          f"(min {min(r['seconds'] for r in pack) * 1000:.0f}, max {max(r['seconds'] for r in pack) * 1000:.0f}); "
          f"torch imported: {any(r['torch'] for r in pack)}; modules loaded: {pack[0]['modules']}")
    print(f"reference (numpy + pydantic + Pillow alone): median {ref_s * 1000:.0f} ms; "
          f"pack / reference = {pack_s / ref_s:.2f}")


if __name__ == "__main__":
    main()
