"""Crash safety of the ledger's files: writers killed mid-write (SIGKILL) and two writers at once.

The writer processes load the pack's own ``nodes/run/atomic.py`` and ``nodes/run/events.py`` (with the
``lock.py`` it imports) as the run room alone (standard library only), so each respawn costs a bare
interpreter.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import run_helpers as h
from conftest import REPO_ROOT, pack_module

ledger = pack_module("nodes.run.ledger")
atomic = pack_module("nodes.run.atomic")
events = pack_module("nodes.run.events")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

LOAD = """
import hashlib, importlib, importlib.util, json, os, sys
def load(name):
    # The run room alone as a package (its __init__ imports nothing), so events.py's relative import
    # of lock.py works without importing the rest of the pack.
    if "gd_run" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gd_run", os.path.join({run_room!r}, "__init__.py"),
                                                      submodule_search_locations=[{run_room!r}])
        package = importlib.util.module_from_spec(spec)
        sys.modules["gd_run"] = package
        spec.loader.exec_module(package)
    return importlib.import_module("gd_run." + name)
""".format(run_room=str(REPO_ROOT / "nodes" / "run"))

REWRITER = LOAD + """
atomic = load("atomic")
target, version = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
while True:
    version += 1
    items = [f"scene-{version}-{i:06d}-" + "x" * 40 for i in range(40000)]   # about 2.5 MB of JSON
    digest = hashlib.sha256("".join(items).encode()).hexdigest()
    atomic.atomic_write_json(target, {"version": version, "digest": digest, "items": items})
"""

APPENDER = LOAD + """
events = load("events")
run_dir, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
pad = writer * 6000   # each line larger than a page and than PIPE_BUF
for seq in range(count):
    events.append_event(run_dir, "stage_end", writer=writer, seq=seq, pad=pad)
"""


def _intact(path: str) -> int:
    """The version of a complete, self-consistent document at ``path`` (fails the test otherwise)."""
    import hashlib

    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    assert hashlib.sha256("".join(document["items"]).encode()).hexdigest() == document["digest"]
    return document["version"]


def test_killing_a_writer_mid_write_never_damages_the_previous_file(comfy_home):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=ledger.runs_root())
    target = ledger.scene_paths(run, "a").record
    script = textwrap.dedent(REWRITER)
    atomic.atomic_write_json(target, {"version": 0, "digest": __import__("hashlib").sha256(b"").hexdigest(),
                                      "items": []})
    rng = random.Random(20261123)
    version, kills, mid_write = 0, 0, 0
    # At least 24 kills; on a busy machine keep going (bounded) until one kill has landed after a
    # completed write and one mid-write, giving the writer longer before each kill as rounds pass.
    while kills < 24 or ((version == 0 or mid_write == 0) and kills < 240):
        writer = subprocess.Popen([sys.executable, "-c", script, target, str(version)], stdout=subprocess.PIPE)
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.25 * (1 + kills // 24)))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        kills += 1
        now = _intact(target)
        assert now >= version, "an older document replaced a newer one"
        version = now
        names = os.listdir(run.scenes_dir)
        mid_write += any(atomic.is_temporary(name) for name in names)
        # The ledger's listings never show a temporary, however many are left behind.
        assert [record["version"] for record in ledger.read_scenes(run)] == [now]
    assert version > 0, "the writer never completed a write: the test did not exercise replacement"
    print(f"{kills} kills, {mid_write} left a temporary behind (killed mid-write)")
    assert mid_write >= 1, "no kill landed mid-write; the test did not exercise the crash window"
    leftovers = [name for name in os.listdir(run.scenes_dir) if name != "a.json"]
    assert all(atomic.is_temporary(name) for name in leftovers)
    assert len(atomic.remove_stale_temporaries(run.scenes_dir, min_age_s=0)) == len(leftovers)
    assert os.listdir(run.scenes_dir) == ["a.json"]


def test_stale_temporaries_are_only_removed_once_old(tmp_path):
    fresh = tmp_path / ".a.123.gemdirect-tmp.json"
    fresh.write_text("{")
    (tmp_path / "a.json").write_text("{}")
    assert atomic.remove_stale_temporaries(tmp_path) == []  # may be a write in flight elsewhere
    os.utime(fresh, (time.time() - 7200, time.time() - 7200))
    assert atomic.remove_stale_temporaries(tmp_path) == [str(fresh)]
    assert os.listdir(tmp_path) == ["a.json"]


def test_two_processes_appending_events_at_once_write_only_whole_lines(comfy_home):
    run = ledger.create_run(h.story_info(), h.story_raw(), root=ledger.runs_root())
    script = textwrap.dedent(APPENDER)
    count = 1500
    writers = [subprocess.Popen([sys.executable, "-c", script, run.run_dir, name, str(count)])
               for name in ("p", "q")]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    with open(run.events_path, "rb") as handle:
        raw_lines = handle.read().split(b"\n")
    assert raw_lines[-1] == b""
    parsed = [json.loads(line) for line in raw_lines[:-1]]  # every line is one whole JSON object
    log = events.read_events(run.run_dir)
    assert log.skipped == [] and len(log.events) == 1 + 2 * count
    order = [event["writer"] for event in parsed[1:]]
    switches = sum(1 for one, two in itertools.pairwise(order) if one != two)
    print(f"writers alternated {switches} times")
    assert switches >= 2, "the two writers never overlapped; the test did not exercise concurrency"
    for name in ("p", "q"):
        mine = [event for event in parsed if event.get("writer") == name]
        assert [event["seq"] for event in mine] == list(range(count))
        assert all(event["pad"] == name * 6000 for event in mine)
