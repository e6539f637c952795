"""What Ray ships to its worker processes by value: the task's entry and the worker pool actor.

Ray worker processes cannot import the pack by name (ComfyUI names it after its folder, and that
folder is not on their path), so this module imports nothing from the pack: :func:`job_task` loads
the pack from its folder the way ComfyUI does and hands over to ``nodes.farm.schedule.task_body``.
:class:`WorkerPool` is plain Python: which worker is free, which holds a lease (and whether the
process holding it still lives), which is lost, and each job's progress.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from typing import Any


def load_pack(pack_dir: str, name: str) -> Any:
    """The pack as ComfyUI imports it: a package named ``name`` from ``pack_dir/__init__.py``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(pack_dir, "__init__.py"),
                                                  submodule_search_locations=[pack_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def job_task(pack_dir: str, pack_name: str, job: dict, context: dict, pool: Any, *_upstream: Any) -> dict:
    """One job in a Ray worker process. ``_upstream``: the results of the jobs it depends on (Ray hands
    them over only once those jobs finished, which is the whole point of passing them)."""
    if context.get("home"):
        os.environ["GEMDIRECT_HOME"] = context["home"]
    load_pack(pack_dir, pack_name)
    schedule = importlib.import_module(f"{pack_name}.nodes.farm.schedule")
    return schedule.task_body(job, context, pool)


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` (on this machine) still runs; a zombie (killed, not yet reaped) does not."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class WorkerPool:
    """Leases of workers to jobs. Workers: ``{"name", "url", "stages"}``; states idle | busy | lost."""

    def __init__(self, workers: list[dict]):
        self.workers = {w["name"]: {**w, "state": "idle", "holder": None, "job": None, "why": None} for w in workers}
        self.progress: dict[str, dict] = {}
        self.notes: list[str] = []

    def _reclaim(self) -> None:
        for worker in self.workers.values():
            if worker["state"] == "busy" and not _alive(worker["holder"]):
                self.notes.append(f"{worker['name']}: the process running {worker['job']} died; lease freed")
                worker.update(state="idle", holder=None, job=None)

    def acquire(self, job: str, stage: str, pid: int) -> dict:
        """``{"worker": {...}}`` when one is leased to ``job``, ``{"wait": True}`` when all that take ``stage``
        are busy, ``{"error": why}`` when no live worker takes it."""
        self._reclaim()
        takers = [w for w in self.workers.values() if stage in w["stages"]]
        live = [w for w in takers if w["state"] != "lost"]
        if not live:
            lost = "; ".join(f"{w['name']}: {w['why']}" for w in takers if w["why"])
            return {"error": f"no worker left that takes {stage}" + (f" ({lost})" if lost else
                                                                    " (give one with --workers URL@" + stage + ")")}
        for worker in live:
            if worker["state"] == "idle":
                worker.update(state="busy", holder=pid, job=job)
                self.progress[job] = {"worker": worker["name"], "value": 0, "max": 0, "since": time.time()}
                return {"worker": {k: worker[k] for k in ("name", "url", "stages")}}
        return {"wait": True}

    def release(self, name: str, pid: int) -> None:
        worker = self.workers.get(name)
        if worker is not None and worker["holder"] == pid and worker["state"] == "busy":
            worker.update(state="idle", holder=None, job=None)

    def lose(self, name: str, why: str) -> None:
        """Leave worker ``name`` out from now on (it died or timed out)."""
        worker = self.workers.get(name)
        if worker is not None:
            worker.update(state="lost", holder=None, job=None, why=why)
            self.notes.append(f"{name} left out: {why}")

    def report(self, job: str, value: int, most: int) -> None:
        entry = self.progress.setdefault(job, {"worker": None, "value": 0, "max": 0, "since": time.time()})
        entry.update(value=int(value), max=int(most))

    def snapshot(self) -> dict:
        return {"workers": {name: {k: w[k] for k in ("state", "job", "why")} for name, w in self.workers.items()},
                "progress": dict(self.progress), "notes": list(self.notes)}
