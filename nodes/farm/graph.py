"""The story as a graph of jobs: what can run in parallel and what must wait.

- ``scene`` jobs: scene N waits for scene N-1 only when it is chained (it starts on N-1's saved
  last frame); an unchained scene depends on nothing.
- ``transition`` jobs: one per pair whose transition is ``vace`` (a clip made from both scenes);
  each waits for its two scenes. Cuts and crossfades need no job: the render makes them.
- ``keyframe`` and ``post`` jobs: kinds the graph knows (a keyframe job has no dependencies, a post
  job waits for its scene) for workflows that make them; :func:`story_graph` adds them when asked.
- one ``render`` job: waits for every other job and joins the film.

Each job has a ``stage`` (``keyframes``, ``scenes``, ``transitions``, ``post``) that a worker may
accept or not (docs/scale-out.md: stage-to-worker mapping).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

KEYFRAME, SCENE, TRANSITION, POST, RENDER = "keyframe", "scene", "transition", "post", "render"
KINDS = (KEYFRAME, SCENE, TRANSITION, POST, RENDER)
STAGE_OF = {KEYFRAME: "keyframes", SCENE: "scenes", TRANSITION: "transitions", POST: "post", RENDER: "post"}
STAGES = ("keyframes", "scenes", "transitions", "post")


class GraphError(ValueError):
    """The job graph is not a graph the farm can run (unknown dependency, a cycle); the message says which."""


@dataclass(frozen=True)
class Job:
    """One unit of work: one ComfyUI prompt (or one headless call).

    ``id`` is unique and names the job in events (``scene:b``, ``transition:b--c``, ``render``);
    ``scene`` the scene id for keyframe/scene/post jobs, ``pair`` (a, b) for a transition;
    ``index`` the 1-based scene index (Scene Select) or transition index (VACE Prep's ``transition_index``:
    the pair's position among the story's ``vace`` transitions in play order, 1 for the first).
    """

    id: str
    kind: str
    deps: tuple[str, ...] = ()
    scene: str | None = None
    pair: tuple[str, str] | None = None
    index: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return STAGE_OF[self.kind]

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["deps"] = list(self.deps)
        value["pair"] = list(self.pair) if self.pair else None
        value["stage"] = self.stage
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Job:
        return cls(id=value["id"], kind=value["kind"], deps=tuple(value.get("deps") or ()),
                   scene=value.get("scene"), pair=tuple(value["pair"]) if value.get("pair") else None,
                   index=value.get("index"), details=dict(value.get("details") or {}))


def scene_job_id(scene_id: str) -> str:
    return f"{SCENE}:{scene_id}"


def transition_job_id(a: str, b: str) -> str:
    return f"{TRANSITION}:{a}--{b}"


def story_graph(scenes: Sequence[Any], *, keyframes: bool = False, post: bool = False,
                render: bool = True) -> list[Job]:
    """The jobs of a story from its ScenePlans (in play order), dependencies before dependants.

    keyframes: add a keyframe job per scene (the scene job then waits for it); post: add a post
    job per scene; render: add the final render job (waits for every other job).
    """
    jobs: list[Job] = []
    for scene in scenes:
        deps: list[str] = []
        if keyframes:
            jobs.append(Job(f"{KEYFRAME}:{scene.id}", KEYFRAME, (), scene=scene.id, index=scene.index))
            deps.append(f"{KEYFRAME}:{scene.id}")
        if scene.chain and scene.index > 1:
            deps.append(scene_job_id(scenes[scene.index - 2].id))
        jobs.append(Job(scene_job_id(scene.id), SCENE, tuple(deps), scene=scene.id, index=scene.index,
                        details={"chain": bool(scene.chain and scene.index > 1)}))
        if post:
            jobs.append(Job(f"{POST}:{scene.id}", POST, (scene_job_id(scene.id),), scene=scene.id, index=scene.index))
    vace_pairs = [(a, b) for a, b in itertools.pairwise(scenes) if a.transition.kind == "vace"]
    for position, (a, b) in enumerate(vace_pairs, start=1):
        jobs.append(Job(transition_job_id(a.id, b.id), TRANSITION, (scene_job_id(a.id), scene_job_id(b.id)),
                        pair=(a.id, b.id), index=position, details={"frames": int(a.transition.frames)}))
    if render:
        jobs.append(Job(RENDER, RENDER, tuple(job.id for job in jobs)))
    return ordered(jobs)


def ordered(jobs: Iterable[Job]) -> list[Job]:
    """``jobs`` with every dependency before its dependants (stable otherwise); GraphError on an unknown
    dependency or a cycle."""
    jobs = list(jobs)
    by_id = {job.id: job for job in jobs}
    if len(by_id) != len(jobs):
        raise GraphError("two jobs share an id: " + ", ".join(sorted({j.id for j in jobs if
                                                                   sum(k.id == j.id for k in jobs) > 1})))
    for job in jobs:
        unknown = [dep for dep in job.deps if dep not in by_id]
        if unknown:
            raise GraphError(f"job {job.id} depends on {', '.join(unknown)}, which is not a job of this graph")
    done: set[str] = set()
    result: list[Job] = []
    pending = list(jobs)
    while pending:
        ready = [job for job in pending if all(dep in done for dep in job.deps)]
        if not ready:
            raise GraphError("the jobs " + ", ".join(job.id for job in pending) + " wait for each other (a cycle)")
        for job in ready:
            result.append(job)
            done.add(job.id)
        pending = [job for job in pending if job.id not in done]
    return result


def without(jobs: Sequence[Job], skip: Iterable[str]) -> list[Job]:
    """The graph without the jobs in ``skip`` (already done: resume); dependencies on them are dropped."""
    skip = set(skip)
    return [Job(job.id, job.kind, tuple(d for d in job.deps if d not in skip), job.scene, job.pair, job.index,
                job.details) for job in jobs if job.id not in skip]


def describe(jobs: Sequence[Job]) -> str:
    """The graph as lines: ``scene:b <- scene:a``."""
    return "\n".join(f"  {job.id}" + (f" <- {', '.join(job.deps)}" if job.deps else "") for job in jobs)
