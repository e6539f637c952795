// The bottom-panel timeline inside a real ComfyUI, called by web/tests/comfyui.browser.mjs after its
// panel checks, on each frontend, with the page, ComfyUI's URL and that file's helpers: the tab is
// ComfyUI's own bottom panel (bottomPanelTabs, not the docked fallback); the demo's clips are as wide
// as 3.0 / 3.0 / 3.5 s (the plan's 49 / 49 / 57 frames at 16 fps) at 56 px/s with the crossfades on the
// seams; a drag reorders story.json; Generate over an animatic graph with Story Render renders the
// three scenes and the film while the clips' badges move (queued, rendering, saving, done: recorded
// as they happen); the film's post record has the new order; the monitor plays the film and the
// playhead follows. Screenshot: web/tests/output/timeline-frontend-<version>.png (docs/img/ with
// GEMDIRECT_DOCS_IMG=1).

import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const TAB = "gemdirect-timeline";

export async function checkTimeline({ page, url, version, output, repo, history, queueEmpty, logTail, log }) {
  const getJson = async (path) => (await fetch(`${url}${path}`)).json();
  await page.click(".gd-open-timeline");
  await page.waitForSelector(".gd-tl .gd-clip", { timeout: 60000 });
  assert.equal(await page.locator(".gd-docked").count(), 0, "the timeline is in ComfyUI's bottom panel, not docked");
  assert.equal(await page.evaluate(() => window.comfyAPI.app.app.extensionManager.bottomPanel.activeBottomPanelTabId), TAB);
  const clips = () => page.$$eval(".gd-tl .gd-clip", (n) => n.map((c) => c.dataset.scene));
  assert.deepEqual(await clips(), ["dawn", "noon", "dusk"]);
  const widths = await page.$$eval(".gd-tl .gd-clip", (n) => n.map((c) => c.getBoundingClientRect().width));
  assert.deepEqual(widths, [3.0625 * 56, 3.0625 * 56, 3.5625 * 56]);
  assert.deepEqual(await page.$$eval(".gd-tl .gd-transition", (n) => n.map((b) => b.textContent)), ["crossfade 8 f", "crossfade 12 f"]);

  // the animatic graph of the panel checks, plus Story Render (no interpolation, no upscale: a CPU)
  await page.evaluate(() => {
    const { app } = window.comfyAPI.app;
    const nodes = app.graph._nodes;
    const find = (type) => nodes.find((n) => n.type === type);
    const render = window.LiteGraph.createNode("GemDirectStoryRender");
    render.pos = [1800, 80];
    app.graph.add(render);
    const link = (from, output, to, input) => from.connect(from.outputs.findIndex((o) => o.name === output), to,
      to.inputs.findIndex((i) => i.name === input));
    link(find("GemDirectRun"), "run", render, "run");
    link(find("GemDirectStoryLoader"), "story", render, "story");
    render.widgets.find((w) => w.name === "interpolation").value = "off";
    render.widgets.find((w) => w.name === "upscale").value = "off";
  });

  // drag dusk onto dawn: saved to story.json through the route
  const saved = page.waitForResponse((r) => r.url().includes("/gemdirect/story?") && r.request().method() === "PUT");
  await page.dragAndDrop('.gd-tl .gd-clip[data-scene="dusk"]', '.gd-tl .gd-clip[data-scene="dawn"]');
  assert.equal((await saved).status(), 200);
  await page.waitForFunction(() => [...document.querySelectorAll(".gd-tl .gd-clip")].map((c) => c.dataset.scene).join() === "dusk,dawn,noon");
  const onDisk = await getJson("/api/gemdirect/story?name=demo/story.json");
  assert.deepEqual(onDisk.story.scenes.map((s) => s.id), ["dusk", "dawn", "noon"]);

  // every badge state each clip shows while the prompts run, as it happens
  await page.evaluate(() => {
    window.__seen = {};
    const look = () => {
      for (const clip of document.querySelectorAll(".gd-tl .gd-clip")) {
        const state = clip.querySelector(".gd-badge").dataset.state;
        const seen = (window.__seen[clip.dataset.scene] ||= []);
        if (seen[seen.length - 1] !== state) seen.push(state);
      }
    };
    window.__observer = new MutationObserver(look);
    window.__observer.observe(document.querySelector(".gd-tl"), { subtree: true, childList: true, attributes: true });
  });
  const before = (await history(url)).length;
  await page.waitForFunction(() => !document.querySelector(".gd-tl .gd-generate").disabled, null, { timeout: 30000 });
  await page.click(".gd-tl .gd-generate");
  await page.waitForFunction(() => /Queued 3 scenes; the last one also renders the film/.test(document.querySelector(".gd-tl .gd-status").textContent),
    null, { timeout: 60000 });
  await queueEmpty(url, 900);
  const ran = (await history(url)).slice(before);
  assert.deepEqual(ran.map((h) => [h.scene_index, h.status, h.render]),
    [[1, "success", null], [2, "success", null], [3, "success", "after the last scene"]], `${JSON.stringify(ran)}\n${logTail(log)}`);
  await page.waitForFunction(() => [...document.querySelectorAll(".gd-tl .gd-clip .gd-badge")].every((b) => b.dataset.state === "done"),
    null, { timeout: 60000 });
  const seen = await page.evaluate(() => { window.__observer.disconnect(); return window.__seen; });
  for (const scene of ["dusk", "dawn", "noon"]) {
    // the order the nodes send: queued (Chain Start), rendering (start image handed on), saving, done
    const states = seen[scene].filter((s) => s !== "stale" && s !== "pending");
    assert.ok(states.includes("queued") && states.includes("rendering") && states[states.length - 1] === "done",
      `${scene}: badge states seen ${JSON.stringify(seen[scene])}`);
  }

  // the next render has the new order, and the monitor plays it
  await page.click(".gd-tl .gd-refresh");
  const runId = (await getJson("/api/gemdirect/runs?story=lighthouse")).runs[0].run_id; // Run's "continue": the newest
  const run = await getJson(`/api/gemdirect/run?story=lighthouse&run=${runId}&name=demo/story.json`);
  assert.ok(run.film, `run ${runId} has a film: ${JSON.stringify(run).slice(0, 300)}`);
  assert.deepEqual(run.film.scenes, ["dusk", "dawn", "noon"]);
  await page.waitForFunction(() => document.querySelector(".gd-tl .gd-monitor-video").dataset.source === "film", null, { timeout: 30000 });
  await page.waitForFunction(() => document.querySelector(".gd-tl .gd-monitor-video").readyState >= 1, null, { timeout: 30000 });
  const filmSeconds = await page.evaluate(() => document.querySelector(".gd-tl .gd-monitor-video").duration);
  assert.ok(Math.abs(filmSeconds - run.film.seconds) < 0.1, `film ${filmSeconds} s, post record ${run.film.seconds} s`);
  await page.click(".gd-tl .gd-play");
  await page.waitForFunction(() => document.querySelector(".gd-tl .gd-monitor-video").currentTime > 1.0, null, { timeout: 30000 });
  await page.evaluate(() => document.querySelector(".gd-tl .gd-monitor-video").pause());
  const playhead = await page.evaluate(() => ({ t: Number(document.querySelector(".gd-tl .gd-playhead").dataset.seconds),
    film: document.querySelector(".gd-tl .gd-monitor-video").currentTime }));
  const trackSeconds = 2 * 3.0625 + 3.5625;
  assert.ok(Math.abs(playhead.t - (playhead.film / filmSeconds) * trackSeconds) < 0.05, JSON.stringify(playhead));
  await page.click('.gd-tl .gd-clip[data-scene="dawn"]');
  mkdirSync(output, { recursive: true });
  const shot = join(output, `timeline-frontend-${version}.png`);
  await page.screenshot({ path: shot });
  if (process.env.GEMDIRECT_DOCS_IMG) copyFileSync(shot, join(repo, "docs", "img", `timeline-frontend-${version}.png`));
  return { widths, seen, film: run.film, shot };
}
