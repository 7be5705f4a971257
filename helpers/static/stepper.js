// Front end of helpers.stepper: replays recorded steps on a Graphviz SVG.
//
// The kernel sends the laid-out SVG and every step once (the `_payload` trait).
// Playing advances in the browser alone; `step` is synced back to the kernel
// once the learner pauses (a second after the last move, or when playing
// stops). The same file runs on a static page (static_stepper.js gives it a
// local stand-in for the model).
//
// Why the picture is built in layers. A browser repaints an SVG as a whole:
// change one attribute inside a large SVG and it walks and re-records all of
// it that is near the view. So the Graphviz SVG (the "base") is never changed
// after it is mounted, and sits in its own compositing layers, which the
// browser reuses as they are (a very large picture is cut into tiles, see
// tile()). What a step changes is drawn on top, on transparent SVG layers with
// the same coordinates, as copies ("ghosts") of the nodes and edges concerned,
// styled by a state class:
//   - "history" layers: what stays once it happened (a finished Node, an edge
//     that carried gradient, a filled leaf; in forward mode every revealed
//     node and edge). They are split by step range, so a step touches only the
//     newest one and costs about the same at step 5 and at step 5,000.
//   - the "now" layer: Nodes that hold gradient and wait (outlines), the
//     running Node, the edges its gradient travels along (arrowheads pointing
//     the way the gradient flows) and their labels. The next step's picture is
//     drawn there ahead of time, transparent, so that Next only changes colours
//     (see drawAhead).
//
// Payload: {mode: "backward" | "forward", steps: [step, ...], all?, empty?, predict?}
// where step = {run: [node ids], flow: [[edge id, gradient text]], to?: [ids
// that now hold gradient], leaf?: id, grad?: text, reveal?: [ids], title, note,
// rows: [[label, text]], formula?: text, alert?: text, guess?: [guess, ...]}
// and guess = {row: index in rows, value?: number, received?: number, text,
// choices?: [[text, why it is wrong or null]]}. steps[0] is "before" (backward / fn).

const SVG_NS = "http://www.w3.org/2000/svg";
const SPEEDS = [0.5, 1, 2, 4, 10, 30];

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// Media-player icons as SVG paths (16 x 16): they look the same with every font.
const ICONS = {
  first: "M2 3h2v10H2z M9 3v10L4 8z M15 3v10l-5-5z",
  prev: "M10 3v10L4 8z M11 3h2v10h-2z",
  play: "M4 2.5v11l9-5.5z",
  pause: "M4 3h3v10H4z M9 3h3v10H9z",
  next: "M3 3h2v10H3z M6 3v10l6-5z",
  last: "M1 3v10l5-5z M7 3v10l5-5z M12 3h2v10h-2z",
};
function icon(name) {
  return `<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><path d="${ICONS[name]}"/></svg>`;
}

function button(cls, label, title) {
  const b = h("button", `ag-btn ${cls}`);
  if (ICONS[label]) b.innerHTML = icon(label);
  else b.textContent = label;
  b.type = "button";
  b.title = title;
  b.setAttribute("aria-label", title);
  return b;
}

// --- what the steps imply ------------------------------------------------------

// History items: [{s: first step it shows at, id, cls, edge, text?}], sorted by s,
// edges before nodes at the same step (a node's box then covers the edge's end).
function historyItems(payload, isEdge) {
  const items = [];
  const lastRun = new Map(); // a collapsed module runs once per Node inside it: done after the last
  payload.steps.forEach((st, j) => { for (const id of st.run) lastRun.set(id, j); });
  payload.steps.forEach((st, j) => {
    if (payload.mode === "backward") {
      for (const [id] of st.flow) items.push({ s: j + 1, id, cls: "ag-carried" });
      for (const id of st.run) if (lastRun.get(id) === j) items.push({ s: j + 1, id, cls: "ag-done" });
      if (st.leaf) items.push({ s: j, id: st.leaf, cls: "ag-filled", text: st.grad });
    } else {
      for (const id of st.reveal) items.push({ s: j, id, cls: "ag-shown" });
    }
  });
  const n = payload.steps.length - 1;
  for (const it of items) it.edge = isEdge(it.id);
  return items
    .filter((it) => it.s <= n)
    .sort((a, b) => a.s - b.s || Number(b.edge) - Number(a.edge));
}

// Backward only: node id -> [first step it holds gradient, step it runs).
function waitSpans(payload) {
  const from = new Map(), until = new Map();
  payload.steps.forEach((st, j) => {
    for (const id of st.to || []) if (!from.has(id)) from.set(id, j);
    for (const id of st.run) if (!until.has(id)) until.set(id, j);
  });
  return [...from].map(([id, f]) => [id, f, until.has(id) ? until.get(id) : Infinity]);
}

// A typed number: "2", "-0.5", "1e-3", "1/3", with a typographic minus too.
function parseNumber(text) {
  const t = String(text).trim().replace(/\u2212/g, "-").replace(/,/g, ".");
  if (!t) return NaN;
  const frac = t.match(/^([-+]?[\d.]+(?:e[-+]?\d+)?)\s*\/\s*([-+]?[\d.]+(?:e[-+]?\d+)?)$/i);
  if (frac) return Number(frac[1]) / Number(frac[2]);
  return /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(t) ? Number(t) : NaN;
}

