"""The "Inside one head" tab: one attention head, step by step, with the served model's real numbers.

For the sentence on screen and a chosen attention (encoder self, decoder self, cross), layer, head and
token, the tab shows the steps of the illustrated explanations of the Transformer next to the numbers the
model really computes (the numbers come from `encdec_lens.walkthrough.walkthrough`, the words from
`walkthrough_text.explain`): embedding + positional encoding (with a picture of the table), q, k and v, the
scores, their scaling, the softmax weights as bars (the decoder's future positions masked), the weighted
values and their sum z, all heads concatenated and projected, the residual add and layer norm, the rest of
the layer, and the final linear + softmax.

It opens on "The animal didn't cross the street because it was too tired." with the token "it", in the
encoder head that sends the most attention from "it" to "animal" in the served model (`strongest_link`).
After a translation on the main tab it follows that sentence and translation: always the newest one (a view
computed for an older pair or translation is dropped, see `app.ViewKeys`). Layers and heads are numbered from 1
on screen, as on the main tab; the API endpoint `/walkthrough` takes 0-based indices, like the arrays of
`/attention` and like `encdec_lens.walkthrough.walkthrough`.

The handlers are plain functions of the `ModelBundle` and the inputs (testable without a server); `build`
only wires them to components. Every token and every piece of typed text goes through `safe_html.escape`.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import api_args
from components import FOLLOW_UP, picture
from encdec_lens import walkthrough as wt
from encdec_lens.heads import FAMILIES, FAMILY_TITLES
from safe_html import TOKEN_CSS, escape, visible
from translation_engine import BOX_MAX_CHARS, EMPTY_MESSAGE, MAX_BATCH_SENTENCES, ModelBundle

from .walkthrough_text import Explanation, TitledStep, explain

TAB_TITLE = "Inside one head"
PAIR = "walkthrough pair"  # the name under which the tab's sentence pairs are keyed (`SharedUI.views`)
DEFAULT_LAYER, DEFAULT_HEAD = 0, 0  # the API's defaults, and the pickers' when a value is missing
LINK = ("it", "animal")  # the tab opens on the encoder head that links these two tokens most
STRONG_LINK = 0.25  # a weight below this is not called a strong link in the opening note
N_FIRST = 8  # leading entries shown of each vector
QUERY_SIDE = {"encoder": "source", "decoder": "target", "cross": "target"}
KIND_CHOICES = [(FAMILY_TITLES[kind], kind) for kind in FAMILIES]

INTRO = """\
**Inside one attention head.** Pick a token, a layer and a head, and follow what this head computes for that
token, in the order of the paper: embedding and position, query/key/value, scores, softmax, the weighted sum
of values, then the heads put back together. Every number is the model's own, from one forward pass over the
sentence and its translation. The tab follows the sentence you translate on the first tab, or type one here.
"""

WALKTHROUGH_CSS = (
    TOKEN_CSS
    + """
