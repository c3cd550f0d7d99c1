"""The Space's "Circuit graph" tab: the circuit automatic discovery finds for one clean/corrupted pair, drawn.

The user types a clean sentence and a corrupted one of the same token length. The metric is a logit
difference, logit[target] - logit[contrast], teacher-forced on the model's translation of the clean sentence at
one target position; by default the first position where the model's translations of the two sentences differ,
the clean translation's token there as the target and the corrupted translation's as the contrast.
`encdec_lens.circuit_discovery` scores every edge of the model's graph (EAP-IG, or EAP) and measures, by real
edge-level interventions, how faithful the circuit of the k best edges is, for a grid of about 20 values of k,
once per analysis: the slider then only picks one of them, and redraws from the kept result.

The picture (an SVG in a `gr.HTML`, every text escaped): the encoder on the left, the decoder on the right,
layers as rows from the embeddings at the bottom to the logits at the top; heads coloured by family, FFNs
grey; an edge's width is its |score|, its colour its sign, cross-attention's kv edges (from the encoder) are
dashed. Hovering an edge or a node shows its numbers (an SVG `<title>`); a click shows them under the picture
and, for a node, highlights its edges.

The API endpoint `/circuit_graph` returns the same data as JSON. Inputs it cannot work on raise `gr.Error` with
a message that says what to do (a wrongly typed argument: `api_args`' message naming it).
"""

from __future__ import annotations

import logging
import math
import time

import gradio as gr

import api_args
from encdec_lens import circuit_discovery as cd
from encdec_lens.heads import FAMILIES, FAMILY_TAGS
from encdec_lens.inputs import generate_ids, labels_from_ids
from safe_html import escape
from tabs.pair_views import (
    CIRCUITS_CSS,
    CircuitsInputError,
    chip,
    generation_config,
    message_html,
    pair_from_api,
    target_position,
    whole_number,
)
from translation_engine import ModelBundle

TAB_TITLE = "Circuit graph"
LOG = logging.getLogger("space")

GRID_POINTS = 20  # circuit sizes k measured per analysis (log-spaced from 1 edge to all of them)
MAX_STEPS = 20  # EAP-IG steps the tab and the API accept
METHOD_CHOICES = [("EAP-IG (integrated gradients)", "eap-ig"), ("EAP (one gradient)", "eap")]
CLEAN_EXAMPLE = "A man in a blue shirt is standing on a ladder."
CORRUPTED_EXAMPLE = "A man in a red shirt is standing on a ladder."

# Node colours by family (heads), and the edge colours by sign: the Circuits tab's bars (.bar.pos, .bar.neg).
FAMILY_COLOURS = {"encoder": "#0d9488", "decoder": "#d97706", "cross": "#7c3aed"}
FFN_COLOUR = "#64748b"
END_COLOUR = "#334155"  # the embeddings and the logits
POSITIVE, NEGATIVE = "#2563eb", "#dc2626"
LEGEND = {
    "encoder": "encoder self-attention head",
    "decoder": "decoder self-attention head (masked)",
    "cross": "cross-attention head",
}

INTRO = """\
**Which paths through the model carry the difference between two sentences?** Type a sentence (clean) and the
same sentence with one word changed (corrupted, **the same number of tokens**: e.g. *blue* → *red*). The model
translates both; the metric is the logit difference *logit[target] − logit[contrast]* at one position of the
clean translation (by default the first token where the two translations differ, its clean and corrupted
tokens). Every **edge** of the model's graph (an embedding, head or FFN writing into what a later head, FFN or
the logits reads) gets a score from edge attribution patching (EAP, or its integrated-gradients variant EAP-IG):
a first-order estimate of how much the metric drops when only that edge sees the corrupted run. A **circuit**
is the k edges of largest |score|; its **faithfulness** is measured for real: the model runs with only those
edges clean and all others corrupted, and 1 means it recovers the full clean-vs-corrupted difference, 0 none
of it.
"""

GRAPH_CSS = (
    CIRCUITS_CSS
    + """
.cg-wrap { overflow-x: auto; }
.cg-wrap svg { max-width: 980px; width: 100%; height: auto; }
.cg-wrap [data-info], .cg-wrap path.edge { cursor: pointer; }
.cg-wrap path.edge:hover { stroke-opacity: 1 !important; }
.cg-wrap .cg-dim { opacity: 0.06; }
.cg-wrap path.cg-sel, .cg-wrap .cg-sel circle, .cg-wrap .cg-sel rect { stroke: #f97316 !important; stroke-width: 3px; }
.cg-detail { min-height: 1.4em; font-family: ui-monospace, monospace; font-size: 0.88em; margin: 4px 0; }
.cg-readout .faith { font-size: 1.25em; font-weight: 700; font-family: ui-monospace, monospace; }
"""
)

