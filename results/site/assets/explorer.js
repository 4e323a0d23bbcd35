// The results site's interactive parts (written into results/site/assets/explorer.js by harness/report/site.py):
// the Pareto explorer (window.EXPLORER: one point per variant at its chosen rate, mean over seeds with its
// CI; every single run, tuning runs included, on request) and the benchmark history (window.HISTORY),
// drawn with plotly.js.
"use strict";

const SYMBOLS = {fp32: "circle", bf16: "diamond", fp16: "square"};
// One colour per method, fixed by the method's first appearance among all the points (not among those
// shown), so that a method keeps its colour when the axes or filters change. plotly's default cycle has
// ten colours and the registry, with baseline and standard, twelve: two more keep them apart.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#000080", "#b8860b"];

// Non-dominated points, as harness/stats.py pareto_front: no other point has cost <= and
// quality >= with one of them strictly better. ys are already signed so that higher is better.
function paretoFront(xs, ys) {
  return xs.map((x, i) => !xs.some((x2, j) => j !== i && x2 <= x && ys[j] >= ys[i] && (x2 < x || ys[j] > ys[i])));
}

function explorerState() {
  const e = window.EXPLORER;
  const x = document.getElementById("x-axis").value;
  const y = document.getElementById("y-axis").value;
  const hw = new Set(Array.from(document.querySelectorAll("input.hw:checked")).map((c) => c.value));
  const dataset = document.getElementById("dataset");
  // One dataset at a time: Spearman on one test set says nothing about a run on another.
  const keep = (p) => p[x] !== null && p[y] !== null &&
    (!e.hardwareFilter || hw.has(p.hardware)) && (!dataset || p.dataset === dataset.value);
  const shown = e.points.filter(keep);
  const runsBox = document.getElementById("show-runs");
  const runs = runsBox && runsBox.checked ? e.runs.filter(keep) : [];
  const better = e.axes.quality.find((a) => a.key === y).better;
  const sign = better === "lower" ? -1 : 1;
  const flags = paretoFront(shown.map((p) => p[x]), shown.map((p) => sign * p[y]));
  return {x, y, shown, runs, front: shown.filter((p, i) => flags[i])};
}

function hoverText(p, x, y) {
  const ci = (k) => (p[`${k}_ci`][0] === null ? "" : ` [${p[`${k}_ci`][0].toPrecision(3)}, ${p[`${k}_ci`][1].toPrecision(3)}]`);
  return `<b>${p.variant}</b> at lr ${p.learning_rate} (${p.job}), mean over seeds ${p.seeds.join(", ")}<br>` +
    `${y} = ${p[y].toPrecision(3)}${ci(y)}<br>${x} = ${p[x].toPrecision(3)}${ci(x)}<br>first seed's run file: ` +
    `${p.file}<br>` + p.spec.replace(/(.{90}[^,]*,)/g, "$1<br>");
}

function errorBars(pts, k) {
  const has = pts.some((p) => p[`${k}_ci`][0] !== null);
  if (!has) return undefined;
  return {type: "data", symmetric: false, thickness: 1, width: 3,
    array: pts.map((p) => (p[`${k}_ci`][1] === null ? 0 : p[`${k}_ci`][1] - p[k])),
    arrayminus: pts.map((p) => (p[`${k}_ci`][0] === null ? 0 : p[k] - p[`${k}_ci`][0]))};
}

function drawExplorer() {
  const e = window.EXPLORER;
  const s = explorerState();
  const traces = [];
  const every = [...new Set(e.points.map((p) => p.method))];
  const methods = [...new Set(s.shown.map((p) => p.method))];
  for (const m of methods) {
    const color = PALETTE[every.indexOf(m) % PALETTE.length];
    const pts = s.shown.filter((p) => p.method === m);
    traces.push({type: "scatter", mode: "markers", name: m, x: pts.map((p) => p[s.x]), y: pts.map((p) => p[s.y]),
      error_x: errorBars(pts, s.x), error_y: errorBars(pts, s.y),
      text: pts.map((p) => hoverText(p, s.x, s.y)), hoverinfo: "text", customdata: pts.map((p) => p.id),
      marker: {size: 10, color, symbol: pts.map((p) => SYMBOLS[p.precision] || "circle")}});
  }
  if (s.runs.length) {
    traces.push({type: "scatter", mode: "markers", name: "single runs (tuning included)", meta: "runs",
      x: s.runs.map((r) => r[s.x]), y: s.runs.map((r) => r[s.y]), customdata: s.runs.map((r) => r.id),
      text: s.runs.map((r) => `${r.variant} seed ${r.seed} at lr ${r.learning_rate}${r.chosen ? "" : " (rate not chosen)"}` +
        `<br>${r.file}`), hoverinfo: "text", marker: {size: 5, color: "rgba(120,120,120,0.45)"}});
  }
  const front = [...s.front].sort((a, b) => a[s.x] - b[s.x]);
  traces.push({type: "scatter", mode: "lines", name: "Pareto front", x: front.map((p) => p[s.x]),
    y: front.map((p) => p[s.y]), customdata: front.map((p) => p.id), line: {color: "black", dash: "dot"},
    hoverinfo: "skip"});
  const label = (list, key) => list.find((a) => a.key === key).label;
  Plotly.react("explorer", traces, {
    xaxis: {title: {text: label(e.axes.costs, s.x) + " (lower is better)"}},
    yaxis: {title: {text: label(e.axes.quality, s.y)}}, margin: {t: 30}, legend: {title: {text: "method (marker: precision)"}},
  }, {displaylogo: false});
  window.EXPLORER_STATE = {shown: s.shown.map((p) => p.id), front: s.front.map((p) => p.id), runs: s.runs.map((r) => r.id)};
}

