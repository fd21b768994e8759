// The ΣVAULT dashboard: plain JavaScript, no libraries. It reads /v1/dashboard every few seconds
// and draws the latency chart as inline SVG. With a keyed server it asks for a key once and keeps
// it in this browser's localStorage.
"use strict";

const REFRESH_MS = 5000;
const SERIES = [["p50", "#2b6cb0"], ["p95", "#c05621"], ["p99", "#9b2c2c"]];
let key = localStorage.getItem("sigmavault-key") || "";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json();
  if (response.status === 401) document.getElementById("keyform").hidden = false;
  if (!response.ok) throw new Error(body.error ? body.error.code + ": " + body.error.message : response.statusText);
  return body;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function fillTable(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function drawCollections(cols) {
  fillTable("collections", cols.map(c => el("tr", {}, el("td", {}, c.name), el("td", { class: "num" }, String(c.units)))));
  const select = document.getElementById("search-collection");
  const chosen = select.value;
  select.replaceChildren(...cols.map(c => el("option", {}, c.name)));
  if (chosen) select.value = chosen;
}

function drawKv(kv) {
  const pairs = [
    ["hit rate", (100 * kv.hit_rate).toFixed(1) + " %"],
    ["hits / misses", kv.hits + " / " + kv.misses],
    ["RAM tier", bytes(kv.bytes.ram)],
    ["disk tier", bytes(kv.bytes.disk)],
  ];
  document.getElementById("kv").replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function drawChart(points) {
  const box = document.getElementById("chart");
  if (!points.length) {
    box.replaceChildren(el("p", { class: "muted" }, "no witness entries with total_ms yet"));
    return;
  }
  const W = 800, H = 220, L = 50, B = 24;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("id", "latency-chart");
  const top = Math.max(...points.map(p => p.p99)) * 1.1 || 1;
  const x = i => L + (points.length === 1 ? (W - L) / 2 : (i * (W - L - 10)) / (points.length - 1));
  const y = v => H - B - (v / top) * (H - B - 10);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  add("line", { x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#ccd" });
  for (const f of [0, 0.5, 1]) add("text", { x: 4, y: y(top * f / 1.1) + 4 }, (top * f / 1.1).toFixed(1) + " ms");
  for (const [name, color] of SERIES) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(p[name]).toFixed(1)}`).join(" ");
    add("path", { d, fill: "none", stroke: color, "stroke-width": 2, class: "series-" + name });
    points.forEach((p, i) => add("circle", { cx: x(i), cy: y(p[name]), r: 3, fill: color }));
  }
  const first = new Date(points[0].time), last = new Date(points[points.length - 1].time);
  add("text", { x: L, y: H - 6 }, first.toISOString().slice(11, 16) + " UTC");
  add("text", { x: W - 80, y: H - 6 }, last.toISOString().slice(11, 16) + " UTC");
  const legend = el("div", { class: "legend" }, ...SERIES.map(([n]) => el("span", { class: n }, "● " + n)));
  box.replaceChildren(svg, legend);
}

function drawErrors(errors) {
  fillTable("errors", errors.slice().reverse().map(e => el("tr", {},
    el("td", {}, new Date(e.time * 1000).toISOString().slice(11, 19)),
    el("td", {}, String(e.status)), el("td", {}, e.code),
    el("td", {}, e.method + " " + e.path), el("td", {}, e.message))));
}

async function refresh() {
  try {
    const d = await api("/v1/dashboard");
    drawCollections(d.collections);
    drawKv(d.kv);
    drawChart(d.witness.latency);
    drawErrors(d.errors);
    const total = d.collections.reduce((s, c) => s + c.units, 0);
    document.getElementById("status").textContent =
      `${d.collections.length} collections · ${total} units · ${d.witness.status.entries} witness entries`;
  } catch (err) {
    document.getElementById("status").textContent = String(err.message || err);
  }
}

document.getElementById("keyform").addEventListener("submit", ev => {
  ev.preventDefault();
  key = document.getElementById("key").value.trim();
  localStorage.setItem("sigmavault-key", key);
  document.getElementById("keyform").hidden = true;
  refresh();
});

document.getElementById("search").addEventListener("submit", async ev => {
  ev.preventDefault();
  const name = document.getElementById("search-collection").value;
  const query = document.getElementById("search-query").value;
  const mode = document.getElementById("search-mode").value;
  const list = document.getElementById("hits");
  try {
    const hits = await api(`/v1/collections/${encodeURIComponent(name)}/search`,
      { method: "POST", body: JSON.stringify({ query, mode, k: 10 }) });
    list.replaceChildren(...hits.map(h => el("li", { class: "hit" }, el("b", {}, h.score.toFixed(3)), " ", h.text ?? h.id)));
    if (!hits.length) list.replaceChildren(el("li", { class: "muted" }, "no hits"));
  } catch (err) {
    list.replaceChildren(el("li", { class: "muted" }, String(err.message || err)));
  }
});

// A link like /#collection=docs&q=cats&mode=text opens with that search done.
async function start() {
  await refresh();
  const wanted = new URLSearchParams(location.hash.slice(1));
  if (wanted.get("q")) {
    document.getElementById("search-collection").value = wanted.get("collection") || "";
    document.getElementById("search-query").value = wanted.get("q");
    document.getElementById("search-mode").value = wanted.get("mode") || "vector";
    document.getElementById("search").requestSubmit();
  }
  setInterval(refresh, REFRESH_MS);
}

start();
