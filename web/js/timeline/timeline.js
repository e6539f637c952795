// The bottom-panel timeline: one track of clips along a ruler in seconds and frames (widths
// proportional to duration, zoomable), the transition of each seam (editable) with its bookend /
// start-match scores, live status badges, a preview monitor that plays the film (or the scenes one
// after another, or the selected scene) with a playhead synced to the ruler and scrubbing, drag and
// keyboard reorder, and an inspector for the selected clip (prompt, negative, duration, seed,
// Regenerate, Suggest).
//
// Data, events, saving and queueing are the Story panel's (StoryPanel: the same host, routes and
// websocket events); this class only draws them another way. Geometry is web/js/lib/track.js.

import { generateGate } from "../lib/health.js";
import { buildTimeline } from "../lib/timeline.js";
import {
  layoutTrack, monitorToTrack, nextInPlaylist, rulerTicks, seams, setTransition, stepZoom, trackToMonitor, xAtTime,
} from "../lib/track.js";
import { el, SETTINGS, StoryPanel } from "../panel/panel.js";

const STYLE_ID = "gemdirect-timeline-style";
const CSS = `
.gd-tl{display:flex;flex-direction:column;gap:6px;padding:6px 8px;height:100%;box-sizing:border-box;overflow:auto;
  font:12px/1.35 system-ui,sans-serif;color:var(--fg-color,#ddd);background:var(--comfy-menu-bg,#202020)}
.gd-tl select,.gd-tl button,.gd-tl input,.gd-tl textarea{font:inherit;color:inherit;background:var(--comfy-input-bg,#2b2b2b);
  border:1px solid var(--border-color,#444);border-radius:4px;padding:2px 6px}
.gd-tl button{cursor:pointer}.gd-tl button:disabled{opacity:.45;cursor:not-allowed}
.gd-tl .gd-row{display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.gd-tl .gd-note{font-size:12px;opacity:.8}.gd-tl .gd-error{color:#fecaca;background:#7f1d1d66;border:1px solid #dc2626;
  border-radius:4px;padding:3px 8px;white-space:pre-wrap}.gd-tl .gd-error:empty{display:none}
.gd-tl>*{flex:none}
.gd-tl-main{display:flex;gap:8px;align-items:flex-start}
.gd-monitor{flex:none;width:256px;display:flex;flex-direction:column;gap:4px}
.gd-monitor video{width:256px;height:144px;background:#000;display:block}
.gd-monitor .gd-screen{width:256px;height:144px;background:#000;display:flex;align-items:center;justify-content:center;opacity:.7}
.gd-tl-scroll{flex:1;min-width:0;overflow-x:auto;overflow-y:hidden;padding-bottom:6px}
.gd-tl-area{position:relative;height:150px}
.gd-ruler{position:absolute;left:0;top:0;height:22px;border-bottom:1px solid var(--border-color,#555);cursor:col-resize}
.gd-tick{position:absolute;top:0;height:22px;border-left:1px solid #777;padding-left:3px;font-size:10px;white-space:nowrap;opacity:.85}
.gd-clips{position:absolute;left:0;top:26px;height:108px}
.gd-clip{position:absolute;top:0;height:100px;box-sizing:border-box;border:1px solid var(--border-color,#555);border-radius:5px;
  background:var(--comfy-input-bg,#2b2b2b);overflow:hidden;cursor:grab;user-select:none;display:flex;flex-direction:column}
.gd-clip.gd-selected{outline:2px solid #60a5fa;z-index:2}.gd-clip.gd-drop{outline:2px dashed #facc15}.gd-clip.gd-dragging{opacity:.4}
.gd-frames{height:52px;display:flex;background:#111}.gd-frames img{height:52px;flex:1;min-width:0;object-fit:cover;display:block}
.gd-clip-body{padding:2px 5px;display:flex;flex-direction:column;gap:1px;min-width:0}
.gd-clip-title{font-weight:600;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.gd-clip-dur{font-size:10px;opacity:.8;white-space:nowrap}
.gd-tl .gd-badge{align-self:flex-start;font-size:10px;padding:0 5px;border-radius:8px;background:#52525b}
.gd-tl .gd-badge[data-state=stale]{background:#b45309;color:#fff}.gd-tl .gd-badge[data-state=queued]{background:#6366f1}
.gd-tl .gd-badge[data-state=rendering]{background:#2563eb}.gd-tl .gd-badge[data-state=done]{background:#16a34a}
.gd-tl .gd-badge[data-state=warning]{background:#ca8a04}.gd-tl .gd-badge[data-state=failed]{background:#dc2626}
.gd-clip .gd-bar{position:absolute;left:0;bottom:0;height:3px;background:#2563eb}
.gd-seam{position:absolute;top:30px;transform:translateX(-50%);z-index:3;display:flex;flex-direction:column;align-items:center;gap:2px}
.gd-seam button{font-size:10px;padding:0 4px;border-radius:8px;background:#0f172a;border-color:#60a5fa;white-space:nowrap}
.gd-seam .gd-score{font-size:10px;background:#000c;padding:0 4px;border-radius:6px;white-space:nowrap}
.gd-seam .gd-score[data-status=warn]{color:#facc15}.gd-seam .gd-score[data-status=fail]{color:#f87171}
.gd-seam-edit{position:absolute;top:40px;z-index:5;background:#111;border:1px solid #60a5fa;border-radius:6px;padding:6px;
  display:flex;gap:4px;align-items:center;transform:translateX(-50%)}
.gd-playhead{position:absolute;top:0;width:0;height:140px;border-left:2px solid #ef4444;z-index:4;pointer-events:none}
.gd-playhead::before{content:"";position:absolute;left:-6px;top:0;border:5px solid transparent;border-top:8px solid #ef4444}
.gd-inspector{border-top:1px solid var(--border-color,#444);padding-top:4px;display:flex;flex-direction:column;gap:4px}
.gd-inspector textarea{width:100%;min-height:40px;box-sizing:border-box}
.gd-tl .gd-suggestion{border:1px dashed #60a5fa;border-radius:4px;padding:4px 6px;display:flex;flex-direction:column;gap:3px}
.gd-docked{position:fixed;left:0;right:0;bottom:0;height:min(360px,45vh);z-index:999;box-shadow:0 -4px 20px #0008}
`;