function explorerCSV() {
  const e = window.EXPLORER;
  const s = explorerState();
  const figs = [...e.axes.quality.map((a) => a.key), ...e.axes.costs.map((a) => a.key)];
  const cols = ["id", "job", "hardware", "variant", "method", "precision", "rank", "seeds", "learning_rate",
    ...figs.flatMap((k) => [k, `${k}_lo`, `${k}_hi`]), "on_front", "file"];
  const front = new Set(s.front.map((p) => p.id));
  const value = (p, c) => {
    if (c === "on_front") return front.has(p.id);
    if (c === "seeds") return p.seeds.join(" ");
    const m = c.match(/^(.*)_(lo|hi)$/);
    if (m && figs.includes(m[1])) return p[`${m[1]}_ci`][m[2] === "lo" ? 0 : 1];
    return p[c];
  };
  const cell = (v) => (v === null || v === undefined ? "" : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const rows = s.shown.map((p) => cols.map((c) => cell(value(p, c))).join(","));
  return [cols.join(","), ...rows].join("\n") + "\n";
}

function setUpExplorer() {
  const e = window.EXPLORER;
  const controls = document.getElementById("controls");
  const select = (id, list, chosen) => `<label>${id === "x-axis" ? "x (cost)" : "y (quality)"} <select id="${id}">` +
    list.map((a) => `<option value="${a.key}"${a.key === chosen ? " selected" : ""}>${a.label}</option>`).join("") +
    "</select></label>";
  let htmlText = select("x-axis", e.axes.costs, "train_wall_s") + select("y-axis", e.axes.quality, "spearman") +
    '<label><input type="checkbox" id="show-runs"> show the tuning runs</label>';
  if (e.hardwareFilter) {
    const datasets = [...new Set(e.points.map((p) => p.dataset))].sort();
    const first = datasets.includes("dating-v2") ? "dating-v2" : datasets[0];
    htmlText += '<label>dataset <select id="dataset">' + datasets.map((d) =>
      `<option value="${d}"${d === first ? " selected" : ""}>${d}</option>`).join("") + "</select></label>";
    const hws = [...new Set(e.points.map((p) => p.hardware))].sort();
    htmlText += "hardware: " + hws.map((h) => `<label><input type="checkbox" class="hw" value="${h}" checked> ${h}</label>`).join("");
  }
  controls.innerHTML = htmlText;
  controls.addEventListener("change", drawExplorer);
  document.getElementById("download").addEventListener("click", () => {
    const blob = new Blob([explorerCSV()], {type: "text/csv"});
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "pareto-selection.csv";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });
  drawExplorer();
  document.getElementById("explorer").on("plotly_click", (ev) => {
    const p = [...e.points, ...e.runs].find((q) => q.id === ev.points[0].customdata);
    if (p) window.location.href = e.base + p.file;
  });
}

function drawHistory() {
  const root = document.getElementById("history");
  for (const [i, b] of window.HISTORY.entries()) {
    const div = document.createElement("div");
    div.id = `history-${i}`;
    div.style.height = "320px";
    root.appendChild(div);
    const xs = b.runs.map((r) => `${r.date} ${r.commit}`);
    const traces = [{type: "scatter", mode: "lines+markers", name: "median", x: xs, y: b.runs.map((r) => r.median),
      error_y: {type: "data", symmetric: false, array: b.runs.map((r) => r.q3 - r.median),
        arrayminus: b.runs.map((r) => r.median - r.q1)},
      marker: {size: 9, color: b.runs.map((r) => (r.exceeds_threshold ? "red" : "steelblue"))}}];
    if (b.threshold !== null) {
      traces.push({type: "scatter", mode: "lines", name: "threshold (+15%)", x: xs, y: xs.map(() => b.threshold),
        line: {dash: "dash", color: "gray"}});
    }
    Plotly.newPlot(div, traces, {title: {text: b.benchmark, font: {size: 13}}, yaxis: {title: {text: "median round time (s)"}},
      margin: {t: 40}}, {displaylogo: false});
  }
}

window.addEventListener("DOMContentLoaded", () => {
  if (window.EXPLORER) setUpExplorer();
  if (window.HISTORY) drawHistory();
});
