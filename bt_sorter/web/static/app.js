// bt_sorter's page: draws the snapshots the server pushes over one websocket.
// Live and replay use the same drawing; replay adds its bar of controls.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const token = new URLSearchParams(location.search).get("token");
const query = token ? "?token=" + encodeURIComponent(token) : "";
const ROW = 24, INDENT = 16, BOX_W = 330;
const LABEL_COLOURS = { ripe: "#dc2626", half_ripe: "#f59e0b", raw: "#16a34a", unknown: "#6b7280" };

let socket = null;
let tree = [];          // nodes in pre-order: {id, parent, name, kind, shape, role}
let nodeEls = [];
let edgeEls = [];
let mode = "live";
let received = 0;
let lastState = null;
let scrubbing = false;

function el(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function labelColour(label) {
  if (!label) return "#ffffff";
  if (LABEL_COLOURS[label]) return LABEL_COLOURS[label];
  let h = 0;
  for (const c of label) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 60%, 45%)`;
}

function shapeMark(node) {
  if (node.role === "condition") return "¿";
  switch (node.kind) {
    case "Sequence": return "→";
    case "Selector": return "?";
    case "Parallel": return "⇉";
    default: return node.shape === "decorator" ? "◇" : "•";
  }
}

// --- the tree -------------------------------------------------------------------------

function drawTree(nodes) {
  tree = nodes;
  const svg = document.getElementById("tree");
  svg.replaceChildren();
  const depth = [];
  for (const n of nodes) depth[n.id] = n.parent === null ? 0 : depth[n.parent] + 1;
  const maxDepth = Math.max(0, ...depth);
  svg.setAttribute("width", 12 + maxDepth * INDENT + BOX_W + 12);
  svg.setAttribute("height", nodes.length * ROW + 10);
  const edges = el("g"), boxes = el("g");
  svg.append(edges, boxes);
  nodeEls = []; edgeEls = [];
  for (const n of nodes) {
    const x = 8 + depth[n.id] * INDENT, y = 6 + n.id * ROW;
    if (n.parent !== null) {
      const px = 8 + depth[n.parent] * INDENT + 7, py = 6 + n.parent * ROW + ROW - 6;
      const path = el("path", { d: `M${px},${py} V${y + ROW / 2 - 2} H${x}`, class: "edge" });
      edges.append(path);
      edgeEls[n.id] = path;
    }
    const g = el("g", { class: "node", "data-node": n.id, "data-name": n.name, "data-status": "-" });
    g.append(el("rect", { x, y, width: BOX_W, height: ROW - 4 }));
    g.append(el("text", { x: x + 5, y: y + (ROW - 4) / 2 + 1, class: "mark" }, shapeMark(n)));
    const room = Math.floor((BOX_W - 30 - n.kind.length * 6) / 6.8);
    const shown = n.name.length > room ? n.name.slice(0, room - 1) + "…" : n.name;
    const name = el("text", { x: x + 20, y: y + (ROW - 4) / 2 + 1 }, shown);
    const kind = el("text", { x: x + BOX_W - 5, y: y + (ROW - 4) / 2 + 1, class: "kind", "text-anchor": "end" }, n.kind);
    g.append(name, kind);
    const title = el("title", {}, `${n.kind}: ${n.name}`);
    g.append(title);
    boxes.append(g);
    nodeEls[n.id] = g;
  }
}

function updateTree(status) {
  for (let i = 0; i < nodeEls.length && i < status.length; i++) {
    const s = status[i];
    if (nodeEls[i].getAttribute("data-status") !== s) nodeEls[i].setAttribute("data-status", s);
    const e = edgeEls[i];
    if (e) e.classList.toggle("running", s === "R");
  }
}

// --- the line -------------------------------------------------------------------------

const X0 = 70, X1 = 930, BELT_Y = 120;
const sx = (x) => X0 + x * (X1 - X0);

function drawLine(line, counts) {
  const svg = document.getElementById("line");
  svg.replaceChildren();
  svg.append(el("rect", { x: X0 - 20, y: BELT_Y, width: X1 - X0 + 40, height: 22, rx: 4,
    fill: line.belt ? "#4b5563" : "#9ca3af" }));
  svg.append(el("text", { x: X0 - 20, y: BELT_Y + 40, "font-size": 12, fill: "#6b7280" },
    line.belt ? "belt running" : "belt stopped"));
  const bins = (counts && counts.bins) || {};
  for (const s of line.stations) {
    const x = sx(s.x);
    if (s.kind === "feeder") {
      svg.append(el("rect", { x: x - 40, y: BELT_Y - 70, width: 34, height: 50, fill: "#e5e7eb", stroke: "#9ca3af" }));
      svg.append(el("text", { x: x - 23, y: BELT_Y - 76, "text-anchor": "middle", "font-size": 11 }, "stack"));
      const len = s.out ? 40 : 12;
      svg.append(el("rect", { x: x - 6 - len, y: BELT_Y - 4, width: len, height: 8,
        fill: s.out ? "#2563eb" : "#93c5fd", "data-rod": s.rod, "data-out": s.out }));
      svg.append(el("text", { x: x - 20, y: BELT_Y + 62, "text-anchor": "middle", "font-size": 11 }, "rod 1 (feed)"));
    } else if (s.kind === "camera") {
      svg.append(el("rect", { x: x - 12, y: BELT_Y - 58, width: 24, height: 16, rx: 3, fill: "#111827" }));
      svg.append(el("path", { d: `M${x - 6},${BELT_Y - 42} L${x - 16},${BELT_Y - 4} M${x + 6},${BELT_Y - 42} L${x + 16},${BELT_Y - 4}`,
        stroke: "#9ca3af", "stroke-dasharray": "3 3" }));
      svg.append(el("text", { x, y: BELT_Y - 64, "text-anchor": "middle", "font-size": 11 }, "camera"));
    } else if (s.kind === "gate") {
      svg.append(el("line", { x1: x, y1: BELT_Y - 30, x2: x, y2: BELT_Y + 30,
        stroke: s.blocked ? "#dc2626" : "#16a34a", "stroke-width": s.blocked ? 4 : 2,
        "data-gate": s.gate, "data-blocked": s.blocked }));
      svg.append(el("text", { x, y: BELT_Y - 34, "text-anchor": "middle", "font-size": 11 },
        `gate ${s.gate}${s.blocked ? " ■" : ""}`));
      if (s.rod == null) continue; // a gate that only tracks: no rod, no bin
      const rx = x + 34, len = s.out ? 44 : 14;
      svg.append(el("rect", { x: rx - 5, y: BELT_Y - 14 - len, width: 10, height: len,
        fill: s.out ? "#2563eb" : "#93c5fd", "data-rod": s.rod, "data-out": s.out }));
      svg.append(el("text", { x: rx, y: BELT_Y - 62, "text-anchor": "middle", "font-size": 11 },
        `rod ${s.rod}${s.out ? " out" : ""}`));
      svg.append(el("rect", { x: rx - 24, y: BELT_Y + 48, width: 48, height: 34, rx: 3, fill: "#f3f4f6", stroke: "#9ca3af" }));
      svg.append(el("text", { x: rx, y: BELT_Y + 62, "text-anchor": "middle", "font-size": 11 }, `bin ${s.rod}`));
      svg.append(el("text", { x: rx, y: BELT_Y + 77, "text-anchor": "middle", "font-size": 12, "font-weight": 700 }, bins[s.rod] || 0));
    } else if (s.kind === "end") {
      svg.append(el("rect", { x: x + 14, y: BELT_Y + 20, width: 48, height: 40, rx: 3, fill: "#f3f4f6", stroke: "#9ca3af" }));
      svg.append(el("text", { x: x + 38, y: BELT_Y + 36, "text-anchor": "middle", "font-size": 11 }, "bin 1"));
      svg.append(el("text", { x: x + 38, y: BELT_Y + 52, "text-anchor": "middle", "font-size": 12, "font-weight": 700 }, bins["1"] || 0));
    }
  }
  for (const item of line.items) {
    const x = sx(item.x);
    const g = el("g", { class: "item", "data-item": item.id, "data-label": item.label || "" });
    g.append(el("circle", { cx: x, cy: BELT_Y + 11, r: 10, fill: labelColour(item.label),
      stroke: item.uncertain ? "#dc2626" : "#111827", "stroke-width": item.uncertain ? 3 : 1 }));
    g.append(el("text", { x, y: BELT_Y + 15, "text-anchor": "middle", "font-size": 10,
      fill: item.label ? "#fff" : "#111827" }, item.id));
    const conf = item.confidence === null || item.confidence === undefined ? "" : " " + item.confidence.toFixed(2);
    g.append(el("text", { x, y: BELT_Y - 8 - (item.id % 2) * 12, "text-anchor": "middle", "font-size": 11 },
      (item.label || "?") + conf));
    svg.append(g);
  }
}

// --- pictures, counts, chart, events ---------------------------------------------------------

function drawThumbs(thumbs) {
  const box = document.getElementById("thumbs");
  const key = thumbs.map((t) => `${t.id}:${t.label}:${t.bin}`).join(",");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.replaceChildren();
  for (const t of thumbs) {
    const card = document.createElement("div");
    card.className = "thumb";
    card.dataset.item = t.id;
    let img;
    if (t.src !== false) {
      img = document.createElement("img");
      img.src = `picture/${t.id}${query}`;
      img.alt = `item ${t.id}`;
      img.onerror = () => { const d = document.createElement("div"); d.className = "noimg"; d.textContent = "no picture"; img.replaceWith(d); };
    }
    const cap = document.createElement("div");
    cap.className = "caption";
    const conf = t.confidence === null || t.confidence === undefined ? "" : ` ${t.confidence.toFixed(2)}`;
    const where = t.bin ? `→ bin ${t.bin}` : t.outcome ? t.outcome : t.rod ? `→ rod ${t.rod}` : "on the belt";
    cap.innerHTML = `#${t.id} <span class="label"></span><span class="conf"></span><br><span class="where"></span>`;
    cap.querySelector(".label").textContent = t.label || "?";
    cap.querySelector(".label").style.color = labelColour(t.label);
    cap.querySelector(".conf").textContent = conf;
    cap.querySelector(".where").textContent = where;
    card.append(img || document.createElement("div"), cap);
    box.append(card);
  }
}