export class TimelinePanel extends StoryPanel {
  constructor(root, host) {
    super(root, host);
    this.zoom = 1;
    this.editSeam = null; // scene id whose transition is being edited
    this.monitor = { mode: "auto", source: null, trackTime: 0 };
  }

  async start() {
    if (!document.getElementById(STYLE_ID)) document.head.append(el("style", { id: STYLE_ID, text: CSS }));
    return super.start();
  }

  stop() {
    super.stop();
    if (this.els && this.els.video) this.els.video.pause();
  }

  build() {
    const generate = el("button", { class: "gd-generate", text: "Generate", onclick: () => this.generate() });
    const cancel = el("button", { class: "gd-cancel", text: "Cancel", disabled: true, onclick: () => this.cancel() });
    const regenerate = el("button", { class: "gd-regenerate", text: "Regenerate stale", disabled: true, onclick: () => this.regenerate() });
    const regenerateTransitions = el("button", { class: "gd-regenerate-transitions", text: "Regenerate stale transitions",
      disabled: true, onclick: () => this.regenerateTransitions() });
    const video = el("video", { class: "gd-monitor-video", muted: true, playsinline: true, preload: "auto" });
    video.muted = true;
    video.addEventListener("timeupdate", () => this.syncPlayhead());
    video.addEventListener("seeked", () => this.syncPlayhead());
    video.addEventListener("play", () => { this.els.play.textContent = "⏸"; this.tick(); });
    video.addEventListener("pause", () => { this.els.play.textContent = "▶"; });
    video.addEventListener("ended", () => this.onEnded());
    this.els = {
      story: el("select", { class: "gd-story", title: "Stories in input/gemdirect/", onchange: (e) => this.openStory(e.target.value) }),
      run: el("select", { class: "gd-run", title: "Runs of this story, newest first", onchange: (e) => this.openRun(e.target.value) }),
      health: el("div"), reason: el("div", { class: "gd-note gd-reason" }),
      generate, cancel, regenerate, regenerateTransitions,
      note: el("span", { class: "gd-note gd-status", "aria-live": "polite" }),
      error: el("div", { class: "gd-error", role: "alert" }),
      summary: el("span", { class: "gd-note gd-summary" }),
      timeline: el("div", { class: "gd-tl-area" }),
      detail: el("div", { class: "gd-inspector" }),
      video,
      screen: el("div", { class: "gd-screen", text: "nothing rendered yet" }),
      play: el("button", { class: "gd-play", text: "▶", title: "Play / pause (the film, else the scenes in order)", onclick: () => this.togglePlay() }),
      source: el("select", { class: "gd-source", title: "What the monitor plays", onchange: (e) => { this.monitor.mode = e.target.value; this.loadMonitor(true); } },
        el("option", { value: "auto", text: "film (else scenes)" }), el("option", { value: "scenes", text: "scenes in order" }),
        el("option", { value: "selected", text: "selected scene" })),
      clock: el("span", { class: "gd-note gd-clock", text: "0.00 s · 0 f" }),
      zoomLabel: el("span", { class: "gd-note gd-zoom", text: "100%" }),
      scroll: null,
    };
    const scroll = el("div", { class: "gd-tl-scroll" }, this.els.timeline);
    this.els.scroll = scroll;
    this.root.replaceChildren(el("div", { class: "gd-tl" },
      el("div", { class: "gd-row" }, el("b", { text: "Timeline" }), this.els.story, this.els.run,
        el("button", { text: "↻", title: "Refresh", class: "gd-refresh", onclick: () => this.refresh(true) }),
        el("button", { text: "−", title: "Zoom out", class: "gd-zoom-out", onclick: () => this.setZoom(stepZoom(this.zoom, -1)) }),
        this.els.zoomLabel,
        el("button", { text: "+", title: "Zoom in", class: "gd-zoom-in", onclick: () => this.setZoom(stepZoom(this.zoom, 1)) }),
        generate, regenerate, regenerateTransitions, cancel, this.els.summary, this.els.note),
      this.els.reason, this.els.error,
      el("div", { class: "gd-tl-main" },
        el("div", { class: "gd-monitor" }, this.els.screen, video,
          el("div", { class: "gd-row" }, this.els.play, this.els.source, this.els.clock)),
        scroll),
      this.els.detail));
    video.style.display = "none";
  }

