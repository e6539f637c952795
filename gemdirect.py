#!/usr/bin/env python3
"""gemDirect on the command line, without ComfyUI.

    python gemdirect.py demo                 render the bundled demo story as an animatic, end to end
    python gemdirect.py plan STORY.json      check a story and print its scene plan
    python gemdirect.py validate RUN_DIR     check a run folder's telemetry (see docs/telemetry.md)
    python gemdirect.py farm [--workers URL[,URL...]] STORY [--workflow NAME]
                                             render a story across ComfyUI workers (or headless) on Ray

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
import time
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


DEMO_UPSCALE = 1.5  # 832x480 scenes -> a 1248x720 film
SMALL_DEMO = "demo-small"  # --small: the demo story at 256x144, 1 s scenes (a quick check, used by the tests)


def _small_demo_story(home: Path) -> str:
    """A copy of the installed demo story at 256x144 with 1 s scenes, beside it; returns its story name."""
    import json
    import shutil

    root = home / "input" / "gemdirect"
    source, target = root / "demo", root / SMALL_DEMO
    shutil.copytree(source / "keyframes", target / "keyframes", dirs_exist_ok=True)
    story = json.loads((source / "story.json").read_text(encoding="utf-8"))
    story["id"] = "lighthouse-small"
    for scene in story["scenes"]:  # a scene's own values beat the preset's
        scene.update({"width": 256, "height": 144, "duration": 1.0, "transition": {"kind": "crossfade", "frames": 4}})
    (target / "story.json").write_text(json.dumps(story, indent=2), encoding="utf-8")
    return f"{SMALL_DEMO}/story.json"


# The camera moves the demo's prompts ask for ("slow push in", "gentle pan right", "slow pull out").
DEMO_MOVES = {"dawn": "push in", "noon": "pan right", "dusk": "pull out"}


def _animate(nodes: dict, start_image, end_image, scene):
    """The scene's clip as an animatic of an FLF2V scene: from where the film is (start image) into the
    scene's keyframe (end image), under a camera move."""
    (frames,) = nodes["GemDirectAnimatic"]().animate(
        keyframe=start_image, length=scene.length, move=DEMO_MOVES.get(scene.id, "push in"), easing="ease-in-out",
        amount=0.12, scene=scene, end_image=end_image)
    return frames


def _load_upscale_model(path: str):
    """An ESRGAN-family model file as core's Load Upscale Model gives it (a spandrel descriptor)."""
    from spandrel import ImageModelDescriptor, ModelLoader

    model = ModelLoader().load_from_file(path)
    if not isinstance(model, ImageModelDescriptor):
        raise ValueError(f"--upscale-model {path}: not an image-to-image model ({type(model).__name__})")
    return model.eval()


def cmd_demo(args: argparse.Namespace) -> int:
    home = _use_home(args.home)
    pack = load_pack()
    nodes = pack.NODE_CLASS_MAPPINGS
    needed = ("GemDirectStoryLoader", "GemDirectSceneSelect", "GemDirectRun", "GemDirectChainStart",
              "GemDirectSceneSave", "GemDirectStoryRender")
    missing = [name for name in needed if name not in nodes]
    if missing:
        print(f"the demo needs the nodes {', '.join(missing)}, which did not load (see the log above)",
              file=sys.stderr)
        return 1
    loader = nodes["GemDirectStoryLoader"]
    options = loader.INPUT_TYPES()["required"]["story"][0]  # installs the demo story on first use
    if "demo/story.json" not in options:
        print(f"the demo story could not be installed under {home / 'input' / 'gemdirect'}", file=sys.stderr)
        return 1
    story_name = _small_demo_story(home) if args.small else "demo/story.json"
    upscale_model = None
    if args.upscale_model:
        try:
            upscale_model = _load_upscale_model(args.upscale_model)
        except Exception as exc:
            print(f"--upscale-model {args.upscale_model}: cannot be loaded ({exc}); give an ESRGAN-family "
                  ".pth/.safetensors file, or leave the flag out for Lanczos", file=sys.stderr)
            return 1
    started = time.perf_counter()
    story, count, plan_text = loader().load(story_name, args.preset)
    print(plan_text)
    run = None
    for index in range(1, count + 1):
        # One ComfyUI prompt per scene: Scene Select -> Run -> Chain Start -> Animatic -> Scene Save.
        outputs = dict(zip(nodes["GemDirectSceneSelect"].RETURN_NAMES,
                           nodes["GemDirectSceneSelect"]().select(story, index), strict=True))
        scene = outputs["scene"]
        run, _run_dir = nodes["GemDirectRun"]().start(story, scene, "new" if index == 1 else "auto")
        start_image, end_image, source = nodes["GemDirectChainStart"]().start(run, scene)
        frames = _animate(nodes, start_image, end_image, scene)
        nodes["GemDirectSceneSave"]().save(frames, scene, run)
        print(f"scene {index}/{count} '{scene.id}': {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} "
              f"at {outputs['fps']:g} fps, started from {source}")
    prompt = {"render": {"inputs": {"upscale_model": ["upscaler", 0]}},
              "upscaler": {"inputs": {"model_name": os.path.basename(args.upscale_model or "")}}}
    rendered = nodes["GemDirectStoryRender"]().render(
        run, interpolation="target fps", target_fps=24.0, upscale="factor", factor=DEMO_UPSCALE, story=story,
        upscale_model=upscale_model, unique_id="render", prompt=prompt if upscale_model is not None else None)
    _run, final_path, report = rendered["result"]
    print(report)
    print(f"film: {final_path}")
    print(f"telemetry: {os.path.join(run.run_dir, 'artifact-metadata.json')} and run-summary.txt beside it")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    return 0 if "validator: the run keeps the telemetry contract" in report else 1


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


