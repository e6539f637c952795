// The Story panel inside a real ComfyUI, in headless Chromium, on the frontend ComfyUI pins and
// (when COMFYUI_FRONTEND_ROOT is set) on another frontend build started with --front-end-root.
// For each frontend: its own temporary --base-directory (custom_nodes/gemdirect -> this repository)
// and its own free port; the Story sidebar tab opens, the demo story's cards come up, the panel's
// settings are registered, and Generate over example_workflows/story_scene_preview.json queues one
// prompt per scene (scene_index 1..N) that ComfyUI runs to success; with Story Render in the graph
// only the last prompt carries it; in a graph that saves scenes (animatics), an edited scene turns
// stale and Regenerate stale queues that scene only, after which it is fresh again; then the
// bottom-panel timeline (web/tests/timeline_comfyui.mjs). Screenshots per frontend (the stale
// badge; the timeline): web/tests/output/panel-frontend-<version>.png,
// timeline-frontend-<version>.png (also into docs/img/ with GEMDIRECT_DOCS_IMG=1).
//
//   COMFYUI_PATH=/path/to/ComfyUI [COMFYUI_PYTHON=python] \
//   [COMFYUI_FRONTEND_ROOT=/path/to/comfyui_frontend_package/static] node web/tests/comfyui.browser.mjs
//
// Without COMFYUI_PATH the tests are skipped, and the skip says so.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { checkTimeline } from "./timeline_comfyui.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");
const output = join(here, "output");
const checkout = process.env.COMFYUI_PATH;
const frontendRoot = process.env.COMFYUI_FRONTEND_ROOT;
const python = process.env.COMFYUI_PYTHON || process.env.PYTHON
  || (process.env.VIRTUAL_ENV ? join(process.env.VIRTUAL_ENV, "bin", "python") : "python3");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const WORKFLOW = join(repo, "example_workflows", "story_scene_preview.json");
const RENDER_WORKFLOW = join(repo, "example_workflows", "story_render.json");
const DEMO_SCENES = ["dawn", "noon", "dusk"];
const START_SECONDS = 180;

function skipReason() {
  if (!checkout) return "COMFYUI_PATH is not set: point it at a ComfyUI checkout (the folder with main.py) to run the panel in a real ComfyUI";
  if (!existsSync(join(checkout, "main.py"))) return `COMFYUI_PATH=${checkout} is not a ComfyUI checkout (no main.py there)`;
  return false;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => { const { port } = probe.address(); probe.close(() => resolve(port)); });
  });
}

const logTail = (log) => (existsSync(log) ? readFileSync(log, "utf8").split("\n").slice(-40).join("\n") : "(no log)");

