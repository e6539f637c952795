"""Every shipped workflow runs in a real ComfyUI, as a user's Run press does, on tiny WAN-family models.

Runs when ``COMFYUI_PATH`` points at a ComfyUI checkout (skipped, saying so, otherwise). One ComfyUI
serves the module, with a temporary ``--base-directory`` holding: the pack, the test-only
conditioning node (tests/comfyui_nodes/), ComfyUI-GGUF when the checkout has it, tiny random-weight
models (tests/tiny_models.py, cached across sessions) under the file names the workflows ship with,
and a small test story per workflow (128x80 or 128x96, 9-frame scenes, 2 steps). See
docs/comfyui-integration.md.
"""

from __future__ import annotations

import io
import itertools
import json
import math
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
    VACE_PREP,
    WorkflowRunError,
    for_scene,
    models_wanted,
    of_type,
    prompts_for,
    provider_kind,
    queue_and_wait,
    run_folders,
    swap_text_encoder,
    wan_family,
)

pytestmark = pytest.mark.integration
SAVE_KEYFRAME = "GemDirectSaveKeyframe"

SCENES = 3  # the suite stays near 15 min with 3; 2 would still show chaining
SCENE_FRAMES = 9
STEPS = 2
SIZE = {"wan22_ti2v_5b": (128, 96),  # the 5B's VAE stride x patch is 32; the WAN 2.2 VAE is the RAM hog
        "svd_xt": (128, 64), "ltxv": (128, 96)}  # SVD: multiples of 64; LTX-Video: of 32