function drawCounts(state) {
  const c = state.counts;
  const set = (id, v) => { const e = document.getElementById(id); if (e.textContent !== String(v)) e.textContent = v; };
  set("count-fed", c.fed); set("count-resolved", c.resolved); set("count-in-flight", c.in_flight);
  set("count-sorted", c.outcomes.sorted || 0); set("count-rejected", c.outcomes.rejected || 0);
  set("count-lost", c.outcomes.lost || 0); set("bad-inputs", state.bad_inputs);
  set("count-doubted", c.doubted || 0); set("count-no-confident", c.no_confident_label || 0);
  const heads = document.getElementById("bin-heads"), row = document.getElementById("bin-counts");
  const known = state.line.stations.flatMap((s) => (s.kind === "end" ? ["1"] : s.kind === "gate" && s.rod != null ? [String(s.rod)] : []));
  const bins = [...new Set([...known, ...Object.keys(c.bins)])].sort();
  heads.replaceChildren(...bins.map((b) => { const th = document.createElement("th"); th.textContent = `bin ${b}`; return th; }));
  row.replaceChildren(...bins.map((b) => { const td = document.createElement("td"); td.id = `bin-${b}`; td.textContent = c.bins[b] || 0; return td; }));
}

function drawChart(series) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  const W = 420, H = 140, L = 34, B = 18, T = 8;
  const t1 = Math.max(1, ...series.map(([t]) => t));
  const peak = Math.max(1, ...series.map(([, v]) => v));
  const px = (t) => L + (W - L - 6) * t / t1;
  const py = (v) => H - B - (H - B - T) * v / peak;
  svg.append(el("line", { x1: L, y1: H - B, x2: W - 6, y2: H - B, stroke: "#9ca3af" }));
  svg.append(el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#9ca3af" }));
  svg.append(el("text", { x: L - 4, y: T + 8, "text-anchor": "end" }, peak.toFixed(1)));
  svg.append(el("text", { x: L - 4, y: H - B, "text-anchor": "end" }, "0"));
  svg.append(el("text", { x: W - 6, y: H - 4, "text-anchor": "end" }, `${t1.toFixed(0)} s`));
  svg.append(el("polyline", { points: series.map(([t, v]) => `${px(t).toFixed(1)},${py(v).toFixed(1)}`).join(" "),
    fill: "none", stroke: "#2563eb", "stroke-width": 2 }));
  const last = series.length ? series[series.length - 1][1] : 0;
  svg.append(el("text", { x: L + 8, y: T + 10, id: "ipm", "font-size": 12, fill: "#1d2330" },
    `${last.toFixed(1)} items/min`));
}