def _story_file(home: Path, story: str) -> Path | None:
    """STORY as a file: a path, or a story name as Story Loader lists it (``demo/story.json``)."""
    for candidate in (Path(story), home / "input" / "gemdirect" / story):
        if candidate.is_file():
            return candidate.resolve()
    return None


def cmd_farm(args: argparse.Namespace) -> int:
    home = _use_home(args.home)
    try:
        schedule = pack_module("nodes.farm.schedule")
    except ImportError as exc:
        print(f"the farm needs ray: pip install -r requirements-scale.txt ({exc})", file=sys.stderr)
        return 2
    if args.story == "demo":
        pack_module("nodes.story.nodes").list_stories()  # installs the demo story on first use
        args.story = _small_demo_story(home) if args.small else "demo/story.json"
    story = _story_file(home, args.story)
    if story is None:
        print(f"STORY {args.story}: no such file, nor a story under {home / 'input' / 'gemdirect'}", file=sys.stderr)
        return 1
    render = {"interpolation": args.interpolation} if args.interpolation else {}
    try:
        result = schedule.run_farm(
            story, workers=args.workers, local_workers=args.local, workflow=args.workflow,
            transition_workflow=args.transition_workflow, render_workflow=args.render_workflow, preset=args.preset,
            run_id=args.run_id or "",
            resume=args.resume, render=render, timeout_s=args.timeout, ray_address=args.ray_address,
            panels=[url for url in (args.panel or "").split(",") if url])
    except (ValueError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for check in result.checks:
        state = "ok" if check.ok else "LEFT OUT: " + "; ".join(check.problems)
        print(f"worker {check.worker.name} (gemDirect {check.version}, stages {'+'.join(check.worker.stages)}): "
              f"{state}")
    for job in result.skipped:
        print(f"{job}: skipped (fresh in run {result.run.run_id})")
    for job, outcome in result.results.items():
        what = outcome.get("method") if outcome.get("ok") else f"FAILED: {outcome.get('error')}"
        print(f"{job}: {what} [{outcome.get('worker')}]")
    for warning in result.warnings:
        print(f"WARNING: {warning}")
    print(f"run: {result.run.run_dir}")
    print(f"film: {result.final_path or '(not rendered)'}")
    print(f"farm finished in {result.elapsed_s:.1f} s")
    return 0 if not result.failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gemdirect.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="render the bundled demo story as an animatic through the pack's nodes")
    demo.add_argument("--home", help="folder standing in for ComfyUI (input/, output/, models/)")
    demo.add_argument("--preset", default="from story", help="from story | none | fast | standard | cinematic")
    demo.add_argument("--upscale-model", metavar="PATH", help="ESRGAN-family model file to upscale with "
                      "(default: Lanczos)")
    demo.add_argument("--small", action="store_true", help="a quick run at 256x144 with 1 s scenes")
    demo.set_defaults(run=cmd_demo)
    plan = sub.add_parser("plan", help="check a story.json and print its scene plan")
    plan.add_argument("story")
    plan.add_argument("--preset", default="from story")
    plan.set_defaults(run=cmd_plan)
    validate = sub.add_parser("validate", help="check a run folder's telemetry")
    validate.add_argument("run_dir")
    validate.set_defaults(run=cmd_validate)
    farm = sub.add_parser("farm", help="render a story across ComfyUI workers on Ray (headless without --workers)")
    farm.add_argument("story", help="story.json path, a story name under input/gemdirect/, or 'demo'")
    farm.add_argument("--workers", help="ComfyUI workers URL[@stage+stage],...: stages keyframes, scenes, "
                      "transitions, post (default: every stage); none: headless on this machine")
    farm.add_argument("--local", type=int, default=2, help="headless workers without --workers (default 2)")
    farm.add_argument("--workflow", help="the scene workflow workers run: a shipped name "
                      "(story_wan22_14b_flf2v) or a file (UI or API format)")
    farm.add_argument("--transition-workflow", help="the workflow for VACE transitions (transition_index is set)")
    farm.add_argument("--render-workflow", help="render the film on a worker that takes post (e.g. story_render); "
                      "default: Story Render on this machine")
    farm.add_argument("--preset", default="from story")
    farm.add_argument("--run-id", help="put the jobs into this run; fresh scenes in it are skipped")
    farm.add_argument("--resume", action="store_true", help="continue the story's newest run")
    farm.add_argument("--interpolation", choices=("from story", "off", "target fps"),
                      help="Story Render's interpolation for the film (default: from story)")
    farm.add_argument("--timeout", type=float, default=1800.0, help="seconds one prompt may take (default 1800)")
    farm.add_argument("--panel", help="ComfyUI URL(s) whose gemDirect panel shows the farm's scene states")
    farm.add_argument("--ray-address", help="an existing Ray cluster (default: a local one)")
    farm.add_argument("--home", help="folder standing in for ComfyUI (input/, output/, models/)")
    farm.add_argument("--small", action="store_true", help="with STORY demo: the quick 256x144 demo story")
    farm.set_defaults(run=cmd_farm)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
