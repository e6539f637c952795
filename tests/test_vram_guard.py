"""The VRAM guard: decisions over a table of (free, total, cached, estimate, policy) with the probe's
readings passed in as data; what it writes to the run; the breaker in front; the node itself."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import pack_module
from test_vram_files import write_safetensors

guard = pack_module("nodes.vram.guard")
estimate = pack_module("nodes.vram.estimate")
probe = pack_module("nodes.vram.probe")
breakers = pack_module("nodes.vram.breaker")
events = pack_module("nodes.run.events")
comfy = pack_module("nodes.comfy")
GIB = 1 << 30
T0 = 1_800_000_000.0


def reading(free_gb, total_gb, cached_gb=0.0, loaded=()):
    return probe.VramReading("cuda", 0, "Test GPU 16GB", int(total_gb * GIB), int(free_gb * GIB),
                             cached=int(cached_gb * GIB), loaded=tuple(loaded))


def plan(full_gb, minimum_gb):
    """A stage needing ``full_gb`` at full speed (2/3 of it weights) and ``minimum_gb`` at least."""
    weights = int(full_gb * GIB * 2 / 3)
    minimum_weights = min(int(0.2 * GIB), int(minimum_gb * GIB) // 2)
    return guard.Plan(estimate.StageEstimate("sample", weights=weights, working=int(full_gb * GIB) - weights,
                                             minimum_weights=minimum_weights,
                                             minimum_working=int(minimum_gb * GIB) - minimum_weights,
                                             basis="test", partial_note="weights streamed from RAM"))


PLAN = plan(12, 3.2)
REQUEST = {policy: guard.GuardRequest("sample", policy) for policy in guard.POLICIES}


class Freer:
    """Stands in for ComfyUI unloading cached models: frees down to ``after_gb`` free and records calls."""

    def __init__(self, after_gb, total_gb):
        self.after, self.total, self.calls = after_gb, total_gb, []

    def __call__(self, wanted, keep):
        self.calls.append((wanted, keep))
        return reading(self.after, self.total)


# free, total, cached (GB), estimate (full, minimum GB), policy, free after unloading (None: nothing
# unloaded), then the expected action, fit and shortfall (GB).
CASES = [
    (16, 24, 0, (12, 3.2), "block", None, "pass", "full", 0),
    (10, 12, 0, (12, 3.2), "block", None, "pass", "partial", 0),
    (10, 12, 0, (12, 3.2), "warn", None, "pass", "partial", 0),
    (2, 12, 0, (12, 3.2), "block", None, "block", "short", 1.2),
    (2, 12, 0, (12, 3.2), "warn", None, "warn", "short", 1.2),
    (2, 12, 0, (12, 3.2), "free-then-block", None, "block", "short", 1.2),  # nothing cached: nothing to free
    (4, 16, 9, (12, 3.2), "block", None, "pass", "full", 0),  # ComfyUI will unload the 9 GB itself: predicted
    (4, 16, 9, (12, 3.2), "free-then-block", 13, "pass-after-free", "full", 0),  # unloaded and measured
    (4, 16, 9, (12, 3.2), "free-then-block", 6, "pass-after-free", "partial", 0),
    (2, 16, 9, (12, 3.2), "free-then-block", 3, "block", "short", 0.2),  # a model in use would not unload
    (2, 16, 9, (12, 3.2), "warn", None, "pass", "partial", 0),  # 2 free + 9 cached: predicted, nothing unloaded
    (3.2, 8, 0, (12, 3.2), "block", None, "pass", "partial", 0),  # exactly the minimum
    (3.19, 8, 0, (12, 3.2), "block", None, "block", "short", 0.01),
    (5, 8, 0, (6, 6), "block", None, "block", "short", 1),  # a stated need: minimum = full
    (7, 8, 0, (6, 6), "free-then-block", None, "pass", "full", 0),
    (5, 8, 2, (6, 6), "free-then-block", 7, "pass-after-free", "full", 0),
    (5, 8, 2, (6, 6), "free-then-block", 5.5, "block", "short", 0.5),
    (0.5, 24, 0, (1.5, 1.5), "warn", None, "warn", "short", 1),
    (22, 24, 0, (40, 14), "block", None, "pass", "partial", 0),  # Cinematic-sized on a 24 GB card
    (10, 12, 0, (40, 14), "free-then-block", None, "block", "short", 4),
]


@pytest.mark.parametrize(("free", "total", "cached", "need", "policy", "after", "action", "fit", "short"), CASES)
def test_decision_table(free, total, cached, need, policy, after, action, fit, short):
    stage = plan(*need)
    freer = Freer(after, total) if after is not None else Freer(free, total)
    decision = guard.decide(REQUEST[policy], stage, reading(free, total, cached), free_memory=freer)
    assert (decision.action, decision.fit) == (action, fit)
    assert decision.short_by == pytest.approx(short * GIB, abs=2)
    assert bool(freer.calls) == (after is not None)
    if freer.calls:
        assert freer.calls[0][0] == stage.estimate.full  # asks ComfyUI for the full need
    assert decision.stops == (action == "block")
    assert decision.need_full == stage.estimate.full and decision.need_minimum == stage.estimate.minimum
    assert decision.total == int(total * GIB) and decision.free_before == int(free * GIB)


def test_short_message_says_what_is_short_by_how_much():
    decision = guard.decide(REQUEST["block"], PLAN, reading(2, 12))
    assert "sample needs 3.2 GB at least (12.0 GB at full speed), 2.0 GB free (short by 1.2 GB)" in decision.message


def test_weights_already_loaded_need_no_new_room_and_are_kept_when_freeing():
    ours = comfy.LoadedModel("WAN22", total=8 * GIB, loaded=8 * GIB, handle="wan-handle")
    other = comfy.LoadedModel("T5", total=6 * GIB, loaded=6 * GIB, handle="t5-handle")
    now = reading(3, 24, cached_gb=14, loaded=(ours, other))
    resident, keep = guard.resident_models(now, (int(8.05 * GIB),))  # within 2% of the file's weights
    assert resident == 8 * GIB and keep == ("wan-handle",)
    freer = Freer(9, 24)
    decision = guard.decide(REQUEST["free-then-block"], PLAN, now, resident=resident, keep=keep, free_memory=freer)
    # 12 GB - 8 GB already loaded = 4 GB needed; the T5's 6 GB are unloaded, ours kept
    assert decision.need_full == 4 * GIB
    assert freer.calls == [(4 * GIB, ("wan-handle",))]
    assert (decision.action, decision.fit) == ("pass-after-free", "full")


def sample_request(policy="free-then-block", **changes):
    values = dict(stage="sample", policy=policy, workload=estimate.Workload(832, 480, 81),
                  profile="wan22-i2v-14b", scene="b")
    values.update(changes)
    return guard.GuardRequest(**values)


def test_a_14b_that_does_not_fit_names_a_preset_and_a_clip_length_that_do():
    request = sample_request("block")
    plan = guard.plan_stage(request)
    decision = guard.decide(request, plan, reading(3, 8))
    assert decision.fit == "short"
    assert "short by" in decision.message
    assert "use the Fast preset (640x352, 49 frames: needs" in decision.message
    assert "keep 832x480 with at most" in decision.message


def test_a_lean_fit_suggests_the_quant_that_would_fit_whole():
    model = SimpleNamespace(weight_bytes=28_577_802_368, parameters=14_288_901_184, quant_label="BF16",
                            name="wan2.2_i2v_low_noise_14B_fp16.safetensors", largest_tensor=None,
                            architecture=SimpleNamespace(family="wan-dit", profile="wan22-i2v-14b",
                                                         details={"dim": 5120}, label="WAN 2.2 I2V 14B"))
    request = sample_request("block", workload=estimate.Workload(640, 352, 33), models=(model,))
    plan = guard.plan_stage(request)
    decision = guard.decide(request, plan, reading(22, 24))
    assert decision.fit == "partial"
    assert decision.message.endswith(". A Q8_0 GGUF (weights 14.1 GB) would fit whole and run faster")


def test_two_experts_count_once_and_other_files_are_named_as_not_counted():
    def model(name, size, family, profile="wan22-i2v-14b"):
        return SimpleNamespace(weight_bytes=size, parameters=size, quant_label="Q4_K_M", name=name,
                               largest_tensor=None, architecture=SimpleNamespace(
                                   family=family, profile=profile, details={"dim": 5120}, label=family))
    high, low = model("high.gguf", 9 * GIB, "wan-dit"), model("low.gguf", int(9.5 * GIB), "wan-dit")
    lora = model("style.safetensors", GIB // 4, "lora")
    vae = model("vae.safetensors", GIB // 4, "wan-vae")
    plan = guard.plan_stage(sample_request(models=(high, low, lora, vae)))
    assert plan.estimate.weights == int(9.5 * GIB) + GIB // 4
    assert any("the largest, low.gguf, counts" in note for note in plan.notes)
    assert any("not counted: vae.safetensors" in note for note in plan.notes)


def test_requests_are_checked():
    with pytest.raises(ValueError, match="policy 'maybe' is not one of"):
        guard.GuardRequest("sample", "maybe")
    with pytest.raises(ValueError, match="stage 'custom' needs estimate_gb above 0"):
        guard.plan_stage(guard.GuardRequest("custom"))
    with pytest.raises(ValueError, match="no WAN model among the files"):
        guard.plan_stage(guard.GuardRequest("sample", workload=estimate.Workload(64, 64, 5)))


def test_run_guard_records_decisions_and_opens_the_breaker_after_three_blocks(tmp_path):
    request = guard.GuardRequest("custom", "block", estimate_bytes=6 * GIB, scene="a")
    for attempt in range(3):
        with pytest.raises(guard.VRAMShortError, match=r"short by 1\.0 GB") as stopped:
            guard.run_guard(request, reading(5, 8), run_dir=tmp_path, prompt_id=f"p{attempt}", now=T0 + attempt)
    assert stopped.value.result.breaker_state == "circuit-open"
    log = events.read_events(tmp_path)
    guards = log.of_kind("vram_guard")
    assert [e["action"] for e in guards] == ["block"] * 3
    assert guards[0]["free_before_mb"] == 5120.0 and guards[0]["need_mb"] == 6144.0 and guards[0]["scene"] == "a"
    assert guards[0]["total_mb"] == 8192.0 and guards[0]["short_by_mb"] == 1024.0
    assert any("VRAM guard (stopped)" in e["text"] for e in log.of_kind("warning"))

    # plenty of memory now, but the circuit is open: stopped with the breaker's reason
    with pytest.raises(guard.VRAMShortError, match="circuit breaker open: 3 consecutive failed scenes"):
        guard.run_guard(request, reading(20, 24), run_dir=tmp_path, prompt_id="p3", now=T0 + 10)
    warned = guard.run_guard(guard.GuardRequest("custom", "warn", estimate_bytes=6 * GIB), reading(20, 24),
                             run_dir=tmp_path, prompt_id="p4", now=T0 + 11)
    assert warned.decision.action == "warn" and warned.decision.fit == "breaker"
    # 30 s after the last failure the circuit closes; a pass arms the breaker for this prompt
    later = guard.run_guard(request, reading(20, 24), run_dir=tmp_path, prompt_id="p5", now=T0 + 40)
    assert later.decision.action == "pass" and later.breaker_state == "failing"
    assert breakers.load(tmp_path).pending_prompt == "p5"
    # the next prompt learns p5 succeeded (ComfyUI's history): healthy again
    success = SimpleNamespace(status="success", message="")
    healed = guard.run_guard(request, reading(20, 24), run_dir=tmp_path, prompt_id="p6",
                             outcome=lambda prompt: success if prompt == "p5" else None, now=T0 + 50)
    assert healed.breaker_state == "healthy"


def test_reset_breaker_lets_the_next_attempt_run(tmp_path):
    for second in range(3):
        breakers.record_failure(tmp_path, "oom", now=T0 + second)
    request = guard.GuardRequest("custom", "block", estimate_bytes=GIB)
    result = guard.run_guard(request, reading(20, 24), run_dir=tmp_path, reset_breaker=True, now=T0 + 3)
    assert result.decision.action == "pass" and result.breaker_state == "healthy"
    assert [e["event"] for e in events.read_events(tmp_path).events][-2:] == ["breaker_reset", "vram_guard"]


def test_the_report_shows_device_decision_and_estimate():
    result = guard.run_guard(sample_request("warn"), reading(3, 8))
    assert result.decision.action == "warn"
    assert result.report.startswith("WARN (short): sample needs")
    assert "device: Test GPU 16GB (cuda), 3.0 GB free of 8.0 GB" in result.report
    assert "estimate: latent 21x60x104" in result.report


# --------------------------------------------------------------------------- the node


def test_the_node_passes_any_value_through_and_records_in_the_run(pack, comfy_home, monkeypatch, tmp_path):
    nodes = pack_module("nodes.vram.nodes")
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectVRAMGuard"]
    any_type = node_class.RETURN_TYPES[0]
    assert any_type == "*"
    assert (any_type != "MODEL") is False  # ComfyUI links two types when `not received != expected`
    monkeypatch.setattr(nodes, "read_vram", lambda: reading(20, 24))
    sent = []
    monkeypatch.setattr(comfy, "event_listeners", [lambda event, data: sent.append((event, data))])
    vae = comfy_home / "models" / "vae"
    vae.mkdir(parents=True)
    write_safetensors(vae / "wan_2.1_vae.safetensors", {"decoder.middle.0.residual.0.gamma": ("BF16", (384, 1, 1, 1))})
    run = SimpleNamespace(run_id="r", story_id="s", run_dir=str(tmp_path / "run"))
    scene = SimpleNamespace(id="a", width=832, height=480, length=81, model_profile="wan22-i2v-14b")
    value = object()
    out, report = node_class().guard(value, "vae-decode", "block", run=run, scene=scene,
                                     model_files="vae/wan_2.1_vae.safetensors\n")
    assert out is value
    assert report.startswith("PASS (full): vae-decode fits")
    logged = events.read_events(run.run_dir).of_kind("vram_guard")
    assert logged[-1]["stage"] == "vae-decode" and logged[-1]["scene"] == "a"
    assert sent and sent[-1][0] == "gemdirect.vram" and sent[-1][1]["action"] == "pass"

    monkeypatch.setattr(nodes, "read_vram", lambda: reading(0.5, 8))
    with pytest.raises(guard.VRAMShortError, match=r"vae-decode needs .*short by"):
        node_class().guard(value, "vae-decode", "block", run=run, scene=scene)
    assert sent[-1][1]["action"] == "block"


def test_model_info_node_shows_the_header(pack, comfy_home):
    node_class = pack.NODE_CLASS_MAPPINGS["GemDirectModelInfo"]
    folder = comfy_home / "models" / "diffusion_models"
    folder.mkdir(parents=True)
    write_safetensors(folder / "tiny.safetensors", {"head.modulation": ("BF16", (1, 2, 1536)),
                                                    "head.head.weight": ("BF16", (64, 1536)),
                                                    "blocks.0.ffn.0.weight": ("BF16", (8960, 1536))}, sparse=True)
    choices = node_class.INPUT_TYPES()["required"]["model"][0]
    assert "diffusion_models/tiny.safetensors" in choices
    out = node_class().inspect("diffusion_models/tiny.safetensors")
    info, summary, weights_gb, variant = out["result"]
    assert out["ui"]["text"] == [summary]
    assert info.weight_bytes == (2 * 1536 + 64 * 1536 + 8960 * 1536) * 2
    assert weights_gb == round(info.weight_bytes / GIB, 3)
    assert variant == "wan-t2v-dim1536x1"  # a WAN layout, but no known size (one block)
    assert "WAN T2V (dim 1536, 1 blocks)" in summary
    assert node_class.IS_CHANGED("diffusion_models/tiny.safetensors") == node_class.IS_CHANGED(
        "diffusion_models/tiny.safetensors")