# A click on an edge or a node shows its numbers below the picture; a node's click also dims every edge that
# does not touch it. A click elsewhere clears both.
CLICK_JS = """
element.addEventListener('click', (event) => {
  const box = element.querySelector('.cg-detail');
  if (!box) return;
  element.querySelectorAll('.cg-sel').forEach(e => e.classList.remove('cg-sel'));
  element.querySelectorAll('.cg-dim').forEach(e => e.classList.remove('cg-dim'));
  const item = event.target.closest('[data-info], path.edge');
  if (!item) { box.textContent = box.dataset.hint || ''; return; }
  item.classList.add('cg-sel');
  const title = item.querySelector('title');
  box.textContent = item.dataset.info || (title ? title.textContent : '');
  const name = item.dataset.node;
  if (name) {
    element.querySelectorAll('path.edge').forEach(edge => {
      if (edge.dataset.up !== name && edge.dataset.down !== name) edge.classList.add('cg-dim');
    });
  }
});
"""
DETAIL_HINT = "Click an edge or a node for its numbers (or hover over it)."


# --- inputs ----------------------------------------------------------------------------------------------------
def token_id(bundle: ModelBundle, text: str, what: str) -> int:
    """A typed token -> its id (`circuit_discovery.token_id`: one word read as one token, or a vocabulary token)."""
    try:
        return cd.token_id(bundle.tokenizer, str(text), what)
    except ValueError as err:
        raise CircuitsInputError(f"{err} Or leave it empty for the default.") from None


def first_difference(clean: list[int], corrupted: list[int]) -> int | None:
    """The first position where two translations (labels y_1 .. </s>) differ; None when they are the same."""
    for t, (a, b) in enumerate(zip(clean, corrupted)):
        if a != b:
            return t
    return None if len(clean) == len(corrupted) else min(len(clean), len(corrupted))


def k_grid(num_edges: int, points: int = GRID_POINTS) -> list[int]:
    """About `points` circuit sizes from 1 to `num_edges`, log-spaced, each once, ending with every edge."""
    if num_edges <= points:
        return list(range(1, num_edges + 1))
    n = points
    while True:
        ks = sorted({max(1, round(num_edges ** (i / (n - 1)))) for i in range(n)})
        if len(ks) >= points or n > 4 * points:
            return ks
        n += 1


