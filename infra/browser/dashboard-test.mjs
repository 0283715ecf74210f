// Drives the dashboard of `sluice demo --serve` in headless Chromium and checks what
// the page shows against the demo's own `--json` output and the server's API.
// Usage: node dashboard-test.mjs SLUICE_BIN [SCREENSHOT.png]
// Exits non-zero on the first failed check (page errors included).
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const [bin, screenshot] = process.argv.slice(2);
if (!bin) throw new Error("usage: node dashboard-test.mjs SLUICE_BIN [SCREENSHOT.png]");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// With a token, so the page is checked passing it on to its API calls (as it must on a
// non-loopback --bind).
const TOKEN = "dashboard-test-token";
// 8,000 events span enough minutes for the rate and zscore rules (judged on closed
// windows) to fire: this input raises alerts of all three kinds, fewer than the page's 50.
const DEMO = ["demo", "--scenario", "payments", "--events", "8000", "--seed", "7",
  "--rules", join(here, "rules.jsonl"), "--json", "--serve", "0", "--token", TOKEN];
const RULE_IDS = ["dash-large-payment", "dash-busy-account", "dash-spend-burst", "dash-spend-anomaly"];
const KINDS = ["threshold", "rate", "zscore"];

const fmt = x => x == null ? "–" : Number.isInteger(x) ? x.toLocaleString("en-US") : (() => {
  const a = Math.abs(x), d = a >= 1000 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return x.toLocaleString("en-US", { maximumFractionDigits: d, minimumFractionDigits: 0 });
})();

// What the page must say about an alert, built from the alert's own fields
// (crates/core/src/detect/rules.rs, `Alert`): `observed` is the window's statistic, `value` what
// was compared with `threshold` (the statistic, the ratio to `previous`, or z).
function explanation(a) {
  switch (a.kind_of_rule) {
    case "threshold": return `${a.stat} ${fmt(a.value)} ${a.op} ${fmt(a.threshold)}`;
    case "rate": return `${a.stat} ${fmt(a.observed)} is ${fmt(a.value)}× the preceding window's ${fmt(a.previous)}, ${a.op} ${fmt(a.threshold)}`;
    case "zscore": {
      const t = fmt(a.threshold);
      const bound = a.op === ">" ? `z ≥ ${t}` : a.op === "<" ? `z ≤ −${t}` : `|z| ≥ ${t}`;
      return `z = (${fmt(a.observed)} − μ ${fmt(a.mean)}) / σ ${fmt(a.stddev)} = ${fmt(a.z)}; fires at ${bound}`;
    }
    default: throw new Error(`alert ${a.alert_id}: unknown kind_of_rule ${a.kind_of_rule}`);
  }
}

// The fields mean what explanation() takes them to mean (so the expected text is right).
function checkFields(a) {
  const close = (x, y, what) => assert.ok(Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(y)), `${a.alert_id}: ${what}: ${x} vs ${y}`);
  if (a.kind_of_rule === "threshold") close(a.value, a.observed, "value is the statistic");
  if (a.kind_of_rule === "rate") close(a.value, a.observed / a.previous, "value is observed / previous");
  if (a.kind_of_rule === "zscore") {
    close(a.value, a.z, "value is z");
    close(a.z, (a.observed - a.mean) / a.stddev, "z is (observed − mean) / stddev");
  }
}

