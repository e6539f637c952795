#!/usr/bin/env python3
"""gemDirect on the command line, without ComfyUI.

    python gemdirect.py demo                 plan the bundled demo story through the pack's nodes
    python gemdirect.py plan STORY.json      check a story and print its scene plan
    python gemdirect.py validate RUN_DIR     check a run folder's telemetry (see docs/telemetry.md)

The pack is imported exactly as ComfyUI imports it (a package named after this folder), so the
command line runs the same node classes a ComfyUI graph runs. ComfyUI's folders (input/, output/,
models/) live under --home (default: $GEMDIRECT_HOME, else ./gemdirect-home).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent


def load_pack():
    """Import the pack as ComfyUI does: module named after the folder, from its __init__.py."""
    name = PACK_DIR.name
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pack_module(dotted: str):
    return importlib.import_module(f"{load_pack().__name__}.{dotted}")


def _use_home(home: str | None) -> Path:
    path = Path(home or os.environ.get("GEMDIRECT_HOME") or Path.cwd() / "gemdirect-home").resolve()
    for sub in ("input", "output", "temp", "user", "models"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    os.environ["GEMDIRECT_HOME"] = str(path)
    return path


def cmd_demo(args: argparse.Namespace) -> int:
    home = _use_home(args.home)
    pack = load_pack()
    loader = pack.NODE_CLASS_MAPPINGS["GemDirectStoryLoader"]
    select = pack.NODE_CLASS_MAPPINGS["GemDirectSceneSelect"]
    options = loader.INPUT_TYPES()["required"]["story"][0]  # installs the demo story on first use
    story_name = "demo/story.json"
    if story_name not in options:
        print(f"the demo story could not be installed under {home / 'input' / 'gemdirect'}", file=sys.stderr)
        return 1
    story, count, plan_text = loader().load(story_name, args.preset)
    print(plan_text)
    for index in range(1, count + 1):
        outputs = dict(zip(select.RETURN_NAMES, select().select(story, index), strict=True))
        scene = outputs["scene"]
        shape = "x".join(str(d) for d in outputs["keyframe"].shape)
        print(f"scene {index}/{count} '{scene.id}': start image {shape}, {outputs['length']} frames "
              f"at {outputs['fps']:g} fps, seed {outputs['seed']}")
    print(f"demo story: {story.path}")
    print("Rendering arrives with the render stage; this run checked and planned every scene.")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = pack_module("nodes.story.plan")
    try:
        loaded = plan.load_and_plan(args.story, args.preset)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(plan.describe_plan(loaded.plan))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        validate = pack_module("nodes.run.validate")
    except ImportError as exc:
        print(f"the run validator is not available: {exc}", file=sys.stderr)
        return 2
    return int(validate.main([args.run_dir]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gemdirect.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="plan the bundled demo story through the pack's nodes")
    demo.add_argument("--home", help="folder standing in for ComfyUI (input/, output/, models/)")
    demo.add_argument("--preset", default="from story", help="from story | none | fast | standard | cinematic")
    demo.set_defaults(run=cmd_demo)
    plan = sub.add_parser("plan", help="check a story.json and print its scene plan")
    plan.add_argument("story")
    plan.add_argument("--preset", default="from story")
    plan.set_defaults(run=cmd_plan)
    validate = sub.add_parser("validate", help="check a run folder's telemetry")
    validate.add_argument("run_dir")
    validate.set_defaults(run=cmd_validate)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