  setZoom(zoom) {
    this.zoom = zoom;
    this.els.zoomLabel.textContent = `${Math.round(zoom * 100)}%`;
    this.renderTimeline();
  }

  layout() {
    const pxPerSecond = Number(this.host.setting(SETTINGS.pxPerSecond, 56)) || 56;
    return layoutTrack(this.storyDoc ? this.storyDoc.scenes : [], { pxPerSecond, zoom: this.zoom });
  }

  // ------------------------------------------------------------------ track

  renderTimeline() {
    if (!this.els) return;
    this.renderActions();
    const area = this.els.timeline;
    if (!this.storyDoc) {
      this.els.summary.textContent = "";
      return area.replaceChildren(el("div", { class: "gd-note", text: "No story open. Put one in ComfyUI's input/gemdirect/ folder." }));
    }
    const track = this.layout();
    this.track = track;
    const cards = buildTimeline(this.storyDoc, this.run, this.live, {});
    this.els.summary.textContent = `${this.storyDoc.title}: ${cards.length} clips, ${track.seconds.toFixed(2)} s, ${track.frames} f` +
      `${this.run ? ` · run ${this.run.run_id}` : ""}${this.saving ? " · saving…" : ""}`;
    const fps = (this.storyDoc.scenes[0] && this.storyDoc.scenes[0].fps) || 16;
    const width = Math.ceil(track.width) + 40;
    const ruler = el("div", { class: "gd-ruler", style: { width: `${width}px` }, title: "Click or drag to scrub" },
      ...rulerTicks(track.seconds, track.scale, fps).map((t) => el("div", { class: "gd-tick", style: { left: `${t.x}px` },
        "data-seconds": String(t.seconds), text: t.label })));
    this.scrubbable(ruler);
    const clips = el("div", { class: "gd-clips", style: { width: `${width}px` } },
      ...cards.map((card, i) => this.clipElement(card, track.clips[i], cards.length)));
    const seamEls = seams(this.storyDoc.scenes, track).map((seam) => {
      const card = cards.find((c) => c.id === seam.to);
      return el("div", { class: "gd-seam", "data-from": seam.from, "data-to": seam.to, style: { left: `${seam.x}px` } },
        el("button", { class: "gd-transition", "data-kind": seam.kind, "data-frames": String(seam.frames), text: seam.label,
          title: `Transition ${seam.from} → ${seam.to}: ${seam.label}${seam.frames ? ` (${seam.seconds.toFixed(2)} s overlap)` : ""}; click to edit`,
          onclick: (e) => { e.stopPropagation(); this.editSeam = this.editSeam === seam.from ? null : seam.from; this.renderTimeline(); } }),
        el("span", { class: "gd-score", "data-status": card.seam.status, title: card.seam.title, text: card.seam.text }));
    });
    const children = [ruler, clips, ...seamEls];
    const editing = this.editSeam && seams(this.storyDoc.scenes, track).find((s) => s.from === this.editSeam);
    if (editing) children.push(this.seamEditor(editing));
    this.els.playhead = el("div", { class: "gd-playhead" });
    children.push(this.els.playhead);
    area.style.width = `${width}px`;
    area.replaceChildren(...children);
    this.syncPlayhead();
    if (this.els.video.style.display === "none" || !this.monitor.source) this.loadMonitor(false);
  }

