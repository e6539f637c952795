// Health strip and the Generate gate, from GET /gemdirect/health (schema gemdirect.health/1).

const BLOCKING = ["failing", "circuit-open"];

/** {enabled, reason}: Generate is held back when the breaker is failing/open or VRAM is below the minimum. */
export function generateGate(health) {
  if (!health) return { enabled: true, reason: "health unknown (no /gemdirect/health): generating anyway" };
  if (BLOCKING.includes(health.status) || (health.breaker && BLOCKING.includes(health.breaker.state))) {
    const why = (health.warnings && health.warnings[0]) || `breaker ${health.breaker ? health.breaker.state : health.status}`;
    return { enabled: false, reason: `Generate is off: ${why}${health.breaker && health.breaker.run ? " (reset the breaker)" : ""}` };
  }
  if (health.device && health.device.status === "low") {
    const why = (health.warnings || []).find((w) => w.includes("MB free")) || "free VRAM is below the minimum";
    return { enabled: false, reason: `Generate is off: ${why}` };
  }
  return { enabled: true, reason: "" };
}

/** Short texts for the strip: [{label, value, level}] with level ok|warn|bad. */
export function healthItems(health) {
  if (!health) return [{ label: "health", value: "unavailable", level: "warn" }];
  const items = [];
  const device = health.device || {};
  if (typeof device.total_mb === "number" && typeof device.free_mb === "number") {
    items.push({ label: device.name || device.type || "device",
      value: `${Math.round(device.free_mb)} / ${Math.round(device.total_mb)} MB free`,
      level: device.status === "low" ? "bad" : "ok" });
  } else {
    items.push({ label: "device", value: device.reason || device.status || "unknown", level: "warn" });
  }
  const breaker = health.breaker || {};
  const state = breaker.state || "unknown";
  items.push({ label: "breaker", value: state, level: state === "healthy" ? "ok" : BLOCKING.includes(state) ? "bad" : "warn" });
  if (health.queue && typeof health.queue.length === "number") {
    items.push({ label: "queue", value: `${health.queue.running} running, ${health.queue.pending} pending`, level: "ok" });
  }
  return items;
}