# --- the analysis ----------------------------------------------------------------------------------------------
def analyse(
    bundle: ModelBundle,
    clean,
    corrupted,
    target="",
    contrast="",
    position=None,
    method="eap-ig",
    steps=5,
    counted_from: int = 0,
) -> dict:
    """Score every edge for the pair and measure the faithfulness curve. `position`: 0-based target position in
    the clean translation (negative: from the end), None for the first where the two translations differ;
    `counted_from`: how the caller counts positions (1 in the tab), for the messages. Raises CircuitsInputError
    with a message for the user."""
    method = str(method or "eap-ig").strip().lower()
    if method not in cd.METHODS:
        raise CircuitsInputError(f"Unknown method “{method}”: use “eap-ig” or “eap”.")
    steps = whole_number(steps, 5, "steps")
    if not 1 <= steps <= MAX_STEPS:
        raise CircuitsInputError(f"steps must be from 1 to {MAX_STEPS}, got {steps}.")
    pair = pair_from_api(bundle, clean)  # the clean sentence and the model's translation (Translate's decoding)
    prepared = bundle.prepare(corrupted)
    if prepared is None:
        raise CircuitsInputError(
            "Type the corrupted sentence: the clean sentence with one word changed (the same number of tokens)."
        )
    model, tokenizer = bundle.model, bundle.tokenizer
    try:  # the same-length check, with circuit_discovery's own message (what it needs and what to do)
        cd.make_task(model, pair.source_ids, prepared.input_ids, pair.target_ids, tokenizer=tokenizer)
    except ValueError as err:
        raise CircuitsInputError(str(err)) from None
    labels = labels_from_ids(model, pair.target_ids)  # y_1 .. </s>, as the task scores them
    corrupted_labels = generate_ids(model, prepared.input_ids, generation_config=generation_config(bundle))
    tokens = tokenizer.convert_ids_to_tokens(labels)
    corrupted_tokens = tokenizer.convert_ids_to_tokens(corrupted_labels)

    if position is None:
        position = first_difference(labels, corrupted_labels)
        if position is None and not (str(target or "").strip() and str(contrast or "").strip()):
            raise CircuitsInputError(
                "The model translates both sentences the same way "
                f"(“{tokenizer.decode(labels, skip_special_tokens=True)}”), "
                "so there is no first difference to explain: change a word that changes the translation, or pick "
                "a target position and type a target and a contrast token."
            )
        position = 0 if position is None else position
    count = len(labels)
    if not -count <= position < count:
        shown = position + counted_from if position >= 0 else position
        raise CircuitsInputError(
            f"Position {shown} does not exist: the clean translation has {count} tokens "
            f"({counted_from}..{count - 1 + counted_from} with the final </s>; -1 is the last)."
        )
    position %= count
    target_id = token_id(bundle, target, "target") if str(target or "").strip() else labels[position]
    if str(contrast or "").strip():
        contrast_id = token_id(bundle, contrast, "contrast")
    elif position < len(corrupted_labels) and corrupted_labels[position] != target_id:
        contrast_id = corrupted_labels[position]
    else:
        raise CircuitsInputError(
            f"The corrupted translation has no other token at position {position + counted_from} (its tokens: "
            f"{' '.join(corrupted_tokens)}): type a contrast token, the one the target should beat."
        )
    if contrast_id == target_id:
        raise CircuitsInputError(
            "The target and the contrast are the same token: their logit difference is 0 "
            "whatever the sentence. Pick two different tokens."
        )

    started = time.perf_counter()
    try:
        scores = cd.edge_attribution(
            model,
            pair.source_ids,
            prepared.input_ids,
            pair.target_ids,
            tokenizer=tokenizer,
            target=target_id,
            contrast=contrast_id,
            position=position,
            method=method,
            steps=steps,
        )
        attributed = time.perf_counter()
        ks = k_grid(len(scores.scores))
        curve = cd.faithfulness_curve(model, scores, ks)
    except ValueError as err:
        raise CircuitsInputError(str(err)) from None
    done = time.perf_counter()

    graph = scores.graph
    order = scores.order().tolist()
    rank = {e: r + 1 for r, e in enumerate(order)}
    edges = []
    for e in order:
        up, down, port = graph.edges[e]
        edges.append(
            {
                "edge": graph.edge_label(e),
                "upstream": graph.nodes[up].name,
                "downstream": graph.nodes[down].name,
                "input": port,
                "score": float(scores.scores[e]),
                "rank": rank[e],
            }
        )
    nodes = [
        {
            "name": n.name,
            "kind": n.kind,
            "stack": n.stack,
            "family": n.family,
            "layer": None if n.layer is None else n.layer + 1,
            "head": None if n.head is None else n.head + 1,
        }
        for n in graph.nodes
    ]
    return {
        "clean": tokenizer.decode(pair.source_ids, skip_special_tokens=True).strip(),
        "corrupted": tokenizer.decode(prepared.input_ids, skip_special_tokens=True).strip(),
        "clean_translation": tokenizer.decode(labels, skip_special_tokens=True).strip(),
        "corrupted_translation": tokenizer.decode(corrupted_labels, skip_special_tokens=True).strip(),
        "clean_translation_tokens": tokens,
        "corrupted_translation_tokens": corrupted_tokens,
        "position": position,
        "target": {"id": int(target_id), "token": tokenizer.convert_ids_to_tokens(int(target_id))},
        "contrast": {"id": int(contrast_id), "token": tokenizer.convert_ids_to_tokens(int(contrast_id))},
        "metric": scores.task.metric_name,
        "method": scores.method,
        "steps": scores.steps,
        "clean_metric": scores.clean_metric,
        "corrupted_metric": scores.corrupted_metric,
        "num_edges": len(edges),
        "nodes": nodes,
        "edges": edges,  # by |score|, largest first; rank 1 = largest
        "curve": curve.to_dict(),
        "smallest_k": curve.smallest_k,  # the smallest k of the grid with faithfulness >= curve.threshold
        "seconds": {"attribution": attributed - started, "faithfulness": done - attributed},
        "notices": list(pair.notices) + [n for n in prepared.notices if n not in pair.notices],
    }


def default_step(result: dict) -> int:
    """The slider's starting point (1-based index into the curve's ks): the smallest faithful circuit, else all."""
    ks = result["curve"]["ks"]
    smallest = result["smallest_k"]
    return ks.index(smallest) + 1 if smallest in ks else len(ks)


