"""Scale-out (nodes/farm): the story's job graph, worker specs and checks, and the graph scheduled on a
local Ray cluster with the headless executor (real scenes rendered, real films compared frame by frame).

The story: 6 scenes, two chained chains (s1 -> s2 -> s3 and s4 -> s5; s6 stands alone), a VACE
transition s3 -> s4 (a transition job) and a crossfade s5 -> s6 (made by the render).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, load_pack, pack_module
from workflow_check import load_schemas, pack_schemas, to_api_prompt

ray = pytest.importorskip("ray", reason="the farm needs ray (requirements-scale.txt)")

graph = pack_module("nodes.farm.graph")
workers = pack_module("nodes.farm.workers")
execute = pack_module("nodes.farm.execute")
workflow = pack_module("nodes.farm.workflow")
remote = pack_module("nodes.farm.remote")
events = pack_module("nodes.run.events")
ledger = pack_module("nodes.run.ledger")
plan_module = pack_module("nodes.story.plan")

SIZE = (128, 80)
FRAMES = 17
CHAINED = {"s2", "s3", "s5"}


def write_story(folder: Path) -> Path:
    demo = pack_module("nodes.story.demo")
    (folder / "keyframes").mkdir(parents=True, exist_ok=True)
    scenes = []
    for index, look in enumerate(("dawn", "noon", "dusk", "dawn", "noon", "dusk"), start=1):
        demo.paint_keyframe(look, SIZE).save(folder / "keyframes" / f"k{index}.png")
        scenes.append({"id": f"s{index}", "prompt": f"the lighthouse at {look}", "frames": FRAMES,
                       "keyframe": f"keyframes/k{index}.png", "chain": f"s{index}" in CHAINED})
    scenes[2]["transition"] = {"kind": "vace", "frames": 4}
    scenes[4]["transition"] = {"kind": "crossfade", "frames": 4}
    story = {"schema": "gemdirect.story/1", "id": "farm-test", "title": "Farm test",
             "defaults": {"width": SIZE[0], "height": SIZE[1], "fps": 16, "seed": 7, "steps": 12,
                          "transition": {"kind": "cut"}},
             "scenes": scenes}
    path = folder / "story.json"
    path.write_text(json.dumps(story, indent=1), encoding="utf-8")
    return path


@pytest.fixture
def story_file(comfy_home) -> Path:
    return write_story(comfy_home / "input" / "gemdirect" / "farm-test")


# --------------------------------------------------------------------------- the graph


def test_story_graph_chains_scenes_only_where_chained_and_transitions_wait_for_both(story_file):
    story = plan_module.load_and_plan(story_file, "none")
    jobs = {job.id: job for job in graph.story_graph(story.plan.scenes)}
    assert jobs["scene:s1"].deps == () and jobs["scene:s4"].deps == () and jobs["scene:s6"].deps == ()
    assert jobs["scene:s2"].deps == ("scene:s1",) and jobs["scene:s3"].deps == ("scene:s2",)
    assert jobs["scene:s5"].deps == ("scene:s4",)
    assert jobs["transition:s3--s4"].deps == ("scene:s3", "scene:s4") and jobs["transition:s3--s4"].index == 1
    assert "transition:s5--s6" not in jobs  # a crossfade is the render's work, not a job
    assert set(jobs["render"].deps) == set(jobs) - {"render"}
    assert [j.stage for j in jobs.values()].count("scenes") == 6 and jobs["transition:s3--s4"].stage == "transitions"
    order = [job.id for job in graph.story_graph(story.plan.scenes)]
    for job in jobs.values():
        assert all(order.index(dep) < order.index(job.id) for dep in job.deps)
    assert graph.Job.from_json(jobs["transition:s3--s4"].to_json()) == jobs["transition:s3--s4"]


def test_graph_refuses_cycles_and_unknown_dependencies():
    with pytest.raises(graph.GraphError, match="wait for each other"):
        graph.ordered([graph.Job("a", "scene", ("b",)), graph.Job("b", "scene", ("a",))])
    with pytest.raises(graph.GraphError, match="depends on x"):
        graph.ordered([graph.Job("a", "scene", ("x",))])
    kept = graph.without([graph.Job("a", "scene"), graph.Job("b", "scene", ("a",))], ["a"])
    assert [(j.id, j.deps) for j in kept] == [("b", ())]


# --------------------------------------------------------------------------- workers


def test_worker_specs_take_stages_and_refuse_bad_entries():
    specs = workers.parse_workers("http://big:8188@scenes+transitions, http://small:8189@post")
    assert [(s.name, s.stages) for s in specs] == [("http://big:8188", ("scenes", "transitions")),
                                                    ("http://small:8189", ("post",))]
    assert specs[0].takes("scenes") and not specs[1].takes("scenes")
    assert [s.name for s in workers.parse_workers(None, local=2)] == ["local-1", "local-2"]
    with pytest.raises(workers.WorkerSpecError, match="unknown stage"):
        workers.parse_workers("http://a:1@scenes+render")
    with pytest.raises(workers.WorkerSpecError, match="not a ComfyUI address"):
        workers.parse_workers("a:8188")
    with pytest.raises(workers.WorkerSpecError, match="twice"):
        workers.parse_workers("http://a:1,http://a:1")


def local_schemas() -> dict:
    module = load_pack()
    third_party = load_schemas(REPO_ROOT / "tests" / "data" / "object_info_fastvideo.json")  # FastVideo's workflow
    return json.loads(json.dumps(load_schemas() | third_party | pack_schemas(module.NODE_CLASS_MAPPINGS,
                                                                             module.NODE_DISPLAY_NAME_MAPPINGS),
                                 default=str))


def test_the_farm_sends_the_shipped_workflows_by_name():
    """(Its converter is tests/workflow_check.to_api_prompt: the suite checks it against the real frontend.)"""
    assert workflow.workflow_path("story_wan22_14b_flf2v") == REPO_ROOT / "example_workflows" / \
        "story_wan22_14b_flf2v.json"
    with pytest.raises(workflow.WorkflowError, match="not a shipped workflow"):
        workflow.workflow_path("no_such_workflow")
    prompt = workflow.load_workflow_prompt("story_render", local_schemas())
    assert "GemDirectStoryRender" in {node["class_type"] for node in prompt.values()}
    with pytest.raises(workflow.WorkflowError, match="is not a node type the worker knows"):
        workflow.load_workflow_prompt("story_render", {})


class FakeWorker:
    """Stands in for a worker's HTTP answers in the check (a real one answers in the integration test)."""

    def __init__(self, health, object_info):
        self.health, self.info = health, object_info

    def get_json(self, path):
        return self.health

    def object_info(self):
        return self.info


