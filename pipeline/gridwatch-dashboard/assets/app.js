// Gridwatch dashboard: operator view (live anomaly feed over SSE, filters,
// meters in trouble, acknowledgements) and health view (SVG charts polled
// every second). No libraries, no CDN: this file is compiled into the binary.
"use strict";

const SEVERITY_RANK = { INFO: 0, WARNING: 1, ERROR: 2, CRITICAL: 3 };
const MAX_ROWS = 1000; // rows kept in the feed table
const TROUBLE_WINDOW_MS = 15 * 60 * 1000;
const HEALTH_POLL_MS = 1000; // SC-003 asks for 5 s at most

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- views --
function showView() {
  const view = location.hash === "#health" ? "health" : "operator";
  $("view-operator").hidden = view !== "operator";
  $("view-health").hidden = view !== "health";
  $("tab-operator").classList.toggle("active", view === "operator");
  $("tab-health").classList.toggle("active", view === "health");
  if (view === "health") drawCharts();
}
window.addEventListener("hashchange", showView);

// ------------------------------------------------------------ anomalies --
const anomalies = new Map(); // anomaly_id -> { a, row }
const acks = new Map(); // anomaly_id -> ack
const byMeter = new Map(); // meter_id -> [{ id, severity, t, type }]
const filters = { severities: new Set(["CRITICAL", "ERROR", "WARNING", "INFO"]), meter: "", hideAcked: false };