# --- the picture -----------------------------------------------------------------------------------------------
DX = 30  # between nodes of a row
ROW = 100  # between layers
R = 9  # a head's radius
STACK_GAP = 120


class Layout:
    """Node name -> (x, y) on the canvas: encoder left, decoder right, layer 1 at the bottom."""

    def __init__(self, nodes: list[dict]):
        enc_heads = max([n["head"] for n in nodes if n["family"] == "encoder"] + [1])
        dec_heads = max([n["head"] for n in nodes if n["family"] == "decoder"] + [1])
        cross_heads = max([n["head"] for n in nodes if n["family"] == "cross"] + [1])
        enc_layers = max([n["layer"] for n in nodes if n["stack"] == "encoder" and n["layer"]] + [1])
        dec_layers = max([n["layer"] for n in nodes if n["stack"] == "decoder" and n["layer"]] + [1])
        layers = max(enc_layers, dec_layers)
        self.top = 40
        self.bottom = self.top + (layers + 1) * ROW + 40  # the logits row, the layers, the embeddings
        self.enc_x = 60
        enc_width = enc_heads * DX + DX
        self.dec_x = self.enc_x + enc_width + STACK_GAP
        dec_width = (cross_heads + dec_heads) * DX + 1.6 * DX
        self.width = self.dec_x + dec_width + 60
        self.height = self.bottom + 40
        self.enc_width, self.dec_width = enc_width, dec_width
        self.layers = layers
        self.enc_heads, self.dec_heads, self.cross_heads = enc_heads, dec_heads, cross_heads
        self.pos = {n["name"]: self._place(n) for n in nodes}

    def row_y(self, layer: int) -> float:  # layer 1 .. L; 0 = the embeddings
        return self.bottom - 20 - layer * ROW

    def _place(self, n: dict) -> tuple[float, float]:
        if n["kind"] == "embed":
            x = self.enc_x + self.enc_width / 2 - DX / 2 if n["stack"] == "encoder" else self.dec_x + self.dec_width / 2
            return x, self.row_y(0)
        if n["kind"] == "logits":
            return self.dec_x + self.dec_width / 2, self.row_y(self.layers + 1) + 10  # above the last FFN
        y = self.row_y(n["layer"])
        if n["stack"] == "encoder":  # heads, then the FFN (a sub-layer later: a little higher)
            if n["kind"] == "ffn":
                return self.enc_x + self.enc_heads * DX + 0.3 * DX, y - 42
            return self.enc_x + (n["head"] - 1) * DX, y
        # Decoder: cross-attention heads nearest the encoder (their kv inputs come from it), self-attention heads,
        # then the FFN; each sub-layer a little higher than the one before.
        if n["kind"] == "ffn":
            return self.dec_x + (self.cross_heads + self.dec_heads) * DX + 0.6 * DX, y - 64
        if n["family"] == "cross":
            return self.dec_x + (n["head"] - 1) * DX, y - 32
        return self.dec_x + (self.cross_heads + 0.6 + n["head"] - 1) * DX, y


def _fmt(value: float) -> str:
    return f"{value:.0f}"


def _edge_path(layout: Layout, edge: dict) -> str:
    (x1, y1), (x2, y2) = layout.pos[edge["upstream"]], layout.pos[edge["downstream"]]
    if edge["input"] == "kv":  # from the encoder across to the decoder: leave right, arrive from the left
        bend = max(40.0, (x2 - x1) / 2)
        return (
            f"M{_fmt(x1)},{_fmt(y1)} C{_fmt(x1 + bend)},{_fmt(y1)} {_fmt(x2 - bend)},{_fmt(y2)} {_fmt(x2)},{_fmt(y2)}"
        )
    bend = max(18.0, (y1 - y2) / 2)  # upwards: leave at the top, arrive from below
    return f"M{_fmt(x1)},{_fmt(y1)} C{_fmt(x1)},{_fmt(y1 - bend)} {_fmt(x2)},{_fmt(y2 + bend)} {_fmt(x2)},{_fmt(y2)}"


def _node_numbers(result: dict, k: int) -> dict:
    """Per node: the |score| of all its edges (in and out), how many of its edges are kept, and its rank."""
    total = {n["name"]: 0.0 for n in result["nodes"]}
    kept_in = dict.fromkeys(total, 0)
    kept_out = dict.fromkeys(total, 0)
    for edge in result["edges"]:
        for end in (edge["upstream"], edge["downstream"]):
            total[end] += abs(edge["score"])
        if edge["rank"] <= k:
            kept_out[edge["upstream"]] += 1
            kept_in[edge["downstream"]] += 1
    ranked = sorted(total, key=lambda name: -total[name])
    rank = {name: i + 1 for i, name in enumerate(ranked)}
    return {name: (total[name], kept_in[name], kept_out[name], rank[name]) for name in total}


