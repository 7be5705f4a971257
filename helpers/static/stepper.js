// Front end of helpers.stepper: replays recorded steps on a Graphviz SVG.
//
// The kernel sends the laid-out SVG and every step once (the `_payload` trait).
// Showing step k means working out which ids carry which CSS class at k and
// touching only the ids whose classes differ from what is on screen, so a step
// costs a handful of DOM writes even on a 1,000-node graph, and never a layout.
// Playing advances in the browser alone: nothing is sent to the kernel until
// playing stops, when `step` is synced back once.
//
// Payload: {mode: "backward" | "forward", steps: [step, ...], all?, empty?}
// where step = {run: [node ids], flow: [[edge id, gradient text]], to?: [ids
// that now hold gradient], leaf?: id, grad?: text, reveal?: [ids], title, note,
// rows: [[label, text]]}. steps[0] is "before" (backward / fn).

const STATES = ["ag-run", "ag-flow", "ag-done", "ag-carried", "ag-wait", "ag-filled", "ag-hidden"];
const SPEEDS = [0.5, 1, 2, 4, 10, 30];
const EMPTY = new Set();

// Which ids carry which state class at step k.
function classesAt(payload, k) {
  const steps = payload.steps;
  const now = steps[k];
  const out = {
    "ag-run": new Set(now.run),
    "ag-flow": new Set(now.flow.map((f) => f[0])),
  };
  if (payload.mode === "backward") {
    const done = new Set(), carried = new Set(), got = new Set(), filled = new Set();
    for (let j = 0; j <= k; j++) {
      const s = steps[j];
      for (const id of s.to || []) got.add(id);
      if (s.leaf) filled.add(s.leaf);
      if (j < k) {
        for (const id of s.run) done.add(id);
        for (const f of s.flow) carried.add(f[0]);
      }
    }
    out["ag-done"] = done;
    out["ag-carried"] = carried;
    out["ag-wait"] = new Set([...got].filter((id) => !done.has(id) && !out["ag-run"].has(id)));
    out["ag-filled"] = filled;
  } else {
    const shown = new Set();
    for (let j = 0; j <= k; j++) for (const id of steps[j].reveal) shown.add(id);
    out["ag-hidden"] = new Set(payload.all.filter((id) => !shown.has(id)));
  }
  return out;
}

// Each leaf's gradient text at step k (backward only): the last AccumulateGrad that filled it.
function leafTextsAt(payload, k) {
  const texts = new Map();
  for (let j = 0; j <= k; j++) {
    const s = payload.steps[j];
    if (s.leaf) texts.set(s.leaf, s.grad);
  }
  return texts;
}

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
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