function eventText(e) {
  return Object.entries(e).filter(([k]) => k !== "event" && k !== "t")
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
}

function drawEvents(events) {
  const list = document.getElementById("events");
  const key = events.length ? `${events.length}:${events[events.length - 1].t}:${events[events.length - 1].event}` : "";
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...events.slice().reverse().map((e) => {
    const li = document.createElement("li");
    if (/alarm|fault/.test(e.event)) li.className = "alarm";
    const t = document.createElement("span"); t.className = "t"; t.textContent = Number(e.t).toFixed(2);
    const b = document.createElement("b"); b.textContent = e.event;
    li.append(t, b, document.createTextNode(" " + eventText(e)));
    return li;
  }));
}

function drawReplay(r) {
  document.getElementById("play").textContent = r.playing ? "⏸" : "▶";
  document.getElementById("replay-time").textContent = `${r.t.toFixed(2)} / ${r.t1.toFixed(2)} s`;
  document.getElementById("replay-event").textContent = r.event ? `#${r.index} ${r.event}` : "";
  if (!scrubbing) {
    const scrub = document.getElementById("scrub");
    scrub.value = r.t1 > r.t0 ? Math.round(1000 * (r.t - r.t0) / (r.t1 - r.t0)) : 0;
  }
  const sel = document.getElementById("alarm-list");
  if (sel.options.length - 1 !== r.alarms.length) {
    sel.replaceChildren(new Option("alarms…", ""),
      ...r.alarms.map((a, i) => new Option(`${a.t.toFixed(1)} s ${a.reason}`, String(i))));
  }
  const speed = document.getElementById("speed");
  if (![...speed.options].some((o) => Number(o.value) === r.speed)) {
    speed.append(new Option(`${r.speed}×`, String(r.speed)));
  }
  if (document.activeElement !== speed) {
    speed.value = [...speed.options].find((o) => Number(o.value) === r.speed).value;
  }
}

