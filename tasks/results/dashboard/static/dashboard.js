// perfagents dashboard: polls the JSON API (tasks/results/dashboard/app.py) and redraws in place.
"use strict";
const POLL_MS = 1000;        // the runs and the selected run
const HISTORY_EVERY = 5;     // polls between two reads of the selected target's history
const PALETTE = ["#0b63c4", "#d9480f", "#2b8a3e", "#862e9c", "#c92a2a", "#1098ad", "#5c940d", "#e67700", "#495057"];
const charts = {};
const colours = {};
let selected = null, pinned = false, tick = 0, historyTarget = null;

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
function num(v, digits = 1) {
  if (v === null || v === undefined) return "–";
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(digits);
}
function colour(name) {
  if (!(name in colours)) colours[name] = name === "total" ? "#1d2330" : PALETTE[Object.keys(colours).length % PALETTE.length];
  return colours[name];
}
function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function draw(id, labels, datasets) {
  const chart = charts[id];
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update("none");
    return;
  }
  charts[id] = new Chart(document.getElementById(id), {
    type: "line", data: { labels, datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "nearest", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      scales: { y: { beginAtZero: true } },
    },
  });
}
function line(name, data, extra = {}) {
  return { label: name, data, borderColor: colour(name), backgroundColor: colour(name), spanGaps: true,
           pointRadius: 3, borderWidth: name === "total" ? 2.5 : 1.5, ...extra };
}

function renderRuns(runs) {
  const body = $("#runs tbody");
  body.replaceChildren(...runs.map((r) => {
    const report = r.report ? el("a", { href: r.report, target: "_blank", text: "HTML" }) : "–";
    const row = el("tr", { class: "selectable" + (r.run_id === selected ? " selected" : ""), "data-run": r.run_id },
      el("td", { text: r.target }), el("td", { text: r.run_id }),
      el("td", { class: `status-${r.status}`, text: r.status || "–" }), el("td", { text: when(r.started_at) }),
      el("td", { text: num(r.before_p95_ms) }), el("td", { text: num(r.after_p95_ms) }),
      el("td", { text: num(r.before_rps) }), el("td", { text: num(r.after_rps) }),
      el("td", { text: r.windows }), el("td", { text: r.kept }), el("td", {}, report));
    row.addEventListener("click", () => { selected = r.run_id; pinned = true; poll(false); });
    return row;
  }));
}

function renderLive(live) {
  const box = $("#live");
  box.dataset.requests = live ? live.requests : 0;
  box.dataset.underLoad = live && live.under_load ? "1" : "0";
  if (!live) { box.replaceChildren(el("span", { class: "muted", text: "no window measured yet" })); return; }
  const state = live.under_load ? (live.requests ? "under load" : "starting Locust") : (live.done ? "finished" : "stopped");
  const bar = el("progress", { max: live.planned_s || 1, value: Math.min(live.elapsed_s, live.planned_s || 1) });
  box.replaceChildren(
    el("div", {}, el("div", { class: "muted", text: `current window (${state})` }),
       el("div", { class: "big", text: `${live.label} · attempt ${live.attempt}` })),
    el("div", {}, el("div", { class: "muted", text: "elapsed" }),
       el("div", { class: "big", text: `${num(live.elapsed_s)} / ${num(live.planned_s)} s` }), bar),
    el("div", {}, el("div", { class: "muted", text: "requests so far" }), el("div", { class: "big", id: "live-requests", text: live.requests })),
    el("div", {}, el("div", { class: "muted", text: "errors" }), el("div", { class: "big", text: live.errors })),
    el("div", {}, el("div", { class: "muted", text: "requests/s" }), el("div", { class: "big", text: num(live.rps) })),
    el("div", {}, el("div", { class: "muted", text: "p50 so far" }), el("div", { class: "big", text: `${num(live.p50_ms, 2)} ms` })),
    el("div", {}, el("div", { class: "muted", text: "p95 so far" }), el("div", { class: "big", text: `${num(live.p95_ms, 2)} ms` })));
}

function renderWindows(windows) {
  const endpoints = [...new Set(windows.flatMap((w) => Object.keys(w.endpoints)))].sort();
  $("#windows thead").replaceChildren(el("tr", {}, el("th", { text: "window" }), el("th", { text: "valid" }),
    el("th", { text: "measured s" }), ...[...endpoints, "total"].map((e) => el("th", { text: `${e} p95 ms / rps` }))));
  $("#windows tbody").replaceChildren(...windows.map((w) => el("tr", { "data-window": w.window_id, "data-label": w.label },
    el("td", { text: w.attempt > 1 ? `${w.label} (attempt ${w.attempt})` : w.label }),
    el("td", { class: w.valid ? "" : "invalid", text: w.valid ? "yes" : `no: ${w.reason || ""}` }),
    el("td", { text: num(w.duration_s) }),
    ...[...endpoints.map((e) => w.endpoints[e]), w.total].map((s) => el("td", { text: s ? `${num(s.p95_ms)} / ${num(s.rps)}` : "–" })))));
  const labels = windows.map((w) => w.label);
  const stat = (name, key) => windows.map((w) => ((name === "total" ? w.total : w.endpoints[name]) || {})[key] ?? null);
  for (const [id, key] of [["windows-p95", "p95_ms"], ["windows-rps", "rps"]]) {
    draw(id, labels, [...endpoints, "total"].map((e) => line(e, stat(e, key), {
      pointStyle: windows.map((w) => (w.valid ? "circle" : "crossRot")) })));
  }
}

