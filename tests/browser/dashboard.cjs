// Drives Gridwatch's built-in dashboard in headless Chromium (Debian's
// /usr/bin/chromium through playwright-core; no browser download).
//
// Run by tests/tests/dashboard_browser.rs against a `gridwatch run
// --no-simulator` it started. Environment:
//   GRIDWATCH_URL     the instance, e.g. http://127.0.0.1:41234
//   CHROMIUM          the browser executable (default /usr/bin/chromium)
//   ARTIFACTS         where screenshots go
//   SAMPLES           how many anomalies to time (default 200)
//
// Detection→screen latency: for each sample, a fresh meter gets 12 normal
// readings, then the page itself POSTs a surge to /api/v1/readings while a
// MutationObserver watches the feed table. The figure is the time from the
// POST's response to the anomaly's row being inserted (`dom`) and to the
// next animation frame after it (`frame`, i.e. painted), on the page's
// single clock. It prints one JSON line with the results; the Rust test
// checks it and prints the figures.
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

const url = process.env.GRIDWATCH_URL;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const artifacts = process.env.ARTIFACTS || ".";
const samples = Number(process.env.SAMPLES || 200);
const run = Date.now().toString(36);

function reading(meter, ts, voltage, status) {
  return JSON.stringify({ meter_id: meter, timestamp: ts, voltage, current: 5.0, temperature: 21.0, status: status || "OK" });
}

async function post(lines) {
  const res = await fetch(`${url}/api/v1/readings`, {
    method: "POST",
    headers: { "content-type": "application/x-ndjson" },
    body: lines.join("\n") + "\n",
  });
  if (!res.ok) throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
  return res.json();
}

function percentile(sorted, q) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

function summary(values) {
  const v = values.filter((x) => x != null).sort((a, b) => a - b);
  return {
    n: v.length,
    p50: percentile(v, 0.5),
    p99: percentile(v, 0.99),
    max: v.length ? v[v.length - 1] : null,
    min: v.length ? v[0] : null,
  };
}