DEFAULT_SIZE = (128, 80)
PRESET = {"wan22_ti2v_5b": "fast", "svd_xt": "svd", "ltxv": "ltxv"}  # the preset whose model profile fits
DEFAULT_PRESET = "standard"
SCENE_TIMEOUT = 600.0  # one scene prompt on a shared 2-core CPU (the full-size VAE dominates)
GGUF_PACK = "ComfyUI-GGUF"
GGUF_LOADERS = ("UnetLoaderGGUF", "CLIPLoaderGGUF")
T2V_MODEL = "wan_test_t2v_tiny.safetensors"
EXTRA_MODELS = [  # beside the workflows' own: the model-folder and memory tests use these
    ("diffusion_models", T2V_MODEL, "wan_t2v"),
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


# hao-ai-lab's FastVideo nodes: its README installs its comfyui/ folder as custom_nodes/FastVideo. They need
# the fastvideo package and CUDA GPUs and load WAN 2.1 I2V 14B by Hugging Face id through FastVideo's own
# runtime (no ComfyUI loader to hand a tiny stand-in to, and a run would download it): with the pack in the
# checkout the workflow is checked against the live node definitions, never executed.
FASTVIDEO_PACK = "FastVideo"
FASTVIDEO_NODES = tuple(json.loads((REPO_ROOT / "tests" / "data" / "object_info_fastvideo.json").read_text()))


def fastvideo_pack_source() -> Path | None:
    checkout = os.environ.get("COMFYUI_PATH")
    source = Path(checkout).expanduser() / "custom_nodes" / FASTVIDEO_PACK if checkout else None
    return source if source is not None and (source / "__init__.py").is_file() else None


def needs_fastvideo(workflow: dict) -> bool:
    return any(node.get("type") in FASTVIDEO_NODES for node in workflow["nodes"])


def needs_gguf(workflow: dict) -> bool:
    return any(node.get("type") in GGUF_LOADERS for node in workflow["nodes"])


def run_order(path: Path) -> tuple[int, str]:
    """Workflows that make scenes first, then those that only render (they render a finished story)."""
    types = {node.get("type") for node in read_workflow(path)["nodes"]}
    if SCENE_SAVE in types:
        return 0, path.name
    return (1 if STORY_RENDER in types else 2), path.name


WORKFLOWS = sorted(workflow_files(), key=run_order)
FLF2V = next(p for p in WORKFLOWS if p.name == "story_wan22_14b_flf2v.json")  # makes scenes for other tests


def story_id(path: Path) -> str:
    return "itest-" + path.stem.replace("_", "-")


def story_option(path: Path) -> str:
    return f"{story_id(path)}/story.json"


VACE_TRANSITION = {"kind": "vace", "frames": 4}  # per scene: a preset's transition beats the story's defaults
VACE_SCENE_FRAMES = 13  # a chained pair needs (context 4 + replace 0) * 2 + 2 frames for a VACE transition


def write_control_zip(path: Path, frames: int, size: tuple[int, int]) -> str:
    """A zip of ``frames`` painted control frames (another count and size than the scene's: resampled)."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(frames):
            image = Image.new("RGB", size, (0, 0, 0))
            image.paste((255, 255, 255), (index * size[0] // frames, 0, index * size[0] // frames + 8, size[1]))
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            archive.writestr(f"pose/{index}.png", buffer.getvalue())
    return path.name


def write_story(folder: Path, sid: str, family: str | None, control: bool = False, svi: bool = False,
                vace: bool = False, unknown: bool = False) -> Path:
    """A small story of SCENES chained scenes with painted keyframes at the family's test size (and, for a
    workflow with Control Sequence, a control zip per scene and a high-noise LoRA on the first; for a workflow
    with SVI nodes, SVI on at the low CFG SVI runs at; for a VACE workflow, longer scenes and every join a vace
    transition; with ``unknown``, fields the pack does not know, which a keyframe save must keep)."""
    demo = pack_module("nodes.story.demo")
    width, height = SIZE.get(family, DEFAULT_SIZE)
    looks = ("dawn", "noon", "dusk")
    (folder / "keyframes").mkdir(parents=True, exist_ok=True)
    scenes = []
    for index in range(SCENES):
        look = looks[index % len(looks)]
        demo.paint_keyframe(look, (width, height)).save(folder / "keyframes" / f"{look}.png")
        scenes.append({"id": f"s{index + 1}", "title": f"Scene {index + 1}", "prompt": f"the lighthouse at {look}",
                       "frames": VACE_SCENE_FRAMES if vace else SCENE_FRAMES, "steps": STEPS, "width": width,
                       "height": height,
                       "keyframe": f"keyframes/{look}.png"} | ({"transition": VACE_TRANSITION} if vace else {}))
        if control:
            write_control_zip(folder / "control" / f"s{index + 1}.zip", 4, (width * 2, height * 2))
            scenes[-1]["control"] = {"kind": "pose", "sequence": f"control/s{index + 1}.zip"}
            if index == 0:  # and a LoRA for the high-noise expert only: Scene LoRAs per expert in a real run
                lora = next(name for _, name, kind in EXTRA_MODELS if kind == "lora_diffusers")
                scenes[-1]["loras"] = [{"name": lora, "strength": 0.5, "expert": "high"}]
    story = {"schema": "gemdirect.story/1", "id": sid, "title": f"Integration test {sid}",
             "defaults": {"preset": PRESET.get(family, DEFAULT_PRESET), "cfg": 5.0, "seed": 7,
                          "transition": {"kind": "cut", "frames": 0}},
             "scenes": scenes}
    if svi:
        story["defaults"]["svi"] = {"enabled": True, "motion_latent_count": 1, "lora_strength": 1.0, "cfg": 1.5}
    if unknown:
        story["x_itest"] = {"kept": [1, 2]}
        for scene in scenes:
            scene["x_note"] = f"note for {scene['id']}"
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
        if (needs_gguf(workflow) and gguf is None) or needs_fastvideo(workflow):
            continue  # FastVideo: never executed (see FASTVIDEO_PACK)
        prompt = to_api_prompt(workflow, schemas)
        for folder, name, kind in models_wanted(prompt):
            installed.append(tiny_models.install(tiny_models.build(kind, model_cache), base / "models", folder, name))
        write_story(base / "input" / "gemdirect" / story_id(path), story_id(path),
                    (wan_family(prompt) or [provider_kind(prompt)])[0],
                    control=bool(of_type(prompt, "GemDirectControlSequence")),
                    svi=bool(of_type(prompt, "GemDirectSVIContinue")),
                    vace=bool(of_type(prompt, VACE_PREP)),
                    unknown=bool(of_type(prompt, SAVE_KEYFRAME)))
    for folder, name, kind in EXTRA_MODELS:
        installed.append(tiny_models.install(tiny_models.build(kind, model_cache), base / "models", folder, name))
    nodes = {"gemdirect_test_conditioning": TEST_NODES / "gemdirect_test_conditioning"}
    if gguf is not None:
        nodes[GGUF_PACK] = gguf
    if fastvideo_pack_source() is not None:
        nodes[FASTVIDEO_PACK] = fastvideo_pack_source()
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
        if needs_fastvideo(workflow) and not set(FASTVIDEO_NODES) <= set(suite.object_info):
            continue
        assert seen["missing"] == [], f"{path.name}: nodes the frontend could not build: {seen['missing']}"
        assert comparable(seen["output"]) == comparable(to_api_prompt(workflow, suite.object_info)), path.name


# --------------------------------------------------------------------------- every workflow runs


def scene_records(metadata: dict) -> list[dict]:
    return metadata["Scenes"]


def pixel_score(a: np.ndarray, b: np.ndarray) -> float:
    """gemDirect1's bookend score: 100 - mean absolute difference in percent."""
    return 100.0 - float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean()) / 255.0 * 100.0


