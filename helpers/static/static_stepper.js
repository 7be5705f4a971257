// Steppers on a plain web page: no kernel, no network, the same front end.
//
// A stepper's HTML output (what `Stepper._repr_mimebundle_` puts under
// text/html, and what a static site shows) is
//
//   <div class="ag-static-stepper">
//     <script type="application/json" class="ag-stepper-state">{"_payload": ..., "n_steps": ..., ...}</script>
//     <div class="ag-static-diagram"><img src="data:image/svg+xml;charset=utf-8,<svg>..."></div>
//                                                             (the laid-out graph, shown as is)
//     <p class="ag-static-note">...</p>                        (what to do to step through it)
//   </div>
//
// Load this file as a module next to stepper.js and stepper.css:
//   <script type="module" src="static_stepper.js"></script>
// It finds every such element on the page (also ones added later), and mounts
// stepper.js's `render({model, el})` on it with a local stand-in for the
// widget model: get/set/on/off/save_changes on the embedded state, nothing sent
// anywhere. Without JavaScript (or where scripts are stripped) the picture and
// the note stay as they are.

import stepper from "./stepper.js";

const CSS = new URL("./stepper.css", import.meta.url).href;

// The part of an anywidget model that stepper.js uses, backed by a plain object.
export function localModel(state) {
  const listeners = new Map(); // event name -> Set of callbacks
  return {
    get: (key) => state[key],
    set(key, value) {
      if (state[key] === value) return;
      state[key] = value;
      for (const cb of listeners.get(`change:${key}`) || []) cb();
    },
    on(event, cb) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(cb);
    },
    off(event, cb) {
      if (!event) listeners.clear();
      else if (!cb) listeners.delete(event);
      else listeners.get(event)?.delete(cb);
    },
    save_changes() {}, // nothing to sync with: there is no kernel
    send() {},
  };
}

function addStylesheet() {
  const have = [...document.querySelectorAll('link[rel="stylesheet"]')].some((l) => l.href.split("?")[0] === CSS);
  if (have || document.querySelector("style[data-ag-stepper]")) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = CSS;
  document.head.append(link);
}

// The diagram's SVG text: from the <img>'s data URL (or an inline <svg>).
function svgOf(diagram) {
  if (!diagram) return null;
  const inline = diagram.querySelector("svg");
  if (inline) return inline.outerHTML;
  const src = diagram.querySelector("img")?.getAttribute("src") || "";
  const comma = src.indexOf(",");
  if (!src.startsWith("data:image/svg+xml") || comma < 0) return null;
  const body = src.slice(comma + 1);
  try {
    return src.slice(0, comma).endsWith(";base64")
      ? new TextDecoder().decode(Uint8Array.from(atob(body), (c) => c.charCodeAt(0)))
      : decodeURIComponent(body);
  } catch (err) {
    console.error("autograd-lab stepper: cannot read the embedded diagram", err);
    return null;
  }
}

// Mount one embedded stepper; leaves the static picture in place if anything is missing.
export function mount(host) {
  if (host.dataset.agMounted) return null;
  const data = host.querySelector("script.ag-stepper-state");
  const svg = svgOf(host.querySelector(".ag-static-diagram"));
  if (!data || !svg) return null;
  let state;
  try {
    state = JSON.parse(data.textContent);
  } catch (err) {
    console.error("autograd-lab stepper: the embedded state is not valid JSON", err);
    return null;
  }
  state._svg = svg;
  host.dataset.agMounted = "1";
  const el = document.createElement("div");
  el.className = "ag-static-mounted";
  const model = localModel(state);
  host.replaceChildren(el);
  const cleanup = stepper.render({ model, el });
  return { model, el, cleanup };
}

export function mountAll(root = document) {
  addStylesheet();
  return [...root.querySelectorAll(".ag-static-stepper")].map(mount).filter(Boolean);
}

function start() {
  mountAll();
  // Pages that add content later (tabs, collapsible sections) get their steppers too.
  // (A stepper's own DOM changes are skipped: they happen at every step.)
  const isNew = (n) => n.nodeType === 1 && (n.matches(".ag-static-stepper") || n.querySelector(".ag-static-stepper"));
  new MutationObserver((records) => {
    if (records.some((r) => !r.target.closest?.(".ag-stepper") && [...r.addedNodes].some(isNew))) mountAll();
  }).observe(document.body, { childList: true, subtree: true });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