(async () => {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  const result = { samples, checks: {} };
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    const consoleErrors = [];
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
    const external = [];
    page.on("request", (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });

    await page.goto(`${url}/#operator`);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 20000 });

    // Baselines for every sample meter, in one request: 12 normal readings
    // one second apart, ending 5 s ago (the detector scores once it holds 10).
    const now = Date.now();
    const meters = [];
    const baseline = [];
    for (let i = 0; i < samples; i++) {
      const meter = `lat-${run}-${i}`;
      meters.push(meter);
      for (let k = 0; k < 12; k++) {
        baseline.push(reading(meter, now - 20000 + k * 1000, 230 + [0, 0.6, -0.6][k % 3]));
      }
    }
    const base = await post(baseline);
    result.baseline_accepted = base.accepted;

    // One surge at a time, posted by the page, timed on the page's clock.
    const timings = [];
    for (let i = 0; i < samples; i++) {
      const body = reading(meters[i], now - 5000, 300) + "\n";
      const t = await page.evaluate(async ({ meter, body }) => {
        const tbody = document.getElementById("feed-body");
        const selector = `tr[data-meter="${CSS.escape(meter)}"]`;
        let done;
        const seen = new Promise((r) => (done = r));
        const observer = new MutationObserver(() => {
          if (tbody.querySelector(selector)) {
            const dom = performance.now();
            observer.disconnect();
            requestAnimationFrame(() => done({ dom, frame: performance.now() }));
          }
        });
        observer.observe(tbody, { childList: true });
        const t0 = performance.now();
        const res = await fetch("/api/v1/readings", {
          method: "POST",
          headers: { "content-type": "application/x-ndjson" },
          body,
        });
        const answered = performance.now();
        const json = await res.json();
        const got = await Promise.race([seen, new Promise((r) => setTimeout(() => r(null), 10000))]);
        observer.disconnect();
        return {
          accepted: json.accepted,
          post_ms: answered - t0,
          dom_ms: got ? got.dom - answered : null,
          frame_ms: got ? got.frame - answered : null,
        };
      }, { meter: meters[i], body });
      timings.push(t);
    }
    result.appeared = timings.filter((t) => t.dom_ms != null).length;
    result.surges_accepted = timings.reduce((n, t) => n + t.accepted, 0);
    result.dom_ms = summary(timings.map((t) => t.dom_ms));
    result.frame_ms = summary(timings.map((t) => t.frame_ms));
    result.post_ms = summary(timings.map((t) => t.post_ms));
    result.raw_dom_ms = timings.map((t) => (t.dom_ms == null ? null : Math.round(t.dom_ms * 100) / 100));

    // A few failures and degradations for the operator's eye and the
    // meters-in-trouble list.
    await post([
      reading(`feeder-7-${run}`, Date.now() - 3000, 231, "DEGRADED"),
      reading(`substation-2-${run}`, Date.now() - 2000, 0.0, "FAILURE"),
    ]);
    await page.waitForSelector(`tr[data-meter="substation-2-${run}"]`, { timeout: 10000 });

    // Filters: severity and meter.
    const visible = () => page.$$eval("#feed-body tr", (rows) => rows.filter((r) => !r.hidden).map((r) => ({ meter: r.dataset.meter, severity: r.dataset.severity })));
    const all = await visible();
    await page.fill("#meter-filter", meters[0]);
    const byMeter = await visible();
    await page.fill("#meter-filter", "");
    await page.uncheck('#severity-filter input[value="CRITICAL"]');
    const noCritical = await visible();
    await page.check('#severity-filter input[value="CRITICAL"]');
    result.checks.rows = all.length;
    result.checks.meter_filter = byMeter.length >= 1 && byMeter.every((r) => r.meter === meters[0]);
    result.checks.severity_filter = noCritical.length < all.length && noCritical.every((r) => r.severity !== "CRITICAL");

    // Meters in trouble lists the failing substation.
    await page.waitForSelector(`#trouble li[data-meter="substation-2-${run}"]`, { timeout: 10000 });
    result.checks.trouble = await page.$$eval("#trouble li", (lis) => lis.length);

    // Acknowledge the substation's failure through the page.
    await page.fill("#operator-name", "browser-test");
    const row = `tr[data-meter="substation-2-${run}"]`;
    result.acked_id = await page.getAttribute(row, "data-anomaly-id");
    await page.click(`${row} button.ack`);
    await page.waitForSelector(`${row}.acked`, { timeout: 10000 });
    await page.waitForFunction((m) => !document.querySelector(`#trouble li[data-meter="${m}"]`), `substation-2-${run}`, { timeout: 10000 });
    result.checks.ack_clears_trouble = true;

    await page.screenshot({ path: path.join(artifacts, "dashboard-operator.png"), fullPage: false });

    // Health view: some traffic (valid and malformed) so the charts move,
    // then watch the charts redraw from fresh samples.
    await page.goto(`${url}/#health`);
    const traffic = (async () => {
      for (let k = 0; k < 16; k++) {
        const lines = [];
        for (let m = 0; m < 200; m++) lines.push(reading(`load-${run}-${m}`, Date.now() - 1000 + m, 230 + (m % 5) * 0.3));
        if (k % 3 === 0) lines.push("{not json");
        await post(lines);
        await new Promise((r) => setTimeout(r, 500));
      }
    })();
    const updates = [];
    const started = Date.now();
    let last = await page.textContent("#health-updated");
    while (Date.now() - started < 9000) {
      await page.waitForTimeout(100);
      const now = await page.textContent("#health-updated");
      if (now !== last) { updates.push(Date.now() - started); last = now; }
    }
    await traffic;
    await page.waitForTimeout(1500);
    let gaps = updates.slice(1).map((t, i) => t - updates[i]);
    result.health = {
      updates: updates.length,
      max_gap_ms: gaps.length ? Math.max(...gaps) : null,
      paths_drawn: await page.$$eval("svg path.series", (ps) => ps.filter((p) => (p.getAttribute("d") || "").length > 10).length),
      stat_processed: await page.textContent("#stat-processed"),
    };
    await page.screenshot({ path: path.join(artifacts, "dashboard-health.png"), fullPage: false });

    result.console_errors = consoleErrors;
    result.external_requests = external;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