def final_rate_and_factor(story, scene, render: dict) -> tuple:
    """The film's frame rate and size factor as Story Render's widgets ask (``from story``: the preset's)."""
    from fractions import Fraction

    interpolation, upscale = render["interpolation"], render["upscale"]
    if interpolation == "from story":
        fps = story.post.target_fps if story.post.interpolation and story.post.target_fps else scene.fps
    else:
        fps = Fraction(render["target_fps"]).limit_denominator(1001) if interpolation == "target fps" else scene.fps
    if upscale == "from story":
        factor = story.post.upscale_factor if story.post.upscale else 1.0
    else:
        assert upscale in ("factor", "off"), f"the suite checks factor/off/from story sizes, not {upscale}"
        factor = render["factor"] if upscale == "factor" else 1.0
    return fps, factor


def check_film(server, story_name: str, run_dir: Path, scenes: int, render: dict) -> None:
    """The run's film (frames, fps, size read back from the file), telemetry (the validator) and chaining."""
    validate = pack_module("nodes.run.validate")
    probe = pack_module("nodes.video.probe")
    plan = pack_module("nodes.story.plan")
    problems = validate.validate_run(run_dir)
    assert problems == [], "\n".join(problems)
    metadata = json.loads((run_dir / "artifact-metadata.json").read_text(encoding="utf-8"))
    story = plan.load_and_plan(str(server.base / "input" / "gemdirect" / story_name), "from story").plan
    post = metadata["Post"]
    rendered = [s for s in story.scenes if s.id in post["Extra"]["Scenes"]]
    assert rendered and [s.id for s in rendered] == post["Extra"]["Scenes"], post["Extra"]
    assert len(rendered) == scenes and len(post["Extra"]["Skipped"]) == len(story.scenes) - scenes, post["Extra"]
    film = probe.probe_video(run_dir / post["FinalPath"])
    scene = story.scenes[0]
    fps, factor = final_rate_and_factor(story, scene, render)
    assert (film.width, film.height) == (round(scene.width * factor), round(scene.height * factor)), post
    assert film.fps == fps and float(post["FinalFPS"]) == pytest.approx(float(fps)), post
    assert film.frames == post["FinalFrames"], post
    # the joined cut (crossfades overlap frames, a continue drops the repeated first frame), exactly,
    # resampled from the scenes' rate to the film's
    joined = post["Extra"]["JoinedFrames"]
    taken = sum(join["Frames"] - (join.get("Inserted") or 0) for join in post["Joins"])  # a VACE clip puts frames in
    total = sum(s.length for s in rendered)
    assert joined == total - taken, post
    chained = {(a.id, b.id) for a, b in itertools.pairwise(rendered) if b.chain}
    for join in post["Joins"]:  # a chained pair is never blended or shown twice: continue
        if (join["From"], join["To"]) in chained and join["Used"] != "vace":  # a VACE clip made for it replaces
            assert (join["Used"], join["Frames"]) == ("continue", 1), join
    # nodes/interpolate/timing.py: n frames span (n - 1) intervals, so floor((n - 1) x ratio) + 1 come out
    # (the old joined x ratio was off by ratio - 1: fine for 16 -> 24, 3 frames for SVD's 6 -> 24)
    resampled = math.floor((joined - 1) * fps / scene.fps) + 1
    assert abs(film.frames - resampled) <= 1, (film.frames, joined, fps, resampled)
    records = [r for r in scene_records(metadata) if r["SceneId"] in post["Extra"]["Scenes"]]
    assert [r["SceneId"] for r in records] == [s.id for s in rendered]
    assert all(r["Success"] for r in records), records
    for previous, current in itertools.pairwise(records):
        assert current["Telemetry"]["FLF2VSource"] == "previous-scene", current["Telemetry"]
        assert current["Telemetry"]["StartMatch"]["Verdict"] in ("pass", "fail"), current["Telemetry"]
        last = np.asarray(Image.open(run_dir / "scenes" / f"{previous['SceneId']}_last.png").convert("RGB"))
        first = np.asarray(Image.open(run_dir / "scenes" / f"{current['SceneId']}_first.png").convert("RGB"))
        recorded = current["Telemetry"]["BookendSimilarity"]["Score"]
        assert recorded == pytest.approx(pixel_score(last, first), abs=0.1), (previous["SceneId"], current["SceneId"])