// Starts the demo; resolves with its URL, its --json lines and the child once the
// summary line is out (the input is drained and the server keeps serving).
function startDemo(args = DEMO) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "", err = "", url = null;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo not ready in 120 s; stderr:\n${err}`)), 120_000);
    const check = () => {
      const lines = out.split("\n").filter(Boolean).map(l => JSON.parse(l));
      if (url && lines.some(l => l.kind === "summary")) {
        clearTimeout(timer);
        resolve({ child, url, lines });
      }
    };
    child.stdout.on("data", d => { out += d; check(); });
    child.stderr.on("data", d => {
      err += d;
      url = url || (err.match(/sluice dashboard: (http:\/\/\S+)/) || [])[1] || null;
      check();
    });
    child.on("exit", code => reject(new Error(`demo exited (${code}) before serving; stderr:\n${err}`)));
  });
}

async function api(url, path) {
  const r = await fetch(new URL(path, url), { headers: { Authorization: `Bearer ${TOKEN}` } });
  assert.equal(r.status, 200, `${path}: HTTP ${r.status}`);
  return r.json();
}

const { child, url, lines } = await startDemo();
console.error(`dashboard test: demo serving at ${url} (pid ${child.pid})`);
const origin = new URL(url).origin;
assert.equal(new URL(url).searchParams.get("token"), TOKEN, `the URL printed carries the token: ${url}`);
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
  headless: true,
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const problems = [];
  page.on("pageerror", e => problems.push(`page error: ${e.message}`));
  page.on("console", m => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
  page.on("request", r => {
    if (!r.url().startsWith(origin + "/") && !r.url().startsWith("data:")) problems.push(`external request: ${r.url()}`);
  });
  await page.goto(url);
  // Two refreshes: the first render and one by the page's own timer.
  await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 2, null, { timeout: 30_000 });
  assert.deepEqual(problems, []);
  assert.equal(await page.getAttribute("body", "data-error"), null);

  // Without the token the API refuses; the page got its answers, so it sent it.
  assert.equal((await fetch(new URL("/api/overview", url))).status, 401);
  const overview = await api(url, "/api/overview");
  const summary = lines.find(l => l.kind === "summary");
  assert.equal(overview.totals.events_in, summary.events_in);
  assert.match(await page.textContent("#totals"), new RegExp(`events in ${fmt(summary.events_in)}`));

  // Charts: one bar and one line chart per busiest group, in the API's order, each
  // with a point per window.
  const busiest = overview.charts.busiest;
  assert.ok(busiest.length >= 1, "the demo has aggregates to chart");
  const cards = await page.$$eval("#series .card", cs => cs.map(c => ({
    key: c.dataset.key, type: c.dataset.type,
    points: c.querySelectorAll("circle.pt").length,
    declared: Number(c.querySelector("svg.series-chart")?.dataset.points),
    path: c.querySelector("path.line")?.getAttribute("d") || "",
  })));
  assert.deepEqual(cards.map(c => `${c.key}|${c.type}`), busiest.map(g => `${g.key}|${g.type}`));
  for (const [i, c] of cards.entries()) {
    assert.equal(c.points, busiest[i].points.length, `points of ${c.key}`);
    assert.equal(c.declared, c.points);
    assert.ok(c.points >= 2, `${c.key} has a series`);
    assert.ok(!/NaN/.test(c.path) && c.path.startsWith("M"), `line of ${c.key}: ${c.path}`);
  }
  const bars = await page.$$eval("#groups rect.bar", rs => rs.map(r => Number(r.dataset.value)));
  assert.deepEqual(bars, busiest.map(g => g.events));

  // Alerts: the rows are the API's page (all of the demo's alerts, of all three kinds),
  // each naming its rule and its observed value, each explained with the numbers of its
  // own fields, and every one was raised by the demo (as its --json output says).
  const raised = new Map(lines.filter(l => l.kind === "alert").map(a => [a.alert_id, a]));
  assert.ok(raised.size >= 1 && raised.size <= 50, `the rules raise alerts on this input, all on the page: ${raised.size}`);
  assert.deepEqual([...new Set([...raised.values()].map(a => a.kind_of_rule))].sort(), [...KINDS].sort(),
    "the input raises threshold, rate and zscore alerts");
  const page1 = (await api(url, "/api/alerts?limit=50")).items;
  assert.equal(page1.length, raised.size);
  const rows = await page.$$eval("#alerts tr.alert", rs => rs.map(r => ({
    rule: r.querySelector(".rule").textContent, kind: r.querySelector(".kind").textContent,
    observed: r.querySelector(".observed").textContent,
    explain: r.querySelector(".explain").textContent,
  })));
  assert.equal(rows.length, page1.length);
  const explained = {};
  for (const [i, row] of rows.entries()) {
    const a = page1[i];
    assert.ok(raised.has(a.alert_id), `alert ${a.alert_id} was raised by the demo`);
    assert.deepEqual(a, raised.get(a.alert_id), `the API's alert is the demo's: ${a.alert_id}`);
    assert.equal(row.rule, a.rule_id);
    assert.ok(RULE_IDS.includes(row.rule), row.rule);
    assert.equal(row.kind, a.kind_of_rule);
    assert.equal(row.observed, fmt(a.observed));
    checkFields(a);
    assert.equal(row.explain, explanation(a), `explanation of ${a.kind_of_rule} alert ${a.alert_id}`);
    explained[a.kind_of_rule] = (explained[a.kind_of_rule] || 0) + 1;
  }
  assert.deepEqual(Object.keys(explained).sort(), [...KINDS].sort(), "every kind explained on the page");

  // The example of issue 16: a rate alert on a window of 307 events, 4.32 times the
  // preceding window's 71, is explained by its ratio; and a z-score alert by x, the
  // mean, the standard deviation and z, with the side of its op.
  const rate = { kind_of_rule: "rate", stat: "count", op: ">=", threshold: 3, observed: 307, previous: 71, value: 307 / 71, count: 307 };
  assert.equal(await page.evaluate(a => explain(a), rate), "count 307 is 4.32× the preceding window's 71, >= 3");
  assert.equal(explanation(rate), "count 307 is 4.32× the preceding window's 71, >= 3");
  const z = { kind_of_rule: "zscore", stat: "mean", threshold: 3, observed: 41.5, mean: 20.25, stddev: 5, z: 4.25, value: 4.25 };
  for (const [op, bound] of [[">", "z ≥ 3"], ["<", "z ≤ −3"], [undefined, "|z| ≥ 3"]]) {
    const text = `z = (41.5 − μ 20.3) / σ 5 = 4.25; fires at ${bound}`;
    assert.equal(await page.evaluate(a => explain(a), { ...z, op }), text);
    assert.equal(explanation({ ...z, op }), text);
  }

  // Dead letters by reason: as many as the demo's --json lines, per reason.
  const want = {};
  for (const l of lines.filter(l => l.kind === "dead_letter")) want[l.reason] = (want[l.reason] || 0) + 1;
  assert.ok(Object.keys(want).length >= 1, "the input has dead letters");
  const shown = Object.fromEntries(await page.$$eval("#deadletters tr.dl",
    rs => rs.map(r => [r.dataset.reason, r.querySelector(".count").textContent])));
  assert.deepEqual(shown, Object.fromEntries(Object.entries(want).map(([r, n]) => [r, fmt(n)])));

  // Stages: four rows with their counters; the demo has drained, so no backlog.
  const stages = await page.$$eval("#stages tr.stage", rs => rs.map(r =>
    [r.dataset.stage, ...[...r.querySelectorAll("td")].map(td => td.textContent)]));
  assert.deepEqual(stages.map(s => s[0]), ["ingest", "enrich", "aggregate", "detect"]);
  const ingest = overview.stages.rows.find(r => r.stage === "ingest");
  assert.ok(ingest.records_in > 0);
  assert.equal(stages[0][3], `${fmt(ingest.records_in)} rec`);
  for (const s of stages) assert.equal(s[8], "0 rec", `backlog of ${s[0]}`);

  if (screenshot) {
    const jpeg = /\.jpe?g$/.test(screenshot);
    await page.screenshot({ path: screenshot, type: jpeg ? "jpeg" : "png", ...(jpeg ? { quality: 60 } : {}) });
  }

  // The check can fail: with its API failing, the page says so and counts no refresh.
  const broken = await browser.newPage();
  const brokenErrors = [];
  broken.on("pageerror", e => brokenErrors.push(e.message));
  await broken.route("**/api/overview*", r => r.fulfill({ status: 503, contentType: "application/json", body: '{"error":"down"}' }));
  await broken.goto(url);
  await broken.waitForSelector("#status.error", { timeout: 10_000 });
  assert.match(await broken.textContent("#status"), /refresh failed: .*503 down/);
  assert.equal(await broken.getAttribute("body", "data-refreshes"), "0");
  assert.deepEqual(brokenErrors, []);
  // A failing alerts API shows in its section; the rest of the page still refreshes.
  const noAlerts = await browser.newPage();
  await noAlerts.route("**/api/alerts*", r => r.fulfill({ status: 503, contentType: "application/json", body: '{"error":"throttled"}' }));
  await noAlerts.goto(url);
  await noAlerts.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null, { timeout: 10_000 });
  assert.match(await noAlerts.textContent("#alerts"), /alerts unavailable: .*503 throttled/);
  assert.equal(await noAlerts.locator("#series svg.series-chart").count(), cards.length);
  // The envelope demo has no views: the section stays hidden.
  assert.equal(await page.locator("#views-section").isHidden(), true);
  console.error(`dashboard test: ${cards.length} charts, ${rows.length} alerts (${KINDS.map(k => `${explained[k]} ${k}`).join(", ")}) explained by their fields, ${Object.keys(shown).length} dead-letter reasons, ${stages.length} stages: ok`);
  await checkViews(browser);
} finally {
  await browser.close();
  // Stop the server by its PID.
  process.kill(child.pid, "SIGTERM");
}

// A SQL pipeline's demo: the views section lists its stored views and charts the chosen
// column per group, a point per row of the view's --json output.
async function checkViews(browser) {
  const root = join(here, "../..");
  const sql = await startDemo(["demo", "--sql", join(root, "examples/iot.sql"),
    "--file", join(root, "examples/iot.events.ndjson"), "--json", "--serve", "0", "--token", TOKEN]);
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    const problems = [];
    page.on("pageerror", e => problems.push(`page error: ${e.message}`));
    page.on("console", m => { if (m.type() === "error") problems.push(`console error: ${m.text()}`); });
    await page.goto(sql.url);
    await page.waitForFunction(() => Number(document.body.dataset.refreshes) >= 2, null, { timeout: 30_000 });
    assert.deepEqual(problems, []);
    assert.equal(await page.locator("#views-section").isHidden(), false);
    const views = await page.$$eval("#view option", os => os.map(o => o.value));
    assert.deepEqual(views, ["per_site", "per_device"]);
    const column = await page.$eval("#column", s => s.value);
    const rows = sql.lines.filter(l => l.kind === "row" && l.view === "per_site").map(l => l.row);
    assert.ok(rows.length > 0 && typeof rows[0][column] === "number", `column ${column}`);
    // per_site's group is its one text column, site: a card per site, a point per
    // window with a number in the column.
    const cards = await page.$$eval("#view-series .card", cs => cs.map(c => ({
      group: c.dataset.group, points: c.querySelectorAll("circle.pt").length,
      path: c.querySelector("path.line")?.getAttribute("d") || "",
    })));
    const bySite = {};
    for (const r of rows) if (typeof r[column] === "number") bySite[`site=${r.site}`] = (bySite[`site=${r.site}`] || 0) + 1;
    assert.deepEqual(Object.fromEntries(cards.map(c => [c.group, c.points])), bySite);
    for (const c of cards) assert.ok(!/NaN/.test(c.path), `line of ${c.group}`);
    console.error(`dashboard test: views ${views.join(", ")}, ${cards.length} charts of per_site.${column}: ok`);
  } finally {
    process.kill(sql.child.pid, "SIGTERM");
  }
}
