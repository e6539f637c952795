"""The farm on Ray: every job of the story's graph is one Ray task; Ray starts a task once the tasks it
depends on are done, so independent scenes and transitions run side by side and a chained scene
starts as soon as its predecessor is saved.

- Concurrency: one task per worker at a time. The coordinator's Ray has ``gemdirect_slots`` =
  the number of workers, each task takes its share; inside the task a :class:`remote.WorkerPool`
  actor leases it a free worker that takes the job's stage (stage-to-worker mapping).
- Faults: a worker that stops answering or times out is left out (``lose``) and the task raises
  :class:`client.WorkerLost`; Ray runs it again (``max_retries``) and the new attempt leases
  another worker. A Ray worker process that dies mid-task (killed, out of memory) is retried by
  Ray the same way; the lease its dead process held is freed. A prompt that failed is a result,
  recorded in the ledger like a local failure, not retried.
- Resume: scenes that are fresh in the run (``freshness.scene_states``) and transitions whose
  clip is there for two fresh scenes are skipped (``farm_job`` ``skipped``); the rest is queued.
- Progress: ``farm_job`` events in the run's events.jsonl (started | done | failed | lost |
  skipped, with worker, attempt, pid, elapsed), and a progress bar on the terminal.

Tasks are pinned to the coordinator's machine: they are HTTP clients of the workers (or, headless,
the executor itself) and the run ledger lives there.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..run import events, ledger
from ..version import pack_version
from . import execute, graph, remote
from .client import ComfyClient, WorkerLost
from .workers import WorkerCheck, WorkerSpec, check_worker, parse_workers

SLOTS = "gemdirect_slots"  # the coordinator Ray's resource: one per worker
FARM_STARTED, FARM_FINISHED = "farm_started", "farm_finished"
LEASE_POLL_S = 0.2


class FarmError(RuntimeError):
    """The farm cannot start (no usable worker, no workflow, a bad story); the message says what to do."""


@dataclass
class FarmResult:
    """What a farm run did: the run folder, each job's result, the workers' checks and the film."""

    run: ledger.Run
    results: dict[str, dict[str, Any]]
    checks: list[WorkerCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    final_path: str | None = None
    elapsed_s: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [job for job, result in self.results.items() if not result.get("ok")]


# --------------------------------------------------------------------------- inside a Ray task


def _attempt(run: ledger.Run, farm_id: str, job_id: str) -> int:
    started = [e for e in events.read_events(run.run_dir).of_kind(execute.FARM_JOB)
               if e.get("farm") == farm_id and e.get("job") == job_id and e.get("state") == "started"]
    return len(started) + 1


def _badge(context: Mapping[str, Any], run: ledger.Run, job: graph.Job, farm_state: str, worker: str | None,
           error: str | None = None) -> None:
    """A scene job's state to the panels (``--panel``): a problem there is noted in the run, never fatal."""
    from .progress import post_state

    if job.kind != graph.SCENE or not context.get("panels"):
        return
    for problem in post_state(list(context["panels"]), run, job.scene, job.index, farm_state, worker, error):
        events.append_event(run.run_dir, events.WARNING, scene=job.scene, text=f"farm progress not shown: {problem}")