def _node_svg(layout: Layout, node: dict, numbers: tuple, n_nodes: int) -> str:
    total, kept_in, kept_out, rank = numbers
    x, y = layout.pos[node["name"]]
    info = (
        f"{node['name']}: |score| of its edges {total:.4g} (node rank {rank} of {n_nodes}); in this circuit "
        f"{kept_in} edge{'s' if kept_in != 1 else ''} in, {kept_out} out"
    )
    active = kept_in + kept_out > 0 or node["kind"] == "logits"
    opacity = "1" if active else "0.28"
    family = node["family"] or node["kind"]
    common = (
        f'class="node fam-{escape(family)}{" in-circuit" if active else ""}" data-node="{escape(node["name"])}" '
        f'data-info="{escape(info)}" opacity="{opacity}"'
    )
    title = f"<title>{escape(info)}</title>"
    if node["kind"] == "head":
        colour = FAMILY_COLOURS[node["family"]]
        return (
            f'<g {common}>{title}<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="{R}" fill="{colour}" stroke="white" '
            f'stroke-width="1"/><text x="{_fmt(x)}" y="{_fmt(y + 3)}" text-anchor="middle" font-size="9" '
            f'fill="white" pointer-events="none">{node["head"]}</text></g>'
        )
    if node["kind"] == "ffn":
        w, h, colour, label = 30, 16, FFN_COLOUR, "FFN"
    else:
        w, h, colour, label = 58, 18, END_COLOUR, node["name"]
    return (
        f'<g {common}>{title}<rect x="{_fmt(x - w / 2)}" y="{_fmt(y - h / 2)}" width="{w}" height="{h}" rx="4" '
        f'fill="{colour}"/><text x="{_fmt(x)}" y="{_fmt(y + 3.5)}" text-anchor="middle" font-size="9.5" '
        f'fill="white" pointer-events="none">{escape(label)}</text></g>'
    )


def graph_svg(result: dict, k: int) -> str:
    """The graph with the k best edges drawn (width = |score|, colour = sign, kv edges dashed)."""
    layout = Layout(result["nodes"])
    edges = [e for e in result["edges"] if e["rank"] <= k]
    scale = max([abs(e["score"]) for e in result["edges"]] + [1e-12])
    n_edges = result["num_edges"]
    parts = []
    for edge in reversed(edges):  # the weakest first, the strongest on top
        rel = abs(edge["score"]) / scale
        colour = POSITIVE if edge["score"] >= 0 else NEGATIVE
        info = f"{edge['edge']}: score {edge['score']:+.4g}, rank {edge['rank']} of {n_edges}"
        dash = ' stroke-dasharray="5 3"' if edge["input"] == "kv" else ""
        parts.append(
            f'<path class="edge {"pos" if edge["score"] >= 0 else "neg"} port-{escape(edge["input"])}" '
            f'd="{_edge_path(layout, edge)}" stroke="{colour}" stroke-width="{0.6 + 5.4 * rel:.1f}" '
            f'stroke-opacity="{0.25 + 0.65 * rel:.2f}"{dash} data-up="{escape(edge["upstream"])}" '
            f'data-down="{escape(edge["downstream"])}" data-rank="{edge["rank"]}"><title>{escape(info)}</title></path>'
        )
    numbers = _node_numbers(result, k)
    nodes = "".join(_node_svg(layout, n, numbers[n["name"]], len(result["nodes"])) for n in result["nodes"])
    labels = []
    for layer in range(1, layout.layers + 1):
        y = layout.row_y(layer)
        labels.append(
            f'<text x="{layout.enc_x - 34}" y="{_fmt(y + 3)}" font-size="10" fill="currentColor" '
            f'opacity="0.6">L{layer}</text>'
        )
        labels.append(
            f'<text x="{_fmt(layout.dec_x + layout.dec_width + 8)}" y="{_fmt(y + 3)}" font-size="10" '
            f'fill="currentColor" opacity="0.6">L{layer}</text>'
        )
    heads = [
        (layout.enc_x + layout.enc_width / 2 - DX / 2, "Encoder (reads the source)"),
        (layout.dec_x + layout.dec_width / 2, "Decoder (writes the translation)"),
    ]
    for x, text in heads:
        labels.append(
            f'<text x="{_fmt(x)}" y="22" text-anchor="middle" font-size="12" font-weight="600" '
            f'fill="currentColor">{escape(text)}</text>'
        )
    legend_y = layout.height - 14
    legend, x = [], 10
    for family in FAMILIES:
        legend.append(
            f'<circle cx="{x + 6}" cy="{legend_y - 4}" r="6" fill="{FAMILY_COLOURS[family]}"/>'
            f'<text x="{x + 16}" y="{legend_y}" font-size="10" fill="currentColor">'
            f"{FAMILY_TAGS[family]}</text>"
        )
        x += 30 + 7 * len(FAMILY_TAGS[family])
    for colour, text, dash in (
        (POSITIVE, "score > 0", ""),
        (NEGATIVE, "score < 0", ""),
        ("currentColor", "kv (from the encoder)", ' stroke-dasharray="5 3"'),
    ):
        legend.append(
            f'<line x1="{x}" y1="{legend_y - 4}" x2="{x + 22}" y2="{legend_y - 4}" stroke="{colour}" '
            f'stroke-width="3"{dash}/><text x="{x + 27}" y="{legend_y}" font-size="10" '
            f'fill="currentColor">{escape(text)}</text>'
        )
        x += 40 + 6 * len(text)
    width = max(layout.width, x + 10)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="cg-svg" viewBox="0 0 {_fmt(width)} {_fmt(layout.height)}" '
        f'role="img" aria-label="circuit graph, {len(edges)} of {n_edges} edges" data-k="{k}">'
        f'{"".join(labels)}<g class="edges" fill="none" stroke-linecap="round">{"".join(parts)}</g>'
        f'<g class="nodes">{nodes}</g>'
        f"{''.join(legend)}</svg>"
    )


