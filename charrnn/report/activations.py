"""The activation page: a text coloured by a model's surprise or by any hidden unit.

One self-contained HTML file (inline CSS and JavaScript, the data embedded as JSON, nothing
fetched) showing the text with each character coloured

- by the model's surprise at it, ``-log p(character | the text before it)``, or
- by a chosen unit's activation after reading it (a layer, the hidden state ``h`` or, for the
  LSTM, the cell state ``c``, and a unit picked from a list),

with the units ranked by how strongly they follow simple properties of the text (inside
quotes, inside brackets, position in the line, right after a newline: Pearson correlation over
the text's characters), so that quote- or line-length-tracking units (Karpathy, Johnson and
Fei-Fei, 2015) are found without paging through hundreds. Hovering a character shows the
model's five most likely next characters.

The arrays come from :meth:`charrnn.CharRNNGenerator.trace`. Activations are stored per unit as
signed bytes scaled by the unit's largest magnitude (to 1/254 of it), base64-encoded; a text
longer than ``max_chars`` is cut, with a message on the page, so the file stays small enough
to open and recolour at once.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.engine.trace import TextTrace
from charrnn.estimators.params import Integer
from charrnn.io import atomic_write, check_writable

__all__ = [
    "DEFAULT_MAX_CHARS",
    "PROPERTIES",
    "PageSummary",
    "page_data",
    "render_page",
    "text_properties",
    "unit_correlations",
    "write_activation_page",
]

# Characters shown at most: a 2 x 256 model then embeds 512 x 3,000 activation bytes (about
# 2 MB of base64) and a browser recolours 3,000 spans at once.
DEFAULT_MAX_CHARS = 3000
TOP_NEXT = 5  # next characters shown when hovering
TOP_UNITS = 8  # units listed per property
PROPERTIES = ("inside quotes", "inside brackets", "position in line", "after a newline")
_OPEN_QUOTES, _CLOSE_QUOTES = "\u201c", "\u201d"
_OPEN_BRACKETS, _CLOSE_BRACKETS = "([{", ")]}"
_SHOWN_SYMBOLS = {"\n": "\u21b5 newline", " ": "\u2423 space", "\t": "\u21e5 tab"}


def text_properties(text: str) -> np.ndarray:
    """The text properties units are ranked by, after reading each character.

    Parameters
    ----------
    text : str, length n

    Returns
    -------
    ndarray of float64, shape (n, len(PROPERTIES))
        Columns in ``PROPERTIES`` order: 1 inside double quotes (``"`` toggles, curly quotes
        open and close; an opening quote is inside, a closing one outside), 1 inside round,
        square or curly brackets (nesting counted), the number of characters since the last
        newline (0 at the newline), 1 at a newline.
    """
    out = np.zeros((len(text), len(PROPERTIES)))
    quoted, depth, column = False, 0, 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in _OPEN_QUOTES:
            quoted = True
        elif ch in _CLOSE_QUOTES:
            quoted = False
        if ch in _OPEN_BRACKETS:
            depth += 1
        elif ch in _CLOSE_BRACKETS:
            depth = max(0, depth - 1)
        column = 0 if ch == "\n" else column + 1
        out[i] = (quoted, depth > 0, column, ch == "\n")
    return out


def unit_correlations(states: np.ndarray, properties: np.ndarray) -> np.ndarray:
    """Pearson correlation of every unit with every property, over the characters.

    Parameters
    ----------
    states : ndarray, shape (n, U)
        Activations after each character.
    properties : ndarray, shape (n, F)

    Returns
    -------
    ndarray of float64, shape (U, F)
        0 where a unit or a property is constant over the text (no correlation to speak of).
    """
    a = states.astype(np.float64) - states.mean(axis=0)
    p = properties.astype(np.float64) - properties.mean(axis=0)
    norm = np.sqrt((a * a).sum(axis=0))[:, None] * np.sqrt((p * p).sum(axis=0))[None, :]
    cov = a.T @ p  # (U, F)
    # a constant column has a zero norm; relative to the data's scale, not exactly zero
    tiny = 1e-12 * max(1.0, float(np.abs(states).max(initial=0.0)))
    ok = norm > tiny * tiny
    return np.where(ok, cov / np.where(ok, norm, 1.0), 0.0)


def _quantised(states: np.ndarray) -> tuple[list[float], str]:
    """(n, H) activations -> per-unit scales and base64 of (H, n) int8, unit-major."""
    scale = np.abs(states).max(axis=0).astype(np.float64)  # (H,)
    scale[scale == 0] = 1.0
    q = np.rint(states.T / scale[:, None] * 127).astype(np.int8)  # (H, n)
    return [float(f"{s:.6g}") for s in scale], base64.b64encode(q.tobytes()).decode("ascii")


def _symbol_label(symbol: str) -> str:
    if symbol == "":
        return "\u27e8end of document\u27e9"
    return _SHOWN_SYMBOLS.get(symbol, symbol)


def page_data(
    text: str,
    trace: TextTrace,
    symbols: list[str],
    *,
    total_chars: int | None = None,
    title: str = "",
    model: str = "",
) -> dict:
    """Everything the page shows, as JSON-ready data.

    Parameters
    ----------
    text : str, length n
        The text the trace was made from (already cut).
    trace : TextTrace
        :meth:`charrnn.CharRNNGenerator.trace` of ``text``.
    symbols : list of str, length V
        The model's symbols (``classes_``), in column order.
    total_chars : int, optional
        Length of the text before it was cut; ``n`` when not given.
    title, model : str
        Headings shown on the page.

    Returns
    -------
    dict
        ``text``, ``surprise`` (n,), ``next`` (top-5 ids and probabilities per character),
        ``symbols`` (display labels), ``layers`` (per layer, per state: per-unit ``scale``,
        base64 ``data`` of (H, n) int8 ``round(127 * value / scale)``, units ``order``ed by
        their strongest correlation, each unit's ``best`` property and correlation),
        ``properties``, ``ranking`` (per property, its most correlated units as
        ``[layer, state, unit, r]``) and the cut message, if any.
    """
    n = len(text)
    assert trace.surprise.shape == (n,), "the trace must be of the text given"
    total = n if total_chars is None else total_chars
    props = text_properties(text)
    top = np.argsort(-trace.next_log_proba, axis=1, kind="stable")[:, :TOP_NEXT]  # (n, 5)
    top_p = np.exp(np.take_along_axis(trace.next_log_proba, top, axis=1))
    kinds = [("h", "hidden state h", True)]
    if trace.cell is not None:
        kinds.append(("c", "cell state c", False))
    layers, scored = [], []  # scored: (|r|, r, property, layer, state, unit)
    for k in range(trace.hidden.shape[0]):
        states = []
        for s, (kind, label, bounded) in enumerate(kinds):
            acts = (trace.hidden if kind == "h" else trace.cell)[k]  # (n, H)
            corr = unit_correlations(acts, props)  # (H, F)
            best = np.argmax(np.abs(corr), axis=1)  # (H,)
            best_r = corr[np.arange(corr.shape[0]), best]
            order = np.argsort(-np.abs(best_r), kind="stable")
            scale, data = _quantised(acts)
            states.append(
                {
                    "kind": kind,
                    "label": label,
                    "bounded": bounded,  # tanh-bounded: coloured on [-1, 1], else per unit
                    "scale": scale,
                    "data": data,
                    "order": order.tolist(),
                    "best": [[int(b), round(float(r), 3)] for b, r in zip(best, best_r)],
                }
            )
            for u in range(corr.shape[0]):
                for f in range(corr.shape[1]):
                    r = float(corr[u, f])
                    scored.append((abs(r), r, f, k, s, u))
        layers.append({"name": f"layer {k + 1}", "states": states})
    ranking = []
    for f, name in enumerate(PROPERTIES):
        mine = sorted((e for e in scored if e[2] == f), key=lambda e: -e[0])[:TOP_UNITS]
        present = bool(np.ptp(props[:, f]) > 0)
        ranking.append(
            {
                "property": name,
                "present": present,
                "units": [[k, s, u, round(r, 3)] for _, r, _, k, s, u in mine] if present else [],
            }
        )
    cut = None
    if total > n:
        cut = (
            f"The text has {total:,} characters; this page shows the first {n:,}, so that it "
            "stays quick to draw and to recolour (raise the limit with --max-chars, or "
            "max_chars in write_activation_page)."
        )
    return {
        "title": title,
        "model": model,
        "text": text,
        "total_chars": total,
        "cut_message": cut,
        "symbols": [_symbol_label(s) for s in symbols],
        "surprise": [round(float(x), 3) for x in trace.surprise],
        "surprise_max": max(1.0, round(float(np.percentile(trace.surprise, 99)), 3)),
        "next": {"ids": top.tolist(), "p": np.round(top_p, 4).tolist()},
        "layers": layers,
        "properties": list(PROPERTIES),
        "ranking": ranking,
    }


def _script_json(data: dict) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` can end it early."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict) -> str:
    """The HTML page for :func:`page_data`'s ``data``: one string, nothing to fetch."""
    return (
        _PAGE.replace("__TITLE__", html.escape(data.get("title") or "charrnn activations"))
        .replace("__CSS__", _CSS)
        .replace("__JS__", _JS)
        .replace("__DATA__", _script_json(data))
    )


@dataclass(frozen=True)
class PageSummary:
    """What :func:`write_activation_page` wrote.

    Attributes
    ----------
    path : Path
    shown_chars, total_chars : int
        Characters on the page, and in the text given.
    message : str or None
        The cut message shown on the page, when the text was cut.
    """

    path: Path
    shown_chars: int
    total_chars: int
    message: str | None


def write_activation_page(
    generator, text: str, path, *, max_chars: int = DEFAULT_MAX_CHARS, title: str | None = None
) -> PageSummary:
    """Write the activation page of ``generator`` reading ``text`` to ``path`` (atomically).

    Parameters
    ----------
    generator : CharRNNGenerator
        Fitted.
    text : str
        Non-empty, of characters the model saw in training; only its first ``max_chars``
        characters are shown.
    path : str or path-like
        The HTML file to write; its folder must exist.
    max_chars : int >= 1
    title : str, optional
        The page's heading.

    Returns
    -------
    PageSummary
    """
    Integer(1).check("max_chars", max_chars)
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    shown = text[:max_chars]
    trace = generator.trace(shown)
    cfg = generator.config_
    model = (
        f"{cfg.cell.upper()}, {cfg.num_layers} layer{'s' * (cfg.num_layers > 1)} of "
        f"{cfg.hidden_size} units, {cfg.vocab_size} symbols"
    )
    data = page_data(
        shown,
        trace,
        list(generator.classes_),
        total_chars=len(text),
        title=title or "What the model sees",
        model=model,
    )
    check_writable(path)
    with atomic_write(path, "w") as f:
        f.write(render_page(data))
    return PageSummary(Path(path), len(shown), len(text), data["cut_message"])


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>__CSS__</style>
</head>
<body>
<h1 id="title">__TITLE__</h1>
<p id="model"></p>
<div id="cut" class="notice" hidden></div>
<div id="controls">
  <label>Colour by
    <select id="mode">
      <option value="unit">a unit's activation</option>
      <option value="surprise">surprise, &minus;log p</option>
    </select></label>
  <label>Layer <select id="layer"></select></label>
  <label>State <select id="state"></select></label>
  <label>Unit <select id="unit"></select></label>
  <span id="legend"></span>
</div>
<div id="text" aria-label="the text, coloured"></div>
<h2>Units that follow the text</h2>
<p class="help">Correlation (Pearson r) of each unit's activation with a property of the text,
over the characters shown. Click a unit to colour the text by it.</p>
<div id="ranking"></div>
<div id="tip" role="tooltip"></div>
<script type="application/json" id="data">__DATA__</script>
<script>__JS__</script>
</body>
</html>
"""

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 120ch;
  color: #222; background: #fafafa; padding: 0 1em; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin-top: 1.5em; }
#model { color: #555; margin-top: 0; }
.notice { background: #fff3cd; border: 1px solid #d9b650; padding: .5em .8em; margin: .6em 0; }
#controls { display: flex; flex-wrap: wrap; gap: .6em 1.2em; align-items: center;
  margin: .8em 0; }
select { font: inherit; }
#text { font: 13px/1.7 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  white-space: pre-wrap; word-break: break-all; background: #fff; border: 1px solid #ccc;
  padding: .8em 1em; }
#text span { cursor: default; }
#text span.nl { color: #aaa; }
#text span.hover { outline: 1px solid #333; }
#legend { font-size: 12px; color: #444; }
#legend i { display: inline-block; width: 1.1em; height: .9em; vertical-align: middle;
  border: 1px solid #ccc; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888;
  box-shadow: 0 2px 8px rgba(0,0,0,.2); padding: .4em .6em; font-size: 12px;
  pointer-events: none; z-index: 10; }
#tip table { border-collapse: collapse; margin-top: .3em; }
#tip td { padding: 0 .4em 0 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.bar { display: inline-block; height: .7em; background: #4a7fc1; }
.help { color: #555; font-size: 13px; }
#ranking table { border-collapse: collapse; font-size: 13px; }
#ranking th { text-align: left; padding: .2em .8em .2em 0; font-weight: 600;
  white-space: nowrap; }
#ranking td { padding: .15em .2em; white-space: nowrap; }
#ranking button { font: 12px ui-monospace, monospace; border: 1px solid #bbb;
  background: #fff; cursor: pointer; padding: .05em .35em; white-space: nowrap; }
#ranking button:hover { background: #eef; }
"""

_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const chars = Array.from(D.text);
const n = chars.length;
const RED = [214, 39, 40], BLUE = [31, 119, 180], ORANGE = [230, 85, 13];

function mix(rgb, a) {
  a = Math.max(0, Math.min(1, a));
  return "rgb(" + rgb.map((c) => Math.round(255 - a * (255 - c))).join(", ") + ")";
}
function signed(x, digits) { return (x >= 0 ? "+" : "\u2212") + Math.abs(x).toFixed(digits); }

const decoded = {};
function unitValues(l, s, u) {
  const key = l + "/" + s, st = D.layers[l].states[s];
  if (!decoded[key]) {
    const raw = atob(st.data), q = new Int8Array(raw.length);
    for (let i = 0; i < raw.length; i++) q[i] = raw.charCodeAt(i);  // wraps to -128..127
    decoded[key] = q;
  }
  const q = decoded[key], scale = st.scale[u], out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = q[u * n + i] / 127 * scale;
  return out;
}

const box = $("text");
const spans = chars.map((ch, i) => {
  const span = document.createElement("span");
  if (ch === "\n") { span.textContent = "\u21b5\n"; span.className = "nl"; }
  else span.textContent = ch;
  span.dataset.i = i;
  box.appendChild(span);
  return span;
});

function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text; select.appendChild(o);
}
function fillLayers() {
  D.layers.forEach((layer, l) => option($("layer"), l, layer.name));
}
function fillStates() {
  const sel = $("state"), layer = D.layers[+$("layer").value];
  sel.innerHTML = "";
  layer.states.forEach((st, s) => option(sel, s, st.label));
}
function fillUnits() {
  const sel = $("unit"), st = D.layers[+$("layer").value].states[+$("state").value];
  sel.innerHTML = "";
  for (const u of st.order) {
    const [f, r] = st.best[u];
    option(sel, u, "unit " + u + "  (r " + signed(r, 2) + ", " + D.properties[f] + ")");
  }
}