function pad(n, w) { return String(n).padStart(w, "0"); }
function clock(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours(), 2)}:${pad(d.getMinutes(), 2)}:${pad(d.getSeconds(), 2)}.${pad(d.getMilliseconds(), 3)}`;
}

function readingText(a) {
  const r = a.original_event || {};
  switch (a.field) {
    case "current": return `${num(r.current, 2)} A`;
    case "temperature": return `${num(r.temperature, 1)} °C`;
    case "voltage": return `${num(r.voltage, 1)} V`;
    default: return r.status || "";
  }
}
function num(x, digits) { return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–"; }

function matches(a) {
  if (!filters.severities.has(a.severity)) return false;
  const meter = a.original_event ? a.original_event.meter_id : "";
  if (filters.meter && !meter.toLowerCase().includes(filters.meter)) return false;
  if (filters.hideAcked && acks.has(a.anomaly_id)) return false;
  return true;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
  return td;
}

function makeRow(a) {
  const tr = document.createElement("tr");
  const meter = a.original_event ? a.original_event.meter_id : "";
  tr.dataset.anomalyId = a.anomaly_id;
  tr.dataset.meter = meter;
  tr.dataset.severity = a.severity;
  tr.className = "fresh";
  cell(tr, clock(a.detected_at));
  const sev = cell(tr, "");
  const badge = document.createElement("span");
  badge.className = `badge ${a.severity}`;
  badge.textContent = a.severity;
  sev.appendChild(badge);
  cell(tr, meter, "meter");
  cell(tr, a.anomaly_type);
  cell(tr, readingText(a));
  cell(tr, a.zscore == null ? "" : num(a.zscore, 2));
  const actions = cell(tr, "");
  const button = document.createElement("button");
  button.textContent = "Acknowledge";
  button.className = "ack";
  button.addEventListener("click", () => acknowledge(a.anomaly_id, button));
  actions.appendChild(button);
  return tr;
}

function addAnomaly(a) {
  if (anomalies.has(a.anomaly_id)) return;
  const row = makeRow(a);
  anomalies.set(a.anomaly_id, { a, row });
  row.hidden = !matches(a);
  if (acks.has(a.anomaly_id)) markAcked(row, acks.get(a.anomaly_id));
  const body = $("feed-body");
  body.insertBefore(row, body.firstChild);
  while (body.childElementCount > MAX_ROWS) {
    const last = body.lastElementChild;
    anomalies.delete(last.dataset.anomalyId);
    last.remove();
  }
  const meter = row.dataset.meter;
  if (!byMeter.has(meter)) byMeter.set(meter, []);
  byMeter.get(meter).push({ id: a.anomaly_id, severity: a.severity, t: a.detected_at, type: a.anomaly_type });
  scheduleTrouble();
  scheduleCount();
}

function markAcked(row, ack) {
  row.classList.add("acked");
  const td = row.lastElementChild;
  td.textContent = "";
  const span = document.createElement("span");
  span.className = "acked-by";
  span.textContent = `acked${ack.by ? " by " + ack.by : ""} ${clock(ack.at_ms)}`;
  td.appendChild(span);
}

function applyAck(ack) {
  acks.set(ack.anomaly_id, ack);
  const entry = anomalies.get(ack.anomaly_id);
  if (entry) {
    markAcked(entry.row, ack);
    entry.row.hidden = !matches(entry.a);
  }
  scheduleTrouble();
}

async function acknowledge(id, button) {
  button.disabled = true;
  const by = $("operator-name").value.trim();
  try {
    const res = await fetch(`/api/v1/anomalies/${encodeURIComponent(id)}/ack`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(by ? { by } : {}),
    });
    if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
    applyAck(await res.json());
  } catch (e) {
    button.disabled = false;
    button.title = `Not acknowledged: ${e.message}`;
  }
}

async function loadAcks() {
  try {
    const res = await fetch("/api/v1/dashboard/acks");
    if (res.ok) for (const ack of await res.json()) applyAck(ack);
  } catch (_) { /* the feed reconnects and we try again */ }
}

function refilter() {
  for (const { a, row } of anomalies.values()) row.hidden = !matches(a);
  scheduleCount();
}

let countPending = false;
function scheduleCount() {
  if (countPending) return;
  countPending = true;
  requestAnimationFrame(() => {
    countPending = false;
    let shown = 0;
    for (const { row } of anomalies.values()) if (!row.hidden) shown++;
    $("feed-count").textContent = `${shown} shown of ${anomalies.size}`;
    $("feed-empty").hidden = anomalies.size > 0;
  });
}

// --------------------------------------------------- meters in trouble --
let troublePending = false;
function scheduleTrouble() {
  if (troublePending) return;
  troublePending = true;
  setTimeout(() => { troublePending = false; drawTrouble(); }, 100);
}

function drawTrouble() {
  const now = Date.now();
  const rows = [];
  for (const [meter, list] of byMeter) {
    while (list.length && list[0].t < now - TROUBLE_WINDOW_MS) list.shift();
    if (!list.length) { byMeter.delete(meter); continue; }
    const last = list[list.length - 1];
    if (last.type === "EQUIPMENT_RECOVERED") continue;
    const open = list.filter((x) => SEVERITY_RANK[x.severity] >= 1 && !acks.has(x.id));
    if (!open.length) continue;
    const worst = open.reduce((w, x) => (SEVERITY_RANK[x.severity] > SEVERITY_RANK[w] ? x.severity : w), "WARNING");
    rows.push({ meter, worst, open: open.length, last });
  }
  rows.sort((x, y) => SEVERITY_RANK[y.worst] - SEVERITY_RANK[x.worst] || y.open - x.open || y.last.t - x.last.t);
  const ol = $("trouble");
  ol.textContent = "";
  for (const r of rows.slice(0, 25)) {
    const li = document.createElement("li");
    li.dataset.meter = r.meter;
    const name = document.createElement("span");
    name.className = "meter";
    name.textContent = r.meter;
    const badge = document.createElement("span");
    badge.className = `badge ${r.worst}`;
    badge.textContent = r.worst;
    const detail = document.createElement("span");
    detail.className = "detail";
    detail.textContent = `${r.open} open · last ${r.last.type} at ${clock(r.last.t)}`;
    li.append(name, badge, detail);
    li.addEventListener("click", () => { $("meter-filter").value = r.meter; filters.meter = r.meter.toLowerCase(); refilter(); });
    ol.appendChild(li);
  }
  $("trouble-empty").hidden = rows.length > 0;
}
setInterval(drawTrouble, 30000);

// ----------------------------------------------------------------- feed --
function connect() {
  // The browser resends the last event id (a cursor over the topic's
  // partitions) when it reconnects, so the feed resumes without loss.
  const source = new EventSource("/api/v1/dashboard/anomalies?backlog=200");
  const conn = $("conn");
  source.addEventListener("hello", () => {
    conn.dataset.state = "live";
    conn.textContent = "live";
    loadAcks();
  });
  source.addEventListener("anomaly", (e) => addAnomaly(JSON.parse(e.data)));
  source.addEventListener("ack", (e) => applyAck(JSON.parse(e.data)));
  source.addEventListener("acks-lagged", loadAcks);
  source.onerror = () => {
    conn.dataset.state = "reconnecting";
    conn.textContent = "reconnecting…";
  };
}

// --------------------------------------------------------------- health --
const health = { samples: [], last: 0 };
const KEEP = 600;

async function pollHealth() {
  try {
    const res = await fetch(`/api/v1/dashboard/health?since=${health.last}`);
    if (res.ok) {
      const body = await res.json();
      for (const s of body.samples) {
        health.samples.push(s);
        health.last = Math.max(health.last, s.t_ms);
      }
      if (health.samples.length > KEEP) health.samples.splice(0, health.samples.length - KEEP);
      updateStats();
      if (!$("view-health").hidden) drawCharts();
      $("health-updated").textContent = `Updated ${clock(Date.now())}; samples every ${body.interval_ms} ms, last ${KEEP} kept.`;
    }
  } catch (_) { /* next poll */ }
  setTimeout(pollHealth, HEALTH_POLL_MS);
}

function fmt(x) {
  if (x == null || !isFinite(x)) return "–";
  if (Number.isInteger(x) && Math.abs(x) < 1e4) return String(x);
  if (Math.abs(x) >= 1e6) return (x / 1e6).toFixed(1) + "M";
  if (Math.abs(x) >= 1e4) return (x / 1e3).toFixed(1) + "k";
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

function updateStats() {
  const s = health.samples[health.samples.length - 1];
  if (!s) return;
  $("stat-ingest").textContent = fmt(s.ingest_rate);
  $("stat-p99").textContent = fmt(s.p99_ms);
  $("stat-lag").textContent = fmt(s.lag);
  $("stat-processed").textContent = fmt(s.processed_total);
  $("stat-anomalies").textContent = fmt(s.anomalies_total);
  $("stat-dlq").textContent = fmt(s.dead_letters_total);
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text != null) e.textContent = text;
  return e;
}

// Draws time series as lines: x is time over the kept window, y from 0.
function lineChart(svgId, legendId, series) {
  const svg = $(svgId);
  const W = Math.max(200, svg.clientWidth || 600), H = 220;
  const L = 48, R = 10, T = 10, B = 22;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.removeAttribute("preserveAspectRatio");
  svg.textContent = "";
  const samples = health.samples;
  const now = samples.length ? samples[samples.length - 1].t_ms : Date.now();
  const span = Math.max(60000, now - (samples.length ? samples[0].t_ms : now));
  let max = 0;
  for (const s of series) for (const p of samples) { const v = s.value(p); if (v != null && v > max) max = v; }
  max = niceMax(max);
  const x = (t) => L + ((t - (now - span)) / span) * (W - L - R);
  const y = (v) => T + (1 - v / max) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.appendChild(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.appendChild(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis-label" }, fmt(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = now - span + (span * i) / 4;
    const ago = Math.round((now - t) / 1000);
    svg.appendChild(el("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "axis-label" }, ago === 0 ? "now" : `-${ago >= 120 ? Math.round(ago / 60) + " min" : ago + " s"}`));
  }
  const legend = $(legendId);
  legend.textContent = "";
  for (const s of series) {
    let d = "";
    let pen = false;
    for (const p of samples) {
      const v = s.value(p);
      if (v == null) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${x(p.t_ms).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    }
    svg.appendChild(el("path", { d, class: "series", stroke: s.color }));
    const last = samples.length ? s.value(samples[samples.length - 1]) : null;
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = s.color;
    item.append(sw, document.createTextNode(`${s.name} ${fmt(last)}`));
    legend.appendChild(item);
  }
}

function drawCharts() {
  lineChart("chart-rate", "legend-rate", [
    { name: "ingested/s", color: "#4da3ff", value: (p) => p.ingest_rate },
    { name: "processed/s", color: "#3fb950", value: (p) => p.processed_rate },
  ]);
  lineChart("chart-latency", "legend-latency", [
    { name: "p50", color: "#3fb950", value: (p) => p.p50_ms },
    { name: "p99", color: "#ff8c1a", value: (p) => p.p99_ms },
  ]);
  lineChart("chart-errors", "legend-errors", [
    { name: "errors/s", color: "#ff4d4f", value: (p) => p.error_rate },
    { name: "dead letters/s", color: "#f5c518", value: (p) => p.dlq_rate },
  ]);
  lineChart("chart-lag", "legend-lag", [{ name: "lag", color: "#b180ff", value: (p) => p.lag }]);
}

// ---------------------------------------------------------------- start --
for (const box of document.querySelectorAll("#severity-filter input")) {
  box.addEventListener("change", () => {
    if (box.checked) filters.severities.add(box.value); else filters.severities.delete(box.value);
    refilter();
  });
}
$("meter-filter").addEventListener("input", (e) => { filters.meter = e.target.value.trim().toLowerCase(); refilter(); });
$("hide-acked").addEventListener("change", (e) => { filters.hideAcked = e.target.checked; refilter(); });
window.addEventListener("resize", () => { if (!$("view-health").hidden) drawCharts(); });
showView();
scheduleCount();
drawTrouble();
connect();
pollHealth();