def test_worker_check_reports_version_node_types_and_model_files_per_worker():
    schemas = local_schemas()
    prompt = to_api_prompt(json.loads((REPO_ROOT / "example_workflows" / "story_wan22_14b_flf2v.json").read_text()),
                           schemas)
    models = workers.prompt_models(prompt)
    assert models and all(name.endswith((".gguf", ".safetensors", ".pth")) for _n, _i, name in models)
    listing = json.loads(json.dumps(schemas))
    for node_id, name, _value in models:  # a worker that lists exactly the workflow's model files
        listing[prompt[node_id]["class_type"]]["input"]["required"][name][0] = []
    for node_id, name, value in models:
        listing[prompt[node_id]["class_type"]]["input"]["required"][name][0].append(value)
    version = pack_module("nodes.version").pack_version()
    spec = workers.WorkerSpec("w", "http://w:1")
    good = workers.check_worker(spec, [prompt], version, FakeWorker({"pack": {"version": version}}, listing))
    assert good.ok, good.problems
    stripped = {k: v for k, v in listing.items() if k != "GemDirectSceneSave"}
    node_id, name, value = models[0]
    stripped[prompt[node_id]["class_type"]]["input"]["required"][name][0] = ["other.safetensors"]
    bad = workers.check_worker(spec, [prompt], version, FakeWorker({"pack": {"version": "0.0.1"}}, stripped))
    text = "\n".join(bad.problems)
    assert not bad.ok
    assert "runs gemDirect 0.0.1" in text and "GemDirectSceneSave" in text and repr(value) in text