def check_keyframes(story_path: Path, results: list) -> None:
    """Every scene's keyframe is the PNG Save Keyframe wrote (at the scene's size), and every field the pack
    does not know is still in story.json."""
    story = json.loads(story_path.read_text(encoding="utf-8"))
    assert len(results) == len(story["scenes"]) == SCENES
    assert story["x_itest"] == {"kept": [1, 2]}, story
    for scene in story["scenes"]:
        assert scene["keyframe"] == f"keyframes/{scene['id']}.png", scene
        assert scene["x_note"] == f"note for {scene['id']}", scene
        with Image.open(story_path.parent / scene["keyframe"]) as image:
            assert image.format == "PNG" and image.size == (scene["width"], scene["height"]), scene
            pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
        assert np.isfinite(pixels).all() and pixels.std() > 0, scene  # a decoded image, not a blank


def render_scenes_first(server, story: str, count: int) -> None:
    """Scenes 1..count of ``story`` rendered by the shipped FLF2V workflow, for a workflow that only renders.

    The rest stay unrendered: Run's ``auto`` mode joins the newest *unfinished* run, so a render-only
    workflow at the last scene renders what such a run holds (a finished run is rendered again below).
    """
    prompts = prompts_for(api_prompt(server, FLF2V), story, SCENES)[:count]
    for item in prompts:
        queue_and_wait(server, item, SCENE_TIMEOUT)


def model_load_problems(log: str) -> list[str]:
    """ComfyUI's own complaints about a state dict that does not fit the model it built."""
    return [line for line in log.splitlines()
            if "unet missing:" in line or "unet unexpected:" in line or "Missing VAE keys" in line]


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_runs_to_success(suite, path, record_property):
    workflow = read_workflow(path)
    if needs_fastvideo(workflow):
        if not set(FASTVIDEO_NODES) <= set(suite.object_info):
            pytest.skip(f"{path.name} needs hao-ai-lab's FastVideo nodes: copy FastVideo's comfyui/ folder to "
                        f"$COMFYUI_PATH/custom_nodes/{FASTVIDEO_PACK} and pip install fastvideo (docs/providers.md)")
        assert check_workflow(workflow, suite.object_info) == []
        pytest.skip(f"{path.name} checked against the installed FastVideo nodes; not executed: FastVideo loads "
                    "WAN 2.1 I2V 14B by Hugging Face id in its own CUDA runtime (no tiny stand-in, no download)")
    if needs_gguf(workflow) and GGUF_PACK not in os.listdir(suite.base / "custom_nodes"):
        pytest.skip(f"{path.name} needs {GGUF_PACK}: put it in $COMFYUI_PATH/custom_nodes/ "
                    "(see docs/comfyui-integration.md)")
    assert check_workflow(workflow, suite.object_info) == []
    prompt = api_prompt(suite, path)
    story = story_option(path)
    makes_scenes = bool(of_type(prompt, SCENE_SAVE))
    if of_type(prompt, STORY_RENDER) and not makes_scenes:
        render_scenes_first(suite, story, SCENES - 1)
    if of_type(prompt, VACE_PREP):
        render_scenes_first(suite, story, SCENES)  # transitions join saved scenes
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
        render = prompt[of_type(prompt, STORY_RENDER)[0]]["inputs"]
        check_film(suite, story, runs[0], SCENES if makes_scenes else SCENES - 1, render)
    elif of_type(prompt, VACE_PREP):
        check_vace_transitions(suite, story)
    elif of_type(prompt, SAVE_KEYFRAME):
        check_keyframes(suite.base / "input" / "gemdirect" / story, results)
    elif of_type(prompt, SCENE_SELECT):  # previews: one output per scene prompt
        for result in results:
            assert result.entry["outputs"], f"{path.name}: a prompt produced no output"
    if of_type(prompt, STORY_RENDER):
        check_post_choices(suite, path, prompt, prompts_for(prompt, story, SCENES)[-1], sid)