function renderDecisions(changes) {
  $("#decisions tbody").replaceChildren(...changes.map((c) => el("tr", { "data-change": c.change_id },
    el("td", { text: c.seq }), el("td", { text: c.description || c.kind }),
    el("td", { class: c.status.replace(" ", "-"), text: c.status }),
    el("td", { text: c.metric ? `${c.metric} on ${c.endpoint}` : "–" }),
    el("td", { text: c.ratio == null ? "–" : `×${c.ratio}` }),
    el("td", { text: c.ci95 ? `[${c.ci95[0]}, ${c.ci95[1]}]` : "–" }),
    el("td", { class: "reason", text: c.reason || "" }))));
}

function renderFindings(findings) {
  $("#findings").replaceChildren(...findings.map((f) => el("li", {},
    el("span", { class: `sev-${f.severity}`, text: `${f.severity} ` }),
    `${f.agent}: ${f.kind} at ${f.location}` + (f.endpoint ? ` (${f.endpoint})` : "") +
      (f.impact ? `, share ${num(100 * f.impact)}%` : "") + (f.candidate ? ` → ${f.candidate}` : ""))));
  if (!findings.length) $("#findings").replaceChildren(el("li", { class: "muted", text: "none (no profiling window yet, or agents off)" }));
}

function renderRun(data) {
  const r = data.run;
  $("#run-section").hidden = false;
  $("#run-title").replaceChildren(`${r.target} · ${r.run_id} · `, el("span", { class: `status-${r.status}`, text: r.status }),
    ...(r.report ? [" · ", el("a", { href: r.report, target: "_blank", text: "HTML report" })] : []));
  renderLive(data.live);
  renderWindows(data.windows);
  renderDecisions(data.changes);
  renderFindings(data.findings);
}

function renderHistory(h) {
  $("#history-section").hidden = false;
  $("#history-title").textContent = h.target;
  const runs = h.runs.filter((r) => Object.values(h.series).some((s) => s.p95_ms.some((p) => p.run_id === r.run_id)));
  $("#history-note").textContent = runs.length ? `${runs.length} run(s) with a signature` : "no run of this target has ended with a signature yet";
  const labels = runs.map((r) => when(r.started_at));
  const index = Object.fromEntries(runs.map((r, i) => [r.run_id, i]));
  const names = Object.keys(h.series).sort((a, b) => (a === "total") - (b === "total") || a.localeCompare(b));
  const values = (name, key) => {
    const out = runs.map(() => null);
    for (const p of (h.series[name] || {})[key] || []) out[index[p.run_id]] = p.value;
    return out;
  };
  const marks = (items, name) => runs.map((r) => (items.some((i) => i.run_id === r.run_id) ? values(name, "p95_ms")[index[r.run_id]] : null));
  const total = names.includes("total") ? "total" : names[0];
  const p95 = names.map((n) => line(n, values(n, "p95_ms")));
  if (total) {
    p95.push(line("kept change", marks(h.kept, total), { showLine: false, pointStyle: "triangle", pointRadius: 9, borderColor: "#177a3c", backgroundColor: "#177a3c" }));
    p95.push(line("regression", marks(h.regressions, total), { showLine: false, pointStyle: "crossRot", pointRadius: 10, borderWidth: 3, borderColor: "#b3261e", backgroundColor: "#b3261e" }));
  }
  draw("history-p95", labels, p95);
  draw("history-rps", labels, names.map((n) => line(n, values(n, "rps"))));
  $("#regressions").replaceChildren(...(h.regressions.length ? h.regressions.map((g) => el("li", { class: g.open ? "regression" : "" },
    `${g.endpoint} ${g.metric}: ×${g.size} [${g.ci95[0]}, ${g.ci95[1]}] from run ${g.run_id}, ` +
    `false-alarm rate ${num(100 * g.false_alarm_rate, 2)}%, ${g.status}, ${g.open ? "open" : "closed"}`))
    : [el("li", { class: "muted", text: h.not_judged.length ? `none found; not judged: ${h.not_judged.length} series (too few A/A windows)` : "none" })]));
  $("#kept").replaceChildren(...(h.kept.length ? h.kept.map((k) => el("li", { class: "kept" },
    `${k.description} (run ${k.run_id})` + (k.ratio == null ? "" : `: ${k.metric} ×${k.ratio} [${k.ci95[0]}, ${k.ci95[1]}] on ${k.endpoint}`)))
    : [el("li", { class: "muted", text: "none" })]));
}

async function poll(again = true) {
  try {
    const runs = await getJSON("/api/runs");
    if (!pinned || !runs.some((r) => r.run_id === selected)) {
      const running = runs.find((r) => r.status === "running");
      selected = (running || runs[0] || {}).run_id || null;
    }
    renderRuns(runs);
    if (selected) {
      renderRun(await getJSON(`/api/runs/${encodeURIComponent(selected)}`));
      const target = runs.find((r) => r.run_id === selected).target;
      if (target !== historyTarget || tick % HISTORY_EVERY === 0) {
        historyTarget = target;
        renderHistory(await getJSON(`/api/targets/${encodeURIComponent(target)}`));
      }
    }
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()} · polling every ${POLL_MS / 1000} s`;
  } catch (err) {
    $("#updated").textContent = `error: ${err.message} (retrying)`;
  }
  if (again) { tick += 1; setTimeout(poll, POLL_MS); }
}
poll();