def test_prompt_for_sets_story_run_scene_and_transition_index():
    prompt = {"1": {"class_type": "GemDirectStoryLoader", "inputs": {"story": "x", "preset": "none"}},
              "2": {"class_type": "GemDirectSceneSelect", "inputs": {"story": ["1", 0], "scene_index": 1}},
              "3": {"class_type": "GemDirectRun", "inputs": {"mode": "continue", "run_id": ""}},
              "4": {"class_type": "GemDirectVACEPrep", "inputs": {"transition_index": 1}},
              "5": {"class_type": "GemDirectStoryRender", "inputs": {"run": ["3", 0]}}}
    out = execute.prompt_for(prompt, "farm-x/story.json", "20261201-000000-abcd", scene_index=4, transition_index=2)
    assert out["1"]["inputs"]["story"] == "farm-x/story.json" and out["2"]["inputs"]["scene_index"] == 4
    assert out["3"]["inputs"]["run_id"] == "20261201-000000-abcd" and out["4"]["inputs"]["transition_index"] == 2
    assert "5" not in out  # the film is the coordinator's render job
    assert prompt["2"]["inputs"]["scene_index"] == 1 and "5" in prompt  # the workflow itself is left as it was


def test_pool_leases_by_stage_frees_a_dead_holders_lease_and_leaves_lost_workers_out():
    pool = remote.WorkerPool([{"name": "big", "url": "u1", "stages": ["scenes"]},
                              {"name": "small", "url": "u2", "stages": ["post", "transitions"]}])
    assert pool.acquire("scene:a", "scenes", os.getpid())["worker"]["name"] == "big"
    assert pool.acquire("scene:b", "scenes", os.getpid()) == {"wait": True}
    assert pool.acquire("transition:a--b", "transitions", os.getpid())["worker"]["name"] == "small"
    pool.release("big", os.getpid())
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    assert pool.acquire("scene:b", "scenes", dead)["worker"]["name"] == "big"
    assert pool.acquire("scene:c", "scenes", os.getpid())["worker"]["name"] == "big"  # the dead pid's lease freed
    pool.lose("big", "did not answer")
    assert "no worker left that takes scenes" in pool.acquire("scene:d", "scenes", os.getpid())["error"]
    assert "big: did not answer" in pool.acquire("scene:d", "scenes", os.getpid())["error"]


# --------------------------------------------------------------------------- on a local Ray cluster


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, resources={"gemdirect_slots": 2}, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def farm(story_file: Path, **options):
    schedule = pack_module("nodes.farm.schedule")
    return schedule.run_farm(story_file, preset="none", progress=False, **options)


def farm_events(run_dir: str) -> list[dict]:
    return events.read_events(run_dir).of_kind(execute.FARM_JOB)


def intervals(run_dir: str) -> dict[str, tuple[float, float]]:
    """Each job's last successful attempt as (start, end) seconds from its started and done events."""
    import datetime as dt

    def seconds(text):
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()

    starts, found = {}, {}
    for event in farm_events(run_dir):
        if event["state"] == "started":
            starts[(event["job"], event["attempt"])] = seconds(event["time"])
        elif event["state"] == "done":
            found[event["job"]] = (starts[(event["job"], event["attempt"])], seconds(event["time"]))
    return found


def film_frames(path: str) -> np.ndarray:
    decode = pack_module("nodes.video.decode")
    return np.concatenate(list(decode.iter_frames(path, 16, dtype="uint8", as_torch=False)))