def check_post_choices(server, path: Path, prompt: dict, last: dict, sid: str) -> None:
    """The shipped none choices said so; then the same last prompt with the tiny RIFE and ESRGAN files
    chosen in the workflow's own loaders renders with them (ComfyUI reruns only what changed)."""
    plan = pack_module("nodes.story.plan")
    runs = run_folders(server.base / "output", sid)
    post = json.loads((runs[-1] / "artifact-metadata.json").read_text(encoding="utf-8"))["Post"]
    story = plan.load_and_plan(str(server.base / "input" / "gemdirect" / story_option(path)), "from story").plan
    render = prompt[of_type(prompt, STORY_RENDER)[0]]["inputs"]
    if render["interpolation"] == "from story" and story.post.interpolation and \
            story.post.interpolation_method == "rife":
        assert post["InterpolationMethod"] == "flow" and "asks for RIFE" in post["InterpolationFallback"], post
    chosen = json.loads(json.dumps(last))
    rife_loaders = of_type(chosen, "GemDirectRIFELoader")
    upscale_loaders = of_type(chosen, "GemDirectUpscaleModelLoader")
    assert rife_loaders and upscale_loaders, f"{path.name}: Story Render without its post loaders"
    for key in rife_loaders:
        chosen[key]["inputs"]["model_name"] = "rife_v4.26.safetensors"
    for key in upscale_loaders:
        chosen[key]["inputs"]["model_name"] = "RealESRGAN_x4plus.pth"
    key = of_type(chosen, STORY_RENDER)[0]
    # twice the scenes' rate, so there is always something to interpolate (the 5B and LTX-Video make 24 fps)
    chosen[key]["inputs"].update({"interpolation": "target fps", "target_fps": 2.0 * float(story.scenes[0].fps),
                                  "upscale": "factor", "factor": 2.0})
    queue_and_wait(server, chosen, SCENE_TIMEOUT)
    newest = max(run_folders(server.base / "output", sid),
                 key=lambda run: (run / "artifact-metadata.json").stat().st_mtime)
    metadata = json.loads((newest / "artifact-metadata.json").read_text(encoding="utf-8"))
    post = metadata["Post"]
    assert post["InterpolationMethod"] == "rife-4.25" and post["InterpolationFallback"] is None, post
    assert post["UpscaleMethod"] == "RealESRGAN_x4plus.pth" and post["UpscaleFallback"] is None, post
    assert [m["Stage"] for m in post["Memory"]][:2] == ["interpolate", "upscale"], post["Memory"]
    assert pack_module("nodes.run.validate").validate_run(newest) == []



def check_vace_transitions(server, story: str) -> None:
    """Every transition of the story recorded and fresh; the shipped render workflow then uses each clip."""
    transitions = pack_module("nodes.vace.transitions")
    ledger = pack_module("nodes.run.ledger")
    plan = pack_module("nodes.story.plan")
    runs = run_folders(server.base / "output", story.split("/")[0])
    assert len(runs) == 1, runs
    run = ledger.open_run_dir(runs[0])
    plans = plan.load_and_plan(str(server.base / "input" / "gemdirect" / story), "from story").plan.scenes
    states = transitions.transition_states(run, plans)
    assert [s.state for s in states] == ["fresh"] * (SCENES - 1), [s.to_json() for s in states]
    for a, b in itertools.pairwise(plans):
        record = transitions.read_transition(run, a.id, b.id)
        assert record["Layout"]["Chained"] is True and record["Frames"] == record["Layout"]["Length"] == 9, record
        assert record["Models"] and all(m.endswith((".safetensors", ".gguf")) for m in record["Models"]), record
    render_path = next(p for p in WORKFLOWS if p.name == "story_render.json")
    render_prompt = api_prompt(server, render_path)
    for item in prompts_for(render_prompt, story, SCENES):
        queue_and_wait(server, item, SCENE_TIMEOUT)
    render = render_prompt[of_type(render_prompt, STORY_RENDER)[0]]["inputs"]
    check_film(server, story, runs[0], SCENES, render)
    post = json.loads((runs[0] / "artifact-metadata.json").read_text(encoding="utf-8"))["Post"]
    assert [(j["Used"], j["Clip"], j["Inserted"]) for j in post["Joins"]] == [
        ("vace", f"transitions/{a.id}--{b.id}.mkv", 9) for a, b in itertools.pairwise(plans)], post["Joins"]



