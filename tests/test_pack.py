"""The pack as ComfyUI sees it: imported by folder name, node contracts, docs, start-up safety."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

from conftest import PACK_NAME, REPO_ROOT

EXPECTED_NODES = {
    "GemDirectStoryLoader", "GemDirectSceneSelect", "GemDirectAnimatic", "GemDirectRun", "GemDirectTelemetryWriter",
    "GemDirectChainStart", "GemDirectSceneSave", "GemDirectColorMatch", "GemDirectModelInfo", "GemDirectVRAMGuard",
    "GemDirectRIFELoader", "GemDirectInterpolate", "GemDirectUpscale", "GemDirectStoryRender",
    "GemDirectSVILoRALoader", "GemDirectSVIContinue",
}


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=str(REPO_ROOT.parent))


LOAD_LIKE_COMFYUI = f"""
import importlib.util, sys, os
path = {str(REPO_ROOT)!r}
name = os.path.basename(path)
spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"))
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
"""


def test_pack_loads_by_folder_name_and_exports_its_nodes(pack):
    assert pack.__name__ == PACK_NAME
    assert EXPECTED_NODES <= set(pack.NODE_CLASS_MAPPINGS)
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)
    assert pack.WEB_DIRECTORY == "./web" and (REPO_ROOT / "web").is_dir()
    assert pack.DISABLED_ROOMS == {}


def _input_specs(node_class):
    types = node_class.INPUT_TYPES()
    assert set(types) <= {"required", "optional", "hidden"}, types.keys()
    for section in ("required", "optional"):
        yield from (types.get(section) or {}).items()


def test_every_node_honours_the_v1_contract(pack, comfy_home):
    for node_id, node_class in pack.NODE_CLASS_MAPPINGS.items():
        assert node_id.startswith("GemDirect")
        assert pack.NODE_DISPLAY_NAME_MAPPINGS[node_id].endswith("(gemDirect)")
        assert node_class.CATEGORY.startswith("gemDirect/")
        assert callable(getattr(node_class, node_class.FUNCTION))
        returns = node_class.RETURN_TYPES
        assert isinstance(returns, tuple) and all(isinstance(t, str) and t for t in returns)
        for extra in ("RETURN_NAMES", "OUTPUT_TOOLTIPS"):
            if hasattr(node_class, extra):
                assert len(getattr(node_class, extra)) == len(returns), f"{node_id}.{extra}"
        for name, spec in _input_specs(node_class):
            kind = spec[0]
            assert isinstance(kind, (str, list)), f"{node_id}.{name}"
            if isinstance(kind, list):
                assert kind and all(isinstance(option, str) for option in kind), f"{node_id}.{name}"
            options = spec[1] if len(spec) > 1 else {}
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if kind in ("INT", "FLOAT"):
                assert options["min"] <= options["default"] <= options["max"], f"{node_id}.{name}"
        json.dumps(node_class.INPUT_TYPES())  # /object_info must be able to serialise it


def test_every_node_has_a_help_page(pack):
    for node_id in pack.NODE_CLASS_MAPPINGS:
        page = REPO_ROOT / "web" / "docs" / f"{node_id}.md"
        assert page.is_file(), f"missing {page}"
        text = page.read_text(encoding="utf-8")
        assert text.startswith("# ") and len(text) > 300, f"{page} is too thin"
        for name, _spec in _input_specs(pack.NODE_CLASS_MAPPINGS[node_id]):
            assert f"`{name}`" in text, f"{page} does not document input {name}"


def test_import_does_no_torch_work():
    result = _run_python(LOAD_LIKE_COMFYUI + """
import time
print(json.dumps({"torch": "torch" in sys.modules, "cv2": "cv2" in sys.modules,
                  "nodes": sorted(module.NODE_CLASS_MAPPINGS)}))
""".replace("import time", "import json"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch"] is False, "importing the pack imported torch"
    assert EXPECTED_NODES <= set(report["nodes"])


def test_broken_dependency_disables_only_its_room_with_one_log_line():
    # Pillow "installed but broken": importing it fails. The story room needs it; start-up goes on.
    result = _run_python("import sys\nsys.modules['PIL'] = None\n" + LOAD_LIKE_COMFYUI + """
print("NODES", sorted(module.NODE_CLASS_MAPPINGS))
print("DISABLED", sorted(module.DISABLED_ROOMS))
""")
    assert result.returncode == 0, result.stderr
    assert "NODES []" in result.stdout or "GemDirectStoryLoader" not in result.stdout.split("NODES", 1)[1]
    assert "DISABLED ['story']" in result.stdout or "'story'" in result.stdout.split("DISABLED", 1)[1]
    lines = [line for line in result.stderr.splitlines() if "disabled nodes of room 'story'" in line]
    assert len(lines) == 1, result.stderr
    assert "GemDirectStoryLoader" in lines[0] and "'PIL'" in lines[0]


COMFY_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:comfy|comfy_api|comfy_extras|folder_paths|server|nodes)\b", re.M)


def test_only_the_comfy_door_touches_comfyui():
    """Absolute imports of ComfyUI modules (or of ComfyUI's own ``nodes``) appear nowhere in the pack."""
    offenders = []
    for path in [*sorted(REPO_ROOT.glob("nodes/**/*.py")), REPO_ROOT / "__init__.py"]:
        for match in COMFY_IMPORT.finditer(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(REPO_ROOT)}: {match.group(0).strip()}")
    assert offenders == []