def check_order(jobs: list, spans: dict) -> None:
    for job in jobs:
        for dep in job.deps:
            assert spans[dep][1] <= spans[job.id][0], f"{job.id} started before {dep} was done"


def overlap_seconds(spans: dict) -> float:
    values = list(spans.values())
    return max((min(a[1], b[1]) - max(a[0], b[0]) for i, a in enumerate(values) for b in values[i + 1:]), default=0)


def test_two_local_workers_overlap_respect_every_dependency_and_make_the_one_worker_film(local_ray, story_file):
    one = farm(story_file, local_workers=1)
    two = farm(story_file, local_workers=2)
    for result in (one, two):
        assert result.failed == [], result.results
        assert result.final_path and os.path.isfile(result.final_path)
        assert ledger.run_status(result.run).done == tuple(f"s{i}" for i in range(1, 7))
    story = plan_module.load_and_plan(story_file, "none")
    jobs = graph.story_graph(story.plan.scenes)
    spans_one, spans_two = intervals(one.run.run_dir), intervals(two.run.run_dir)
    assert set(spans_one) == set(spans_two) == {job.id for job in jobs}
    check_order(jobs, spans_one)
    check_order(jobs, spans_two)
    assert overlap_seconds(spans_one) <= 0.0  # one worker: one job at a time
    assert overlap_seconds(spans_two) > 0.0, spans_two  # two workers: independent work side by side
    workers_used = {e["worker"] for e in farm_events(two.run.run_dir) if e["state"] == "started"}
    assert {"local-1", "local-2"} <= workers_used
    print(f"\none worker: {one.elapsed_s:.1f} s, two workers: {two.elapsed_s:.1f} s, "
          f"largest overlap {overlap_seconds(spans_two):.2f} s")
    np.testing.assert_array_equal(film_frames(one.final_path), film_frames(two.final_path))
    # The VACE pair's clip was made by the transition job (a crossfade of the masters, and it says so).
    record = json.loads(Path(two.run.transitions_dir, "s3--s4.headless.json").read_text())
    assert record["Method"] == "crossfade" and record["Engine"] == "farm-headless"
    post = ledger.read_post(two.run)
    joins = {(j["From"], j["To"]): j["Used"] for j in post["Joins"]}
    assert joins == {("s1", "s2"): "continue", ("s2", "s3"): joins[("s2", "s3")], ("s3", "s4"): "vace->crossfade",
                     ("s4", "s5"): joins[("s4", "s5")], ("s5", "s6"): "crossfade"}
    texts = [e.get("text", "") for e in events.read_events(two.run.run_dir).of_kind(events.WARNING)]
    assert any("no VACE model runs on the headless farm" in text for text in texts)


def test_a_worker_killed_mid_scene_loses_nothing_and_the_film_is_the_one_worker_film(local_ray, story_file,
                                                                                    comfy_home):
    killed: list[int] = []
    stop = threading.Event()

    def killer():
        root = comfy_home / "output" / "gemdirect" / "farm-test"
        while not stop.is_set() and not killed:
            for log in root.glob("*/events.jsonl"):
                for event in events.read_events(log.parent).events:
                    if event.get("event") == events.STAGE_START and event.get("scene") == "s2" \
                            and event.get("pid") != os.getpid():
                        os.kill(event["pid"], signal.SIGKILL)  # the Ray worker process rendering s2
                        killed.append(event["pid"])
                        return
            time.sleep(0.01)

    watcher = threading.Thread(target=killer, daemon=True)
    watcher.start()
    try:
        two = farm(story_file, local_workers=2)
    finally:
        stop.set()
        watcher.join(5)
    assert killed, "s2 never started"
    s2 = [e for e in farm_events(two.run.run_dir) if e["job"] == "scene:s2"]
    assert [e["state"] for e in s2 if e.get("pid") == killed[0]] == ["started"], s2  # killed before it finished
    assert [e["state"] for e in s2][-1] == "done" and max(e.get("attempt", 0) for e in s2) == 2
    assert two.failed == [] and ledger.run_status(two.run).done == tuple(f"s{i}" for i in range(1, 7))
    spans = intervals(two.run.run_dir)
    check_order(graph.story_graph(plan_module.load_and_plan(story_file, "none").plan.scenes), spans)
    one = farm(story_file, local_workers=1)
    np.testing.assert_array_equal(film_frames(one.final_path), film_frames(two.final_path))