let shown = null;  // the current unit's values, for the tooltip
function colour() {
  if ($("mode").value === "surprise") {
    shown = null;
    for (let i = 0; i < n; i++) {
      spans[i].style.backgroundColor = mix(ORANGE, D.surprise[i] / D.surprise_max);
    }
    $("legend").innerHTML = "<i style='background:" + mix(ORANGE, 0) + "'></i> expected &nbsp;" +
      "<i style='background:" + mix(ORANGE, 1) + "'></i> surprising (&ge; " +
      D.surprise_max.toFixed(1) + " nats)";
    return;
  }
  const l = +$("layer").value, s = +$("state").value, u = +$("unit").value;
  const st = D.layers[l].states[s], range = st.bounded ? 1 : st.scale[u];
  shown = unitValues(l, s, u);
  for (let i = 0; i < n; i++) {
    const v = shown[i] / range;
    spans[i].style.backgroundColor = v >= 0 ? mix(RED, v) : mix(BLUE, -v);
  }
  $("legend").innerHTML = "<i style='background:" + mix(BLUE, 1) + "'></i> " + signed(-range, 2) +
    " &nbsp;<i style='background:" + mix(RED, 1) + "'></i> " + signed(range, 2);
}

function pick(l, s, u) {
  $("layer").value = l; fillStates();
  $("state").value = s; fillUnits();
  $("unit").value = u; $("mode").value = "unit";
  colour();
}