function render(state) {
  lastState = state;
  document.getElementById("line-time").textContent = state.t.toFixed(2);
  document.getElementById("belt").textContent = state.line.belt ? "running" : "stopped";
  updateTree(state.status);
  drawLine(state.line, state.counts);
  drawThumbs(state.thumbnails);
  drawCounts(state);
  drawChart(state.throughput);
  drawEvents(state.events);
  const alarms = document.getElementById("alarms");
  alarms.hidden = !state.alarms.length;
  alarms.textContent = state.alarms.length ? "ALARM: " + state.alarms.join("; ") : "";
  if (state.replay) drawReplay(state.replay);
}

// --- the connection ---------------------------------------------------------------------

function send(cmd) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(cmd));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const base = location.pathname.replace(/[^/]*$/, "");
  socket = new WebSocket(`${scheme}://${location.host}${base}ws${query}`);
  const link = document.getElementById("link");
  socket.onopen = () => { link.textContent = "connected"; link.classList.remove("down"); };
  socket.onclose = () => {
    link.textContent = "disconnected: retrying"; link.classList.add("down");
    setTimeout(connect, 1000);
  };
  socket.onmessage = (msg) => {
    const data = JSON.parse(msg.data);
    if (data.type === "hello") {
      mode = data.mode;
      document.getElementById("mode").textContent = mode.toUpperCase();
      document.getElementById("title").textContent = data.title || "";
      document.title = `bt_sorter ${mode}: ${data.title || ""}`;
      document.getElementById("replay-bar").hidden = mode !== "replay";
      drawTree(data.tree);
    } else if (data.type === "state") {
      received++;
      render(data);
    }
  };
}

setInterval(() => { document.getElementById("rate").textContent = received; received = 0; }, 1000);

document.getElementById("play").onclick = () => send({ cmd: lastState && lastState.replay && lastState.replay.playing ? "pause" : "play" });
document.getElementById("step-back").onclick = () => send({ cmd: "step", n: -1 });
document.getElementById("step-fwd").onclick = () => send({ cmd: "step", n: 1 });
document.getElementById("speed").onchange = (e) => send({ cmd: "speed", x: Number(e.target.value) });
const scrub = document.getElementById("scrub");
scrub.oninput = () => {
  scrubbing = true;
  const r = lastState && lastState.replay;
  if (r) send({ cmd: "seek", t: r.t0 + (r.t1 - r.t0) * Number(scrub.value) / 1000 });
};
scrub.onchange = () => { scrubbing = false; };
document.getElementById("jump-item").onclick = () => send({ cmd: "item", id: Number(document.getElementById("item-no").value) });
document.getElementById("alarm-list").onchange = (e) => { if (e.target.value !== "") send({ cmd: "alarm", index: Number(e.target.value) }); };

connect();
