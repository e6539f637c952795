"""Test fixtures. The pack is imported exactly as ComfyUI imports a custom node: a module named after
the pack's folder, created from the root ``__init__.py`` (see ComfyUI's ``load_custom_node``)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_NAME = REPO_ROOT.name
DATA = Path(__file__).resolve().parent / "data"


def load_pack():
    """Import the pack the way ComfyUI does (once per test session)."""
    if PACK_NAME in sys.modules:
        return sys.modules[PACK_NAME]
    spec = importlib.util.spec_from_file_location(PACK_NAME, REPO_ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


def pack_module(dotted: str):
    """A module of the pack by its path inside the pack, e.g. ``nodes.story.model``."""
    load_pack()
    return importlib.import_module(f"{PACK_NAME}.{dotted}")


@pytest.fixture(scope="session")
def pack():
    return load_pack()


@pytest.fixture
def comfy_home(tmp_path, monkeypatch):
    """A fresh standalone ComfyUI layout (input/, output/, models/ ...) for one test."""
    for sub in ("input", "output", "temp", "user", "models"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv("GEMDIRECT_HOME", str(tmp_path))
    return tmp_path


def pytest_report_header(config):
    comfy = os.environ.get("COMFYUI_PATH")
    return [f"gemDirect pack loaded as '{PACK_NAME}' from {REPO_ROOT}",
            f"COMFYUI_PATH={comfy or '(unset: the real-ComfyUI integration test is skipped)'}"]