def task_body(job_value: dict, context: dict, pool: Any) -> dict:
    """One job in a Ray worker process: lease a worker, do the job, record what happened."""
    import ray

    job = graph.Job.from_json(job_value)
    run = execute.open_run(context)
    pid = os.getpid()
    if job.kind == graph.RENDER and not context.get("render_prompt"):
        worker, leased = {"name": "coordinator", "url": None, "stages": list(graph.STAGES)}, False
    else:
        while True:
            answer = ray.get(pool.acquire.remote(job.id, job.stage, pid))
            if "error" in answer:
                error = f"job {job.id} not run: {answer['error']}"
                execute.farm_event(run, job, "failed", farm=context["farm_id"], error=error)
                if job.kind == graph.SCENE:
                    execute.record_failure(run, execute.load_story(context).plan.scenes[job.index - 1], error)
                return {"job": job.id, "ok": False, "error": error, "worker": None}
            if "worker" in answer:
                worker, leased = answer["worker"], True
                break
            time.sleep(LEASE_POLL_S)
    attempt = _attempt(run, context["farm_id"], job.id)
    started = time.time()
    execute.farm_event(run, job, "started", farm=context["farm_id"], worker=worker["name"], attempt=attempt, pid=pid)
    _badge(context, run, job, "started", worker["name"])
    try:
        try:
            result = execute.run_job(job_value, context, worker,
                                     lambda value, most: pool.report.remote(job.id, value, most))
        except WorkerLost as exc:
            ray.get(pool.lose.remote(worker["name"], str(exc)))
            execute.farm_event(run, job, "lost", farm=context["farm_id"], worker=worker["name"], attempt=attempt,
                               error=str(exc), elapsed_s=round(time.time() - started, 3))
            _badge(context, run, job, "lost", worker["name"])
            raise
        execute.farm_event(run, job, "done" if result["ok"] else "failed", farm=context["farm_id"],
                           worker=worker["name"], attempt=attempt, elapsed_s=round(time.time() - started, 3),
                           method=result.get("method"), error=result.get("error"))
        _badge(context, run, job, "done" if result["ok"] else "failed", worker["name"], result.get("error"))
    finally:  # after the job's last event, so the next job on this worker starts after it in the log too
        if leased:
            ray.get(pool.release.remote(worker["name"], pid))
    return result


# --------------------------------------------------------------------------- the coordinator