/** ComfyUI from COMFYUI_PATH with its own base directory and port; `frontend` adds --front-end-root. */
async function startComfyUI(frontend) {
  const base = mkdtempSync(join(tmpdir(), "gemdirect-comfyui-"));
  mkdirSync(join(base, "custom_nodes"));
  symlinkSync(repo, join(base, "custom_nodes", "gemdirect"), "dir");
  const port = await freePort();
  const log = join(base, "comfyui.log");
  const args = ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", String(port), "--disable-auto-launch",
    "--base-directory", base, "--database-url", "sqlite:///:memory:"];
  if (frontend) args.push("--front-end-root", frontend);
  const env = { ...process.env, PYTHONUNBUFFERED: "1" };
  delete env.GEMDIRECT_HOME;
  const fd = openSync(log, "w");
  const child = spawn(python, args, { cwd: checkout, stdio: ["ignore", fd, fd], env });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(base, { recursive: true, force: true });
  };
  const deadline = Date.now() + START_SECONDS * 1000;
  for (;;) {
    if (child.exitCode !== null) {
      const tail = logTail(log);
      await stop();
      throw new Error(`ComfyUI exited (${child.exitCode}) during start-up:\n${tail}`);
    }
    try {
      const response = await fetch(`${url}/system_stats`);
      if (response.ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      const tail = logTail(log);
      await stop();
      throw new Error(`ComfyUI did not answer within ${START_SECONDS} s:\n${tail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { url, log, stop };
}

async function openPanel(url) {
  const profile = mkdtempSync(join(tmpdir(), "gemdirect-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath, headless: true, viewport: { width: 1280, height: 760 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--no-first-run", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(60000);
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" && /gemdirect|panel\.js/i.test(m.text())) problems.push(m.text()); });
  page.on("pageerror", (e) => { if (/gemdirect|panel\.js/i.test(`${e.stack}`)) problems.push(`${e}\n${e.stack}`); });
  const close = async () => { await context.close(); rmSync(profile, { recursive: true, force: true }); };
  await page.goto(url, { waitUntil: "domcontentloaded", timeout: 120000 });
  await page.waitForFunction(() => window.comfyAPI && window.comfyAPI.app && window.comfyAPI.app.app.graph, null, { timeout: 120000 });
  // 1.27 gives an extension's tab button the class <id>-tab-button; later builds only its tooltip as aria-label
  const tab = page.locator(".gemdirect-story-tab-button, button[aria-label^='gemDirect: the story']").first();
  await tab.waitFor({ timeout: 60000 });
  await page.waitForTimeout(2000);
  // first-run dialogs (templates): PrimeVue masks in 1.27, a dialog overlay in later builds
  const dialogs = page.locator(".p-dialog-mask, [data-slot='dialog-overlay']");
  for (let i = 0; i < 6 && (await dialogs.count()); i++) {
    await page.keyboard.press("Escape");
    await page.waitForTimeout(500);
  }
  await tab.click();
  await page.waitForSelector(".gd-card", { timeout: 60000 });
  return { page, problems, close };
}

const getJson = async (url) => {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return response.json();
};

/** Every history entry of ComfyUI in queue order: status and the Scene Select's scene_index of its prompt. */
const history = async (url) => Object.values(await getJson(`${url}/api/history`)).map((item) => ({
  status: item.status && item.status.status_str,
  number: item.prompt[0],
  scene_index: Object.values(item.prompt[2]).filter((n) => n.class_type === "GemDirectSceneSelect").map((n) => n.inputs.scene_index)[0],
  render: Object.values(item.prompt[2]).filter((n) => n.class_type === "GemDirectStoryRender").map((n) => n.inputs.when)[0] || null,
})).sort((a, b) => a.number - b.number);

async function queueEmpty(url, seconds = 300) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const queue = await getJson(`${url}/api/queue`);
    if (queue.queue_running.length + queue.queue_pending.length === 0) return;
    if (Date.now() > deadline) throw new Error(`ComfyUI's queue did not empty in ${seconds} s: ${JSON.stringify(queue).slice(0, 300)}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function checkPanel(frontend) {
  const comfy = await startComfyUI(frontend);
  let browser = null;
  try {
    browser = await openPanel(comfy.url);
    const { page, problems } = browser;
    const version = await page.evaluate(() => window.__COMFYUI_FRONTEND_VERSION__ || "unknown");
    assert.deepEqual(await page.$$eval(".gd-card", (n) => n.map((c) => c.dataset.scene)), DEMO_SCENES);
    assert.deepEqual(await page.$$eval(".gd-badge", (n) => n.map((c) => c.dataset.state)), ["pending", "pending", "pending"]);
    assert.match(await page.textContent(".gd-summary"), /^The Lighthouse Keeper: 3 scenes/);
    // the default graph has no Scene Select: Generate and Regenerate stale are off with the reason
    assert.equal(await page.locator(".gd-generate").isDisabled(), true);
    assert.match(await page.textContent(".gd-reason"), /no Scene Select/);
    const settings = await page.evaluate(() => ["AutoRefreshSeconds", "PixelsPerSecond", "AssistantEndpoint"].map((k) =>
      window.comfyAPI.app.app.extensionManager.setting.get(`gemDirect.Panel.${k}`)));
    assert.deepEqual(settings, [5, 56, ""]);

    const workflow = JSON.parse(readFileSync(WORKFLOW, "utf8"));
    await page.evaluate((w) => window.comfyAPI.app.app.loadGraphData(w), workflow);
    const generate = page.locator(".gd-generate");
    await page.waitForFunction(() => !document.querySelector(".gd-generate").disabled, null, { timeout: 30000 });
    await generate.click();
    await page.waitForFunction(() => /Queued 3 scenes/.test(document.querySelector(".gd-note").textContent), null, { timeout: 60000 });
    await queueEmpty(comfy.url);
    const ran = await history(comfy.url);
    assert.deepEqual(ran.map((h) => [h.scene_index, h.render]), [[1, null], [2, null], [3, null]], JSON.stringify(ran));
    assert.deepEqual(ran.map((h) => h.status), ["success", "success", "success"], logTail(comfy.log));
    // the widget is put back after queueing (the workflow ships scene_index 1)
    assert.equal(await page.evaluate(() => window.comfyAPI.app.app.graph._nodes.find((n) => n.type === "GemDirectSceneSelect")
      .widgets.find((w) => w.name === "scene_index").value), 1);
    await page.waitForFunction(() => [...document.querySelectorAll(".gd-badge")].every((b) => b.dataset.state === "pending"),
      null, { timeout: 30000 }); // queued badges clear once ComfyUI's queue is empty (status event)

    // Story Render (story_render.json) with a preview of the keyframe as another output: it is left
    // out of every prompt but the last, which renders "after the last scene"
    const renderWorkflow = JSON.parse(readFileSync(RENDER_WORKFLOW, "utf8"));
    await page.evaluate((w) => window.comfyAPI.app.app.loadGraphData(w), renderWorkflow);
    await page.evaluate(() => {
      const { app } = window.comfyAPI.app;
      const select = app.graph._nodes.find((n) => n.type === "GemDirectSceneSelect");
      const preview = window.LiteGraph.createNode("PreviewImage");
      app.graph.add(preview);
      select.connect(select.outputs.findIndex((o) => o.name === "keyframe"), preview, 0);
    });
    await page.waitForFunction(() => !document.querySelector(".gd-generate").disabled, null, { timeout: 30000 });
    await generate.click();
    await page.waitForFunction(() => /Queued 3 scenes; the last one also renders the film/.test(document.querySelector(".gd-note").textContent),
      null, { timeout: 60000 });
    await queueEmpty(comfy.url);
    const rendered = (await history(comfy.url)).slice(3);
    assert.deepEqual(rendered.map((h) => [h.scene_index, h.render]), [[1, null], [2, null], [3, "after the last scene"]],
      JSON.stringify(rendered));
    assert.deepEqual(rendered.map((h) => h.status), ["success", "success", "success"], logTail(comfy.log));
    assert.equal(await page.evaluate(() => window.comfyAPI.app.app.graph._nodes.find((n) => n.type === "GemDirectStoryRender").mode), 0);

    // A graph that saves scenes (animatics: they render on a CPU): Generate renders the three, an
    // edit of the last scene's prompt makes it stale, Regenerate stale queues that scene only.
    await page.evaluate(() => {
      const { app } = window.comfyAPI.app;
      const { LiteGraph } = window;
      app.graph.clear();
      const add = (type, x) => { const n = LiteGraph.createNode(type); n.pos = [x, 80]; app.graph.add(n); return n; };
      const link = (from, output, to, input) => {
        const slot = from.outputs.findIndex((o) => o.name === output);
        const target = to.inputs.findIndex((i) => i.name === input);
        if (slot < 0 || target < 0) throw new Error(`no ${from.type}.${output} -> ${to.type}.${input}`);
        from.connect(slot, to, target);
      };
      const loader = add("GemDirectStoryLoader", 0);
      const select = add("GemDirectSceneSelect", 300);
      const run = add("GemDirectRun", 600);
      const start = add("GemDirectChainStart", 900);
      const animatic = add("GemDirectAnimatic", 1200);
      const save = add("GemDirectSceneSave", 1500);
      loader.widgets.find((w) => w.name === "story").value = "demo/story.json";
      link(loader, "story", select, "story");
      link(loader, "story", run, "story");
      link(select, "scene", run, "scene");
      link(run, "run", start, "run");
      link(select, "scene", start, "scene");
      link(start, "start_image", animatic, "keyframe");
      link(start, "end_image", animatic, "end_image");
      link(select, "scene", animatic, "scene");
      link(animatic, "frames", save, "frames");
      link(select, "scene", save, "scene");
      link(run, "run", save, "run");
    });
    await page.waitForFunction(() => !document.querySelector(".gd-generate").disabled, null, { timeout: 30000 });
    await generate.click();
    await page.waitForFunction(() => /Queued 3 scenes/.test(document.querySelector(".gd-note").textContent), null, { timeout: 60000 });
    await queueEmpty(comfy.url, 600);
    const saved = (await history(comfy.url)).slice(6);
    assert.deepEqual(saved.map((h) => [h.scene_index, h.status]), [[1, "success"], [2, "success"], [3, "success"]],
      `${JSON.stringify(saved)}\n${logTail(comfy.log)}`);
    await page.click(".gd-panel button[title=Refresh]");
    await page.waitForFunction(() => [...document.querySelectorAll(".gd-badge")].every((b) => ["done", "warning"].includes(b.dataset.state)),
      null, { timeout: 30000 });
    const regenerate = page.locator(".gd-regenerate");
    assert.match(await regenerate.getAttribute("title"), /every scene of this run is fresh/);
    await page.click('.gd-card[data-scene="dusk"]');
    await page.fill(".gd-prompt", "The lighthouse at dusk, its lamp turning, rain on the glass, slow pull out");
    await page.click("text=Save scene");
    await page.waitForFunction(() => document.querySelector('.gd-card[data-scene="dusk"] .gd-badge').dataset.state === "stale",
      null, { timeout: 30000 });
    assert.match(await page.locator('.gd-card[data-scene="dusk"] .gd-badge').getAttribute("title"), /prompt changed/);
    assert.equal(await regenerate.textContent(), "Regenerate stale (1)");
    await page.evaluate(() => { // the panel's top (story, actions, cards) in view, for the picture
      for (let node = document.querySelector(".gd-panel"); node; node = node.parentElement) node.scrollTop = 0;
    });
    mkdirSync(output, { recursive: true });
    const shot = join(output, `panel-frontend-${version}.png`);
    await page.screenshot({ path: shot });
    if (process.env.GEMDIRECT_DOCS_IMG) copyFileSync(shot, join(repo, "docs", "img", `panel-frontend-${version}.png`));
    await regenerate.click();
    await page.waitForFunction(() => /Queued 1 scenes/.test(document.querySelector(".gd-note").textContent), null, { timeout: 60000 });
    await queueEmpty(comfy.url, 600);
    const again = (await history(comfy.url)).slice(9);
    assert.deepEqual(again.map((h) => [h.scene_index, h.status]), [[3, "success"]], JSON.stringify(again));
    await page.click(".gd-panel button[title=Refresh]");
    await page.waitForFunction(() => document.querySelector('.gd-card[data-scene="dusk"] .gd-badge').dataset.state !== "stale",
      null, { timeout: 30000 });
    assert.match(await regenerate.getAttribute("title"), /every scene of this run is fresh/);

    await page.screenshot({ path: join(output, `panel-regenerated-frontend-${version}.png`) });
    const timeline = await checkTimeline({ page, url: comfy.url, version, output, repo, history, queueEmpty, logTail, log: comfy.log });
    assert.deepEqual(problems, []);
    return { version, screenshot: shot, bytes: statSync(shot).size, ran, timeline };
  } finally {
    if (browser) await browser.close();
    await comfy.stop();
  }
}

const skip = skipReason();

test("the panel works in ComfyUI on the frontend the checkout pins", { skip, timeout: 900000 }, async (t) => {
  const result = await checkPanel(null);
  t.diagnostic(`frontend ${result.version}: ${JSON.stringify(result)}`);
});

test("the panel works in ComfyUI on the frontend in COMFYUI_FRONTEND_ROOT", {
  skip: skip || (frontendRoot ? false
    : "COMFYUI_FRONTEND_ROOT is not set: unzip a comfyui-frontend-package wheel and point it at its comfyui_frontend_package/static"),
  timeout: 900000,
}, async (t) => {
  assert.ok(existsSync(join(frontendRoot, "index.html")), `COMFYUI_FRONTEND_ROOT=${frontendRoot} has no index.html`);
  const result = await checkPanel(frontendRoot);
  t.diagnostic(`frontend ${result.version}: ${JSON.stringify(result)}`);
});