def curve_svg(curve: dict, step: int) -> str:
    """Faithfulness against k (log scale), the chosen circuit marked."""
    ks, values = curve["ks"], curve["faithfulness"]
    w, h, left, pad = 300, 130, 34, 12
    lo, hi = min(0.0, min(values)), max(1.0, max(values))
    span_k = math.log(ks[-1]) if ks[-1] > 1 else 1.0

    def xy(k, f):
        return (
            left + (w - left - pad) * (math.log(k) / span_k if ks[-1] > 1 else 1.0),
            h - 22 - (h - 22 - pad) * (f - lo) / (hi - lo),
        )

    points = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in (xy(k, f) for k, f in zip(ks, values)))
    _, y_threshold = xy(1, curve["threshold"])
    _, y_one = xy(1, 1.0)
    _, y_zero = xy(1, 0.0)
    cx, cy = xy(ks[step - 1], values[step - 1])
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" id="cg-curve">'
        f'<line x1="{left}" y1="{_fmt(y_one)}" x2="{w - pad}" y2="{_fmt(y_one)}" stroke="currentColor" '
        'opacity="0.25"/>'
        f'<line x1="{left}" y1="{_fmt(y_zero)}" x2="{w - pad}" y2="{_fmt(y_zero)}" stroke="currentColor" '
        'opacity="0.25"/>'
        f'<line x1="{left}" y1="{_fmt(y_threshold)}" x2="{w - pad}" y2="{_fmt(y_threshold)}" stroke="#16a34a" '
        f'stroke-dasharray="3 3" opacity="0.8"/>'
        f'<text x="{left - 4}" y="{_fmt(y_one + 3)}" font-size="9" text-anchor="end" fill="currentColor">1</text>'
        f'<text x="{left - 4}" y="{_fmt(y_zero + 3)}" font-size="9" text-anchor="end" fill="currentColor">0</text>'
        f'<text x="{left - 4}" y="{_fmt(y_threshold + 3)}" font-size="9" text-anchor="end" fill="#16a34a">'
        f"{curve['threshold']:g}</text>"
        f'<polyline points="{points}" fill="none" stroke="currentColor" stroke-width="1.5"/>'
        f'<circle cx="{_fmt(cx)}" cy="{_fmt(cy)}" r="4.5" fill="#f97316"/>'
        f'<text x="{left}" y="{h - 6}" font-size="9" fill="currentColor">1</text>'
        f'<text x="{w - pad}" y="{h - 6}" font-size="9" text-anchor="end" fill="currentColor">{ks[-1]} edges '
        f"(log scale)</text></svg>"
    )