def test_a_failed_scene_is_recorded_like_a_local_failure_and_a_resume_renders_only_what_is_not_fresh(
        local_ray, story_file):
    keyframe = story_file.parent / "keyframes" / "k4.png"
    good = keyframe.read_bytes()
    keyframe.write_bytes(b"not a png")
    first = farm(story_file, local_workers=2)
    assert "scene:s4" in first.failed and "render" not in first.failed
    record = ledger.read_scene(first.run, "s4")
    assert record["Success"] is False and "k4.png" in " ".join(record["Errors"])
    assert ledger.read_scene(first.run, "s5")["Telemetry"]["FLF2VSource"] == "keyframe"  # fell back, as locally
    keyframe.write_bytes(good)
    again = farm(story_file, local_workers=2, run_id=first.run.run_id)
    assert again.run.run_id == first.run.run_id and again.failed == []
    assert set(again.skipped) == {"scene:s1", "scene:s2", "scene:s3", "scene:s6"}
    assert set(again.results) == {"scene:s4", "scene:s5", "transition:s3--s4", "render"}
    fresh = farm(story_file, local_workers=1)
    np.testing.assert_array_equal(film_frames(fresh.final_path), film_frames(again.final_path))


def test_the_command_line_farms_a_story_and_resumes_its_newest_run(local_ray, story_file, comfy_home, capsys):
    import gemdirect

    assert gemdirect.main(["farm", str(story_file), "--local", "2", "--preset", "none", "--home",
                           str(comfy_home)]) == 0
    first = capsys.readouterr().out
    assert "scene:s4: animatic (started from keyframe) [local-" in first and "film: " in first
    assert gemdirect.main(["farm", "farm-test/story.json", "--resume", "--preset", "none", "--home",
                           str(comfy_home)]) == 0
    again = capsys.readouterr().out
    assert again.count(": skipped (fresh in run") == 7  # six scenes and the transition
    assert "render: Story Render (coordinator)" in again
    run_line = next(line for line in first.splitlines() if line.startswith("run: "))
    assert run_line in again  # the same run
    assert gemdirect.main(["farm", "no/such/story.json", "--home", str(comfy_home)]) == 1


def test_the_panel_relay_turns_farm_states_into_scene_badge_events_and_refuses_bad_bodies(comfy_home):
    from test_vram_health import call

    comfy = pack_module("nodes.comfy")
    seen = []
    comfy.event_listeners.append(lambda event, data: seen.append((event, data)))
    try:
        body = {"run_id": "20261201-120000-abcd", "story_id": "farm-test", "scene": "s2", "index": 2,
                "state": "rendering", "worker": "http://gpu-a:8188"}
        status, answer = call("POST", "/gemdirect/farm/scene", json=body)
        assert status == 200 and answer["sent"]["farm"] is True
        assert seen == [("gemdirect.scene", answer["sent"])] and seen[0][1]["state"] == "rendering"
        for field, value, words in (("state", "started", "not one of"), ("scene", "../x", "cannot name a file"),
                                    ("index", 0, "not a scene position")):
            status, answer = call("POST", "/api/gemdirect/farm/scene", json={**body, field: value})
            assert status == 400 and words in answer["error"], (field, answer)
        assert len(seen) == 1
    finally:
        comfy.event_listeners.pop()


def test_the_pack_as_comfyui_loads_it_never_imports_ray():
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
        from conftest import load_pack, pack_module
        load_pack()
        pack_module("nodes.routes")
        pack_module("nodes.farm.progress")  # the panel relay the routes serve
        print("ray" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