.wt-step { border: 1px solid rgba(148, 163, 184, 0.45); border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
.wt-step h3 { margin: 2px 0 6px; font-size: 1.05em; }
.wt-step p { margin: 4px 0 8px; max-width: 75em; }
.wt-step code, .wt-num { font-family: ui-monospace, monospace; font-size: 0.85em; }
.wt-dim { opacity: 0.7; font-size: 0.85em; }
.wt-step code { white-space: nowrap; }
table.wt { border-collapse: collapse; font-size: 0.88em; margin: 4px 0; border: none !important; }
table.wt tr { border: none !important; }
table.wt td, table.wt th { padding: 2px 8px; border: none !important;
       border-bottom: 1px solid rgba(148, 163, 184, 0.3) !important; text-align: left; vertical-align: middle; }
table.wt th, table.wt td.num { white-space: nowrap; }
table.wt td.num { text-align: right; font-family: ui-monospace, monospace; }
table.wt tr.masked td { opacity: 0.45; }
table.wt tr.top td { font-weight: 600; }
table.wt tr.chosen td { background: rgba(99, 102, 241, 0.10); }
.wt-bar { display: inline-block; height: 10px; background: #6366f1; border-radius: 2px; vertical-align: middle; }
.wt-bar.masked { background: repeating-linear-gradient(45deg, #94a3b8 0 3px, transparent 3px 6px); width: 40px; }
.wt-summary { margin: 4px 0; }
ul.wt-texts { list-style: none; padding-left: 0; }  /* the titles carry the step numbers */
.wt-error { padding: 6px 10px; border-radius: 6px; background: rgba(239, 68, 68, 0.12);
       border: 1px solid rgba(239, 68, 68, 0.5); margin: 4px 0; }
"""
)


# --- the sentence pair ------------------------------------------------------------------------------------
def make_pair(bundle: ModelBundle, sentence, translation=None) -> dict:
    """The sentence pair a walkthrough reads, as a small JSON-able dict (it is also the tab's state).

    The source is cleaned and cut as the main tab does (`bundle.prepare`); the target is `translation` when
    one is given, else the model's own translation with the Space's default decoding. Keys: `source_ids`,
    `target` (ids: the given text's labels `y_1 .. y_n </s>`, or the decoder's reading `<s> y_1 .. y_n` of the
    model's own), `translation` (text) and `notices`. Raises ValueError for an empty sentence, and for a given
    translation that is not valid text or longer than the model writes (`ModelBundle.target_ids`, the limit of
    the Circuits endpoints too).
    """
    source = bundle.prepare(sentence)
    if source is None:
        raise ValueError(EMPTY_MESSAGE)
    translation = "" if translation is None else str(translation)
    if translation.strip():
        target = bundle.target_ids(translation)
        return {
            "source_ids": source.input_ids,
            "target": target,
            "translation": translation.strip(),
            "notices": source.notices,
        }
    result = bundle.translate(source.text, with_attention=False)
    # The cleaned text is translated, so the notices about cleaning it come from `source`.
    notices = source.notices + [n for n in result.notices if n not in source.notices]
    return {
        "source_ids": source.input_ids,
        "target": result.decoder_ids,
        "translation": result.text,
        "notices": notices,
    }


def pair_from_main_tab(translation, attention_state) -> dict | None:
    """The pair the main tab just translated, or None when it had no text.

    Everything comes from the main tab's state (the exact ids, the texts, the notices and the translation's
    `key`), so the pair is the one translated even when the source box has been edited since; `translation`
    is only used for a state without its text.
    """
    if not attention_state:
        return None
    return {
        "source_ids": list(attention_state["source_ids"]),
        "target": list(attention_state["decoder_ids"]),
        "translation": attention_state.get("translation", translation or ""),
        "sentence": attention_state.get("source"),
        "notices": list(attention_state.get("notices", [])),
        "key": attention_state.get("key"),
    }


def run_walkthrough(
    bundle: ModelBundle,
    pair: dict,
    kind: str,
    layer: int,
    head: int,
    position: int | None = None,
    token: str | None = None,
) -> wt.Walkthrough:
    """`encdec_lens.walkthrough.walkthrough` on the bundle's model for a pair from `make_pair` (0-based layer
    and head): the numbers; `walkthrough_text.explain` adds the words."""
    return wt.walkthrough(
        bundle.model,
        bundle.tokenizer,
        pair["source_ids"],
        pair["target"],
        kind=kind,
        layer=layer,
        head=head,
        position=position,
        token=token,
        n_first=N_FIRST,
    )


# --- HTML of the steps ------------------------------------------------------------------------------------
def _vector(v: dict | None) -> str:
    """A vector from walkthrough's data: its first entries, its size and its norm."""
    if v is None:
        return ""
    entries = ", ".join(f"{x:.3f}" for x in v["first"])
    more = ", …" if v["dim"] > len(v["first"]) else ""
    return f'<code>[{entries}{more}]</code> <span class="wt-dim">{v["dim"]} numbers · norm {v["norm"]:.3f}</span>'


def _vector_rows(rows) -> str:
    """A two-column table: label (the app's own words, escaped anyway), vector."""
    body = "".join(f"<tr><th>{escape(label)}</th><td>{_vector(v)}</td></tr>" for label, v in rows if v is not None)
    return f'<table class="wt">{body}</table>'


def _tok(token: str, index: int | None = None) -> str:
    idx = "" if index is None else f'<span class="idx">{index}</span>'
    return f'<span class="tok">{idx}<bdi>{escape(token)}</bdi></span>'


def _bar(weight: float, masked: bool = False, width: int = 160) -> str:
    if masked:
        return '<span class="wt-bar masked" title="masked"></span>'
    return f'<span class="wt-bar" style="width:{max(1, round(width * weight))}px"></span>'


def _card(step: TitledStep, body: str, title: str | None = None) -> str:
    return (
        f'<section class="wt-step" id="wt-step-{step.id}"><h3>{escape(title or step.title)}</h3>'
        f"<p>{escape(step.text)}</p>{body}</section>"
    )


def _shape(dims) -> str:
    return "[" + " × ".join(str(d) for d in dims) + "]"


def summary_html(told: Explanation, notices=()) -> str:
    """One line saying what is shown: the token, the attention, layer and head (1-based), and the sizes."""
    result = told.result
    s = result.sizes
    norm = "pre-LN" if s["normalize_before"] else "post-LN, as in the paper"
    parts = [f'<div class="notice">{escape(n)}</div>' for n in notices]
    parts.append(
        f'<div class="wt-summary">Token {_tok(result.token, result.position)} · {escape(told.kind_label)} · '
        f"layer {result.layer + 1} of {s['encoder_layers'] if result.kind == 'encoder' else s['decoder_layers']} · "
        f"head {result.head + 1} of {s['heads']}</div>"
        f'<div class="wt-dim">This model: d_model = {s["d_model"]}, h = {s["heads"]} heads of d_k = {s["d_k"]}, '
        f"d_ff = {s['d_ff']}, {s['encoder_layers']} encoder + {s['decoder_layers']} decoder layers, vocabulary "
        f"{s['vocab']:,}, {norm}. Source: {s['source_length']} tokens; translation: {s['target_length']} tokens "
        "as the decoder reads them.</div>"
    )
    return "".join(parts)


def embedding_html(told: Explanation) -> str:
    """Step 1: the embedding, scaled, plus the positional encoding, and their sum."""
    step = told.step("embedding")
    d = step.data
    rows = [
        (f"embedding of token id {d['token_id']}", d["embedding"]),
        (f"× sqrt(d_model) = {d['scale']:.2f}", d["scaled_embedding"]),
        (f"+ positional encoding of position {d['position']}", d["positional_encoding"]),
        ("= the vector entering layer 1", d["sum"]),
    ]
    table = told.step("positional_table")
    return _card(step, _vector_rows(rows)) + (
        f'<section class="wt-step" id="wt-step-positional_table"><h3>{escape(table.title)}</h3>'
        f"<p>{escape(table.text)}</p></section>"
    )


def attention_table_html(told: Explanation) -> str:
    """Steps 4-7 in one table: per key token q · k, the scaled score, the softmax weight (with a bar) and the
    weighted value; then z, the head's output for the token."""
    scores, scaled = told.step("scores"), told.step("scaled_scores")
    softmax, weighted = told.step("softmax"), told.step("weighted_values")
    raw, sc = scores.data["raw_scores"], scaled.data["scaled_scores"]
    top = softmax.data["argmax"]
    rows = []
    for j, row in enumerate(weighted.data["rows"]):
        cls = "masked" if row["masked"] else ("top" if j == top else "")
        if row["masked"]:
            cells = (
                f'<td class="num">{raw[j]:.3f}</td><td class="num">−∞ (masked)</td>'
                f'<td class="num w">0 (masked)</td><td>{_bar(0.0, masked=True)}</td><td></td>'
            )
        else:
            cells = (
                f'<td class="num">{raw[j]:.3f}</td><td class="num">{sc[j]:.3f}</td>'
                f'<td class="num w">{row["weight"]:.4f}</td><td>{_bar(row["weight"])}</td>'
                f"<td>{_vector(row['weighted'])}</td>"
            )
        rows.append(f'<tr class="{cls}"><td>{_tok(row["token"], j)}</td>{cells}</tr>')
    header = (
        "<tr><th>key token</th><th>4. q · k</th><th>5. ÷ √d_k</th><th>6. softmax</th><th></th>"
        "<th>7. weight × value</th></tr>"
    )
    texts = "".join(f"<li><b>{escape(s.title)}.</b> {escape(s.text)}</li>" for s in (scores, scaled, softmax))
    z = weighted.data["z"]
    return (
        f'<section class="wt-step" id="wt-step-attention"><h3>4–7. Scores, softmax, weighted values, z</h3>'
        f'<ul class="wt-texts">{texts}<li><b>{escape(weighted.title)}.</b> {escape(weighted.text)}</li></ul>'
        f'<table class="wt" id="wt-weights">{header}{"".join(rows)}</table>'
        f"<p><b>z</b> = Σ weight × value = {_vector(z)}</p></section>"
    )


def multi_head_html(told: Explanation) -> str:
    """Step 8: every head's z and favourite token, the concatenation and W^O with this model's shapes."""
    step = told.step("multi_head")
    d, sh = step.data, step.data["shapes"]
    rows = "".join(
        f'<tr class="{"chosen" if h["head"] == told.result.head else ""}"><td>head {h["head"] + 1}</td>'
        f'<td>{_tok(h["top_token"])}</td><td class="num">{h["top_weight"]:.3f}</td><td>{_vector(h["z"])}</td></tr>'
        for h in d["heads"]
    )
    heads, length, d_k = sh["Q_per_head"]
    shapes = (
        f"Q, K, V per head {_shape(sh['Q_per_head'])} (keys and values {_shape(sh['K_V_per_head'])}) → weights "
        f"{_shape(sh['weights'])} → Z per head {_shape(sh['Z_per_head'])} → concatenated {_shape(sh['concat'])} "
        f"({heads} heads × d_k {d_k} = {heads * d_k}) → × W^O {_shape(sh['W_O'])} → output {_shape(sh['output'])}"
    )
    body = (
        f'<table class="wt"><tr><th>head</th><th>attends most to</th><th>weight</th><th>z (this token)</th></tr>'
        f'{rows}</table><p class="wt-num">{escape(shapes)}</p>'
        + _vector_rows([("concatenated heads", d["concat"]), ("× W^O = attention output", d["output"])])
    )
    return _card(step, body)


def residual_html(told: Explanation) -> str:
    """Step 9: residual add, then layer norm (post-LN), or the sum going on as it is (pre-LN)."""
    step = told.step("residual_layer_norm")
    d = step.data
    rows = [
        ("x (entering the block)", d["residual"]),
        ("+ attention output", d["attention_output"]),
        ("= sum", d["sum"]),
    ]
    if not d["pre_ln"]:
        rows.append(("LayerNorm(sum): the block's output", d["output"]))
    return _card(step, _vector_rows(rows))


def rest_html(told: Explanation) -> str:
    """Step 10: what the rest of the layer adds (cross-attention, feed-forward) and the layer's output."""
    step = told.step("rest_of_layer")
    d = step.data
    rows = [(f"{s['label']} writes", s["write"]) for s in d["sublayers"]]
    rows.append((f"layer {told.result.layer + 1} output", d["layer_output"]))
    return _card(step, _vector_rows(rows))


def output_html(told: Explanation) -> str:
    """Step 11: the final linear + softmax at one decoder position: the top next-token candidates."""
    step = told.step("output")
    d = step.data
    rows = "".join(
        f'<tr><td>{_tok(t["token"])}</td><td class="num">{t["prob"]:.4f}</td><td>{_bar(t["prob"])}</td></tr>'
        for t in d["top"]
    )
    body = (
        f"<p>The decoder reads {_tok(d['input_token'], d['position'])}; the translation's next token is "
        f"{_tok(d['next_token'])} (probability {d['next_token_prob']:.4f}). Hidden {_shape(d['shapes']['hidden'])} × "
        f"{_shape(d['shapes']['W_vocab'])} → {_shape(d['shapes']['logits'])} scores → softmax.</p>"
        f'<table class="wt" id="wt-top"><tr><th>candidate</th><th>probability</th><th></th></tr>{rows}</table>'
    )
    return _card(step, body)


def steps_html(told: Explanation) -> str:
    """Steps 2-11 (step 1 sits next to the positional-encoding picture)."""
    layer_input, qkv = told.step("layer_input"), told.step("qkv")
    li, q = layer_input.data, qkv.data
    inputs = [("x, entering the block", li["residual"])]
    if li["pre_ln"]:
        inputs.append(("LayerNorm(x), what the attention reads", li["attention_input"]))
    if q["key"] is not None:
        qkv_rows = [("q = x W^Q", q["query"]), ("k = x W^K", q["key"]), ("v = x W^V", q["value"])]
        qkv_note = ""
    else:
        qkv_rows = [("q = x W^Q", q["query"])]
        qkv_note = (
            f"<p>Keys and values: one of each per source token, from the encoder's output "
            f"({_shape(q['shapes']['K'])} each; their norms are "
            + ", ".join(f"{n:.2f}" for n in q["key_norms"])
            + " and "
            + ", ".join(f"{n:.2f}" for n in q["value_norms"])
            + ").</p>"
        )
    return "".join(
        [
            _card(layer_input, _vector_rows(inputs)),
            _card(qkv, _vector_rows(qkv_rows) + qkv_note),
            attention_table_html(told),
            multi_head_html(told),
            residual_html(told),
            rest_html(told),
            output_html(told),
        ]
    )


def error_html(message: str) -> str:
    return f'<div class="wt-error">{escape(message)}</div>'


# --- the positional-encoding picture ----------------------------------------------------------------------
def positional_table_image(table, highlight: int) -> np.ndarray:
    """The positional-encoding table (positions × d_model) as an RGB array, the token's row framed in red."""
    table = np.asarray(table, dtype=np.float32)
    fig = Figure(figsize=(5.6, 3.4), dpi=100, layout="constrained")
    try:
        ax = fig.add_subplot()
        image = ax.imshow(table, cmap="RdBu", vmin=-1.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.axhspan(highlight - 0.5, highlight + 0.5, fill=False, edgecolor="crimson", linewidth=2)
        ax.set_xlabel("dimension i of d_model", fontsize=9)
        ax.set_ylabel("position", fontsize=9)
        ax.set_title(f"Positional encodings of positions 0-{len(table) - 1} (red: position {highlight})", fontsize=10)
        fig.colorbar(image, ax=ax, shrink=0.85)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()
    finally:
        fig.clear()


# --- handlers ---------------------------------------------------------------------------------------------
@dataclass
class View:
    """Everything the tab shows for one selection; `updates()` turns it into the components' updates."""

    layer_choices: list[str]
    layer: str | None
    head_choices: list[str]
    head: str | None
    token_choices: list[tuple[str, str]]
    token: str | None
    summary: str  # HTML: what is shown, or the error message
    embedding: str  # HTML: step 1 and the table's explanation
    positions: np.ndarray | None  # the positional-encoding picture
    steps: str  # HTML: steps 2-11
    result: wt.Walkthrough | None = None

    def updates(self) -> tuple:
        return (
            gr.update(choices=self.layer_choices, value=self.layer),
            gr.update(choices=self.head_choices, value=self.head),
            gr.update(choices=self.token_choices, value=self.token),
            self.summary,
            self.embedding,
            self.positions,
            self.steps,
        )


def _sizes(bundle: ModelBundle, kind: str) -> tuple[int, int]:
    c = bundle.model.config
    if kind == "encoder":
        return c.encoder_layers, c.encoder_attention_heads
    return c.decoder_layers, c.decoder_attention_heads


def _pick(value, count: int, default: int) -> int:
    """A 1-based picker value ("2") as a 0-based index within range; `default` when missing or off."""
    text = str(value)
    index = int(text) - 1 if text.isdigit() else default
    return min(max(index, 0), count - 1)


def _token_value(kind: str, position: int) -> str:
    return f"{QUERY_SIDE[kind]}:{position}"


def _position(kind: str, value) -> int | None:
    """The query position picked in the token dropdown ("source:13"), if it belongs to this kind's side."""
    if isinstance(value, str) and ":" in value:
        side, _, index = value.partition(":")
        if side == QUERY_SIDE[kind] and index.isdigit():
            return int(index)
    return None


def walkthrough_view(bundle: ModelBundle, pair: dict | None, kind, layer, head, token) -> View:
    """What the tab shows for a pair and the pickers' values (`layer`/`head`: 1-based strings; `token`:
    "source:13" / "target:4", or anything else for the default token: "it" in the source, else the middle of
    the translation). Bad input gives a message, never an exception."""
    kind = kind if kind in FAMILIES else "encoder"
    n_layers, n_heads = _sizes(bundle, kind)
    layer_choices = [str(i) for i in range(1, n_layers + 1)]
    head_choices = [str(i) for i in range(1, n_heads + 1)]
    layer_index, head_index = _pick(layer, n_layers, DEFAULT_LAYER), _pick(head, n_heads, DEFAULT_HEAD)
    empty = View(layer_choices, str(layer_index + 1), head_choices, str(head_index + 1), [], None, "", "", None, "")
    if pair is None:
        empty.summary = error_html(EMPTY_MESSAGE)
        return empty
    position = _position(kind, token)
    try:
        result = run_walkthrough(bundle, pair, kind, layer_index, head_index, position=position)
    except ValueError as err:
        empty.summary = error_html(str(err))
        return empty
    told = explain(result)
    table = result.step("positional_table").data
    return View(
        layer_choices,
        str(layer_index + 1),
        head_choices,
        str(head_index + 1),
        [(f"{i}: {visible(t)}", _token_value(kind, i)) for i, t in enumerate(result.query_tokens)],
        _token_value(kind, result.position),
        summary_html(told, pair.get("notices", ())),
        embedding_html(told),
        positional_table_image(table["table"], table["highlight"]),
        steps_html(told),
        result,
    )


def new_sentence_view(bundle: ModelBundle, sentence, kind, layer, head) -> tuple[dict | None, View]:
    """A sentence typed on this tab: its pair (translated with the Space's defaults) and the view on its
    default token; an empty sentence gives (None, a view with the message)."""
    try:
        pair = make_pair(bundle, sentence)
    except ValueError:
        pair = None
    return pair, walkthrough_view(bundle, pair, kind, layer, head, None)


def walkthrough_json(
    bundle: ModelBundle,
    sentence,
    kind="encoder",
    layer=DEFAULT_LAYER,
    head=DEFAULT_HEAD,
    token="",
    translation="",
    full_table=False,
) -> dict:
    """The API's answer: every step with its title, text and numbers (`walkthrough_text.Explanation.to_dict`),
    or {"error": ...}.

    `layer` and `head` are 0-based; `token` is the query token's text ("it"; empty: the default token);
    `translation` is the target the decoder reads (empty: the model's own translation). The positional-encoding
    table (drawn by the tab, ~100 KB of JSON for the shipped model) is sent only with `full_table`; otherwise
    its step carries the query position's row (`row`) and the table's size.
    """
    try:
        layer, head = int(layer), int(head)
    except (TypeError, ValueError):
        return {"error": f"layer and head must be whole numbers (0-based), got {layer!r} and {head!r}."}
    try:
        pair = make_pair(bundle, sentence, translation)
        result = run_walkthrough(bundle, pair, str(kind), layer, head, token=str(token).strip() or None)
    except ValueError as err:
        return {"error": str(err)}
    return {"notices": pair["notices"], **explain(result).to_dict(full_table=bool(full_table))}


def strongest_link(bundle: ModelBundle, pair: dict, query: str = LINK[0], key: str = LINK[1]):
    """The encoder (layer, head), 0-based, that sends the most attention from the token `query` to the token
    `key` of the pair's source, with that weight; None when the sentence lacks either token. `pair` must hold
    the translation as ids (as `make_pair` gives it without a translation)."""
    data = bundle.attention_data(pair["source_ids"], pair["target"])
    try:
        q = wt.find_token_position(data.source_tokens, query)
        k = wt.find_token_position(data.source_tokens, key)
    except ValueError:
        return None
    weights = np.stack([layer[:, q, k] for layer in data.encoder])  # (layers, heads)
    layer, head = np.unravel_index(int(weights.argmax()), weights.shape)
    return int(layer), int(head), float(weights[layer, head])


def opening_view(bundle: ModelBundle) -> tuple[dict, View]:
    """The tab as it opens: the default sentence, the token "it", and the encoder head of `strongest_link`
    (else layer 1, head 1), with a note saying how strongly that head links "it" to "animal"."""
    pair = make_pair(bundle, wt.DEFAULT_SENTENCE)
    link = strongest_link(bundle, pair)
    layer, head = (link[0], link[1]) if link else (DEFAULT_LAYER, DEFAULT_HEAD)
    view = walkthrough_view(bundle, pair, "encoder", str(layer + 1), str(head + 1), None)
    if link:
        note = (
            f"Opened on the encoder head that sends the most attention from “{LINK[0]}” to “{LINK[1]}” in "
            f"this sentence: layer {layer + 1}, head {head + 1}, with a weight of {link[2]:.1%}."
        )
        if link[2] < STRONG_LINK:
            note += " No head of this model links the two strongly: attention is not a word-by-word explanation."
        view.summary = f'<div class="wt-summary">{escape(note)}</div>' + view.summary
    return pair, view


# --- the tab ----------------------------------------------------------------------------------------------
def build(bundle: ModelBundle, shared) -> None:
    """The tab's components and events, inside the `gr.Tab` that `app.build_demo` opens; `shared` is its
    `SharedUI`. The opening example is computed once here, so the tab shows it without a request."""
    pair, first = opening_view(bundle)

    gr.Markdown(INTRO, elem_id="wt-intro")
    with gr.Row():
        sentence = gr.Textbox(
            value=wt.DEFAULT_SENTENCE,
            label="Sentence",
            lines=2,
            elem_id="wt-sentence",
            max_length=BOX_MAX_CHARS,
            scale=3,
            info=f"At most {BOX_MAX_CHARS:,} characters (the box drops the rest of a longer paste).",
        )
        translation = gr.Textbox(
            value=pair["translation"],
            label="Its translation (what the decoder reads)",
            lines=2,
            interactive=False,
            elem_id="wt-translation",
            scale=3,
        )
        run = gr.Button("Walk through", variant="primary", elem_id="wt-run", scale=1)
    with gr.Row():
        kind = gr.Radio(KIND_CHOICES, value="encoder", label="Attention", elem_id="wt-kind", scale=3)
        layer = gr.Radio(first.layer_choices, value=first.layer, label="Layer", elem_id="wt-layer", scale=1)
        head = gr.Radio(first.head_choices, value=first.head, label="Head", elem_id="wt-head", scale=1)
        token = gr.Dropdown(
            first.token_choices,
            value=first.token,
            label="Token (the query)",
            elem_id="wt-token",
            allow_custom_value=False,
            scale=2,
        )
    summary = gr.HTML(first.summary, elem_id="wt-summary", css_template=WALKTHROUGH_CSS)
    with gr.Row():
        with gr.Column(scale=3):
            embedding = gr.HTML(first.embedding, elem_id="wt-embedding", css_template=WALKTHROUGH_CSS)
        with gr.Column(scale=2):
            positions = picture("wt-positions", first.positions)
    steps = gr.HTML(first.steps, elem_id="wt-steps", css_template=WALKTHROUGH_CSS)
    pair_state = gr.State(pair)
    views = [layer, head, token, summary, embedding, positions, steps]

    # Every pair the tab shows has a key (the main tab's translation key, or a new one for a sentence typed
    # here), published under PAIR when it is shown; a picker's view computed for an older pair is dropped.
    keys = shared.views

    def show(pair_, kind_, layer_, head_, token_, request: gr.Request):
        updates = walkthrough_view(bundle, pair_, kind_, layer_, head_, token_).updates()
        return keys.latest(request, updates, keys.key_of(pair_), PAIR)

    def new_sentence(sentence_, kind_, layer_, head_, request: gr.Request):
        pair_, view = new_sentence_view(bundle, sentence_, kind_, layer_, head_)
        if pair_ is not None:
            pair_["key"] = keys.new_key()
        keys.publish(request, keys.key_of(pair_), PAIR)
        return (pair_["translation"] if pair_ else "", pair_, *view.updates())

    def follow_main_tab(attention_state_, kind_, layer_, head_, request: gr.Request):
        """The main tab's newest translation; a late one (a newer translation exists) changes nothing."""
        key = keys.key_of(attention_state_)
        if not keys.is_current(request, key):  # a newer translation's follow-up comes next
            return gr.skip()
        pair_ = pair_from_main_tab("", attention_state_)
        view = walkthrough_view(bundle, pair_, kind_, layer_, head_, None)
        if not keys.is_current(request, key):
            return gr.skip()
        keys.publish(request, key, PAIR)
        sentence_ = (pair_.get("sentence") or "") if pair_ else ""
        return (sentence_, pair_["translation"] if pair_ else "", pair_, *view.updates())

    for trigger in (run.click, sentence.submit):
        trigger(
            new_sentence,
            inputs=[sentence, kind, layer, head],
            outputs=[translation, pair_state, *views],
            api_visibility="private",
            trigger_mode="always_last",
        )
    for picker in (kind, layer, head, token):
        picker.input(show, inputs=[pair_state, kind, layer, head, token], outputs=views, **FOLLOW_UP)
    shared.translate_event.then(
        follow_main_tab,
        inputs=[shared.attention_state, kind, layer, head],
        outputs=[sentence, translation, pair_state, *views],
        **FOLLOW_UP,
    )

    def walkthrough_api(
        sentence: str,
        kind: str = "encoder",
        layer: int = DEFAULT_LAYER,
        head: int = DEFAULT_HEAD,
        token: str = "",
        translation: str = "",
        full_table: bool = False,
    ) -> dict:
        """One attention head step by step for one token, with the model's numbers. kind: encoder, decoder or
        cross; layer, head: 0-based; token: the query token's text (empty: "it", or the middle of the
        translation); translation: the target (empty: the model's own); full_table: also send the whole
        positional-encoding table (else only the query position's row). Returns the steps, or {"error": ...}."""
        return walkthrough_json(
            bundle,
            api_args.text("sentence", sentence),
            api_args.text("kind", kind),
            api_args.whole_number("layer", layer, "a whole number (0-based)"),
            api_args.whole_number("head", head, "a whole number (0-based)"),
            api_args.text("token", token),
            api_args.text("translation", translation),
            api_args.flag("full_table", full_table),
        )

    # Its translation joins the concurrent ones (`ModelBundle.batcher`): one at a time, each would wait for a batch.
    gr.api(walkthrough_api, api_name="walkthrough", concurrency_limit=MAX_BATCH_SENTENCES)


__all__ = [
    "DEFAULT_HEAD",
    "DEFAULT_LAYER",
    "TAB_TITLE",
    "View",
    "build",
    "make_pair",
    "new_sentence_view",
    "opening_view",
    "pair_from_main_tab",
    "positional_table_image",
    "run_walkthrough",
    "strongest_link",
    "walkthrough_json",
    "walkthrough_view",
]