class ProgressBar:
    """The whole story's progress on one terminal line, with each running job's own percentage."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 24):
        self.total, self.stream, self.width = total, stream or sys.stderr, width
        self.last = ""

    def line(self, done: int, snapshot: Mapping[str, Any]) -> str:
        filled = int(self.width * done / max(self.total, 1))
        running = []
        for name, worker in snapshot.get("workers", {}).items():
            if worker["state"] == "busy":
                progress = snapshot.get("progress", {}).get(worker["job"], {})
                share = f" {100 * progress['value'] // progress['max']}%" if progress.get("max") else ""
                running.append(f"{worker['job']}@{name}{share}")
            elif worker["state"] == "lost":
                running.append(f"{name} lost")
        return f"[{'#' * filled}{'-' * (self.width - filled)}] {done}/{self.total} jobs" + (
            " | " + ", ".join(running) if running else "")

    def show(self, done: int, snapshot: Mapping[str, Any]) -> None:
        text = self.line(done, snapshot)
        if text != self.last:
            tty = getattr(self.stream, "isatty", lambda: False)()
            self.stream.write(("\r" + text.ljust(len(self.last))) if tty else text + "\n")
            self.stream.flush()
            self.last = text

    def finish(self) -> None:
        if getattr(self.stream, "isatty", lambda: False)():
            self.stream.write("\n")


def _resume_skips(run: ledger.Run, story: Any, jobs: Sequence[graph.Job]) -> list[str]:
    """Jobs already done in ``run``: fresh scenes, and transitions that are fresh (a VACE clip whose record matches
    both scenes, nodes/vace/transitions.py) or, headless, noted as left to the render with both scenes fresh."""
    from ..run.freshness import FRESH, scene_states
    from ..vace.transitions import transition_states
    from .execute import HEADLESS_RECORD

    states = scene_states(run, story.plan.scenes)
    fresh = {state.scene for state in states if state.state == FRESH}
    made = {(t.from_scene, t.to_scene) for t in transition_states(run, story.plan.scenes, states) if t.state == FRESH}
    skip = [graph.scene_job_id(s) for s in fresh]
    for job in jobs:
        if job.kind != graph.TRANSITION or not set(job.pair) <= fresh:
            continue
        a, b = job.pair
        if (a, b) in made or os.path.isfile(os.path.join(run.transitions_dir, HEADLESS_RECORD.format(a=a, b=b))):
            skip.append(job.id)
    return skip


def check_workers(specs: Sequence[WorkerSpec], prompts: Sequence[Mapping[str, Any]],
                  client_factory: Callable[[str], Any] = ComfyClient) -> list[WorkerCheck]:
    """Every ComfyUI worker checked against the prompts (version, node types, model files)."""
    return [check_worker(spec, prompts, pack_version(), client_factory(spec.url)) for spec in specs]


def _start_ray(slots: int, num_cpus: int | None, address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, resources={SLOTS: slots}, include_dashboard=False,
                 log_to_driver=False)


def _slot_share(worker_count: int) -> dict[str, float]:
    """Each task's share of the coordinator's slots, so that at most ``worker_count`` run at once."""
    import ray

    total = ray.cluster_resources().get(SLOTS, 0)
    if not total:
        return {}
    share = total / worker_count
    return {SLOTS: share if share <= 1 else float(round(share))}


def _api_prompt(workflow: str | os.PathLike[str] | Mapping[str, Any] | None, object_info: Mapping[str, Any]) -> Any:
    from .workflow import load_workflow_prompt

    if workflow is None or isinstance(workflow, Mapping):
        return workflow
    return load_workflow_prompt(workflow, object_info)


def run_farm(story_path: str | os.PathLike[str], *, workers: str | Sequence[str] | None = None, local_workers: int = 1,
             workflow: str | os.PathLike[str] | Mapping[str, Any] | None = None,
             transition_workflow: str | os.PathLike[str] | Mapping[str, Any] | None = None,
             render_workflow: str | os.PathLike[str] | Mapping[str, Any] | None = None,
             preset: str = "from story", run_id: str = "", resume: bool = False,
             render: Mapping[str, Any] | None = None, timeout_s: float = 1800.0, progress: TextIO | bool = True,
             panels: Sequence[str] = (), num_cpus: int | None = None, ray_address: str | None = None,
             max_retries: int | None = None,
             client_factory: Callable[[str], Any] = ComfyClient) -> FarmResult:
    """Render the story at ``story_path`` across ``workers`` (ComfyUI URLs, ``URL@stage+stage``), or headless
    on ``local_workers`` slots of this machine's Ray when none are given.

    workflow / transition_workflow: a UI-format workflow file (an example workflow's name or a path) or an
    API-format prompt dict, queued once per scene / per VACE transition (ComfyUI workers only);
    render_workflow (e.g. story_render): the film is rendered by a worker that takes ``post`` instead of
    on the coordinator. panels: ComfyUI URLs whose sidebar panel shows the scenes' states as badges
    (``POST /gemdirect/farm/scene``).
    run_id: put the jobs into that run; resume: into the story's newest run; otherwise a new run. In an
    existing run, fresh scenes are skipped. render: Story Render's widgets for the final render (it runs
    on the coordinator). Returns a :class:`FarmResult`; FarmError when nothing can start.
    """
    import ray

    from ..run.nodes import GemDirectRun
    from ..story.plan import load_and_plan

    begun = time.time()
    story_path = os.path.abspath(os.fspath(story_path))
    story = load_and_plan(story_path, preset)
    specs = parse_workers(workers, local_workers)
    comfy_mode = specs[0].url is not None
    warnings: list[str] = []
    checks: list[WorkerCheck] = []
    prompt = transition_prompt = render_prompt = None
    if comfy_mode:
        if workflow is None:
            raise FarmError("ComfyUI workers need a workflow: give --workflow (e.g. story_wan22_14b_flf2v)")
        object_info: dict[str, Any] = {}
        for spec in specs:  # the first worker that answers converts a UI workflow
            try:
                object_info = client_factory(spec.url).object_info()
                break
            except Exception as exc:
                warnings.append(f"{spec.name}: /object_info not read ({exc})")
        prompt = _api_prompt(workflow, object_info)
        transition_prompt = _api_prompt(transition_workflow, object_info)
        render_prompt = _api_prompt(render_workflow, object_info)
        checks = check_workers(specs, [p for p in (prompt, transition_prompt, render_prompt) if p], client_factory)
        specs = [check.worker for check in checks if check.ok]
        if not specs:
            raise FarmError("no worker can run the workflow: " + "; ".join(
                f"{c.worker.name}: {', '.join(c.problems)}" for c in checks))
    first = story.plan.scenes[0]
    mode = ledger.MODE_CONTINUE if (resume or run_id) else ledger.MODE_NEW
    run, _run_dir = GemDirectRun().start(story, first, mode, run_id)
    jobs = graph.story_graph(story.plan.scenes)
    if comfy_mode and transition_prompt is None:
        dropped = [job.id for job in jobs if job.kind == graph.TRANSITION]
        if dropped:
            note = (f"no transition workflow given: {', '.join(dropped)} not rendered; the render crossfades those "
                    "vace joins instead (give --transition-workflow)")
            warnings.append(note)
            ledger.warn(run, note)
        jobs = graph.without(jobs, dropped)
    skipped = _resume_skips(run, story, jobs) if mode == ledger.MODE_CONTINUE else []
    farm_id = uuid.uuid4().hex[:12]
    for job in jobs:
        if job.id in skipped:
            execute.farm_event(run, job, "skipped", farm=farm_id, reason="done in this run already (fresh)")
    todo = graph.without(jobs, skipped)
    events.append_event(run.run_dir, FARM_STARTED, farm=farm_id, workers=[s.to_json() for s in specs],
                        left_out=[{"worker": c.worker.name, "problems": c.problems} for c in checks if not c.ok],
                        jobs=[job.to_json() for job in todo], skipped=skipped, ray=ray.__version__)
    context = {"story_path": story_path, "preset": preset, "run_dir": run.run_dir, "farm_id": farm_id,
               "home": os.environ.get("GEMDIRECT_HOME", ""), "prompt": prompt, "transition_prompt": transition_prompt,
               "render_prompt": render_prompt,
               "story_folder": f"farm-{story.plan.story_id}", "timeout_s": timeout_s, "render": dict(render or {}),
               "panels": list(panels)}

    _start_ray(len(specs), num_cpus, ray_address)
    import ray.cloudpickle as cloudpickle
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cloudpickle.register_pickle_by_value(remote)  # Ray's workers cannot import the pack by its name
    pool = ray.remote(num_cpus=0)(remote.WorkerPool).remote([s.to_json() for s in specs])
    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    task = ray.remote(remote.job_task)
    pack_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pack_name = __name__.split(".")[0]
    share = _slot_share(len(specs))
    retries = max_retries if max_retries is not None else max(3, 2 * len(specs))
    refs: dict[str, Any] = {}
    for job in todo:
        options = {"num_cpus": 0, "max_retries": retries, "retry_exceptions": True, "scheduling_strategy": here,
                   "resources": share if job.kind != graph.RENDER or render_prompt else {}}
        refs[job.id] = task.options(**options).remote(pack_dir, pack_name, job.to_json(), context, pool,
                                                      *[refs[d] for d in job.deps])
    for job in todo:
        _badge(context, run, job, "queued", None)
    bar = ProgressBar(len(todo), progress if not isinstance(progress, bool) else None) if progress else None
    pending = list(refs.values())
    while pending:
        _ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.5)
        if bar is not None:
            bar.show(len(refs) - len(pending), ray.get(pool.snapshot.remote()))
    if bar is not None:
        bar.finish()
    results: dict[str, dict[str, Any]] = {}
    for job in todo:
        try:
            results[job.id] = ray.get(refs[job.id])
        except Exception as exc:  # lost on every worker, or upstream lost: Ray gives up after max_retries
            error = f"{type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}"
            results[job.id] = {"job": job.id, "ok": False, "error": error, "worker": None}
            execute.farm_event(run, job, "failed", farm=farm_id, error=error)
            if job.kind == graph.SCENE and (ledger.read_scene(run, job.scene) or {}).get("Success") is not False:
                execute.record_failure(run, story.plan.scenes[job.index - 1], error)
    notes = ray.get(pool.snapshot.remote())["notes"]
    for note in notes:
        ledger.warn(run, f"farm: {note}")
    warnings += notes
    ray.kill(pool)
    final = None
    render_result = results.get(graph.RENDER) or {}
    if render_result.get("ok") and render_result.get("files"):
        final = ledger.resolve_in_run(run.run_dir, render_result["files"][0])
    elapsed = time.time() - begun
    events.append_event(run.run_dir, FARM_FINISHED, farm=farm_id, elapsed_s=round(elapsed, 3),
                        failed=[j for j, r in results.items() if not r.get("ok")], final=render_result.get("files"))
    return FarmResult(run, results, checks, skipped, warnings, final, elapsed)