function fillRanking() {
  const table = document.createElement("table");
  for (const row of D.ranking) {
    const tr = table.insertRow(), th = document.createElement("th");
    th.textContent = row.property; tr.appendChild(th);
    if (!row.present) {
      tr.insertCell().textContent = "(not in this text)";
      continue;
    }
    for (const [l, s, u, r] of row.units) {
      const b = document.createElement("button");
      b.textContent = "L" + (l + 1) + " " + D.layers[l].states[s].kind + u + " " + signed(r, 2);
      b.title = D.layers[l].name + ", " + D.layers[l].states[s].label + ", unit " + u;
      b.addEventListener("click", () => pick(l, s, u));
      tr.insertCell().appendChild(b);
    }
  }
  $("ranking").appendChild(table);
}

const tip = $("tip");
let hovered = null;
function showTip(i, x, y) {
  const p = Math.exp(-D.surprise[i]);
  const names = { "\n": "newline", " ": "space", "\t": "tab" };
  const head = "<b>" + escapeHtml(names[chars[i]] || chars[i]) + "</b>";
  let text = head + " &middot; surprise " + D.surprise[i].toFixed(2) + " nats (p " +
    (100 * p).toFixed(1) + "%)";
  if (shown) text += " &middot; activation " + signed(shown[i], 3);
  text += "<br>most likely next:<table>";
  D.next.ids[i].forEach((id, k) => {
    const q = D.next.p[i][k];
    text += "<tr class='next'><td>" + escapeHtml(D.symbols[id]) + "</td><td>" +
      (100 * q).toFixed(1) + "%</td><td><span class='bar' style='width:" +
      Math.max(1, Math.round(80 * q)) + "px'></span></td></tr>";
  });
  tip.innerHTML = text + "</table>";
  tip.style.display = "block";
  tip.style.left = Math.min(x + 14, window.innerWidth - tip.offsetWidth - 8) + "px";
  tip.style.top = Math.min(y + 14, window.innerHeight - tip.offsetHeight - 8) + "px";
}
function escapeHtml(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
box.addEventListener("mouseover", (e) => {
  const i = e.target.dataset ? e.target.dataset.i : undefined;
  if (i === undefined) return;
  if (hovered) hovered.classList.remove("hover");
  hovered = e.target; hovered.classList.add("hover");
  showTip(+i, e.clientX, e.clientY);
});
box.addEventListener("mouseleave", () => {
  tip.style.display = "none";
  if (hovered) hovered.classList.remove("hover");
  hovered = null;
});

$("model").textContent = D.model + " \u00b7 " + n.toLocaleString("en") + " characters";
if (D.cut_message) { $("cut").textContent = D.cut_message; $("cut").hidden = false; }
fillLayers(); fillStates(); fillUnits(); fillRanking();
function showUnit() { $("mode").value = "unit"; colour(); }
$("layer").addEventListener("change", () => { fillStates(); fillUnits(); showUnit(); });
$("state").addEventListener("change", () => { fillUnits(); showUnit(); });
$("unit").addEventListener("change", showUnit);
$("mode").addEventListener("change", colour);
// start on the unit that follows a property most closely
let first = null;
for (const row of D.ranking) {
  for (const e of row.units) if (!first || Math.abs(e[3]) > Math.abs(first[3])) first = e;
}
if (first) pick(first[0], first[1], first[2]); else colour();
document.body.dataset.ready = "1";
"""