  clipElement(card, clip, count) {
    const status = card.status;
    const rendered = Boolean(this.run && this.run.scenes[card.id]);
    const frames = rendered
      ? [el("img", { alt: "", class: "gd-first", src: this.thumbURL(card.id, "first"), onerror: (e) => e.target.remove() }),
        el("img", { alt: "", class: "gd-last", src: this.thumbURL(card.id, "last"), onerror: (e) => e.target.remove() })]
      : [el("img", { alt: "", class: "gd-key", src: this.thumbURL(card.id), onerror: (e) => e.target.remove() })];
    const node = el("div", {
      class: `gd-clip${this.selected === card.id ? " gd-selected" : ""}`, role: "listitem", tabindex: "0", draggable: "true",
      "data-scene": card.id, "data-seconds": String(clip.seconds), title: `${card.index}. ${card.title}\n${card.prompt}\n(drag, or Alt+←/→, to reorder)`,
      style: { left: `${clip.x}px`, width: `${clip.width}px` },
      onclick: () => { this.selected = card.id; this.suggestion = null; this.renderTimeline(); this.renderDetail(); this.loadMonitor(false); },
      onkeydown: (e) => {
        if (!e.altKey || !["ArrowLeft", "ArrowRight"].includes(e.key)) return;
        e.preventDefault();
        const to = card.index - 1 + (e.key === "ArrowLeft" ? -1 : 1);
        if (to >= 0 && to < count) this.moveScene(card.id, to).then(() => this.focusClip(card.id));
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
    el("div", { class: "gd-frames" }, ...frames),
    el("div", { class: "gd-clip-body" },
      el("div", { class: "gd-clip-title", text: `${card.index}. ${card.title}` }),
      el("div", { class: "gd-clip-dur", text: card.duration }),
      el("span", { class: "gd-badge", "data-state": status.state, title: status.title || status.label, text: status.label })),
    status.percent !== undefined ? el("div", { class: "gd-bar", style: { width: `${status.percent}%` } }) : null);
    return node;
  }

  focusClip(sceneId) {
    const node = this.els.timeline.querySelector(`.gd-clip[data-scene="${sceneId}"]`);
    if (node) node.focus();
  }

  seamEditor(seam) {
    const kind = el("select", { class: "gd-seam-kind", "aria-label": "Transition kind" },
      ...["cut", "crossfade", "vace"].map((k) => el("option", { value: k, text: k })));
    kind.value = seam.kind;
    const frames = el("input", { class: "gd-seam-frames", type: "number", min: "1", max: "240", step: "1",
      value: String(seam.frames || 8), "aria-label": "Transition frames", style: { width: "4.5em" } });
    const save = el("button", { class: "gd-seam-save", text: "Save", onclick: async () => {
      this.editSeam = null;
      let raw;
      try {
        raw = setTransition(this.storyDoc.story, seam.from, kind.value, Number(frames.value));
      } catch (error) {
        return this.fail(error.message);
      }
      await this.saveStory(raw, `Transition ${seam.from} → ${seam.to}`);
    } });
    return el("div", { class: "gd-seam-edit", style: { left: `${seam.x}px` }, onclick: (e) => e.stopPropagation() },
      el("span", { text: `${seam.from} → ${seam.to}` }), kind, frames, el("span", { class: "gd-note", text: "f" }), save,
      el("button", { text: "✕", title: "Close", onclick: () => { this.editSeam = null; this.renderTimeline(); } }));
  }

  // ------------------------------------------------------------------ monitor

  /** Scenes of the open run with a video, in play order. */
  playable() {
    if (!this.run || !this.storyDoc) return [];
    return this.storyDoc.scenes.map((s) => s.id).filter((id) => {
      const r = this.run.scenes[id];
      return r && r.video && r.video.path && r.success !== false;
    });
  }

  /** What the monitor shows: {kind: "film"} | {kind: "scene", scene}, by the monitor mode. */
  chooseSource() {
    if (!this.run) return null;
    const playable = this.playable();
    if (this.monitor.mode === "selected") return this.selected && playable.includes(this.selected) ? { kind: "scene", scene: this.selected } : null;
    if (this.monitor.mode === "auto" && this.run.finished && this.run.film) return { kind: "film" };
    const current = this.monitor.source && this.monitor.source.kind === "scene" && playable.includes(this.monitor.source.scene)
      ? this.monitor.source.scene : null;
    return playable.length ? { kind: "scene", scene: current || playable[0] } : null;
  }

  sourceURL(source) {
    if (source.kind === "film") {
      const film = this.run.film || {};
      return this.host.apiURL(`/gemdirect/film?${this.q({ story: this.storyDoc.story_id, run: this.run.run_id, v: `${film.bytes}-${film.mtime}` })}`);
    }
    const record = this.run.scenes[source.scene];
    return this.host.apiURL(`/gemdirect/video?${this.q({ story: this.storyDoc.story_id, run: this.run.run_id, scene: source.scene, v: record ? record.attempts : 0 })}`);
  }

  /** Point the monitor at the chosen source (force: even if it is the same one). */
  loadMonitor(force, source = this.chooseSource()) {
    const video = this.els.video;
    const key = source ? `${source.kind}:${source.scene || ""}:${this.sourceURL(source)}` : "";
    if (!force && key === this.monitor.key) return;
    this.monitor.source = source;
    this.monitor.key = key;
    if (!source) {
      video.pause();
      video.removeAttribute("src");
      video.style.display = "none";
      this.els.screen.style.display = "";
      this.els.screen.textContent = this.run ? "no scene of this run has a video yet" : "no run open";
      this.els.play.disabled = true;
      return;
    }
    video.style.display = "";
    this.els.screen.style.display = "none";
    this.els.play.disabled = false;
    video.dataset.source = source.kind === "film" ? "film" : source.scene;
    video.src = this.sourceURL(source);
    this.syncPlayhead();
  }

  async togglePlay() {
    const video = this.els.video;
    if (!this.monitor.source) return;
    if (video.paused) {
      try { await video.play(); } catch (error) { this.fail(`The monitor cannot play: ${error.message}`); }
    } else video.pause();
  }

  onEnded() {
    const source = this.monitor.source;
    if (!source || source.kind !== "scene" || this.monitor.mode === "selected") return;
    const next = nextInPlaylist(this.playable(), source.scene);
    if (!next) return;
    this.loadMonitor(true, { kind: "scene", scene: next });
    this.els.video.play().catch(() => {});
  }

  tick() {
    if (this.els.video.paused) return;
    this.syncPlayhead();
    requestAnimationFrame(() => this.tick());
  }

  syncPlayhead() {
    if (!this.track || !this.els.playhead) return;
    const video = this.els.video;
    const source = this.monitor.source;
    const t = source ? monitorToTrack(this.track, source, video.currentTime || 0, video.duration) : this.monitor.trackTime;
    this.monitor.trackTime = t;
    this.els.playhead.style.left = `${xAtTime(this.track, t)}px`;
    this.els.playhead.dataset.seconds = t.toFixed(3);
    const fps = (this.storyDoc && this.storyDoc.scenes[0] && this.storyDoc.scenes[0].fps) || 16;
    this.els.clock.textContent = `${t.toFixed(2)} s · ${Math.round(t * fps)} f`;
  }

  /** Move the playhead (and the monitor) to track time t. */
  seek(t) {
    if (!this.track) return;
    const source = this.monitor.source;
    const target = trackToMonitor(this.track, source, t, this.els.video.duration);
    if (source && source.kind === "scene" && target.scene && target.scene !== source.scene && this.monitor.mode !== "selected") {
      if (this.playable().includes(target.scene)) {
        this.loadMonitor(true, { kind: "scene", scene: target.scene });
        this.els.video.addEventListener("loadedmetadata", () => { this.els.video.currentTime = target.time; }, { once: true });
        return;
      }
    }
    if (source) {
      this.els.video.currentTime = target.time;
    } else {
      this.monitor.trackTime = t;
    }
    this.syncPlayhead();
    if (!source && this.els.playhead) this.els.playhead.style.left = `${xAtTime(this.track, t)}px`;
  }

  scrubbable(node) {
    const at = (e) => (e.clientX - node.getBoundingClientRect().left) / this.track.scale;
    node.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      if (node.setPointerCapture) node.setPointerCapture(e.pointerId);
      this.scrubbing = true;
      this.seek(at(e));
    });
    node.addEventListener("pointermove", (e) => { if (this.scrubbing) this.seek(at(e)); });
    const end = () => { this.scrubbing = false; };
    node.addEventListener("pointerup", end);
    node.addEventListener("pointercancel", end);
  }

