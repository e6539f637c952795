import assert from "node:assert/strict";
import { test } from "node:test";
import { generateGate, healthItems } from "../js/lib/health.js";

const healthy = {
  status: "healthy", warnings: [],
  device: { type: "cuda", name: "RTX 4080", total_mb: 16376, free_mb: 10000, status: "ok" },
  breaker: { state: "healthy", run: null }, queue: { running: 1, pending: 2, length: 3 },
};

test("healthy: Generate on, strip shows VRAM, breaker, queue", () => {
  assert.deepEqual(generateGate(healthy), { enabled: true, reason: "" });
  assert.deepEqual(healthItems(healthy), [
    { label: "RTX 4080", value: "10000 / 16376 MB free", level: "ok" },
    { label: "breaker", value: "healthy", level: "ok" },
    { label: "queue", value: "1 running, 2 pending", level: "ok" },
  ]);
});

test("open breaker or low VRAM turns Generate off with the reason", () => {
  const open = { ...healthy, status: "circuit-open", breaker: { state: "circuit-open", run: "gemdirect/s/r" },
    warnings: ["circuit breaker open for gemdirect/s/r: 3 failures"] };
  const gate = generateGate(open);
  assert.equal(gate.enabled, false);
  assert.match(gate.reason, /circuit breaker open .*reset the breaker/);
  const low = { ...healthy, status: "degraded", device: { ...healthy.device, free_mb: 900, status: "low" },
    warnings: ["only 900 MB free on RTX 4080, below the 4096 MB minimum"] };
  assert.match(generateGate(low).reason, /only 900 MB free/);
  assert.equal(healthItems(low)[0].level, "bad");
});

test("degraded breaker (one failure) still allows Generate; no health at all warns but allows", () => {
  assert.equal(generateGate({ ...healthy, status: "degraded", breaker: { state: "degraded" } }).enabled, true);
  assert.equal(generateGate(null).enabled, true);
  assert.deepEqual(healthItems(null), [{ label: "health", value: "unavailable", level: "warn" }]);
});
