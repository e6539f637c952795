"""The run lock: re-entrant in a process and its threads, exclusive between processes, and every
read-modify-write of a run file (scene attempts, the manifest, breaker.json) holds it, so two
processes working on one run folder lose no update."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import run_helpers as h
from conftest import pack_module

ledger = pack_module("nodes.run.ledger")
events = pack_module("nodes.run.events")
lock = pack_module("nodes.run.lock")
breaker = pack_module("nodes.vram.breaker")
atomic = pack_module("nodes.run.atomic")

ROUNDS = 50
TESTS_DIR = Path(__file__).resolve().parent

# One worker process: waits for the go file, then does ROUNDS rounds of three read-modify-writes on the
# same run folder as the other worker: record scene 'a' (AttemptsRun counted from the record before),
# count a breaker failure, and bump a counter file by hand under ledger's lock helper.
WORKER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {tests!r})
    import run_helpers as h
    from conftest import pack_module
    ledger = pack_module("nodes.run.ledger")
    lock = pack_module("nodes.run.lock")
    breaker = pack_module("nodes.vram.breaker")
    atomic = pack_module("nodes.run.atomic")
    run = ledger.open_run_dir({run_dir!r})
    go, name = {go!r}, sys.argv[1]
    while not os.path.exists(go):
        time.sleep(0.001)
    counter = os.path.join(run.run_dir, "counter.json")
    for i in range({rounds}):
        record = h.scene_record("a", 1)
        record["AttemptsRun"] = None
        ledger.record_scene(run, record)
        breaker.record_failure(run.run_dir, f"{{name}} round {{i}}", scene="a")
        with lock.run_lock(run.run_dir):
            with open(counter, encoding="utf-8") as handle:
                value = json.load(handle)
            value[name] = value.get(name, 0) + 1
            value["total"] += 1
            atomic.atomic_write_json(counter, value)
            ledger.append_event(run, "counter_bumped", by=name, total=value["total"])
""")


@pytest.fixture
def root(comfy_home):
    return ledger.runs_root()


def test_fifty_concurrent_rounds_from_two_processes_lose_no_update(root, tmp_path):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=root)
    atomic.atomic_write_json(os.path.join(run.run_dir, "counter.json"), {"total": 0})
    go = tmp_path / "go"
    script = WORKER.format(tests=str(TESTS_DIR), run_dir=run.run_dir, go=str(go), rounds=ROUNDS)
    env = {**os.environ}
    workers = [subprocess.Popen([sys.executable, "-c", script, name], env=env, stderr=subprocess.PIPE)
               for name in ("one", "two")]
    time.sleep(1.0)  # both import the pack before either starts
    go.write_text("go")
    errors = [worker.communicate(timeout=300)[1].decode() for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], errors

    record = ledger.read_scene(run, "a")
    assert record["AttemptsRun"] == 2 * ROUNDS
    state = breaker.load(run.run_dir)
    assert state.consecutive_failures == 2 * ROUNDS
    counter = json.loads(Path(run.run_dir, "counter.json").read_text())
    assert counter == {"total": 2 * ROUNDS, "one": ROUNDS, "two": ROUNDS}
    log = events.read_events(run.run_dir)
    assert log.skipped == []
    attempts = sorted(e["attempt"] for e in log.of_kind(events.SCENE_RECORDED))
    assert attempts == list(range(1, 2 * ROUNDS + 1))  # every attempt number once: none read stale
    totals = sorted(e["total"] for e in log.of_kind("counter_bumped"))
    assert totals == list(range(1, 2 * ROUNDS + 1))
    failures = sorted(e["consecutive_failures"] for e in log.of_kind(breaker.EVENT_FAILURE))
    assert failures == list(range(1, 2 * ROUNDS + 1))
    # both really ran at once: their events interleave rather than one process finishing first
    order = [e["by"] for e in log.of_kind("counter_bumped")]
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert switches >= 1, order


def test_the_lock_is_reentrant_in_one_thread_and_exclusive_between_threads(root):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=root)
    with lock.run_lock(run.run_dir):
        with lock.run_lock(run.run_dir):  # nested: would deadlock on a second flock of the same file
            ledger.record_scene(run, h.scene_record("a", 1))  # takes the lock again, appends an event
            assert lock.is_held(run.run_dir)
        assert lock.is_held(run.run_dir)
        entered = threading.Event()

        def other() -> None:
            with lock.run_lock(run.run_dir):
                entered.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert not entered.wait(0.3)  # another thread waits while this one holds the lock
    thread.join(10)
    assert entered.is_set()
    assert not lock.is_held(run.run_dir)


def test_another_process_waits_for_the_lock(root, tmp_path):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=root)
    marker = tmp_path / "taken"
    script = textwrap.dedent(f"""
        import sys, pathlib
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from conftest import pack_module
        lock = pack_module("nodes.run.lock")
        with lock.run_lock({run.run_dir!r}):
            pathlib.Path({str(marker)!r}).write_text("x")
    """)
    with lock.run_lock(run.run_dir):
        child = subprocess.Popen([sys.executable, "-c", script])
        time.sleep(1.5)
        assert not marker.exists() and child.poll() is None  # blocked on our flock
    assert child.wait(timeout=60) == 0
    assert marker.exists()


def test_a_story_change_rewrites_the_manifest_under_the_lock(root, monkeypatch):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=root)
    seen = []
    real = atomic.atomic_write_json

    def spy(path, value, **kwargs):
        seen.append((os.path.basename(path), lock.is_held(run.run_dir)))
        return real(path, value, **kwargs)

    monkeypatch.setattr(ledger, "atomic_write_json", spy)
    reordered = (("c", "Dusk"), ("a", "Dawn"), ("b", "Boat"))
    ledger.resolve_run("continue", h.story_info(scenes=reordered, content_hash="hash-2"), "a",
                       h.story_raw(reordered), root=root)
    assert ("run.json", True) in seen and ("story.json", True) in seen
    assert all(held for _name, held in seen)
