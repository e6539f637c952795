// gemDirect's Story panel in ComfyUI: a sidebar tab (or a floating panel where the sidebar API is
// missing), the timeline in the bottom panel (or docked along the bottom where that API is missing),
// the panels' settings, and the bridge from the panels to ComfyUI's graph, queue and events.
// Served by ComfyUI at /extensions/<pack>/js/gemdirect_panel.js, hence the three levels up.

import { api } from "../../../scripts/api.js";
import { app } from "../../../scripts/app.js";
import { bypassedKinds, queueItems } from "./lib/queue.js";
import { renderMutes } from "./lib/regenerate.js";
import { SETTINGS, StoryPanel } from "./panel/panel.js";
import { dockedTimeline, TimelinePanel } from "./timeline/timeline.js";

const TIMELINE_TAB = "gemdirect-timeline";

const SCENE_SELECT = "GemDirectSceneSelect";
const STORY_RENDER = "GemDirectStoryRender";
const SCENE_SAVE = "GemDirectSceneSave";
const VACE_PREP = "GemDirectVACEPrep";
const VACE_SPLICE = "GemDirectVACESplice";
const RENDER_AFTER_LAST = "after the last scene"; // Story Render's `when` choice (nodes/render/nodes.py)

function setting(id, fallback) {
  try {
    const value = app.extensionManager && app.extensionManager.setting
      ? app.extensionManager.setting.get(id)
      : app.ui.settings.getSettingValue(id);
    return value === undefined || value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

const nodesOfType = (type) => (app.graph ? app.graph._nodes || app.graph.nodes || [] : []).filter((n) => n.type === type);

// Prompt ids queued by the last Generate, so Cancel removes only ours from ComfyUI's queue.
let queuedIds = [];

const NEVER = 2; // litegraph's "Never" mode: graphToPrompt leaves the node out of the prompt
const BYPASS = 4; // litegraph's "Bypass": left out, its inputs passed on to its outputs of the same type
const isOutputNode = (node) => Boolean(node.constructor && node.constructor.nodeData && node.constructor.nodeData.output_node);
const outputsLinked = (node) => (node.outputs || []).some((o) => o.links && o.links.length);

/** Queue the open workflow once per scene (Scene Select's scene_index = indices[i], default i + 1), then
 * once per VACE transition (VACE Prep's transition_index), see lib/queue.js: a scene prompt bypasses
 * VACE Splice, a transition prompt bypasses Scene Save (its RUN passes through to Story Render).
 * Story Render nodes are set to "after the last scene", and are left out of every prompt but the last
 * (unless something uses their outputs or nothing else would be an output node), so the film is made
 * once, by the last prompt: an extra render-only prompt would run the whole graph again (Run
 * re-executes on every prompt, so nothing downstream of it comes from ComfyUI's cache), and in a run
 * whose scenes all exist already (re-generating, Regenerate stale) every prompt would render it. */
async function generate({ scenes, indices, transitions = [], onQueued, isCancelled }) {
  const selects = nodesOfType(SCENE_SELECT);
  const preps = nodesOfType(VACE_PREP);
  const saves = nodesOfType(SCENE_SAVE);
  const { items, skipped } = queueItems({ scenes, indices, transitions,
    graph: { makesScenes: !(preps.length && !saves.length), makesTransitions: preps.length > 0 } });
  const skippedNote = skipped.length ? ` (${skipped.join("; ")})` : "";
  if (!items.length) return { queued: 0, rendered: false, message: `Nothing queued${skippedNote}` };
  if (items.some((item) => item.kind === "scene") && !selects.length) {
    throw new Error(`the open workflow has no Scene Select (gemDirect) node; open one of the pack's example workflows`);
  }
  const widgets = selects.map((node) => node.widgets.find((w) => w.name === "scene_index"));
  const controls = [...selects, ...preps].map((node) => node.widgets.find((w) => w.name === "control_after_generate"));
  const prepWidgets = preps.map((node) => node.widgets.find((w) => w.name === "transition_index"));
  const saved = { index: widgets.map((w) => w.value), control: controls.map((w) => w && w.value),
    transition: prepWidgets.map((w) => w.value) };
  const byKind = { scene: saves, transition: nodesOfType(VACE_SPLICE) };
  const bypassable = [...byKind.scene, ...byKind.transition];
  const savedBypass = bypassable.map((node) => node.mode);
  const renders = nodesOfType(STORY_RENDER);
  const whens = renders.map((node) => node.widgets.find((w) => w.name === "when")).filter(Boolean);
  const savedWhen = whens.map((w) => w.value);
  const savedModes = renders.map((node) => node.mode);
  const allNodes = app.graph ? app.graph._nodes || app.graph.nodes || [] : [];
  const otherOutput = allNodes.some((n) => n.type !== STORY_RENDER && n.mode === 0 && isOutputNode(n));
  const mutes = renderMutes(renders.map((n) => ({ id: n.id, linked: outputsLinked(n), mode: n.mode })), items.length, otherOutput);
  queuedIds = [];
  const queue = async () => {
    const prompt = await app.graphToPrompt();
    const result = await api.queuePrompt(0, prompt);
    if (result && result.prompt_id) queuedIds.push(result.prompt_id);
  };
  const counts = { scene: 0, transition: 0 };
  try {
    controls.forEach((w) => { if (w) w.value = "fixed"; });
    whens.forEach((w) => { w.value = RENDER_AFTER_LAST; });
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (isCancelled()) return { queued: i, rendered: false, message: `Cancelled after ${i} prompt(s)` };
      if (item.kind === "scene") widgets.forEach((w) => { w.value = item.index; });
      else prepWidgets.forEach((w) => { w.value = item.index; });
      const off = bypassedKinds(item).flatMap((kind) => byKind[kind]);
      bypassable.forEach((node, k) => { node.mode = off.includes(node) ? BYPASS : savedBypass[k]; });
      renders.forEach((node, k) => { node.mode = mutes[i].includes(node.id) ? NEVER : savedModes[k]; });
      await queue();
      counts[item.kind] += 1;
      onQueued(i + 1, item.id, item);
    }
    const rendered = whens.length > 0;
    const what = [counts.scene ? `${counts.scene} scenes` : "", counts.transition ? `${counts.transition} VACE transitions` : ""]
      .filter(Boolean).join(", then ");
    const message = (rendered ? `Queued ${what}; the last one also renders the film` : `Queued ${what}`) + skippedNote;
    return { queued: items.length, rendered, message };
  } finally {
    renders.forEach((node, k) => { node.mode = savedModes[k]; });
    bypassable.forEach((node, k) => { node.mode = savedBypass[k]; });
    whens.forEach((w, k) => { w.value = savedWhen[k]; });
    widgets.forEach((w, k) => { w.value = saved.index[k]; });
    prepWidgets.forEach((w, k) => { w.value = saved.transition[k]; });
    controls.forEach((w, k) => { if (w) w.value = saved.control[k]; });
    app.graph.setDirtyCanvas(true, true);
  }
}

function readiness() {
  if (!nodesOfType(SCENE_SELECT).length) {
    return { ready: false, reason: "the open workflow has no Scene Select (gemDirect) node; open one of the pack's example workflows" };
  }
  return { ready: true, reason: "" };
}

/** Cancel through the server's own /queue and /interrupt routes, not api.getQueue/deleteItem: newer
 * frontends read the queue from a /jobs API that older ComfyUI servers do not have (404). */
async function cancel() {
  const ids = queuedIds;
  queuedIds = [];
  const post = async (path, body) => {
    const response = await api.fetchApi(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    if (!response.ok) throw new Error(`POST ${path}: HTTP ${response.status}`);
  };
  if (ids.length) await post("/queue", { delete: ids }); // pending ones; a finished id is ignored
  const response = await api.fetchApi("/queue");
  if (!response.ok) throw new Error(`GET /queue: HTTP ${response.status}`);
  const queue = await response.json(); // {queue_running: [[number, prompt_id, prompt, extra, outputs]], queue_pending}
  const running = (queue.queue_running || []).find((item) => ids.includes(item[1]));
  if (running) await post("/interrupt", { prompt_id: running[1] }); // only ours, never someone else's prompt
}

/** Show the timeline: ComfyUI's bottom panel on the tab, else the docked panel. */
function openTimeline() {
  const bottom = app.extensionManager && app.extensionManager.bottomPanel;
  if (timelineRegistered() && bottom.activeBottomPanelTabId !== TIMELINE_TAB) {
    if (bottom.bottomPanelVisible && typeof bottom.setActiveTab === "function") bottom.setActiveTab(TIMELINE_TAB);
    else bottom.toggleBottomPanelTab(TIMELINE_TAB);
  } else if (!timelineRegistered() && docked && !docked.box.isConnected) docked.toggle.click();
}

function host() {
  return {
    openTimeline,
    fetchApi: (path, init) => api.fetchApi(path, init),
    apiURL: (path) => api.apiURL(path),
    onEvent: (type, handler) => api.addEventListener(type, (event) => handler(event.detail)),
    setting,
    generate,
    cancel,
    readiness,
  };
}

let panel = null;
async function mount(element) {
  if (panel && panel.root === element) return;
  if (panel) panel.stop();
  panel = new StoryPanel(element, host());
  await panel.start();
  api.addEventListener("graphChanged", () => panel && panel.renderActions());
}

let timeline = null;
let docked = null;
async function mountTimeline(element) {
  if (timeline && timeline.root === element) return;
  if (timeline) timeline.stop();
  timeline = new TimelinePanel(element, host());
  window.gemdirectTimeline = timeline; // for the browser tests and the console
  element.style.height = element.style.height || "100%";
  await timeline.start();
  api.addEventListener("graphChanged", () => timeline && timeline.renderActions());
}

/** Whether this frontend took the extension's bottomPanelTabs (its store lists the tab). */
function timelineRegistered() {
  const bottom = app.extensionManager && app.extensionManager.bottomPanel;
  if (!bottom || typeof bottom.toggleBottomPanelTab !== "function") return false;
  const panels = bottom.panels ? Object.values(bottom.panels) : [];
  return panels.some((p) => (p.tabs || []).some((t) => t.id === TIMELINE_TAB))
    || (bottom.bottomPanelTabs || []).some((t) => t.id === TIMELINE_TAB);
}

function floatingPanel() {
  const box = document.createElement("div");
  box.className = "gd-floating";
  const toggle = document.createElement("button");
  toggle.textContent = "Story";
  Object.assign(toggle.style, { position: "fixed", right: "12px", bottom: "12px", zIndex: 1001 });
  toggle.onclick = () => {
    if (box.isConnected) return box.remove();
    document.body.append(box);
    mount(box);
  };
  document.body.append(toggle);
}

app.registerExtension({
  name: "gemdirect.panel",
  // ComfyUI's bottom panel (frontends since 1.3; 1.27.10 and 1.58.1 have it); where it is missing
  // the tab is ignored and setup() docks the timeline along the bottom instead
  bottomPanelTabs: [{
    id: TIMELINE_TAB, title: "Story timeline", type: "custom",
    render: (element) => { mountTimeline(element); },
    destroy: () => { if (timeline) timeline.stop(); timeline = null; },
  }],
  settings: [
    { id: SETTINGS.autoRefresh, category: ["gemDirect", "Panel", "Auto refresh"], name: "Auto refresh (seconds, 0 = off)",
      tooltip: "How often the Story panel re-reads health and the open run besides live events.", type: "number",
      defaultValue: 5, attrs: { min: 0, max: 300, step: 1 } },
    { id: SETTINGS.pxPerSecond, category: ["gemDirect", "Panel", "Card scale"], name: "Timeline pixels per second",
      tooltip: "Card width per second of scene.", type: "slider", defaultValue: 56, attrs: { min: 20, max: 160, step: 4 } },
    { id: SETTINGS.assistantUrl, category: ["gemDirect", "Assistant", "Endpoint"], name: "Story assistant endpoint (optional)",
      tooltip: "An OpenAI-compatible base URL: Ollama http://127.0.0.1:11434/v1, LM Studio http://127.0.0.1:1234/v1, llama.cpp server http://127.0.0.1:8080/v1. Empty (default): local rules only, nothing leaves the machine.",
      type: "text", defaultValue: "" },
    { id: SETTINGS.assistantModel, category: ["gemDirect", "Assistant", "Model"], name: "Story assistant model",
      tooltip: "Model name sent to the endpoint.", type: "text", defaultValue: "" },
    { id: SETTINGS.assistantTimeout, category: ["gemDirect", "Assistant", "Timeout"], name: "Story assistant timeout (seconds)",
      tooltip: "How long the pack's backend waits for the endpoint's whole answer (a first request may load the model).",
      type: "number", defaultValue: 60, attrs: { min: 1, max: 600, step: 1 } },
  ],
  async setup() {
    const manager = app.extensionManager;
    if (manager && typeof manager.registerSidebarTab === "function") {
      manager.registerSidebarTab({
        id: "gemdirect-story", icon: "pi pi-video", title: "Story", tooltip: "gemDirect: the story's timeline",
        type: "custom", render: (element) => { mount(element); },
      });
    } else {
      floatingPanel(); // older frontends: no sidebar API
    }
    if (!timelineRegistered()) {
      console.info("[gemDirect] this ComfyUI frontend has no bottom panel API: the timeline is docked (Timeline button)");
      docked = dockedTimeline(mountTimeline);
    }
  },
});