# --------------------------------------------------------------------------- the suite can fail


def broken_link_type(workflow: dict) -> tuple[dict, int]:
    """``workflow`` with VAE Decode's ``vae`` fed from a UNET loader's MODEL; the VAE Decode node's id."""
    broken = json.loads(json.dumps(workflow))
    nodes = {node["id"]: node for node in broken["nodes"]}
    decode = next(n for n in broken["nodes"] if n["type"] == "VAEDecode")
    unet = next(n for n in broken["nodes"] if n["type"] == "UNETLoader")
    slot = next(i for i, s in enumerate(decode["inputs"]) if s["name"] == "vae")
    link = next(link for link in broken["links"] if link[0] == decode["inputs"][slot]["link"])
    old_source = nodes[link[1]]
    old_source["outputs"][link[2]]["links"].remove(link[0])
    link[1:3], link[5] = [unet["id"], 0], "MODEL"
    unet["outputs"][0]["links"].append(link[0])
    return broken, decode["id"]


def test_a_wrong_link_type_fails_naming_the_node_and_the_reason(suite):
    broken, decode = broken_link_type(read_workflow(FLF2V))
    problems = check_workflow(broken, suite.object_info)
    assert any(f"node {decode} (VAEDecode) input 'vae' takes VAE" in p and "gives MODEL" in p for p in problems), \
        problems
    prompt = swap_text_encoder(to_api_prompt(broken, suite.object_info))
    with pytest.raises(WorkflowRunError) as refused:
        queue_and_wait(suite, prompts_for(prompt, story_option(FLF2V), SCENES)[0], SCENE_TIMEOUT)
    message = str(refused.value)
    assert f"node {decode} (VAEDecode): return_type_mismatch" in message and "[input vae]" in message, message


def test_a_missing_model_file_fails_naming_the_node_and_the_file(suite):
    workflow = read_workflow(FLF2V)
    loader = next(n for n in workflow["nodes"] if n["type"] == "UNETLoader")
    loader["widgets_values"][0] = "wan2.2_not_downloaded.safetensors"
    assert check_workflow(workflow, suite.object_info) == []  # model names are the user's download: not checked
    prompt = swap_text_encoder(to_api_prompt(workflow, suite.object_info))
    with pytest.raises(WorkflowRunError) as refused:
        queue_and_wait(suite, prompts_for(prompt, story_option(FLF2V), SCENES)[0], SCENE_TIMEOUT)
    message = str(refused.value)
    assert f"node {loader['id']} (UNETLoader): value_not_in_list" in message, message
    assert "wan2.2_not_downloaded.safetensors" in message and "[input unet_name]" in message, message


# --------------------------------------------------------------------------- nodes/comfy.py inside ComfyUI


def test_model_folders_list_the_installed_files(suite):
    info = suite.object_info
    rife = info["GemDirectRIFELoader"]["input"]["required"]["model_name"][0]
    assert "rife_v4.26.safetensors" in rife  # models/frame_interpolation, a folder the pack registers
    listed = info["GemDirectModelInfo"]["input"]["required"]["model"][0]
    for folder, name, _ in EXTRA_MODELS:
        assert any(entry.endswith(name) for entry in listed), (folder, name, listed)


def device(server) -> dict:
    return server.get("/gemdirect/health").json()["device"]