  async openRun(runId) {
    await super.openRun(runId);
    if (this.els) this.loadMonitor(false);
  }

  // ------------------------------------------------------------------ inspector

  renderDetail(force = true) {
    if (!this.els) return;
    const detail = this.els.detail;
    if (!force && detail.contains(document.activeElement) && detail.dataset.scene === this.selected) return;
    detail.dataset.scene = this.selected || "";
    const scene = this.storyDoc && this.storyDoc.scenes.find((s) => s.id === this.selected);
    if (!scene) return detail.replaceChildren(el("div", { class: "gd-note", text: this.storyDoc ? "Click a clip to edit its scene." : "" }));
    const raw = this.storyDoc.story.scenes.find((s) => s.id === scene.id) || {};
    const prompt = el("textarea", { class: "gd-prompt", "aria-label": "Prompt" });
    prompt.value = raw.prompt || "";
    const negative = el("input", { class: "gd-negative", type: "text", placeholder: "(the story's default)", "aria-label": "Negative prompt", style: { flex: "1", minWidth: "12em" } });
    negative.value = raw.negative || "";
    const duration = el("input", { class: "gd-seconds", type: "number", min: "0.1", max: "600", step: "0.1",
      value: String(scene.duration_seconds), "aria-label": "Duration in seconds", style: { width: "5.5em" } });
    const seed = el("input", { class: "gd-seed", type: "number", min: "0", step: "1", placeholder: String(scene.seed),
      "aria-label": "Seed (empty: the story's default)", style: { width: "9em" } });
    seed.value = raw.seed === undefined || raw.seed === null ? "" : String(raw.seed);
    const save = el("button", { class: "gd-save", text: "Save scene", onclick: () => {
      const next = { ...raw, prompt: prompt.value };
      if (negative.value.trim()) next.negative = negative.value; else delete next.negative;
      const seconds = Number(duration.value);
      if (Math.abs(seconds - scene.duration_seconds) > 1e-6) { next.duration = seconds; delete next.frames; }
      if (seed.value.trim() === "") delete next.seed; else next.seed = Number(seed.value);
      const story = { ...this.storyDoc.story, scenes: this.storyDoc.story.scenes.map((s) => (s.id === scene.id ? next : s)) };
      this.saveStory(story, `Scene ${scene.id}`);
    } });
    const gate = generateGate(this.health);
    const graph = this.host.readiness ? this.host.readiness() : { ready: true };
    const canQueue = gate.enabled && graph.ready && this.host.generate && !this.generating;
    const regen = el("button", { class: "gd-regen-scene", text: "Regenerate", disabled: !canQueue,
      title: canQueue ? `Queue scene ${scene.index} (${scene.id}) again` : (gate.enabled ? graph.reason || "needs ComfyUI's graph" : gate.reason),
      onclick: () => this.queueScenes([scene.id], [scene.index]) });
    detail.replaceChildren(...[
      el("div", { class: "gd-row" }, el("b", { text: `${scene.index}. ${scene.title || scene.id}` }),
        el("span", { class: "gd-note", text: `${scene.id} · ${scene.width}x${scene.height} · ${scene.frames} f @ ${scene.fps_text} fps · seed ${scene.seed}` }),
        this.sceneState(scene.id) ? el("span", { class: "gd-note", text: `· ${this.sceneState(scene.id)}` }) : null),
      prompt,
      el("div", { class: "gd-row" }, el("span", { text: "Negative" }), negative),
      el("div", { class: "gd-row" }, el("span", { text: "Duration (s)" }), duration, el("span", { text: "Seed" }), seed, save, regen,
        el("button", { class: "gd-suggest", text: "Suggest", title: "Propose prompt, negative and camera move (the assistant endpoint if set, else local rules)", onclick: () => this.suggest(scene.id) })),
      this.suggestionElement(scene.id),
    ].filter(Boolean));
  }
}

/** The docked fallback where the frontend has no bottom panel: a toggle button and a panel along the bottom. */
export function dockedTimeline(mount) {
  const box = el("div", { class: "gd-docked" });
  const toggle = el("button", { class: "gd-dock-toggle", text: "Timeline", title: "gemDirect: the story's timeline" });
  Object.assign(toggle.style, { position: "fixed", right: "84px", bottom: "12px", zIndex: 1001 });
  toggle.onclick = () => {
    if (box.isConnected) return box.remove();
    document.body.append(box);
    mount(box);
  };
  document.body.append(toggle);
  return { box, toggle };
}
