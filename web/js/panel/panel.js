// The Story panel's view: story and run pickers, health strip, Generate/Cancel, the horizontal
// timeline of scene cards (drag to reorder, saved through PUT /gemdirect/story), and the detail pane
// of the selected scene (preview, telemetry, prompt/duration edit, Suggest).
//
// It knows ComfyUI only through `host` (see gemdirect_panel.js for the real one, web/tests for a fake):
//   host.fetchApi(path, init) -> Promise<Response>     the pack's routes (path starts with /gemdirect/)
//   host.apiURL(path) -> string                        URL for <img>/<video> sources
//   host.onEvent(type, handler(detail))                websocket events (gemdirect.scene, gemdirect.run, gemdirect.keyframe)
//   host.setting(id, fallback) -> value                ComfyUI settings
//   host.generate?({scenes, indices?, onQueued, isCancelled}) -> Promise<{queued, rendered, message}>
//                                                      one prompt per scene; indices[i] = scenes[i]'s
//                                                      scene_index (default i + 1)
//   host.cancel?() -> Promise                          stop what Generate queued
//   host.readiness?() -> {ready, reason}               whether the open workflow can be generated
//   host.download?(filename, text, type)               save a file (default: a temporary <a download>)

import { storyEdl } from "../lib/edl.js";
import { generateGate, healthItems } from "../lib/health.js";
import { staleTransitionsPlan, vaceTransitions } from "../lib/queue.js";
import { regeneratePlan } from "../lib/regenerate.js";
import { acceptField, ASSISTANT_FIELDS, suggestPrompt } from "../lib/suggest.js";
import {
  applyRunEvent, applySceneEvent, buildTimeline, editScene, moveScene, sceneOrder,
} from "../lib/timeline.js";

export const SETTINGS = {
  autoRefresh: "gemDirect.Panel.AutoRefreshSeconds",
  pxPerSecond: "gemDirect.Panel.PixelsPerSecond",
  assistantUrl: "gemDirect.Panel.AssistantEndpoint",
  assistantModel: "gemDirect.Panel.AssistantModel",
  assistantTimeout: "gemDirect.Panel.AssistantTimeoutSeconds",
};

const STYLE_ID = "gemdirect-panel-style";
export const STORY_SAVED = "gemdirect:story-saved";
const CSS = `
.gd-panel{display:flex;flex-direction:column;gap:8px;padding:8px;height:100%;box-sizing:border-box;overflow:auto;
  font:13px/1.35 system-ui,sans-serif;color:var(--fg-color,#ddd);background:var(--comfy-menu-bg,#202020)}
.gd-row{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.gd-panel select,.gd-panel button,.gd-panel input,.gd-panel textarea{font:inherit;color:inherit;
  background:var(--comfy-input-bg,#2b2b2b);border:1px solid var(--border-color,#444);border-radius:4px;padding:3px 6px}
.gd-panel button{cursor:pointer}.gd-panel button:disabled{opacity:.45;cursor:not-allowed}
.gd-panel button.gd-primary{background:#2563eb;border-color:#2563eb;color:#fff}
.gd-health{display:flex;flex-wrap:wrap;gap:6px}
.gd-chip{padding:1px 8px;border-radius:10px;border:1px solid var(--border-color,#444);font-size:12px}
.gd-chip[data-level=ok]{border-color:#16a34a}.gd-chip[data-level=warn]{border-color:#ca8a04}
.gd-chip[data-level=bad]{border-color:#dc2626;background:#dc262633}
.gd-reason{color:#fca5a5;font-size:12px}.gd-note{font-size:12px;opacity:.8}
.gd-error{color:#fecaca;background:#7f1d1d66;border:1px solid #dc2626;border-radius:4px;padding:4px 8px;white-space:pre-wrap}
.gd-error:empty{display:none}
.gd-timeline{display:flex;align-items:stretch;overflow-x:auto;padding:4px 2px 10px;min-height:150px}
.gd-card{flex:none;display:flex;flex-direction:column;border:1px solid var(--border-color,#444);border-radius:6px;
  background:var(--comfy-input-bg,#2b2b2b);overflow:hidden;cursor:grab;user-select:none}
.gd-card.gd-selected{outline:2px solid #60a5fa}.gd-card.gd-drop{outline:2px dashed #facc15}
.gd-card.gd-dragging{opacity:.4}
.gd-thumb{height:72px;background:#111 center/cover no-repeat;position:relative}
.gd-thumb img{width:100%;height:100%;object-fit:cover;display:block}
.gd-index{position:absolute;left:4px;top:3px;font-size:11px;background:#000a;padding:0 5px;border-radius:3px}
.gd-body{padding:4px 6px;display:flex;flex-direction:column;gap:2px}
.gd-title{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.gd-duration{font-size:11px;opacity:.8}
.gd-badge{align-self:flex-start;font-size:11px;padding:0 6px;border-radius:8px;background:#52525b}
.gd-badge[data-state=stale]{background:#b45309;color:#fff}
.gd-badge[data-state=queued]{background:#6366f1}.gd-badge[data-state=rendering]{background:#2563eb}
.gd-badge[data-state=done]{background:#16a34a}.gd-badge[data-state=warning]{background:#ca8a04}
.gd-badge[data-state=failed]{background:#dc2626}
.gd-bar{height:3px;background:#2563eb;transition:width .3s}
.gd-bookend{flex:none;min-width:34px;text-align:center;display:flex;align-items:center;justify-content:center;font-size:11px;opacity:.85}
.gd-bookend[data-status=warn]{color:#facc15}.gd-bookend[data-status=fail]{color:#f87171}
.gd-detail{border-top:1px solid var(--border-color,#444);padding-top:6px;display:flex;flex-direction:column;gap:6px}
.gd-detail video{max-width:100%;max-height:220px;background:#000}
.gd-detail textarea{width:100%;min-height:64px;box-sizing:border-box}
.gd-telemetry{display:grid;grid-template-columns:auto 1fr;gap:1px 10px;font-size:12px}
.gd-suggestion{border:1px dashed #60a5fa;border-radius:4px;padding:6px}
.gd-floating{position:fixed;right:12px;bottom:12px;width:min(900px,90vw);height:min(560px,70vh);z-index:1000;
  box-shadow:0 6px 30px #000a;border-radius:8px}
`;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export async function readJson(response) {
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const issues = body && Array.isArray(body.issues) ? body.issues.map((i) => `${i.path || "(story)"}: ${i.message}`) : [];
    const error = new Error([body && body.error ? body.error : `HTTP ${response.status}`, ...issues.slice(0, 6)].join("\n"));
    error.status = response.status;
    throw error;
  }
  return body;
}

