"""Every shipped workflow runs in a real ComfyUI, as a user's Run press does, on tiny WAN-family models.

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout (skipped, saying so, otherwise). One ComfyUI
serves the module, with a temporary ``--base-directory`` holding: the pack, the test-only
conditioning node (tests/comfyui_nodes/), ComfyUI-GGUF when the checkout has it, tiny random-weight
models (tests/tiny_models.py, cached across sessions) under the file names the workflows ship with,
and a small test story per workflow (128x80 or 128x96, 9-frame scenes, 2 steps). See
docs/comfyui-integration.md.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import tiny_models
from comfyui_server import TEST_NODES, running_comfyui
from conftest import REPO_ROOT, load_pack, pack_module
from PIL import Image
from workflow_check import check_workflow, load_schemas, pack_schemas, to_api_prompt, workflow_files
from workflow_run import (
    SCENE_SAVE,
    SCENE_SELECT,
    STORY_RENDER,
    models_wanted,
    of_type,
    prompts_for,
    queue_and_wait,
    run_folders,
    swap_text_encoder,
    wan_family,
)

pytestmark = pytest.mark.integration

SCENES = 3  # the suite stays near 15 min with 3; 2 would still show chaining
SCENE_FRAMES = 9
STEPS = 2
SIZE = {"wan22_ti2v_5b": (128, 96)}  # the 5B's VAE stride x patch is 32; the WAN 2.2 VAE is the RAM hog
DEFAULT_SIZE = (128, 80)
PRESET = {"wan22_ti2v_5b": "fast"}  # the preset whose model profile fits the family
DEFAULT_PRESET = "standard"
SCENE_TIMEOUT = 600.0  # one scene prompt on a shared 2-core CPU (the full-size VAE dominates)
GGUF_PACK = "ComfyUI-GGUF"
GGUF_LOADERS = ("UnetLoaderGGUF", "CLIPLoaderGGUF")
EXTRA_MODELS = [  # beside the workflows' own: the model-folder tests list these
    ("frame_interpolation", "rife_v4.26.safetensors", "rife"),
    ("upscale_models", "RealESRGAN_x4plus.pth", "esrgan"),
    ("loras", "wan22_test_lora_diffusers.safetensors", "lora_diffusers"),
    ("loras", "wan22_test_lora_kohya.safetensors", "lora_kohya"),
]


def local_schemas() -> dict:
    pack = load_pack()
    schemas = load_schemas() | pack_schemas(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    return json.loads(json.dumps(schemas, default=str))


def read_workflow(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def gguf_pack_source() -> Path | None:
    checkout = os.environ.get("COMFYUI_PATH")
    source = Path(checkout).expanduser() / "custom_nodes" / GGUF_PACK if checkout else None
    return source if source is not None and (source / "__init__.py").is_file() else None


def needs_gguf(workflow: dict) -> bool:
    return any(node.get("type") in GGUF_LOADERS for node in workflow["nodes"])


def run_order(path: Path) -> tuple[int, str]:
    """Workflows that make scenes first, then those that only render (they render a finished story)."""
    types = {node.get("type") for node in read_workflow(path)["nodes"]}
    if SCENE_SAVE in types:
        return 0, path.name
    return (1 if STORY_RENDER in types else 2), path.name


WORKFLOWS = sorted(workflow_files(), key=run_order)


def story_id(path: Path) -> str:
    return "itest-" + path.stem.replace("_", "-")


def story_option(path: Path) -> str:
    return f"{story_id(path)}/story.json"


def write_story(folder: Path, sid: str, family: str | None) -> Path:
    """A small story of SCENES chained scenes with painted keyframes at the family's test size."""
    demo = pack_module("nodes.story.demo")
    width, height = SIZE.get(family, DEFAULT_SIZE)
    looks = ("dawn", "noon", "dusk")
    (folder / "keyframes").mkdir(parents=True, exist_ok=True)
    scenes = []
    for index in range(SCENES):
        look = looks[index % len(looks)]
        demo.paint_keyframe(look, (width, height)).save(folder / "keyframes" / f"{look}.png")
        scenes.append({"id": f"s{index + 1}", "title": f"Scene {index + 1}", "prompt": f"the lighthouse at {look}",
                       "frames": SCENE_FRAMES, "steps": STEPS, "width": width, "height": height,
                       "keyframe": f"keyframes/{look}.png"})
    story = {"schema": "gemdirect.story/1", "id": sid, "title": f"Integration test {sid}",
             "defaults": {"preset": PRESET.get(family, DEFAULT_PRESET), "cfg": 5.0, "seed": 7,
                          "transition": {"kind": "cut", "frames": 0}},
             "scenes": scenes}
    path = folder / "story.json"
    path.write_text(json.dumps(story, indent=1), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def model_cache(request) -> Path:
    """Tiny models built once per machine (pytest's cache folder; GEMDIRECT_TINY_MODELS overrides)."""
    override = os.environ.get("GEMDIRECT_TINY_MODELS")
    return Path(override) if override else Path(request.config.cache.mkdir("gemdirect-tiny-models"))


@pytest.fixture(scope="module")
def suite(tmp_path_factory, model_cache):
    """The running server and what the suite installed into its base directory."""
    from comfyui_server import comfyui_checkout

    comfyui_checkout()  # skip before building anything when there is no ComfyUI
    base = tmp_path_factory.mktemp("comfyui-wan")
    schemas = local_schemas()
    gguf = gguf_pack_source()
    installed = []
    for path in WORKFLOWS:
        workflow = read_workflow(path)
        if needs_gguf(workflow) and gguf is None:
            continue
        prompt = to_api_prompt(workflow, schemas)
        for folder, name, kind in models_wanted(prompt):
            installed.append(tiny_models.install(tiny_models.build(kind, model_cache), base / "models", folder, name))
        write_story(base / "input" / "gemdirect" / story_id(path), story_id(path), (wan_family(prompt) or [None])[0])
    for folder, name, kind in EXTRA_MODELS:
        installed.append(tiny_models.install(tiny_models.build(kind, model_cache), base / "models", folder, name))
    nodes = {"gemdirect_test_conditioning": TEST_NODES / "gemdirect_test_conditioning"}
    if gguf is not None:
        nodes[GGUF_PACK] = gguf
    with running_comfyui(base, nodes, listen=True) as server:
        server.object_info = server.get("/object_info").json()
        server.installed = installed
        server.finished = {}  # workflow file name -> story option of its finished run
        yield server


def api_prompt(server, path: Path) -> dict:
    return swap_text_encoder(to_api_prompt(read_workflow(path), server.object_info))


# --------------------------------------------------------------------------- the frontend's conversion


def frontend_prompts(server, paths: list[Path]) -> dict:
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if node is None or not Path(chromium).exists() or not (REPO_ROOT / "node_modules" / "playwright-core").is_dir():
        pytest.skip("the frontend check needs node, Chromium (CHROMIUM or /usr/bin/chromium) and `npm ci`")
    done = subprocess.run([node, str(REPO_ROOT / "tests" / "frontend_prompts.mjs"), server.url, *map(str, paths)],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def comparable(prompt: dict) -> dict:
    return {key: {"class_type": node["class_type"], "inputs": node["inputs"]} for key, node in prompt.items()}


def test_frontend_makes_the_same_prompt_as_to_api_prompt_for_every_workflow(suite):
    converted = frontend_prompts(suite, workflow_files())
    for path in workflow_files():
        workflow = read_workflow(path)
        seen = converted[path.name]
        assert seen["pageErrors"] == [], f"{path.name}: {seen['pageErrors']}"
        if needs_gguf(workflow) and GGUF_PACK not in os.listdir(suite.base / "custom_nodes"):
            continue  # the frontend cannot convert nodes the server does not have
        assert seen["missing"] == [], f"{path.name}: nodes the frontend could not build: {seen['missing']}"
        assert comparable(seen["output"]) == comparable(to_api_prompt(workflow, suite.object_info)), path.name


# --------------------------------------------------------------------------- every workflow runs


def scene_records(metadata: dict) -> list[dict]:
    return metadata["Scenes"]


def pixel_score(a: np.ndarray, b: np.ndarray) -> float:
    """gemDirect1's bookend score: 100 - mean absolute difference in percent."""
    return 100.0 - float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()) / 255.0 * 100.0


def check_film(server, story_name: str, run_dir: Path) -> None:
    """The run's film (frames, fps, size read back from the file), telemetry (the validator) and chaining."""
    validate = pack_module("nodes.run.validate")
    probe = pack_module("nodes.video.probe")
    plan = pack_module("nodes.story.plan")
    problems = validate.validate_run(run_dir)
    assert problems == [], "\n".join(problems)
    metadata = json.loads((run_dir / "artifact-metadata.json").read_text(encoding="utf-8"))
    story = plan.load_and_plan(str(server.base / "input" / "gemdirect" / story_name), "from story").plan
    post = metadata["Post"]
    film = probe.probe_video(run_dir / post["FinalPath"])
    scene = story.scenes[0]
    fps = story.post.target_fps if story.post.interpolation else scene.fps
    assert (film.width, film.height) == (scene.width, scene.height), post
    assert film.fps == fps and float(post["FinalFPS"]) == pytest.approx(float(fps)), post
    assert film.frames == post["FinalFrames"], post
    # the joined cut (crossfades overlap frames) resampled from the scenes' rate to the film's
    joined = post["Extra"]["JoinedFrames"]
    overlap = sum(join["Frames"] for join in post["Extra"]["Joins"])
    assert story.total_frames - overlap - len(story.scenes) < joined <= story.total_frames, post["Extra"]
    assert abs(film.frames - joined * fps / scene.fps) <= 1, (film.frames, joined, fps)
    records = scene_records(metadata)
    assert [r["SceneId"] for r in records] == [s.id for s in story.scenes]
    assert all(r["Success"] for r in records), records
    for previous, current in itertools.pairwise(records):
        assert current["Telemetry"]["FLF2VSource"] == "previous-scene", current["Telemetry"]
        last = np.asarray(Image.open(run_dir / "scenes" / f"{previous['SceneId']}_last.png").convert("RGB"))
        first = np.asarray(Image.open(run_dir / "scenes" / f"{current['SceneId']}_first.png").convert("RGB"))
        recorded = current["Telemetry"]["BookendSimilarity"]["Score"]
        assert recorded == pytest.approx(pixel_score(last, first), abs=0.1), (previous["SceneId"], current["SceneId"])


def model_load_problems(log: str) -> list[str]:
    """ComfyUI's own complaints about a state dict that does not fit the model it built."""
    return [line for line in log.splitlines()
            if "unet missing:" in line or "unet unexpected:" in line or "Missing VAE keys" in line]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_runs_to_success(suite, path, record_property):
    workflow = read_workflow(path)
    if needs_gguf(workflow) and GGUF_PACK not in os.listdir(suite.base / "custom_nodes"):
        pytest.skip(f"{path.name} needs {GGUF_PACK}: put it in $COMFYUI_PATH/custom_nodes/ "
                    "(see docs/comfyui-integration.md)")
    assert check_workflow(workflow, suite.object_info) == []
    prompt = api_prompt(suite, path)
    story = story_option(path)
    makes_scenes = bool(of_type(prompt, SCENE_SAVE))
    if of_type(prompt, STORY_RENDER) and not makes_scenes:
        source = next((name for name, done in suite.finished.items() if done), None)
        if source is None:
            pytest.skip(f"{path.name} renders a finished story; no scene-making workflow finished before it")
        story = suite.finished[source]
    started = time.monotonic()
    results = [queue_and_wait(suite, item, SCENE_TIMEOUT) for item in prompts_for(prompt, story, SCENES)]
    record_property("workflow_seconds", round(time.monotonic() - started, 1))
    print(f"{path.name}: {len(results)} prompt(s), " + ", ".join(f"{r.seconds:.0f} s" for r in results))
    assert model_load_problems(suite.log_text()) == []
    for result in results:  # the pack's nodes showed progress through ComfyUI's ProgressBar
        progressed = {m["node"] for m in suite.messages.of("progress", result.prompt_id)}
        for key in of_type(prompt, SCENE_SAVE):
            assert key in progressed, f"no progress messages from Scene Save (node {key})"
    if makes_scenes:
        suite.finished[path.name] = story
    sid = story.split("/")[0]
    if of_type(prompt, STORY_RENDER):
        runs = run_folders(suite.base / "output", sid)
        assert len(runs) == 1, runs
        check_film(suite, story, runs[0])
    elif of_type(prompt, SCENE_SELECT):  # previews: one output per scene prompt
        for result in results:
            assert result.entry["outputs"], f"{path.name}: a prompt produced no output"