function close(a, b) {
  if (!Number.isFinite(b)) return a === b;
  return Math.abs(a - b) <= 0.01 * Math.max(Math.abs(b), 1e-9);
}

// One line: right, or which way the guess is off.
function judgeNumber(guess, want, received) {
  if (close(guess, want)) return { ok: true, text: "right" };
  if (Number.isFinite(received) && close(guess, received) && !close(received, want)) {
    return { ok: false, text: "that is what it received: apply the local derivative" };
  }
  if (close(-guess, want)) return { ok: false, text: "right size, wrong sign" };
  if (!Number.isFinite(want)) return { ok: false, text: `off: the engine sent ${want}` };
  return { ok: false, text: guess > want ? "too high" : "too low" };
}

// --- the widget ------------------------------------------------------------------

function render({ model, el }) {
  const payload = model.get("_payload");
  const n = model.get("n_steps");
  const backward = payload.mode === "backward";
  const predict = backward && Boolean(payload.predict);

  // --- layout -----------------------------------------------------------------
  const root = h("div", "ag-stepper");
  root.tabIndex = 0;
  root.dataset.mode = payload.mode;
  root.dataset.nSteps = String(n);
  if (predict) root.dataset.predict = "1";
  const bar = h("div", "ag-toolbar");
  const first = button("ag-first", "first", "First step (Home)");
  const prev = button("ag-prev", "prev", "Previous step (←)");
  const play = button("ag-play", "play", "Play / pause (space)");
  const next = button("ag-next", "next", "Next step (→)");
  const last = button("ag-last", "last", "Last step (End)");
  const slider = h("input", "ag-slider");
  Object.assign(slider, { type: "range", min: 0, max: n, step: 1, value: 0 });
  slider.setAttribute("aria-label", "Step");
  const counter = h("span", "ag-counter");
  const speed = h("select", "ag-speed");
  speed.title = "Steps per second while playing";
  speed.setAttribute("aria-label", speed.title);
  for (const s of SPEEDS) speed.append(new Option(`${s} / s`, String(s)));
  const zoomOut = button("ag-zoom-out", "−", "Zoom out (-, ctrl + wheel)");
  const zoomFit = button("ag-zoom-fit", "fit", "Fit the whole graph in view (0)");
  const zoomIn = button("ag-zoom-in", "+", "Zoom in (+, ctrl + wheel)");
  bar.append(first, prev, play, next, last, slider, counter, speed, h("span", "ag-gap"), zoomOut, zoomFit, zoomIn);

  const legend = h("div", "ag-legend");
  const keys = backward
    ? [["ag-key-run", "running"], ["ag-key-flow", "gradient sent (arrow: the way it flows)"],
       ["ag-key-wait", "has gradient, waits"], ["ag-key-done", "done"], ["ag-key-filled", "leaf .grad filled"]]
    : [["ag-key-run", "new this step"]];
  for (const [cls, text] of keys) {
    const item = h("span", "ag-key");
    item.append(h("span", `ag-swatch ${cls}`), document.createTextNode(text));
    legend.append(item);
  }

  const body = h("div", "ag-body");
  const box = h("div", "ag-box");
  const svgHost = h("div", "ag-svg");
  const stack = h("div", "ag-stack");
  const svgText = model.get("_svg");
  stack.innerHTML = svgText.slice(Math.max(0, svgText.indexOf("<svg")));
  svgHost.append(stack);
  box.append(svgHost);
  const panel = h("div", "ag-panel");
  panel.setAttribute("aria-live", "polite");
  body.append(box, panel);
  root.append(bar, legend, body);

  // --- the base picture: prepared once, then never changed ---------------------
  const svg = stack.querySelector("svg");
  svg.classList.add("ag-base");
  const graphG = svg.querySelector("g.graph") || svg;
  const byId = new Map();
  for (const g of svg.querySelectorAll("g.node, g.edge")) byId.set(g.id, g);
  for (const t of svg.querySelectorAll("title")) t.remove(); // Graphviz titles are our raw ids
  if (backward && !predict) { // (in predict mode a tooltip would give the answer away)
    // The gradient an edge carries, as the box's tooltip while the mouse is on the edge
    // (a tooltip on the box: the picture itself is never touched).
    const carriedBy = new Map();
    for (const s of payload.steps) for (const [id, text] of s.flow) if (text) carriedBy.set(id, text);
    box.addEventListener("mouseover", (e) => {
      const g = e.target.closest?.("g.edge");
      const id = g && (g.id || g.dataset.id);
      const tip = id && carriedBy.has(id) ? `gradient ${carriedBy.get(id)}` : "";
      if (box.title !== tip) box.title = tip;
    });
  }
  // A leaf's "grad ..." line: the base shows the state before backward ("grad None").
  const gradLine = (g) => [...g.querySelectorAll("text")].findIndex((t) => t.textContent.startsWith("grad "));
  if (backward) {
    for (const g of svg.querySelectorAll("g.node.ag-leaf")) {
      const i = gradLine(g);
      if (i >= 0) g.querySelectorAll("text")[i].textContent = `grad ${payload.empty}`;
    }
  }

  // --- a large picture in tiles ---------------------------------------------------------
  // The browser records a layer's drawing for the part near the view only, and records it
  // again when scrolling takes the view far enough: on a graph tens of thousands of pixels
  // wide, at nearly every step. Cut into tiles of at most TILE units, each its own layer,
  // the picture is recorded once, tile by tile as they come into view. Each node or edge
  // goes into every tile it overlaps (a long edge is copied, each copy clipped by its tile).
  // Done just after the widget is first on screen, so that it shows up sooner.
  const vb = (svg.getAttribute("viewBox") || "").split(/[\s,]+/).map(Number);
  // In the SVG's units (pt): 3,000 px at 100 %, larger on huge graphs (at most ~32 tiles a side).
  const TILE = Math.max(2250, (vb[2] || 0) / 32, (vb[3] || 0) / 32);
  const tiles = [];
  let tileBox = null;
  function tile() {
    if (!backward || vb.length !== 4 || !(vb[2] > 1.5 * TILE || vb[3] > 1.5 * TILE)) return; // one piece
    const m = graphG !== svg ? graphG.transform.baseVal.consolidate()?.matrix : null;
    const toSvg = (x, y) => (m ? [m.a * x + m.c * y + m.e, m.b * x + m.d * y + m.f] : [x, y]);
    const NUM = /-?\d*\.?\d+(?:e[-+]?\d+)?/gi;
    const bounds = (g) => { // the element's box in the SVG's units, from Graphviz's coordinates
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (const e of g.querySelectorAll("polygon, polyline, path, text, ellipse")) {
        const nums = e.tagName === "text" ? [e.getAttribute("x"), e.getAttribute("y")]
          : e.tagName === "ellipse" ? [e.getAttribute("cx"), e.getAttribute("cy")]
          : (e.getAttribute(e.tagName === "path" ? "d" : "points") || "").match(NUM) || [];
        for (let i = 0; i + 1 < nums.length; i += 2) {
          const [x, y] = toSvg(Number(nums[i]), Number(nums[i + 1]));
          x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
        }
      }
      const pad = 10; // strokes, arrowheads, text that runs past its anchor
      return [x0 - pad, y0 - pad, x1 + pad, y1 + pad];
    };
    const cols = Math.ceil(vb[2] / TILE), rows = Math.ceil(vb[3] / TILE);
    const grid = [];
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
      const x = vb[0] + c * TILE, y = vb[1] + r * TILE;
      const w = Math.min(TILE, vb[0] + vb[2] - x), hh = Math.min(TILE, vb[1] + vb[3] - y);
      const t = svgEl("svg", { class: "ag-tile", viewBox: `${x} ${y} ${w} ${hh}` });
      const g = svgEl("g");
      if (graphG.hasAttribute("transform")) g.setAttribute("transform", graphG.getAttribute("transform"));
      t.append(g);
      grid.push({ svg: t, g, x, y, w, h: hh, used: false });
    }
    for (const child of [...graphG.children]) {
      if (!child.matches("g.node, g.edge, g.cluster")) continue; // (the white background stays)
      const [x0, y0, x1, y1] = bounds(child);
      let placed = false;
      for (const tile of grid) {
        if (x1 < tile.x || x0 > tile.x + tile.w || y1 < tile.y || y0 > tile.y + tile.h) continue;
        let piece = child;
        if (placed) {
          piece = child.cloneNode(true);
          piece.removeAttribute("id");
          piece.dataset.id = child.id;
        }
        tile.g.append(piece);
        tile.used = placed = true;
      }
    }
    // In a box of their own, with layout contained: a step's changes on the layers above
    // then never make the browser look at the tiles again.
    tileBox = h("div", "ag-tiles");
    for (const tile of grid) if (tile.used) { tileBox.append(tile.svg); tiles.push(tile); }
    svg.after(tileBox);
    size();
  }

  // --- layers on top --------------------------------------------------------------
  function layer(cls, before = null) {
    const s = svgEl("svg", { class: `ag-layer ${cls}`, "aria-hidden": "true" });
    for (const a of ["width", "height", "viewBox"]) if (svg.hasAttribute(a)) s.setAttribute(a, svg.getAttribute(a));
    const g = svgEl("g");
    if (graphG !== svg && graphG.hasAttribute("transform")) g.setAttribute("transform", graphG.getAttribute("transform"));
    s.append(g);
    stack.insertBefore(s, before);
    return { svg: s, g };
  }
  const now = layer("ag-now-layer");
  // Nodes that wait share the "now" layer (one layer fewer to composite), in a group of their own.
  // (An empty copy of the layer's group: the same transform from Graphviz's coordinates.)
  const waitLayer = { svg: now.svg, g: now.g.cloneNode(false) };
  waitLayer.g.setAttribute("class", "ag-waiting");
  now.g.before(waitLayer.g);
  now.g.setAttribute("class", "ag-current");
  // The labels on the edges may stick out of Graphviz's picture (to the right of
  // an edge): the "now" layer is wider by a margin on each side. (Not
  // overflow: visible, which makes the browser re-check every layer's bounds at
  // every step.)
  const MARGIN = 48; // in the SVG's units: 64 px at 100 %, the side padding of .ag-svg
  // Arrowheads that point the way gradient flows: at the tail end of an edge (the input
  // side, where Graphviz's path starts), 8 units long and wide, its tip just past the end.
  // A shape in the edge's copy (not an SVG marker), so that it shows and hides with it.
  // The forward arrowhead is hidden. Measured once per edge: the base never moves.
  const arrows = new Map();
  function arrowAt(id) {
    if (!arrows.has(id)) {
      const path = byId.get(id)?.querySelector("path");
      const a = path?.getPointAtLength(0), b = path?.getPointAtLength(Math.min(2, path.getTotalLength()));
      const len = a ? Math.hypot(a.x - b.x, a.y - b.y) : 0;
      const [ux, uy] = len ? [(a.x - b.x) / len, (a.y - b.y) / len] : [0, 0]; // out of the edge's end
      const at = (along, across) => `${(a.x + along * ux - across * uy).toFixed(2)},${(a.y + along * uy + across * ux).toFixed(2)}`;
      arrows.set(id, len ? `${at(0.8, 0)} ${at(-7.2, 4)} ${at(-7.2, -4)}` : null);
    }
    return arrows.get(id);
  }

  // A ghost: a copy of a base node or edge, styled by its state class.
  function ghost(id, cls, text) {
    const src = byId.get(id);
    if (!src) return null;
    const g = src.cloneNode(true);
    g.removeAttribute("id");
    g.dataset.id = id;
    g.querySelector("title")?.remove();
    if (cls) g.classList.add(cls);
    if (backward && g.classList.contains("edge") && (cls === "ag-flow" || cls === "ag-carried")) {
      const points = arrowAt(id);
      if (points) g.append(svgEl("polygon", { class: "ag-arrow", points }));
    }
    if (text !== undefined) {
      const i = gradLine(g);
      if (i >= 0) g.querySelectorAll("text")[i].textContent = `grad ${text}`;
    }
    return g;
  }

  // An outline only, over the base's own box and text: the running Node (backward) and
  // the Nodes that wait. Text is what costs most to paint at a step.
  function outline(id, cls) {
    const shape = byId.get(id)?.querySelector(":scope > polygon, :scope > path");
    if (!shape) return null;
    const g = svgEl("g", { class: `node ${cls}`, "data-id": id });
    g.append(shape.cloneNode(false));
    return g;
  }

  // History layers, one per range of `per` steps, made when first needed.
  const isEdge = (id) => byId.get(id)?.classList.contains("edge") ?? false;
  const items = historyItems(payload, isEdge);
  const per = Math.max(16, Math.ceil(2 * Math.sqrt(n + 1))); // ~n/per layers of ~per steps
  const history = [];
  for (const it of items) {
    const b = Math.floor(it.s / per);
    (history[b] ||= { items: [], count: 0, layer: null }).items.push(it);
  }
  const freshAt = new Map(); // step -> the history items it adds
  for (const it of items) (freshAt.get(it.s) || freshAt.set(it.s, []).get(it.s)).push(it);
  let historyAt = -1; // the step the history layers show
  function showHistory(k) {
    historyAt = k;
    history.forEach((H, b) => {
      if (!H) return;
      let want = H.count;
      while (want < H.items.length && H.items[want].s <= k) want++;
      while (want > 0 && H.items[want - 1].s > k) want--;
      if (want === H.count) return;
      if (!H.layer) {
        const above = history.slice(b + 1).find((x) => x && x.layer);
        H.layer = layer(`ag-history ag-history-${b}`, above ? above.layer.svg : now.svg);
      }
      const g = H.layer.g;
      if (want > H.count) {
        const add = document.createDocumentFragment();
        for (let i = H.count; i < want; i++) {
          const it = H.items[i];
          const c = ghost(it.id, it.cls, it.text) || svgEl("g"); // keep one child per item
          add.append(c);
        }
        g.append(add);
      } else {
        for (let i = H.count; i > want; i--) g.lastChild.remove();
      }
      H.count = want;
    });
  }

  const waits = backward ? waitSpans(payload) : [];
  const waiting = new Map(); // id -> ghost on the wait layer
  function showWaits(k) {
    const want = new Set();
    for (const [id, f, u] of waits) if (f <= k && k < u) want.add(id);
    for (const [id, g] of waiting) if (!want.has(id)) { g.remove(); waiting.delete(id); }
    for (const id of want) {
      if (waiting.has(id)) continue;
      const g = outline(id, "ag-wait");
      if (!g) continue;
      waitLayer.g.append(g);
      waiting.set(id, g);
    }
  }

  // --- zoom and view ------------------------------------------------------------
  const natural = {
    w: parseFloat(svg.getAttribute("width")) || 400,
    h: parseFloat(svg.getAttribute("height")) || 300,
  };
  const unit = (svg.getAttribute("width") || "").endsWith("pt") ? 4 / 3 : 1; // px per unit
  let scale = 1;
  function layers() { return stack.querySelectorAll(":scope > svg:not(.ag-tile)"); }
  function size() {
    if (tileBox) Object.assign(tileBox.style, { width: `${natural.w * scale}pt`, height: `${natural.h * scale}pt` });
    for (const t of tiles) {
      t.svg.setAttribute("width", `${t.w * scale}pt`);
      t.svg.setAttribute("height", `${t.h * scale}pt`);
      t.svg.style.left = `${(t.x - vb[0]) * scale}pt`;
      t.svg.style.top = `${(t.y - vb[1]) * scale}pt`;
    }
    for (const s of layers()) {
      const m = s === now.svg && vb.length === 4 ? MARGIN : 0; // sideways only: labels sit right of edges
      s.setAttribute("width", `${(natural.w + 2 * m) * scale}pt`);
      s.setAttribute("height", `${natural.h * scale}pt`);
      if (m) {
        s.setAttribute("viewBox", `${vb[0] - m} ${vb[1]} ${vb[2] + 2 * m} ${vb[3]}`);
        s.style.left = `${-m * scale}pt`;
      }
    }
  }
  size();
  function zoom(factor, anchor) {
    const old = scale;
    scale = Math.min(8, Math.max(1e-4, scale * factor));
    size();
    const b = box.getBoundingClientRect();
    const x = anchor ? anchor.clientX - b.left : box.clientWidth / 2;
    const y = anchor ? anchor.clientY - b.top : box.clientHeight / 2;
    box.scrollLeft = (box.scrollLeft + x) * (scale / old) - x; // keep the point under the mouse
    box.scrollTop = (box.scrollTop + y) * (scale / old) - y;
  }
  // Fit the whole graph in the box, however large (tiny, but all of it).
  function fit() {
    const pad = svgHost.offsetWidth - stack.offsetWidth; // the side padding kept for labels
    const w = Math.max(40, box.clientWidth - pad - 4);
    const hgt = Math.max(40, (parseFloat(getComputedStyle(box).maxHeight) || box.clientHeight || 600) - 12);
    zoom(Math.min(w / (natural.w * unit), hgt / (natural.h * unit)) / scale);
    box.scrollLeft = 0;
    box.scrollTop = 0;
  }

  // Scroll the box (not the notebook) so that the running Node `g` (of step `k`) is well
  // inside it. Each move of the view costs a repaint of all of it (tens of ms on a large
  // graph in a software-rendered browser), so when the view has to move, it moves to show
  // as many of the coming steps' Nodes as fit too (the next ones, or the previous ones when
  // stepping back), on both axes: it then stays put for a stretch of steps.
  const LOOKAHEAD = 12;
  function bringIntoView(g, k, dir) {
    const b = box.getBoundingClientRect(), r = g.getBoundingClientRect();
    if (!b.width) return; // not on the page yet
    const m = Math.min(40, b.width / 6, b.height / 6);
    const outX = (x0, x1) => x0 < b.left + m || x1 > b.right - m;
    const outY = (y0, y1) => y0 < b.top + m || y1 > b.bottom - m;
    if (!outX(r.left, r.right) && !outY(r.top, r.bottom)) return;
    let { left, right, top, bottom } = r;
    for (let i = 1, j = k + dir; i <= LOOKAHEAD && j >= 0 && j <= n; i++, j += dir) {
      const q = byId.get(payload.steps[j].run[0])?.getBoundingClientRect();
      if (!q) continue;
      const l = Math.min(left, q.left), rr = Math.max(right, q.right);
      const t = Math.min(top, q.top), bb = Math.max(bottom, q.bottom);
      if (rr - l > b.width - 2 * m || bb - t > b.height - 2 * m) break;
      [left, right, top, bottom] = [l, rr, t, bb];
    }
    if (outX(left, right)) box.scrollLeft += (left + right - b.left - b.right) / 2;
    if (outY(top, bottom)) box.scrollTop += (top + bottom - b.top - b.bottom) / 2;
  }
  // In the next frame, when the browser lays out anyway: measuring right after
  // changing the picture would force an extra layout.
  let scrollTarget = null;
  function scrollTo(g, k, dir) {
    if (scrollTarget === null) {
      requestAnimationFrame(() => { if (scrollTarget) bringIntoView(...scrollTarget); scrollTarget = null; });
    }
    scrollTarget = g ? [g, k, dir] : false;
  }

  // An edge's midpoint, where its gradient label goes (measured once: the base never moves).
  const middles = new Map();
  function middleOf(id) {
    if (!middles.has(id)) {
      const path = byId.get(id)?.querySelector("path");
      middles.set(id, path ? path.getPointAtLength(path.getTotalLength() / 2) : null);
    }
    return middles.get(id);
  }

  // --- predict first --------------------------------------------------------------
  const answers = new Map(); // step -> [{guess text, ok, text}] once checked
  const guessable = (k) => predict && (payload.steps[k].guess || []).length > 0;
  const hidden = (k) => guessable(k) && !answers.has(k); // what the Node sent is not shown yet
  function score() {
    let right = 0, total = 0;
    for (const res of answers.values()) for (const r of res) { total++; if (r.ok) right++; }
    return { right, total };
  }

  // --- showing a step ---------------------------------------------------------
  let shown = -1;

  // What the "now" layer shows at step k: the history items it adds (`fresh`), the edges
  // that carry a gradient, the running Node and the gradients' labels.
  function picture(k, fresh, secret) {
    const step = payload.steps[k];
    const ghosts = fresh.map((it) => ghost(it.id, it.cls, it.text));
    for (const [id] of step.flow) ghosts.push(ghost(id, "ag-flow"));
    for (const id of step.run) {
      const g = backward ? outline(id, "ag-run") : ghost(id, "ag-run"); // (forward: the base is hidden)
      if (g && step.alert) g.classList.add("ag-bad");
      ghosts.push(g);
    }
    const placed = []; // label boxes so far: parallel edges (x * x) must not print on top of each other
    for (const [id, raw] of step.flow) {
      const text = secret && raw ? "?" : raw;
      const p = text && middleOf(id);
      if (!p) continue;
      const x = p.x + 5, w = text.length * 5.6; // 9px Courier: ~5.4px per character
      let y = p.y + 3;
      while (placed.some((b) => x < b.x + b.w && b.x < x + w && Math.abs(b.y - y) < 10)) y += 11;
      placed.push({ x, y, w });
      const label = svgEl("text", { x, y, class: "ag-label" });
      label.textContent = text;
      ghosts.push(label);
    }
    return ghosts.filter(Boolean);
  }

  // The next step's picture, drawn ahead in the frame after a step, hidden (transparent).
  // Next then only makes it visible and hides the step before: a change of colours, which
  // the browser repaints without laying out or re-layering the page (any new or moved SVG
  // shape makes Chromium re-layer all of it: ~2 ms more on a 1,000-node graph, often a
  // frame late). What comes or goes otherwise is added or removed a frame later.
  // (Not in predict mode: the next answer would be in the page, where find-in-page sees it.)
  let ahead = null; // {k, g, waits}: step k's picture, hidden; its new wait outlines by id
  let gone = []; // hidden groups and wait outlines, removed in the next frame
  function drawAhead(k) {
    dropAhead();
    if (predict || k > n || historyAt !== k - 1) return;
    const g = now.g.cloneNode(false);
    g.classList.add("ag-hidden");
    g.append(...picture(k, freshAt.get(k) || [], false)); // (outside predict mode nothing is secret)
    const starting = new Map();
    for (const [id, f] of waits) {
      const o = f === k && !waiting.has(id) && outline(id, "ag-wait");
      if (o) { g.prepend(o); starting.set(id, o); } // (under the step's other shapes, as on the waits layer)
    }
    now.svg.append(g);
    ahead = { k, g, waits: starting };
  }
  function dropAhead() {
    ahead?.g.remove();
    ahead = null;
  }
  function clearGone() {
    for (const g of gone) g.remove();
    gone = [];
  }
  // The wait outlines Next showed in the step's picture go to the waits layer a frame later.
  function settleWaits() {
    for (const g of waiting.values()) if (g.parentNode !== waitLayer.g) waitLayer.g.append(g);
  }

  function show(k, panelNow = false) {
    k = Math.max(0, Math.min(n, k | 0));
    const dir = k < shown ? -1 : 1; // stepping back or forward
    const step = payload.steps[k];
    if (ahead && ahead.k === k && historyAt === k - 1 && !panelNow) {
      now.g.classList.add("ag-hidden");
      gone.push(now.g);
      ahead.g.classList.remove("ag-hidden");
      now.g = ahead.g;
      for (const [id, , u] of waits) {
        const g = u === k && waiting.get(id);
        if (g) { g.classList.add("ag-hidden"); waiting.delete(id); gone.push(g); }
      }
      for (const [id, g] of ahead.waits) waiting.set(id, g);
      ahead = null;
    } else {
      for (const [id] of step.flow) middleOf(id); // measure before changing anything
      dropAhead();
      clearGone();
      settleWaits();
      // One step forward: what it adds to the history goes on the "now" layer, and the history
      // layers catch up a frame later, with the panel (see schedulePanel). Any other move:
      // they catch up now.
      const fresh = historyAt === k - 1 && !panelNow ? freshAt.get(k) || [] : [];
      if (!fresh.length) showHistory(k);
      if (backward) showWaits(k);
      now.g.replaceChildren(...picture(k, fresh, hidden(k)));
    }

    shown = k;
    root.dataset.step = String(k);
    root.dataset.running = step.run.join(" ");
    first.disabled = prev.disabled = k === 0;
    next.disabled = last.disabled = k === n;
    if (panelNow) writePanel(step, k);
    else schedulePanel(step, k);
    scrollTo(byId.get(step.run[0]), k, dir);
  }

  // The panel, the counter, the slider and the history layers are written in the frame
  // after the picture's (which has all the step shows: what it adds to the history is on
  // the "now" layer meanwhile). In a software-rendered browser the picture then often makes
  // the first frame after the click instead of always the second (headless Chromium):
  //   - the browser composites one rectangle around all that changed in a frame: the
  //     toolbar above the graph and the panel beside it stretch a step's few nodes to most
  //     of the box, and every layer of the graph is drawn again over all of it;
  //   - a history layer holds up to `per` steps of copies, and the browser paints it
  //     again as a whole when one is added; the "now" layer holds a few.
  // The panel's `data-step` says which step it shows; moving again before it is written
  // skips it (and the history layers catch up at that move).
  let panelFrame = null, panelTimer = null;
  function schedulePanel(step, k) {
    cancelPanel();
    panelFrame = requestAnimationFrame(() => {
      panelFrame = null;
      panelTimer = setTimeout(() => { panelTimer = null; writePanel(step, k); }, 0);
    });
  }
  function cancelPanel() {
    cancelAnimationFrame(panelFrame);
    clearTimeout(panelTimer);
    panelFrame = panelTimer = null;
  }
  function writePanel(step, k) {
    cancelPanel();
    clearGone();
    settleWaits();
    if (historyAt !== k) showHistory(k);
    if (backward) showWaits(k);
    showPanel(step, k);
    panel.dataset.step = String(k);
    slider.value = String(k);
    counter.textContent = `step ${k} of ${n}`;
    drawAhead(k + 1);
  }

  function showPanel(step, k) {
    const head = h("div", "ag-panel-head");
    head.append(h("span", "", `${backward ? "backward" : "forward"} · step ${k} of ${n}`));
    if (predict) {
      const { right, total } = score();
      const sc = h("span", "ag-score", `score ${right} / ${total}`);
      root.dataset.score = `${right}/${total}`;
      head.append(sc);
    }
    const title = h("div", "ag-panel-title", step.title);
    const parts = [head, title];
    if (step.alert) parts.push(h("p", "ag-alert", step.alert));
    const secret = hidden(k);
    const guesses = new Map((predict && step.guess ? step.guess : []).map((g) => [g.row, g]));
    const result = answers.get(k);
    if (step.formula && !secret) parts.push(h("div", "ag-formula", step.formula));

    const rows = h("div", "ag-rows");
    const inputs = [];
    step.rows.forEach(([label, text], i) => {
      const g = guesses.get(i);
      rows.append(h("div", "ag-row-label", label));
      if (!g) { rows.append(h("div", "ag-row-value", text)); return; }
      const cell = h("div", "ag-row-value");
      if (secret) {
        let input;
        if (g.choices) {
          input = h("select", "ag-guess");
          input.append(new Option("pick one…", ""));
          for (const [choice] of g.choices) input.append(new Option(choice, choice));
        } else {
          input = h("input", "ag-guess");
          Object.assign(input, { type: "text", inputMode: "decimal", placeholder: "your number", autocomplete: "off" });
        }
        input.setAttribute("aria-label", `your prediction: ${label}`);
        inputs.push([g, input]);
        cell.append(input);
      } else {
        cell.append(document.createTextNode(text));
        const r = result && result[[...guesses.keys()].indexOf(i)];
        if (r) {
          cell.append(h("div", `ag-verdict ${r.ok ? "ag-right" : "ag-wrong"}`,
            `${r.ok ? "✓" : "✗"} you said ${r.guess}: ${r.text}`));
        }
      }
      rows.append(cell);
    });
    parts.push(rows);

    if (secret) {
      const check = button("ag-check", "check", "Check your prediction (Enter)");
      const why = h("p", "ag-hint", guesses.size > 1
        ? "What does this Node send to each input? Predict, then check."
        : "What does this Node send? Predict, then check.");
      const msg = h("p", "ag-verdict ag-wrong");
      const submit = () => {
        const res = [];
        for (const [g, input] of inputs) {
          const v = input.value;
          if (g.choices) {
            if (!v) { msg.textContent = "pick one of the choices first"; input.focus(); return; }
            const hint = g.choices.find(([c]) => c === v)[1];
            res.push({ guess: v, ok: hint === null, text: hint === null ? "right" : hint });
          } else {
            const x = parseNumber(v);
            if (Number.isNaN(x)) { msg.textContent = "type a number, e.g. 2, -0.5 or 1/3"; input.focus(); return; }
            res.push({ guess: v.trim(), ...judgeNumber(x, g.value, g.received) });
          }
        }
        answers.set(k, res);
        show(k, true); // the panel and the labels on the edges, now with the values
        root.focus({ preventScroll: true }); // (the input is gone): the arrow keys step on
      };
      check.onclick = submit;
      for (const [, input] of inputs) {
        input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); submit(); } });
      }
      parts.push(why, check, msg);
    }
    if (step.note) parts.push(h("p", "ag-note", step.note));
    panel.replaceChildren(...parts);
  }

  // --- moving -----------------------------------------------------------------
  let timer = null;
  // Tell the kernel where we are -- once the learner pauses, not at every click: each
  // message makes JupyterLab show the kernel busy, then idle, and repaint for it.
  let syncTimer = null, syncing = false;
  function sync(wait = 1000) { // (always the step on screen when it goes out)
    clearTimeout(syncTimer);
    syncTimer = null;
    const send = () => {
      syncTimer = null;
      if (model.get("step") === shown) return;
      syncing = true;
      model.set("step", shown);
      model.save_changes();
      syncing = false;
    };
    if (wait) syncTimer = setTimeout(send, wait);
    else send();
  }
  function stop(andSync = true) {
    if (timer === null) return;
    clearTimeout(timer);
    timer = null;
    play.innerHTML = icon("play");
    root.classList.remove("ag-playing");
    if (andSync) sync(0);
  }
  // Playing keeps to the clock: when the browser falls behind (a busy machine, a huge
  // graph, 30 steps/s), it shows the step that is due now instead of every one it missed.
  let due = 0;
  function tick() {
    const period = 1000 / Number(speed.value);
    let target = Math.min(n, shown + 1 + Math.floor(Math.max(0, performance.now() - due) / period));
    for (let j = shown + 1; j < target; j++) if (hidden(j)) { target = j; break; } // never skip a question
    due += period * (target - shown);
    show(target);
    if (shown >= n || hidden(shown)) { stop(); return; } // the end, or a prediction to make
    timer = setTimeout(tick, Math.max(0, due - performance.now()));
  }
  function start() {
    if (timer !== null) return;
    clearTimeout(syncTimer); // the step at the end of playing goes out instead
    syncTimer = null;
    if (shown >= n) show(0);
    play.innerHTML = icon("pause");
    root.classList.add("ag-playing");
    due = performance.now() + 1000 / Number(speed.value);
    timer = setTimeout(tick, 1000 / Number(speed.value));
  }
  function go(k) { // a single move by the user: show it and tell the kernel
    stop(false);
    if (Math.max(0, Math.min(n, k)) === shown) return; // already there (first / last)
    show(k);
    sync();
  }

  first.onclick = () => go(0);
  prev.onclick = () => go(shown - 1);
  next.onclick = () => go(shown + 1);
  last.onclick = () => go(n);
  play.onclick = () => (timer === null ? start() : stop());
  slider.oninput = () => { stop(false); show(Number(slider.value)); };
  slider.onchange = () => sync();
  speed.onchange = () => {
    model.set("speed", Number(speed.value));
    model.save_changes();
  };
  // The zoom buttons and keys zoom around the running Node when it is in view (it stays
  // where it is), around the box's centre otherwise; ctrl + wheel zooms around the mouse.
  function aroundRunning(factor) {
    const g = byId.get(payload.steps[shown].run[0]);
    const r = g?.getBoundingClientRect(), b = box.getBoundingClientRect();
    const x = r && (r.left + r.right) / 2, y = r && (r.top + r.bottom) / 2;
    zoom(factor, r && x >= b.left && x <= b.right && y >= b.top && y <= b.bottom ? { clientX: x, clientY: y } : null);
  }
  zoomIn.onclick = () => aroundRunning(1.25);
  zoomOut.onclick = () => aroundRunning(1 / 1.25);
  zoomFit.onclick = fit;
  box.addEventListener("wheel", (e) => {
    if (!e.ctrlKey && !e.metaKey) return; // plain wheel scrolls
    e.preventDefault();
    zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e);
  }, { passive: false });

  // Keys only while the widget has focus (click it); the notebook keeps its keys otherwise.
  root.addEventListener("keydown", (e) => {
    if (e.target.closest("select, input") || (e.key === " " && e.target.closest("button"))) return;
    const act = {
      ArrowRight: () => go(shown + 1), ArrowLeft: () => go(shown - 1),
      Home: () => go(0), End: () => go(n), " ": () => play.click(),
      "+": () => aroundRunning(1.25), "=": () => aroundRunning(1.25), "-": () => aroundRunning(1 / 1.25), "0": fit,
    }[e.key];
    if (!act || e.ctrlKey || e.metaKey || e.altKey) return;
    e.preventDefault();
    e.stopPropagation();
    act();
  });
  box.addEventListener("mousedown", () => root.focus({ preventScroll: true }));

  function setSpeed() {
    const v = model.get("speed");
    if (![...speed.options].some((o) => Number(o.value) === v)) speed.append(new Option(`${v} / s`, String(v)));
    speed.value = String([...speed.options].find((o) => Number(o.value) === v).value);
  }
  const onStep = () => {
    const k = model.get("step");
    if (syncing || k === shown || syncTimer !== null) return; // (ours, or older than the learner's last move)
    stop(false);
    show(k);
  };
  const onSpeed = () => setSpeed();
  model.on("change:step", onStep);
  model.on("change:speed", onSpeed);
  setSpeed();
  el.append(root);
  show(model.get("step"), true);
  let tileTimer = null;
  const tileFrame = requestAnimationFrame(() => { tileTimer = setTimeout(tile, 0); });

  return () => {
    cancelAnimationFrame(tileFrame);
    clearTimeout(tileTimer);
    cancelPanel();
    stop(false);
    if (syncTimer !== null) sync(0);
    model.off("change:step", onStep);
    model.off("change:speed", onSpeed);
  };
}

export default { render };
