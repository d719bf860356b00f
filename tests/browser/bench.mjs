// Times pages of the dashboard in headless Chromium for benches/dashboard.rs:
// from the start of a navigation until the page's main content is visible,
// and the longest task that held the page's main thread (a frozen page
// shows as a long one). Reads PACER_URL, PACER_PAGES (JSON: [{name, path,
// selector}]), PACER_RUNS and PACER_TOKEN (signs in first when set);
// prints one JSON line per page.

import { chromium } from "playwright-core";

const url = process.env.PACER_URL;
const pages = JSON.parse(process.env.PACER_PAGES);
const runs = Number(process.env.PACER_RUNS || 10);

const browser = await chromium.launch({
  executablePath: process.env.PACER_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
await context.addInitScript(() => {
  window.__longest = 0;
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
    }).observe({ type: "longtask", buffered: true });
  } catch (e) { /* no long-task timing in this browser */ }
});
const page = await context.newPage();
if (process.env.PACER_TOKEN) {
  await page.goto(`${url}/ui/signin`);
  await page.fill("#token", process.env.PACER_TOKEN);
  await Promise.all([page.waitForURL(`${url}/`), page.click('button[type="submit"].primary')]);
}
const median = (v) => { const s = [...v].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
for (const p of pages) {
  const times = [];
  let longest = 0;
  for (let i = 0; i < runs + 1; i++) {
    const t0 = performance.now();
    await page.goto(`${url}${p.path}`, { waitUntil: "commit" });
    await page.locator(p.selector).first().waitFor({ state: "visible", timeout: 30_000 });
    const ms = performance.now() - t0;
    // Give the page a moment to finish its scripts before reading the
    // longest task it ran.
    await page.waitForLoadState("load");
    const long = await page.evaluate(() => window.__longest);
    if (i > 0) { times.push(ms); longest = Math.max(longest, long); } // the first warms up
  }
  console.log(JSON.stringify({
    name: p.name, median_ms: median(times), max_ms: Math.max(...times), longest_task_ms: longest,
  }));
}
await browser.close();