def readout_html(result: dict, step: int) -> str:
    """The chosen circuit's size and faithfulness, and the curve."""
    curve = result["curve"]
    k, f = curve["ks"][step - 1], curve["faithfulness"][step - 1]
    smallest = result["smallest_k"]
    reach = (
        f"the smallest circuit of the grid with faithfulness ≥ {curve['threshold']:g} has "
        f'<b id="cg-smallest">{smallest}</b> edges'
        if smallest is not None
        else f"no circuit of the grid reaches faithfulness {curve['threshold']:g}"
    )
    return (
        f'<div class="cg-readout"><div>Circuit of <b id="cg-k-value">{k}</b> of {result["num_edges"]} edges: '
        f'faithfulness <span class="faith" id="cg-faith" data-faithfulness="{f!r}">{f:.3f}</span></div>'
        f'<div class="small">{reach}; the full graph is 1, the empty one 0.</div>{curve_svg(curve, step)}</div>'
    )


def summary_html(result: dict) -> str:
    """Which pair, which metric, the two ends, the timing."""
    position = result["position"]

    def tokens(items: list[str]) -> str:
        return " ".join(
            f'<span class="cand{" hit" if t == position else ""}"><bdi>{escape(tok)}</bdi></span>'
            for t, tok in enumerate(items)
        )

    seconds = result["seconds"]
    method = "EAP-IG, " + f"{result['steps']} steps" if result["method"] == "eap-ig" else "EAP"
    notices = "".join(f'<div class="notice">{escape(n)}</div>' for n in result["notices"])
    return (
        f"{notices}<div>Clean <b>{escape(result['clean'])}</b> → corrupted <b>{escape(result['corrupted'])}</b></div>"
        f"<div>clean translation: {tokens(result['clean_translation_tokens'])}</div>"
        f"<div>corrupted translation: {tokens(result['corrupted_translation_tokens'])}</div>"
        f"<div>Metric: logit[{chip(result['target']['token'])}] − logit[{chip(result['contrast']['token'])}] at "
        f'token <b id="cg-at">{position + 1}</b> of the clean translation (highlighted): clean '
        f"<b>{result['clean_metric']:.3f}</b>, corrupted <b>{result['corrupted_metric']:.3f}</b>.</div>"
        f'<div class="small">{result["num_edges"]} edges scored with {method} in {seconds["attribution"]:.2f} s; '
        f"{len(result['curve']['ks'])} circuits measured in {seconds['faithfulness']:.2f} s.</div>"
    )


def graph_html(result: dict, step: int) -> str:
    k = result["curve"]["ks"][step - 1]
    return (
        f'<div class="cg-wrap">{graph_svg(result, k)}</div>'
        f'<div class="cg-detail" id="cg-detail" data-hint="{escape(DETAIL_HINT)}">{escape(DETAIL_HINT)}</div>'
    )


# --- UI handlers (plain functions: testable without a server) ---------------------------------------------------
def _step(result: dict, value) -> int:
    n = len(result["curve"]["ks"])
    try:
        return min(max(int(value), 1), n)
    except (TypeError, ValueError):
        return default_step(result)


def analysis_outputs(bundle: ModelBundle, clean, corrupted, target, contrast, position, method, steps):
    """(summary HTML or a message, slider update, readout HTML, graph HTML, the result for the state)."""
    try:
        # The tab counts from 1 (-1 = the last), as the Circuits tab does; 0 or empty (what an empty box sends):
        # the first position where the two translations differ.
        position = None if position is None or str(position).strip() in ("", "0", "0.0") else target_position(position)
        result = analyse(bundle, clean, corrupted, target, contrast, position, method, steps, counted_from=1)
    except CircuitsInputError as err:
        return message_html(str(err)), gr.update(), "", "", None
    step = default_step(result)
    slider = gr.update(minimum=1, maximum=len(result["curve"]["ks"]), value=step, interactive=True)
    return summary_html(result), slider, readout_html(result, step), graph_html(result, step), result


def slider_outputs(result: dict | None, value):
    """(readout HTML, graph HTML) for the circuit at this point of the grid; nothing before an analysis."""
    if not result:
        return gr.skip(), gr.skip()
    step = _step(result, value)
    return readout_html(result, step), graph_html(result, step)


# --- API ---------------------------------------------------------------------------------------------------
def graph_json(
    bundle: ModelBundle, clean, corrupted, target="", contrast="", position=None, method="eap-ig", steps=5
) -> dict:
    """`analyse`, or gr.Error with its message (one line in the server's log, no traceback)."""
    try:
        return analyse(bundle, clean, corrupted, target, contrast, position, method, steps)
    except CircuitsInputError as err:
        LOG.warning("space/app.py: refused /circuit_graph: %s", err)
        raise gr.Error(str(err), print_exception=False) from None