export class StoryPanel {
  constructor(root, host) {
    this.root = root;
    this.host = host;
    this.stories = [];
    this.storyDoc = null; // GET /gemdirect/story
    this.runs = [];
    this.run = null; // GET /gemdirect/run
    this.live = {};
    this.health = null;
    this.selected = null;
    this.suggestion = null;
    this.generating = false;
    this.cancelled = false;
    this.saving = false;
    this.timer = null;
  }

  // ------------------------------------------------------------------ data

  api(path, init) {
    return this.host.fetchApi(path, init).then(readJson);
  }

  q(params) {
    return new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "")).toString();
  }

  async start() {
    if (!document.getElementById(STYLE_ID)) document.head.append(el("style", { id: STYLE_ID, text: CSS }));
    this.build();
    this.host.onEvent("gemdirect.scene", (detail) => this.onSceneEvent(detail));
    this.host.onEvent("gemdirect.run", (detail) => this.onRunEvent(detail));
    this.host.onEvent("gemdirect.keyframe", (detail) => this.onKeyframeEvent(detail));
    // Story Render made the film (nodes/render/nodes.py): re-read the run (the timeline's monitor plays it);
    // listening also tells newer frontends the message type is known (1.58 logs unknown ones as errors)
    const reloadRun = (detail) => {
      if (!this.storyDoc || !detail || detail.story_id !== this.storyDoc.story_id) return;
      const open = this.run && this.run.run_id;
      if (!open || open === detail.run_id) this.loadRuns(detail.run_id);
    };
    this.host.onEvent("gemdirect.render", reloadRun);
    this.host.onEvent("gemdirect.transition", reloadRun); // VACE Splice recorded a transition: its state changed
    // The pack's other messages carry nothing the panel redraws from (their text is in the nodes' reports and the
    // run's warnings), but each needs a listener all the same: 1.58 logs unknown message types as errors.
    for (const type of ["gemdirect.control", "gemdirect.loras", "gemdirect.svi", "gemdirect.telemetry", "gemdirect.vram"]) {
      this.host.onEvent(type, () => {});
    }
    // core's queue status: once ComfyUI's queue is empty nothing is "queued" any more (a workflow
    // without Scene Save sends no gemdirect.scene events to move the badge on)
    this.host.onEvent("status", (detail) => {
      const remaining = detail && detail.exec_info ? detail.exec_info.queue_remaining : undefined;
      if (remaining === 0) this.clearQueued();
    });
    this.onStorySaved = (event) => {
      const { from, doc } = event.detail || {};
      if (from === this || !doc || !this.storyDoc || doc.name !== this.storyDoc.name || this.saving) return;
      this.storyDoc = doc;
      this.openRun(this.run && this.run.run_id);
    };
    window.addEventListener(STORY_SAVED, this.onStorySaved);
    await Promise.all([this.loadStories(), this.loadHealth()]);
    this.schedule();
  }

  schedule() {
    clearInterval(this.timer);
    const seconds = Number(this.host.setting(SETTINGS.autoRefresh, 5));
    if (seconds > 0) this.timer = setInterval(() => this.refresh(false), seconds * 1000);
  }

  stop() {
    clearInterval(this.timer);
    if (this.onStorySaved) window.removeEventListener(STORY_SAVED, this.onStorySaved);
  }

  /** Re-read health, the open story and its runs (all: the story list too). Live states are kept. */
  async refresh(all = true) {
    if (all) this.clearError();
    await Promise.all([this.loadHealth(), all ? this.loadStories(this.storyDoc && this.storyDoc.name) : null]);
    if (!this.storyDoc) return;
    if (all) {
      try {
        this.storyDoc = await this.api(`/gemdirect/story?${this.q({ name: this.storyDoc.name })}`);
      } catch (error) {
        this.fail(`Could not re-read ${this.storyDoc.name}: ${error.message}`);
      }
    }
    await this.loadRuns(this.run && this.run.run_id);
  }

  async loadStories(keep) {
    try {
      this.stories = (await this.api("/gemdirect/stories")).stories;
    } catch (error) {
      return this.fail(`Could not list stories: ${error.message}`);
    }
    const picker = this.els.story;
    picker.replaceChildren(...this.stories.map((s) => el("option", { value: s.name, text: s.error ? `${s.name} (invalid)` : `${s.title} — ${s.name}` })));
    const name = keep || (this.stories.find((s) => !s.error) || {}).name;
    if (!name) return this.render();
    picker.value = name;
    if (!this.storyDoc || this.storyDoc.name !== name) await this.openStory(name);
  }

  async openStory(name) {
    this.clearError();
    try {
      this.storyDoc = await this.api(`/gemdirect/story?${this.q({ name })}`);
    } catch (error) {
      this.storyDoc = null;
      this.render();
      return this.fail(`Could not open ${name}: ${error.message}`);
    }
    this.live = {};
    this.selected = null;
    this.suggestion = null;
    await this.loadRuns();
  }

  async loadRuns(keepRun) {
    if (!this.storyDoc) return;
    try {
      this.runs = (await this.api(`/gemdirect/runs?${this.q({ story: this.storyDoc.story_id })}`)).runs;
    } catch (error) {
      this.runs = [];
      this.fail(`Could not list runs: ${error.message}`);
    }
    const picker = this.els.run;
    picker.replaceChildren(el("option", { value: "", text: this.runs.length ? "(no run)" : "(no runs yet)" }),
      ...this.runs.map((r) => el("option", { value: r.run_id, text: `${r.run_id} — ${(r.done || []).length}/${(r.done || []).length + (r.failed || []).length + (r.pending || []).length} done${r.finished ? ", film" : ""}` })));
    const runId = keepRun && this.runs.some((r) => r.run_id === keepRun) ? keepRun : this.runs[0] && this.runs[0].run_id;
    picker.value = runId || "";
    await this.openRun(runId);
  }

  async openRun(runId) {
    this.run = null;
    if (runId) {
      try {
        this.run = await this.api(`/gemdirect/run?${this.q({ story: this.storyDoc.story_id, run: runId, name: this.storyDoc.name })}`);
      } catch (error) {
        this.fail(`Could not open run ${runId}: ${error.message}`);
      }
    }
    this.renderHealth();
    this.renderTimeline();
    this.renderDetail(false); // keeps a prompt being typed when a refresh or an event arrives
  }

  async loadHealth() {
    try {
      this.health = await this.api("/gemdirect/health");
    } catch {
      this.health = null; // the VRAM room's route may be missing in an old install: say so, do not block
    }
    this.renderHealth();
  }

  // ------------------------------------------------------------------ events

  onSceneEvent(detail) {
    if (!this.storyDoc || !detail || detail.story_id !== this.storyDoc.story_id) return;
    this.live = applySceneEvent(this.live, detail);
    const known = this.runs.some((r) => r.run_id === detail.run_id);
    if (detail.run_id && !known) this.loadRuns(detail.run_id); // a run started by this Generate: follow it
    else if (detail.state === "done" || detail.state === "failed") this.openRun(this.run ? this.run.run_id : detail.run_id);
    else this.renderTimeline();
  }

  onRunEvent(detail) {
    if (!this.storyDoc || !detail || detail.story_id !== this.storyDoc.story_id) return;
    this.live = applyRunEvent(this.live, detail);
    this.renderTimeline();
  }

  /** Save Keyframe wrote a scene's keyframe into the open story: re-read it (new hash: new thumbnails). */
  async onKeyframeEvent(detail) {
    if (!this.storyDoc || !detail || detail.story_id !== this.storyDoc.story_id || this.saving) return;
    try {
      this.storyDoc = await this.api(`/gemdirect/story?${this.q({ name: this.storyDoc.name })}`);
    } catch (error) {
      return this.fail(`Could not re-read ${this.storyDoc.name}: ${error.message}`);
    }
    this.note(`keyframe of ${detail.scene_id} saved: ${detail.keyframe}`);
    this.render();
  }

  // ------------------------------------------------------------------ saving

  async saveStory(raw, what, before = this.storyDoc) {
    this.saving = true;
    this.clearError();
    try {
      this.storyDoc = await this.api(`/gemdirect/story?${this.q({ name: before.name })}`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ story: raw, base_hash: before.hash }),
      });
      this.note(`${what}: saved`);
      // the other view (sidebar / timeline) of the same story follows, so its next save is not a 409
      if (typeof window !== "undefined") window.dispatchEvent(new CustomEvent(STORY_SAVED, { detail: { from: this, doc: this.storyDoc } }));
      if (this.run) await this.openRun(this.run.run_id); // the edit may have made scenes stale
      return true;
    } catch (error) {
      this.storyDoc = before; // restores the order/text shown
      this.fail(`${what} not saved: ${error.message}`);
      return false;
    } finally {
      this.saving = false;
      this.render();
    }
  }

  async moveScene(sceneId, toIndex) {
    const raw = this.storyDoc.story;
    const moved = moveScene(raw, sceneId, toIndex);
    if (sceneOrder(moved).join() === sceneOrder(raw).join()) return false;
    // show the new order at once; saveStory puts the old one back if the server refuses
    const original = this.storyDoc;
    const scenes = [...original.scenes];
    scenes.splice(toIndex, 0, ...scenes.splice(scenes.findIndex((s) => s.id === sceneId), 1));
    this.storyDoc = { ...original, scenes };
    this.renderTimeline();
    return this.saveStory(moved, `Moved ${sceneId} to position ${toIndex + 1}`, original);
  }

  // ------------------------------------------------------------------ generate

  /** Queue every scene of the story, one prompt each (Scene Select's scene_index 1..N), then every VACE
   * transition (VACE Prep's transition_index 1..M); the last prompt renders the film. */
  async generate() {
    if (!this.storyDoc) return;
    const scenes = this.storyDoc.scenes.map((s) => s.id);
    return this.queueScenes(scenes, scenes.map((_, i) => i + 1), vaceTransitions(this.storyDoc));
  }

  /** Queue exactly the run's stale and missing VACE transitions, as one action. */
  async regenerateTransitions() {
    const plan = staleTransitionsPlan(this.storyDoc, this.run);
    if (!plan.enabled) return this.fail(plan.reason);
    return this.queueScenes([], [], plan.transitions);
  }

  /** Queue exactly the run's stale, missing and failed scenes, in play order, the way Generate does. */
  async regenerate() {
    const plan = regeneratePlan(this.storyDoc, this.run, this.host.readiness ? this.host.readiness() : undefined);
    if (!plan.enabled) return this.fail(plan.reason);
    return this.queueScenes(plan.scenes, plan.indices);
  }

  async queueScenes(scenes, indices, transitions = []) {
    if (!this.host.generate || !this.storyDoc) return;
    const gate = generateGate(this.health);
    if (!gate.enabled) return this.fail(gate.reason);
    this.generating = true;
    this.cancelled = false;
    this.clearError();
    this.renderActions();
    try {
      const total = scenes.length + transitions.length;
      const result = await this.host.generate({
        scenes,
        indices,
        transitions,
        isCancelled: () => this.cancelled,
        onQueued: (index, sceneId, item) => {
          if (item && item.kind === "transition") return this.note(`Queued transition ${sceneId} (${index} of ${total})`);
          this.live = applySceneEvent(this.live, { scene_id: sceneId, state: "queued", message: "queued from the panel" });
          this.renderTimeline();
          this.note(`Queued scene ${index} of ${total}`);
        },
      });
      this.note(result && result.message ? result.message : "Queued");
    } catch (error) {
      this.fail(`Generate stopped: ${error.message}`);
    } finally {
      this.generating = false;
      this.renderActions();
      await this.clearQueuedIfIdle();
    }
  }

  /** Drop "queued" badges: nothing is queued any more. */
  clearQueued() {
    const before = Object.keys(this.live).length;
    this.live = Object.fromEntries(Object.entries(this.live).filter(([, s]) => s.state !== "queued"));
    if (Object.keys(this.live).length !== before) this.renderTimeline();
  }

  /** After queueing: a prompt that finished before its badge said "queued" sends no later empty-queue
   * status, so ask ComfyUI's /queue once (a host without it keeps the badges to the status events). */
  async clearQueuedIfIdle() {
    try {
      const response = await this.host.fetchApi("/queue");
      if (!response.ok) return;
      const queue = await response.json();
      if (!(queue.queue_running || []).length && !(queue.queue_pending || []).length) this.clearQueued();
    } catch {
      // no /queue on this host: the status events alone clear the badges
    }
  }

  async cancel() {
    this.cancelled = true;
    try {
      if (this.host.cancel) await this.host.cancel();
      this.note("Cancelled: nothing more is queued; the running scene was interrupted");
    } catch (error) {
      this.fail(`Cancel failed: ${error.message}`);
    }
    for (const [id, state] of Object.entries(this.live)) if (state.state === "queued") delete this.live[id];
    this.renderTimeline();
  }

  // ------------------------------------------------------------------ export / import

  download(filename, text, type) {
    if (this.host.download) return this.host.download(filename, text, type);
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = el("a", { href: url, download: filename });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async exportStory(format) {
    if (!this.storyDoc) return;
    try {
      if (format === "edl") {
        this.download(`${this.storyDoc.story_id}.edl`, storyEdl(this.storyDoc), "text/plain");
      } else {
        const params = this.q({ name: this.storyDoc.name, format: "json", run: this.run && this.run.run_id });
        const response = await this.host.fetchApi(`/gemdirect/export?${params}`);
        if (!response.ok) await readJson(response);
        const stem = `${this.storyDoc.story_id}${this.run ? `-${this.run.run_id}` : ""}`;
        this.download(`${stem}.json`, await response.text(), "application/json");
      }
      this.note(`Exported ${format.toUpperCase()}`);
    } catch (error) {
      this.fail(`Export failed: ${error.message}`);
    }
  }

  async importFile(file) {
    if (!file) return;
    const text = await file.text();
    let raw;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      return this.fail(`${file.name} is not JSON: ${error.message}`);
    }
    const story = raw && raw.schema === "gemdirect.export/1" ? raw.story : raw; // an export from this panel
    const current = this.storyDoc ? this.storyDoc.name : null;
    const folder = (story && (story.id || story.title) ? String(story.id || story.title) : file.name.replace(/\.json$/i, ""))
      .toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "") || "imported";
    const name = window.prompt("Import as (folder/story.json under input/gemdirect/):", current || `${folder}/story.json`);
    if (!name) return;
    const overwrite = name === current || this.stories.some((s) => s.name === name);
    if (overwrite && !window.confirm(`Replace ${name}? The story is validated first; nothing changes if it is invalid.`)) return;
    try {
      const doc = await this.api("/gemdirect/import", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name, story, overwrite }),
      });
      this.note(`Imported ${doc.name}`);
      await this.loadStories(doc.name);
    } catch (error) {
      this.fail(`Import refused: ${error.message}`);
    }
  }

  // ------------------------------------------------------------------ assistant

  /** A proposal for one scene: from the endpoint set in the settings (through the pack's backend
   * route, which writes nothing), else from the local rules. A failing endpoint says why and
   * proposes nothing: the story stays as it is. */
  async suggest(sceneId) {
    const raw = this.storyDoc.story;
    const index = raw.scenes.findIndex((s) => s.id === sceneId);
    const url = String(this.host.setting(SETTINGS.assistantUrl, "") || "").trim();
    this.suggestion = null;
    this.clearError();
    if (!url) {
      const local = suggestPrompt(raw, index);
      this.suggestion = { sceneId, fields: { prompt: local.text }, source: local.source, reasons: local.reasons };
      return this.renderDetail();
    }
    const model = String(this.host.setting(SETTINGS.assistantModel, "") || "").trim();
    this.note(`Asking ${url} (${model || "no model set"})…`);
    this.asking = sceneId;
    this.renderDetail();
    try {
      const answer = await this.api("/gemdirect/assist", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: this.storyDoc.name, scene: sceneId, endpoint: url, model,
          timeout: Number(this.host.setting(SETTINGS.assistantTimeout, 60)) || 60 }),
      });
      const fields = Object.fromEntries(ASSISTANT_FIELDS.filter((f) => answer.fields[f]).map((f) => [f, answer.fields[f]]));
      this.suggestion = { sceneId, fields, source: answer.source, model: answer.model, reasons: [`from ${url} (${answer.model})`] };
      this.note(`Suggestion from ${answer.model}`);
    } catch (error) {
      this.fail(`Suggest failed, nothing changed: ${error.message}`);
    } finally {
      this.asking = null;
      this.renderDetail();
    }
  }

  /** Accept one field of the shown proposal (prompt, negative or camera): saved to story.json with
   * the text, source and model under assistant.accepted[]. */
  async acceptSuggestion(field = "prompt") {
    const s = this.suggestion;
    if (!s || !s.fields[field]) return;
    const raw = acceptField(this.storyDoc.story, s.sceneId, field, s, new Date().toISOString());
    if (await this.saveStory(raw, `${field} of ${s.sceneId} from the assistant`)) {
      const fields = { ...s.fields };
      delete fields[field];
      this.suggestion = Object.keys(fields).length ? { ...s, fields } : null;
    }
    this.renderDetail();
  }

  /** The proposal's box: one row per field with its Accept button. */
  suggestionElement(sceneId) {
    if (this.asking === sceneId) return el("div", { class: "gd-suggestion gd-note", text: "Asking the assistant…" });
    const s = this.suggestion;
    if (!s || s.sceneId !== sceneId) return null;
    const rows = ASSISTANT_FIELDS.filter((f) => s.fields[f]).map((field) => el("div", { class: "gd-row gd-field", "data-field": field },
      el("b", { text: field }), el("span", { class: "gd-field-text", text: s.fields[field] }),
      el("button", { class: field === "prompt" ? "gd-accept" : `gd-accept-${field}`, "data-field": field, text: "Accept",
        title: field === "camera" ? "Put this camera move into the prompt (replacing the one it names)" : `Use as the scene's ${field}`,
        onclick: () => this.acceptSuggestion(field) })));
    return el("div", { class: "gd-suggestion" }, ...rows,
      el("div", { class: "gd-note", text: `${s.source}${s.model ? ` · ${s.model}` : ""}: ${s.reasons.join(" · ")}` }),
      el("div", { class: "gd-row" }, el("button", { text: "Dismiss", onclick: () => { this.suggestion = null; this.renderDetail(); } })));
  }

  // ------------------------------------------------------------------ view

  fail(message) {
    this.els.error.textContent = message;
  }

  clearError() {
    this.els.error.textContent = "";
  }

  note(message) {
    this.els.note.textContent = message;
  }

  build() {
    const generate = el("button", { class: "gd-primary gd-generate", text: "Generate", onclick: () => this.generate() });
    const cancel = el("button", { class: "gd-cancel", text: "Cancel", disabled: true, onclick: () => this.cancel() });
    const regenerate = el("button", { class: "gd-regenerate", text: "Regenerate stale", disabled: true, onclick: () => this.regenerate() });
    const regenerateTransitions = el("button", { class: "gd-regenerate-transitions", text: "Regenerate stale transitions",
      disabled: true, onclick: () => this.regenerateTransitions() });
    const fileInput = el("input", { type: "file", accept: ".json,application/json", style: { display: "none" },
      onchange: (e) => { this.importFile(e.target.files[0]); e.target.value = ""; } });
    this.els = {
      story: el("select", { class: "gd-story", title: "Stories in input/gemdirect/", onchange: (e) => this.openStory(e.target.value) }),
      run: el("select", { class: "gd-run", title: "Runs of this story, newest first", onchange: (e) => this.openRun(e.target.value) }),
      health: el("div", { class: "gd-health", role: "status" }),
      reason: el("div", { class: "gd-reason" }),
      generate, cancel, regenerate, regenerateTransitions, fileInput,
      note: el("span", { class: "gd-note", "aria-live": "polite" }),
      error: el("div", { class: "gd-error", role: "alert" }),
      summary: el("div", { class: "gd-note gd-summary" }),
      timeline: el("div", { class: "gd-timeline", role: "list" }),
      detail: el("div", { class: "gd-detail" }),
    };
    this.root.replaceChildren(el("div", { class: "gd-panel" },
      el("div", { class: "gd-row" }, el("b", { text: "Story" }), this.els.story, this.els.run,
        el("button", { text: "↻", title: "Refresh", onclick: () => this.refresh(true) })),
      this.els.health, this.els.reason,
      el("div", { class: "gd-row" }, generate, regenerate, regenerateTransitions, cancel,
        el("button", { text: "Export JSON", onclick: () => this.exportStory("json") }),
        el("button", { text: "Export EDL", onclick: () => this.exportStory("edl") }),
        el("button", { text: "Import…", onclick: () => fileInput.click() }), fileInput,
        this.host.openTimeline ? el("button", { class: "gd-open-timeline", text: "Timeline",
          title: "Open the story's timeline in the bottom panel", onclick: () => this.host.openTimeline() }) : null,
        this.els.note),
      this.els.error, this.els.summary, this.els.timeline, this.els.detail));
  }

  render() {
    this.renderHealth();
    this.renderTimeline();
    this.renderDetail();
  }

  renderHealth() {
    if (!this.els) return;
    this.els.health.replaceChildren(...healthItems(this.health).map((item) =>
      el("span", { class: "gd-chip", "data-level": item.level, text: `${item.label}: ${item.value}` })));
    this.renderActions();
  }

  renderActions() {
    let gate = generateGate(this.health);
    const graph = this.host.readiness ? this.host.readiness() : null; // e.g. no Scene Select in the workflow
    if (gate.enabled && graph && !graph.ready) gate = { enabled: false, reason: `Generate is off: ${graph.reason}` };
    const blocked = !gate.enabled || !this.storyDoc || !this.host.generate;
    this.els.generate.disabled = blocked || this.generating;
    this.els.generate.title = !this.host.generate ? "Generate needs ComfyUI's graph" : gate.reason || "Queue every scene of the story";
    this.els.reason.textContent = gate.enabled ? "" : gate.reason;
    const plan = regeneratePlan(this.storyDoc, this.run, graph || undefined);
    const regen = this.els.regenerate;
    regen.disabled = !gate.enabled || !plan.enabled || !this.host.generate || this.generating;
    regen.textContent = plan.enabled ? `Regenerate stale (${plan.scenes.length})` : "Regenerate stale";
    regen.title = !gate.enabled ? gate.reason.replace(/^Generate is off/, "Regenerate stale is off")
      : plan.enabled ? `Queue ${plan.scenes.length} scene(s) again, in play order:\n${plan.title}` : plan.reason;
    regen.dataset.scenes = plan.scenes.join(",");
    const joins = staleTransitionsPlan(this.storyDoc, this.run);
    const regenJoins = this.els.regenerateTransitions;
    regenJoins.disabled = !gate.enabled || !joins.enabled || !this.host.generate || this.generating;
    regenJoins.textContent = joins.enabled ? `Regenerate stale transitions (${joins.transitions.length})` : "Regenerate stale transitions";
    regenJoins.title = !gate.enabled ? gate.reason.replace(/^Generate is off/, "Regenerate stale transitions is off")
      : joins.enabled ? `Queue ${joins.transitions.length} VACE transition(s) again:\n${joins.title}` : joins.reason;
    regenJoins.dataset.transitions = joins.transitions.map((t) => t.index).join(",");
    this.els.cancel.disabled = !this.generating && !Object.values(this.live).some((s) => ["queued", "rendering"].includes(s.state));
  }

  /** A scene's picture: the run's last frame (``frame`` "first": its first) once rendered, else its keyframe. */
  thumbURL(sceneId, frame) {
    const params = this.q({ name: this.storyDoc.name, scene: sceneId, run: this.run && this.run.run_id, frame,
      v: `${this.storyDoc.hash.slice(0, 8)}${this.run && this.run.scenes[sceneId] ? `-${this.run.scenes[sceneId].attempts}` : ""}` });
    return this.host.apiURL(`/gemdirect/thumbnail?${params}`);
  }

  renderTimeline() {
    if (!this.els) return;
    this.renderActions();
    const timeline = this.els.timeline;
    if (!this.storyDoc) {
      this.els.summary.textContent = "";
      return timeline.replaceChildren(el("div", { class: "gd-note", text: "No story open. Put one in ComfyUI's input/gemdirect/ folder." }));
    }
    const pxPerSecond = Number(this.host.setting(SETTINGS.pxPerSecond, 56)) || 56;
    const cards = buildTimeline(this.storyDoc, this.run, this.live, { pxPerSecond });
    this.els.summary.textContent = `${this.storyDoc.title}: ${cards.length} scenes, ${this.storyDoc.duration_seconds.toFixed(2)} s, ` +
      `${this.storyDoc.total_frames} frames, preset ${this.storyDoc.preset}${this.run ? ` · run ${this.run.run_id}` : ""}` +
      (this.saving ? " · saving…" : "");
    const children = [];
    cards.forEach((card, i) => {
      if (i > 0) {
        const seam = card.seam;
        children.push(el("div", { class: "gd-bookend", "data-status": seam.status, "data-scene": card.id,
          title: seam.title, text: seam.text }));
      }
      children.push(this.cardElement(card, cards.length));
    });
    timeline.replaceChildren(...children);
  }

  cardElement(card, count) {
    const img = el("img", { alt: "", loading: "lazy", src: this.thumbURL(card.id), onerror: (e) => { e.target.remove(); } });
    const status = card.status;
    const node = el("div", {
      class: `gd-card${this.selected === card.id ? " gd-selected" : ""}`, role: "listitem", tabindex: "0", draggable: "true",
      "data-scene": card.id, title: `${card.title}\n${card.prompt}\n(drag, or Alt+←/→, to reorder)`,
      style: { width: `${card.width}px` },
      onclick: () => { this.selected = card.id; this.suggestion = null; this.renderTimeline(); this.renderDetail(); },
      onkeydown: (e) => {
        if (!e.altKey || !["ArrowLeft", "ArrowRight"].includes(e.key)) return;
        e.preventDefault();
        const to = card.index - 1 + (e.key === "ArrowLeft" ? -1 : 1);
        if (to >= 0 && to < count) this.moveScene(card.id, to);
      },
      ondragstart: (e) => { e.dataTransfer.setData("text/plain", card.id); e.dataTransfer.effectAllowed = "move"; node.classList.add("gd-dragging"); },
      ondragend: () => node.classList.remove("gd-dragging"),
      ondragover: (e) => { e.preventDefault(); node.classList.add("gd-drop"); },
      ondragleave: () => node.classList.remove("gd-drop"),
      ondrop: (e) => {
        e.preventDefault();
        node.classList.remove("gd-drop");
        const id = e.dataTransfer.getData("text/plain");
        if (id && id !== card.id) this.moveScene(id, card.index - 1);
      },
    },
    el("div", { class: "gd-thumb" }, img, el("span", { class: "gd-index", text: String(card.index) })),
    status.percent !== undefined ? el("div", { class: "gd-bar", style: { width: `${status.percent}%` } }) : null,
    el("div", { class: "gd-body" },
      el("div", { class: "gd-title", text: card.title }),
      el("div", { class: "gd-duration", text: card.duration }),
      el("span", { class: "gd-badge", "data-state": status.state, title: status.title || status.label, text: status.label })));
    return node;
  }

  sceneState(sceneId) {
    const state = this.run && Array.isArray(this.run.states) ? this.run.states.find((s) => s.scene === sceneId) : null;
    return state ? `${state.state}${state.reasons.length ? `: ${state.reasons.join("; ")}` : ""}` : null;
  }

  renderDetail(force = true) {
    if (!this.els) return;
    const detail = this.els.detail;
    if (!force && detail.contains(document.activeElement) && detail.dataset.scene === this.selected) return;
    detail.dataset.scene = this.selected || "";
    const scene = this.storyDoc && this.storyDoc.scenes.find((s) => s.id === this.selected);
    if (!scene) return detail.replaceChildren(el("div", { class: "gd-note", text: this.storyDoc ? "Click a card to see its scene." : "" }));
    const record = this.run && this.run.scenes[scene.id];
    const parts = [el("div", { class: "gd-row" }, el("b", { text: `${scene.index}. ${scene.title || scene.id}` }),
      el("span", { class: "gd-note", text: `${scene.id} · ${scene.width}x${scene.height} · ${scene.frames} f @ ${scene.fps_text} fps` }))];
    if (record && record.video && record.video.path) {
      const src = this.host.apiURL(`/gemdirect/video?${this.q({ story: this.storyDoc.story_id, run: this.run.run_id, scene: scene.id, v: record.attempts })}`);
      parts.push(el("video", { src, controls: true, loop: true, muted: true, preload: "metadata",
        onerror: (e) => e.target.replaceWith(el("div", { class: "gd-note", text: `No playable video (${record.video.path}, ${record.video.status})` })) }));
    }
    const rows = record ? [
      ["seed", record.seed], ["cfg", record.cfg], ["steps", record.steps], ["frames", record.frames],
      ["elapsed", record.elapsed_seconds !== undefined && record.elapsed_seconds !== null ? `${record.elapsed_seconds} s` : null],
      ["VRAM before/after/peak", record.vram_before_mb !== null && record.vram_before_mb !== undefined
        ? `${record.vram_before_mb} / ${record.vram_after_mb} / ${record.vram_peak_mb} MB` : null],
      ["GPU", record.gpu], ["bookend", record.bookend ? `${record.bookend.score} (${record.bookend.status})` : null],
      ["start match", record.start_match ? `PSNR ${record.start_match.psnr} dB, SSIM ${record.start_match.ssim} ` +
        `(${record.start_match.verdict}, threshold ${record.start_match.threshold} dB)` : null],
      ["state", this.sceneState(scene.id)],
      ["warnings", (record.warnings || []).join("; ") || null], ["errors", (record.errors || []).join("; ") || null],
    ] : [["plan", `seed ${scene.seed}, cfg ${scene.cfg}, steps ${scene.steps} (not rendered in this run)`]];
    parts.push(el("div", { class: "gd-telemetry" }, rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("span", { class: "gd-note", text: k }), el("span", { text: String(v) })])));
    const prompt = el("textarea", { class: "gd-prompt", "aria-label": "Prompt" });
    prompt.value = scene.prompt;
    const duration = el("input", { class: "gd-seconds", type: "number", min: "0.1", max: "600", step: "0.1", value: String(scene.duration_seconds), "aria-label": "Duration in seconds", style: { width: "6em" } });
    const save = el("button", { text: "Save scene", onclick: () => {
      const changes = { prompt: prompt.value };
      const seconds = Number(duration.value);
      if (Math.abs(seconds - scene.duration_seconds) > 1e-6) changes.duration = seconds;
      this.saveStory(editScene(this.storyDoc.story, scene.id, changes), `Scene ${scene.id}`);
    } });
    parts.push(prompt, el("div", { class: "gd-row" }, el("span", { text: "Duration (s)" }), duration, save,
      el("button", { class: "gd-suggest", text: "Suggest", title: "Propose a prompt from the story's context", onclick: () => this.suggest(scene.id) })));
    parts.push(this.suggestionElement(scene.id));
    detail.replaceChildren(...parts.filter(Boolean));
  }
}