def loaded_sample_prompt(server) -> dict:
    """A one-step 64x64 sample of the tiny T2V DiT decoded by the WAN 2.1 VAE: queued, it leaves both models in
    ComfyUI's model cache (for the tests of what frees them)."""
    vae = next(name for folder, name, kind in models_wanted(api_prompt(server, FLF2V)) if folder == "vae")
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": T2V_MODEL, "weight_dtype": "default"}},
        "2": {"class_type": "GemDirectTestConditioning", "inputs": {"text": "a lighthouse", "tokens": 16}},
        "3": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 1,
                                                                  "batch_size": 1}},
        "4": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["2", 0],
                                                   "latent_image": ["3", 0], "seed": 1, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "5": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["5", 0]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def test_the_guard_frees_cached_models_by_bytes_and_keeps_its_own_loaded(suite):
    # load a tiny T2V DiT and the WAN 2.1 VAE into ComfyUI's model cache with a one-step sample
    sample = loaded_sample_prompt(suite)
    queue_and_wait(suite, sample, SCENE_TIMEOUT)
    before = device(suite)
    assert before["cached_models_mb"] > 0, before  # comfy.loaded_models sees ComfyUI's cache
    # the same sample nodes again (cached, not re-run): ComfyUI's cache keeps only the current prompt's
    # outputs, so without them the models would be garbage and nothing left to free
    guard = sample | {
        "11": {"class_type": "GemDirectStoryLoader", "inputs": {"story": "demo/story.json", "preset": "from story"}},
        "12": {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["11", 0], "scene_index": 1}},
        "13": {"class_type": "GemDirectModelInfo", "inputs": {"model": next(
            e for e in suite.object_info["GemDirectModelInfo"]["input"]["required"]["model"][0]
            if e.endswith(T2V_MODEL))}},
        "14": {"class_type": "GemDirectVRAMGuard", "inputs": {"value": ["12", 10], "stage": "custom",
                                                              "policy": "free-then-block", "model_info": ["13", 0],
                                                              "estimate_gb": 192.0}},
        "15": {"class_type": "PreviewImage", "inputs": {"images": ["14", 0]}},
    }
    with pytest.raises(WorkflowRunError) as stopped:
        queue_and_wait(suite, guard, SCENE_TIMEOUT)
    assert "node 14 (GemDirectVRAMGuard)" in str(stopped.value)
    assert "free after unloading cached models" in str(stopped.value), str(stopped.value)
    event = suite.messages.of("gemdirect.vram")[-1]
    assert event["action"] == "block" and event["need_mb"] >= 192 * 1024 * 0.99, event
    assert event["resident_mb"] > 0, event  # the T2V DiT is recognised as the stage's own model
    after = device(suite)
    # free_memory(bytes, keep_loaded=[the DiT]) unloaded the VAE and kept the DiT
    assert after["cached_models_mb"] == pytest.approx(event["resident_mb"], abs=0.2), (before, after, event)
    assert after["cached_models_mb"] < before["cached_models_mb"], (before, after)


def test_a_render_needing_more_than_is_free_unloads_the_cached_wan_model_first(suite):
    # A tiny T2V DiT and the VAE in ComfyUI's cache (a one-step sample, kept by being in the prompt); a
    # reserve larger than the machine's RAM (what --reserve-vram sets; on the CPU free memory is the
    # available RAM, which tiny models cannot exhaust) makes RIFE's need more than is free.
    story = story_option(FLF2V)
    if FLF2V.name not in suite.finished:
        render_scenes_first(suite, story, 1)
    sample = loaded_sample_prompt(suite)
    queue_and_wait(suite, sample, SCENE_TIMEOUT)
    before = device(suite)
    assert before["cached_models_mb"] > 0, before
    render = sample | {
        "11": {"class_type": "GemDirectStoryLoader", "inputs": {"story": story, "preset": "from story"}},
        "17": {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["11", 0], "scene_index": 1}},
        "12": {"class_type": "GemDirectRun", "inputs": {"story": ["11", 0], "scene": ["17", 0], "mode": "continue"}},
        "13": {"class_type": "GemDirectTestReserveMemory", "inputs": {"value": ["11", 0], "reserve_gb": 100000.0}},
        "14": {"class_type": "GemDirectRIFELoader", "inputs": {"model_name": "rife_v4.26.safetensors",
                                                               "dtype": "fp32"}},
        "15": {"class_type": "GemDirectStoryRender", "inputs": {
            "run": ["12", 0], "story": ["13", 0], "rife_model": ["14", 0], "interpolation": "target fps",
            "target_fps": 24.0, "upscale": "off", "factor": 2.0, "long_side": 1920, "width": 1920, "height": 1080,
            "on_missing": "render what exists", "audio_mode": "auto", "crf": 19, "when": "now", "on_stale": "warn",
            "scale": "1.0", "ensemble": False}},
    }
    try:
        queue_and_wait(suite, render, SCENE_TIMEOUT)
    finally:  # ComfyUI's default reserve again for the tests after this one
        reset = {"11": render["11"], "13": render["13"] | {"inputs": {"value": ["11", 0], "reserve_gb": 0.4}},
                 "16": {"class_type": "PreviewAny", "inputs": {"source": ["13", 0]}}}
        queue_and_wait(suite, reset, SCENE_TIMEOUT)
    event = suite.messages.of("gemdirect.render")[-1]
    runs = run_folders(suite.base / "output", story.split("/")[0])
    newest = max(runs, key=lambda run: (run / "artifact-metadata.json").stat().st_mtime)
    memory = json.loads((newest / "artifact-metadata.json").read_text(encoding="utf-8"))["Post"]["Memory"]
    first = memory[0]
    assert first["Stage"] == "interpolate" and first["Reason"] == "start", memory
    assert first["NeedMB"] > first["FreeBeforeMB"], first  # the reserve made the need larger than the RAM
    assert first["CachedModelsBeforeMB"] > 0 and first["CachedModelsAfterMB"] < first["CachedModelsBeforeMB"], first
    assert first["Unloaded"], first  # ComfyUI unloaded the cached DiT/VAE before RIFE ran
    assert any("unloaded" in line for line in event["memory"]), event