function render({ model, el }) {
  const payload = model.get("_payload");
  const n = model.get("n_steps");
  const backward = payload.mode === "backward";

  // --- layout -----------------------------------------------------------------
  const root = h("div", "ag-stepper");
  root.tabIndex = 0;
  root.dataset.mode = payload.mode;
  root.dataset.nSteps = String(n);
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
  for (const s of SPEEDS) speed.append(new Option(`${s} / s`, String(s)));
  const zoomOut = button("ag-zoom-out", "−", "Zoom out (ctrl + wheel)");
  const zoomFit = button("ag-zoom-fit", "fit", "Fit the graph in view");
  const zoomIn = button("ag-zoom-in", "+", "Zoom in (ctrl + wheel)");
  bar.append(first, prev, play, next, last, slider, counter, speed, h("span", "ag-gap"), zoomOut, zoomFit, zoomIn);

  const legend = h("div", "ag-legend");
  const keys = backward
    ? [["ag-key-run", "running"], ["ag-key-flow", "gradient sent"], ["ag-key-wait", "has gradient, waits"],
       ["ag-key-done", "done"], ["ag-key-filled", "leaf .grad filled"]]
    : [["ag-key-run", "new this step"]];
  for (const [cls, text] of keys) {
    const item = h("span", "ag-key");
    item.append(h("span", `ag-swatch ${cls}`), document.createTextNode(text));
    legend.append(item);
  }

  const body = h("div", "ag-body");
  const box = h("div", "ag-box");
  const svgHost = h("div", "ag-svg");
  const svgText = model.get("_svg");
  svgHost.innerHTML = svgText.slice(Math.max(0, svgText.indexOf("<svg")));
  box.append(svgHost);
  const panel = h("div", "ag-panel");
  panel.setAttribute("aria-live", "polite");
  body.append(box, panel);
  root.append(bar, legend, body);
  el.append(root);

  // --- the picture ------------------------------------------------------------
  const svg = svgHost.querySelector("svg");
  const byId = new Map();
  for (const g of svg.querySelectorAll("g.node, g.edge")) byId.set(g.id, g);
  const carriedBy = new Map(); // edge id -> the gradient it carries (tooltip)
  if (backward) for (const s of payload.steps) for (const [id, text] of s.flow) carriedBy.set(id, text);
  for (const t of svg.querySelectorAll("title")) t.remove(); // Graphviz titles are our raw ids
  for (const [id, text] of carriedBy) {
    const g = byId.get(id);
    if (g) g.prepend(Object.assign(document.createElementNS(g.namespaceURI, "title"), { textContent: `gradient ${text}` }));
  }
  const gradLine = new Map(); // leaf id -> its "grad ..." <text>
  for (const g of svg.querySelectorAll("g.node.ag-leaf")) {
    const t = [...g.querySelectorAll("text")].find((e) => e.textContent.startsWith("grad "));
    if (t) gradLine.set(g.id, t);
  }
  const labels = document.createElementNS(svg.namespaceURI, "g");
  labels.setAttribute("class", "ag-labels");
  (svg.querySelector("g.graph") || svg).append(labels);

  const natural = {
    w: parseFloat(svg.getAttribute("width")) || 400,
    h: parseFloat(svg.getAttribute("height")) || 300,
  };
  let scale = 1;
  function zoom(factor, anchor) {
    const old = scale;
    scale = Math.min(4, Math.max(0.05, scale * factor));
    svg.setAttribute("width", `${natural.w * scale}pt`);
    svg.setAttribute("height", `${natural.h * scale}pt`);
    if (anchor) { // keep the point under the mouse where it is
      const b = box.getBoundingClientRect();
      const x = anchor.clientX - b.left, y = anchor.clientY - b.top;
      box.scrollLeft = (box.scrollLeft + x) * (scale / old) - x;
      box.scrollTop = (box.scrollTop + y) * (scale / old) - y;
    }
  }
  function fit() {
    const w = box.clientWidth - 8, hgt = (parseFloat(getComputedStyle(box).maxHeight) || 600) - 8;
    zoom(Math.min(1, w / (natural.w * 4 / 3), hgt / (natural.h * 4 / 3)) / scale);
  }

  // Scroll the box (not the notebook) so that `g` is visible.
  function bringIntoView(g) {
    const b = box.getBoundingClientRect(), r = g.getBoundingClientRect();
    if (!b.width) return; // not on the page yet
    const m = 24;
    if (r.left < b.left + m || r.right > b.right - m) box.scrollLeft += (r.left + r.right - b.left - b.right) / 2;
    if (r.top < b.top + m || r.bottom > b.bottom - m) box.scrollTop += (r.top + r.bottom - b.top - b.bottom) / 2;
  }

  // --- showing a step ---------------------------------------------------------
  let shown = -1;
  const current = new Map(STATES.map((c) => [c, EMPTY]));
  const leafText = new Map();

  function show(k) {
    k = Math.max(0, Math.min(n, k | 0));
    const want = classesAt(payload, k);
    for (const c of STATES) {
      const before = current.get(c), after = want[c] || EMPTY;
      for (const id of before) if (!after.has(id)) byId.get(id)?.classList.remove(c);
      for (const id of after) if (!before.has(id)) byId.get(id)?.classList.add(c);
      current.set(c, after);
    }
    if (backward) {
      const texts = leafTextsAt(payload, k);
      for (const [id, t] of gradLine) {
        const text = `grad ${texts.has(id) ? texts.get(id) : payload.empty}`;
        if (leafText.get(id) !== text) { t.textContent = text; leafText.set(id, text); }
      }
    }
    const step = payload.steps[k];
    labels.replaceChildren();
    const placed = []; // label boxes so far: parallel edges (x * x) must not print on top of each other
    for (const [id, text] of step.flow) {
      const p = text && middleOf(id);
      if (!p) continue;
      const x = p.x + 5, w = text.length * 5.6; // 9px Courier: ~5.4px per character
      let y = p.y + 3;
      while (placed.some((b) => x < b.x + b.w && b.x < x + w && Math.abs(b.y - y) < 10)) y += 11;
      placed.push({ x, y, w });
      const label = document.createElementNS(svg.namespaceURI, "text");
      label.setAttribute("x", x);
      label.setAttribute("y", y);
      label.setAttribute("class", "ag-label");
      label.textContent = text;
      labels.append(label);
    }
    shown = k;
    root.dataset.step = String(k);
    root.dataset.running = step.run.join(" ");
    slider.value = String(k);
    counter.textContent = `step ${k} of ${n}`;
    first.disabled = prev.disabled = k === 0;
    next.disabled = last.disabled = k === n;
    showPanel(step, k);
    scrollTo(byId.get(step.run[0]));
  }

  // An edge's midpoint, where its gradient label goes (measured once: it never moves).
  const middles = new Map();
  function middleOf(id) {
    if (!middles.has(id)) {
      const path = byId.get(id)?.querySelector("path");
      middles.set(id, path ? path.getPointAtLength(path.getTotalLength() / 2) : null);
    }
    return middles.get(id);
  }

  // Scroll to the running node in the next frame, when the browser lays out anyway:
  // measuring right after changing classes would force an extra layout of the page.
  let scrollTarget = null;
  function scrollTo(g) {
    if (scrollTarget === null) requestAnimationFrame(() => { if (scrollTarget) bringIntoView(scrollTarget); scrollTarget = null; });
    scrollTarget = g || false;
  }

  function showPanel(step, k) {
    const head = h("div", "ag-panel-head", `${backward ? "backward" : "forward"} · step ${k} of ${n}`);
    const title = h("div", "ag-panel-title", step.title);
    const rows = h("table", "ag-rows");
    for (const [label, text] of step.rows) {
      const tr = h("tr");
      tr.append(h("th", "", label), h("td", "", text));
      rows.append(tr);
    }
    panel.replaceChildren(head, title, rows);
    if (step.note) panel.append(h("p", "ag-note", step.note));
  }

  // --- moving -----------------------------------------------------------------
  let timer = null;
  function sync(k) {
    model.set("step", k);
    model.save_changes();
  }
  function stop(andSync = true) {
    if (timer === null) return;
    clearTimeout(timer);
    timer = null;
    play.innerHTML = icon("play");
    root.classList.remove("ag-playing");
    if (andSync) sync(shown);
  }
  function tick() {
    show(shown + 1);
    if (shown >= n) stop(); // the end: sync once
    else timer = setTimeout(tick, 1000 / Number(speed.value));
  }
  function start() {
    if (timer !== null) return;
    if (shown >= n) show(0);
    play.innerHTML = icon("pause");
    root.classList.add("ag-playing");
    timer = setTimeout(tick, 1000 / Number(speed.value));
  }
  function go(k) { // a single move by the user: show it and tell the kernel
    stop(false);
    if (Math.max(0, Math.min(n, k)) === shown) return; // already there (first / last)
    show(k);
    sync(shown);
  }

  first.onclick = () => go(0);
  prev.onclick = () => go(shown - 1);
  next.onclick = () => go(shown + 1);
  last.onclick = () => go(n);
  play.onclick = () => (timer === null ? start() : stop());
  slider.oninput = () => { stop(false); show(Number(slider.value)); };
  slider.onchange = () => sync(shown);
  speed.onchange = () => {
    model.set("speed", Number(speed.value));
    model.save_changes();
  };
  zoomIn.onclick = () => zoom(1.25);
  zoomOut.onclick = () => zoom(1 / 1.25);
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
      "+": () => zoom(1.25), "=": () => zoom(1.25), "-": () => zoom(1 / 1.25),
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
    if (k === shown) return;
    stop(false);
    show(k);
  };
  const onSpeed = () => setSpeed();
  model.on("change:step", onStep);
  model.on("change:speed", onSpeed);
  setSpeed();
  show(model.get("step"));

  return () => {
    stop(false);
    model.off("change:step", onStep);
    model.off("change:speed", onSpeed);
  };
}

export default { render };