# --- the tab -------------------------------------------------------------------------------------------------
def build(bundle: ModelBundle, shared) -> None:
    """The tab's components and events (called by app.build_demo inside its gr.Tab)."""
    gr.Markdown(INTRO)
    with gr.Row():
        clean = gr.Textbox(value=CLEAN_EXAMPLE, label="Clean sentence", elem_id="cg-clean", max_lines=2)
        corrupted = gr.Textbox(
            value=CORRUPTED_EXAMPLE,
            label="Corrupted sentence (one word changed, same token length)",
            elem_id="cg-corrupted",
            max_lines=2,
        )
    with gr.Row():
        target = gr.Textbox(
            label="Target token (empty: the clean translation's token)", elem_id="cg-target", max_lines=1
        )
        contrast = gr.Textbox(
            label="Contrast token (empty: the corrupted translation's token)", elem_id="cg-contrast", max_lines=1
        )
        position = gr.Number(
            value=0,
            precision=0,
            label="Target position (1 = the first token of the translation, "
            "-1 = the last; 0: where the two translations first differ)",
            elem_id="cg-position",
        )
    with gr.Row():
        method = gr.Radio(METHOD_CHOICES, value="eap-ig", label="Edge scores", elem_id="cg-method")
        steps = gr.Slider(1, MAX_STEPS, value=5, step=1, label="EAP-IG steps", elem_id="cg-steps")
        button = gr.Button("Find the circuit", variant="primary", elem_id="cg-btn")
    summary = gr.HTML(elem_id="cg-summary", css_template=GRAPH_CSS)
    with gr.Row():
        with gr.Column(scale=1):
            size = gr.Slider(
                1,
                GRID_POINTS,
                value=GRID_POINTS,
                step=1,
                interactive=False,
                elem_id="cg-k",
                label="Circuit size: a point of the measured grid, from one edge to all (its k below)",
            )
            readout = gr.HTML(elem_id="cg-readout", css_template=GRAPH_CSS)
        with gr.Column(scale=3):
            graph = gr.HTML(elem_id="cg-graph", css_template=GRAPH_CSS, js_on_load=CLICK_JS)
    result = gr.State(None)
    private = dict(api_visibility="private")

    def run(clean_, corrupted_, target_, contrast_, position_, method_, steps_):
        return analysis_outputs(bundle, clean_, corrupted_, target_, contrast_, position_, method_, steps_)

    button.click(
        run,
        inputs=[clean, corrupted, target, contrast, position, method, steps],
        outputs=[summary, size, readout, graph, result],
        **private,
    )
    size.input(
        slider_outputs,
        inputs=[result, size],
        outputs=[readout, graph],
        show_progress="hidden",
        trigger_mode="always_last",
        **private,
    )

    def circuit_graph(
        clean: str,
        corrupted: str,
        target: str = "",
        contrast: str = "",
        position: int | None = None,
        method: str = "eap-ig",
        steps: int = 5,
    ) -> dict:
        """Edge attribution (EAP-IG or EAP) for a clean and a corrupted sentence of the same token length, on the
        logit difference logit[target] - logit[contrast] at `position` (counted from 0 in the model's translation
        of `clean`; null: the first where the two translations differ; empty target/contrast: the clean and the
        corrupted translation's tokens there). `edges`: every edge with its `score` and `rank` (largest |score|
        first); `curve`: faithfulness of the top-k circuit for a grid of k (`ks`); `smallest_k`: the smallest k
        of the grid reaching faithfulness 0.8."""
        position_ = (
            None
            if position is None
            else api_args.whole_number("position", position, "a whole number (0-based, -1 = the last) or null")
        )
        return graph_json(
            bundle,
            api_args.text("clean", clean),
            api_args.text("corrupted", corrupted),
            api_args.text("target", target),
            api_args.text("contrast", contrast),
            position_,
            api_args.text("method", method),
            api_args.whole_number("steps", steps, f"a whole number from 1 to {MAX_STEPS}"),
        )

    gr.api(circuit_graph, api_name="circuit_graph")


__all__ = [
    "TAB_TITLE",
    "analyse",
    "analysis_outputs",
    "build",
    "first_difference",
    "graph_json",
    "graph_svg",
    "k_grid",
    "slider_outputs",
    "token_id",
]