def test_an_interrupt_stops_a_pack_node_between_chunks(suite):
    animatic = next(p for p in WORKFLOWS if p.name == "story_animatic_preview.json")
    prompt = for_scene(api_prompt(suite, animatic), story_option(animatic), 1)
    key = of_type(prompt, "GemDirectAnimatic")[0]
    prompt[key]["inputs"].pop("scene", None)  # a connected scene sets the length; the longest clip instead
    prompt[key]["inputs"]["length"] = suite.object_info["GemDirectAnimatic"]["input"]["required"]["length"][1]["max"]
    response = suite.queue(prompt)
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    deadline = time.monotonic() + SCENE_TIMEOUT
    while not [m for m in suite.messages.of("progress", prompt_id) if m["node"] == key and m["value"] > 0]:
        assert time.monotonic() < deadline, "the animatic never reported progress"
        time.sleep(0.1)
    assert suite.post("/interrupt").status_code == 200
    entry = suite.wait_for(prompt_id, timeout=SCENE_TIMEOUT)
    kinds = dict(entry["status"]["messages"])
    assert "execution_interrupted" in kinds, entry["status"]
    assert kinds["execution_interrupted"]["node_type"] == "GemDirectAnimatic", kinds["execution_interrupted"]
    done = max(m["value"] for m in suite.messages.of("progress", prompt_id) if m["node"] == key)
    assert done < prompt[key]["inputs"]["length"]  # stopped part-way, not at the end


def test_lora_files_in_both_wan_spellings_patch_every_key(suite):
    loras = [name for folder, name, _ in EXTRA_MODELS if folder == "loras"]
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": T2V_MODEL, "weight_dtype": "default"}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": loras[0],
                                                              "strength_model": 1.0}},
        "3": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["2", 0], "lora_name": loras[1],
                                                              "strength_model": 1.0}},
        "4": {"class_type": "GemDirectTestConditioning", "inputs": {"text": "a lora", "tokens": 16}},
        "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 1,
                                                                  "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["3", 0], "positive": ["4", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "seed": 2, "steps": 1, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
    }
    prompt["7"] = {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "itest/lora"}}
    mark = len(suite.log_text())
    queue_and_wait(suite, prompt, SCENE_TIMEOUT)
    log = suite.log_text()[mark:]
    assert "lora key not loaded" not in log, log[-3000:]
    assert "ERROR" not in log, log[-3000:]


def test_story_render_rerenders_a_finished_run(suite):
    story = suite.finished.get(FLF2V.name)
    if story is None:
        pytest.skip(f"{FLF2V.name} did not finish a run in this session")
    render = next(p for p in WORKFLOWS if p.name == "story_render.json")
    queue_and_wait(suite, prompts_for(api_prompt(suite, render), story, SCENES)[0], SCENE_TIMEOUT)
    runs = run_folders(suite.base / "output", story.split("/")[0])
    assert len(runs) == 1, runs
    prompt = api_prompt(suite, render)
    check_film(suite, story, runs[0], SCENES, prompt[of_type(prompt, STORY_RENDER)[0]]["inputs"])
