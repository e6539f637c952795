"""The circuit breaker: states, opening after 3 consecutive failures, closing after 30 s (time passed
in, never slept) or a reset, kept in the run folder, and learning outcomes of earlier prompts."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from conftest import pack_module

breakers = pack_module("nodes.vram.breaker")
events = pack_module("nodes.run.events")

T0 = 1_800_000_000.0  # a fixed clock


def test_states_follow_the_count_of_consecutive_failures():
    b = breakers.Breaker()
    assert b.state(T0) == "healthy"
    b = b.failure("oom", T0)
    assert b.state(T0) == "degraded"
    b = b.failure("oom", T0 + 1)
    assert b.state(T0 + 1) == "degraded" and b.opened_at is None
    b = b.failure("oom", T0 + 2)
    assert b.state(T0 + 2) == "circuit-open" and b.opened_at == T0 + 2
    assert b.retry_in_s(T0 + 12) == pytest.approx(20.0)


def test_the_circuit_closes_after_30_seconds_then_fails_fast_or_heals():
    b = breakers.Breaker().failure("a", T0).failure("b", T0).failure("c", T0)
    assert b.state(T0 + 29.9) == "circuit-open"
    assert b.state(T0 + 30.0) == "failing"  # closed again: one attempt may run
    assert b.retry_in_s(T0 + 30.0) == 0.0
    reopened = b.failure("d", T0 + 31)
    assert reopened.state(T0 + 31) == "circuit-open" and reopened.consecutive_failures == 4
    healed = b.success(T0 + 31)
    assert healed.state(T0 + 31) == "healthy" and healed.consecutive_failures == 0


def test_a_success_in_between_resets_the_count():
    b = breakers.Breaker().failure("a", T0).failure("b", T0).success(T0).failure("c", T0)
    assert b.consecutive_failures == 1 and b.state(T0) == "degraded"


def test_breaker_lives_in_the_run_folder_with_events(tmp_path):
    run = tmp_path / "run"
    for second in range(3):
        after = breakers.record_failure(run, f"scene s{second}: OutOfMemoryError", scene=f"s{second}",
                                        now=T0 + second)
    assert after.state(T0 + 2) == "circuit-open"
    saved = json.loads((run / "breaker.json").read_text())
    assert saved["schema"] == "gemdirect.breaker/1" and saved["state"] == "circuit-open"
    assert saved["consecutive_failures"] == 3
    assert breakers.load(run).state(T0 + 10) == "circuit-open"
    assert breakers.load(run).state(T0 + 40) == "failing"
    kinds = [e["event"] for e in events.read_events(run).events]
    assert kinds == ["breaker_failure"] * 3 + ["breaker_opened"]
    assert "closes in 20 s" in breakers.load(run).message(T0 + 12)

    cleared = breakers.reset(run, reason="panel", now=T0 + 12)
    assert cleared.state(T0 + 12) == "healthy"
    assert events.read_events(run).events[-1]["event"] == "breaker_reset"
    assert events.read_events(run).events[-1]["was"] == "circuit-open"


def test_a_missing_or_damaged_file_reads_as_healthy(tmp_path):
    assert breakers.load(tmp_path).state(T0) == "healthy"
    (tmp_path / "breaker.json").write_text("{not json")
    assert breakers.load(tmp_path).state(T0) == "healthy"


def outcome_of(table):
    return lambda prompt_id: table.get(prompt_id)


def test_settle_counts_the_previous_prompts_error_from_comfyuis_history(tmp_path):
    breakers.arm(tmp_path, "a", "prompt-1", now=T0)
    # the same prompt (a second guard in it) learns nothing yet
    same = breakers.settle(tmp_path, "prompt-1", outcome_of({}), now=T0 + 1)
    assert same.pending_prompt == "prompt-1"
    error = SimpleNamespace(status="error", message="OutOfMemoryError: CUDA out of memory (in node KSampler)")
    after = breakers.settle(tmp_path, "prompt-2", outcome_of({"prompt-1": error}), now=T0 + 60)
    assert after.consecutive_failures == 1 and after.pending_prompt is None
    assert "scene a: OutOfMemoryError" in after.last_failure


def test_settle_counts_success_and_ignores_interrupts(tmp_path):
    breakers.record_failure(tmp_path, "x", now=T0)
    breakers.arm(tmp_path, "b", "p1", now=T0 + 1)
    stopped = breakers.settle(tmp_path, "p2", outcome_of({"p1": SimpleNamespace(status="interrupted")}), now=T0 + 2)
    assert stopped.consecutive_failures == 1 and stopped.pending_prompt is None  # neither way
    breakers.arm(tmp_path, "b", "p2", now=T0 + 3)
    done = breakers.settle(tmp_path, "p3", outcome_of({"p2": SimpleNamespace(status="success")}), now=T0 + 4)
    assert done.consecutive_failures == 0 and done.state(T0 + 4) == "healthy"


def test_settle_falls_back_to_the_ledgers_scene_records(tmp_path):
    now = time.time() - 1  # the ledger's events carry the real time
    breakers.arm(tmp_path, "c", "p1", now=now)
    events.append_event(tmp_path, "scene_recorded", scene="c", success=False)
    # ComfyUI restarted and forgot p1: the ledger says the scene failed
    failed = breakers.settle(tmp_path, "p2", outcome_of({}), now=now + 5)
    assert failed.consecutive_failures == 1 and "recorded as failed" in failed.last_failure
    breakers.arm(tmp_path, "d", "p2", now=now + 6)
    nothing = breakers.settle(tmp_path, "p3", None, now=now + 7)  # no history, no record: not counted
    assert nothing.consecutive_failures == 1 and nothing.pending_prompt is None
