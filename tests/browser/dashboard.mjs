// The dashboard in a real headless Chromium, as a person uses it. Driven
// by tests/dashboard_browser.rs, which runs the daemon and the simulator
// and makes the changes this script asks for: it prints `STEP <name>` and
// reads one line back (a commit id, or `ok`).
//
// Checks what a person sees (visible text, colours, the focus), not only
// the DOM; saves a screenshot of each stage under $PACER_SHOTS.

import { chromium } from "playwright-core";
import readline from "node:readline";
import path from "node:path";

const url = process.env.PACER_URL;
const admin = process.env.PACER_ADMIN_TOKEN;
const shots = process.env.PACER_SHOTS;
const LIVE = 30_000; // the longest a change may take to show without a reload

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function step(name) {
  console.log(`STEP ${name}`);
  const { value, done } = await lines.next();
  if (done) throw new Error(`no answer to ${name}`);
  return value.trim();
}

function check(ok, what) {
  if (!ok) throw new Error(what);
}

const browser = await chromium.launch({
  executablePath: process.env.PACER_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let failed = null;
const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`script error: ${e}`));
page.on("console", (m) => {
  // A refused request (the 401 below is on purpose) logs an error too;
  // only script errors and blocked content count.
  if (m.type() === "error" && /Content Security Policy|Uncaught/.test(m.text())) {
    problems.push(`console: ${m.text()}`);
  }
});
const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
const text = (sel) => page.locator(sel).first().innerText();
const visible = (sel, timeout = 10_000) => page.locator(sel).first().waitFor({ state: "visible", timeout });
const waitText = (sel, want, timeout = LIVE) =>
  page.waitForFunction(
    ([s, w]) => { const e = document.querySelector(s); return !!e && e.innerText.includes(w); },
    [sel, want], { timeout },
  );

// Contrast of an element's text on its background (WCAG's formula).
async function contrast(sel) {
  return page.locator(sel).first().evaluate((el) => {
    const rgb = (c) => c.match(/\d+(\.\d+)?/g).slice(0, 3).map(Number);
    const lum = ([r, g, b]) => {
      const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const s = getComputedStyle(el);
    const [a, b] = [lum(rgb(s.color)), lum(rgb(s.backgroundColor))].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
  });
}

try {
  // 1. The overview: every environment, prod's plan waiting first.
  await page.goto(`${url}/`);
  await visible('.card[data-env="dev"]');
  await visible('.card[data-env="prod"]');
  await visible('.awaiting[data-env="prod"]');
  check((await text('.card[data-env="dev"]')).includes("in sync"), "dev's apps are not shown in sync");
  check((await text(".awaiting")).includes("waits for an apply"), "prod's waiting plan is not shown");
  await visible("#live.on"); // the event stream is connected
  check(await page.evaluate(() => document.documentElement.scrollWidth <= innerWidth),
    "the overview scrolls sideways on a laptop screen");
  // The keyboard reaches the skip link first, and its focus shows.
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.classList.contains("skip")), "Tab does not reach the skip link first");
  check(await page.locator(".skip").isVisible(), "the focused skip link is not visible");
  await shot("1-overview");

  // 2. The app list: filters and a page of rows.
  await page.goto(`${url}/ui/apps`);
  await visible("table.apps tbody tr");
  check((await page.locator("table.apps tbody tr").count()) >= 7, "not every app is listed");
  await Promise.all([page.waitForURL(/env=prod/), page.selectOption('select[name="env"]', "prod")]);
  await visible("table.apps tbody tr");
  check((await page.locator("table.apps tbody tr").count()) === 4, "the env filter did not leave prod's 4 apps");
  await page.fill('input[name="q"]', "work");
  await Promise.all([page.waitForURL(/q=work/), page.press('input[name="q"]', "Enter")]);
  check((await page.locator("table.apps tbody tr").count()) === 1, "the text filter did not leave 1 app");
  check((await text("table.apps tbody")).includes("worker"), "the filtered row is not the worker");
  check(await page.evaluate(() => [...document.querySelectorAll("input, select")]
    .every((e) => e.type === "hidden" || e.labels.length > 0)), "a form field has no label");
  await shot("2-apps");

  // 3. A commit shows up live, without a reload.
  await page.goto(`${url}/`);
  await visible("#live.on");
  await page.evaluate(() => { window.__notReloaded = true; });
  const commit = await step("commit");
  await waitText('.card[data-env="dev"]', commit.slice(0, 12));
  check(await page.evaluate(() => window.__notReloaded === true), "the page reloaded to show the commit");
  await shot("3-live-commit");

  // 4. A failed app, seen without a session: its state, no action, and
  // the API refuses a retry.
  await step("fail");
  await page.goto(`${url}/ui/app?env=dev&app=worker`);
  await waitText("h1", "failed");
  check((await page.locator('button[data-action="retry"]').count()) === 0, "a retry button without a session");
  check((await text(".last")).includes("rolledBack"), "the rollback is not shown");
  const refused = await page.evaluate(async () => (await fetch("/api/v1/retry", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ env: "dev", app: "worker" }),
  })).status);
  check(refused === 401, `a retry without a session answered ${refused}, not 401`);
  const ratio = await contrast("h1 .badge");
  check(ratio >= 4.5, `the failed badge's contrast is ${ratio.toFixed(2)}, under 4.5`);
  await shot("4-failed-public");

  // 5. Signed in as admin: the failure's message, the diff, and a retry
  // that asks first.
  await page.goto(`${url}/ui/signin`);
  await page.fill("#token", admin);
  await Promise.all([page.waitForURL(`${url}/`), page.click('button[type="submit"].primary')]);
  await visible(".pill.admin");
  await page.goto(`${url}/ui/app?env=dev&app=worker`);
  await visible('button[data-action="retry"]');
  const last = await text(".last");
  check(/rolledBack.*:/.test(last), `the failure's message is not shown: ${last}`);
  await visible("#history table.history");
  check((await text("#history")).includes("rolledBack"), "the history does not show the rollback");
  await shot("5-failed-admin");
  await step("heal");
  await page.click('button[data-action="retry"]');
  await visible("#confirm");
  check(await page.evaluate(() => document.activeElement.id === "confirm-cancel"), "the dialog does not focus Cancel");
  await page.keyboard.press("Escape");
  await page.locator("#confirm").waitFor({ state: "hidden" });
  check((await text("#toast")) === "", "a cancelled retry was sent");
  await page.click('button[data-action="retry"]');
  await visible("#confirm");
  await page.click("#confirm-ok");
  await waitText("#toast", "Retry of worker queued", 10_000);
  await waitText("h1", "in sync");
  await shot("6-retried");

  // 6. prod's plan, applied from the overview after a confirmation.
  await page.goto(`${url}/`);
  await page.click('button[data-action="apply"][data-env="prod"]');
  await visible("#confirm");
  check((await text("#confirm-text")).includes("prod"), "the confirmation does not name prod");
  await page.click("#confirm-ok");
  await waitText("#toast", "Apply of prod queued", 10_000);
  await page.locator(".awaiting").waitFor({ state: "detached", timeout: LIVE });
  await waitText('.card[data-env="prod"]', "in sync");
  await shot("7-prod-applied");

  check(problems.length === 0, problems.join("\n"));
  console.log("DONE");
} catch (e) {
  failed = e;
  await shot("failure").catch(() => {});
  console.error(`dashboard test failed at ${page.url()}: ${e.stack || e}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
