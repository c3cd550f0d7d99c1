"""The Space's "Heads" tab: the head atlas of the loaded model, what every head does over a whole data set.

`python -m training.head_atlas MODEL` writes `head_atlas.json` (and its figures) into a model folder
(`encdec_lens.atlas`: Voita et al. 2019's head roles, Michel et al. 2019's pruning curves). This tab shows it:
one grid per family with every head's roles and importance at a glance; a click on a head opens its card
(its shares, its place in the pruning order, and where it attends on an example sentence); and the pruning
figure. A model folder without an atlas gets a message saying how to make one.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache

import gradio as gr

from components import picture
from encdec_lens.heads import FAMILIES, FAMILY_SIDES, FAMILY_TITLES, grid_shape, head_label
from encdec_lens.plots import heatmap_image
from safe_html import escape, status_html
from translation_engine import ModelBundle

TAB_TITLE = "Heads"
ATLAS_FILE = "head_atlas.json"
PRUNING_FIGURE = "head_atlas_pruning.png"
EXAMPLE = "A man in a blue shirt is standing on a ladder cleaning windows."
ROLE_CODES = {"positional": "P", "rare-word": "R", "sink": "S", "diagonal": "D"}
IMPORTANCE_LEVELS = 5  # the cells' shades, from the least to the most important fifth of the heads

INTRO = """\
What every head does over the **whole validation set**, not one sentence: each head's **roles** (Voita et al.
2019: **P**ositional, its strongest weight on one fixed relative position in at least 90% of cases;
**R**are-word, on the sentence's rarest token; **S**ink, most weight on `</s>` or punctuation; **D**iagonal, a
cross-attention head whose source position follows the target position) and its **importance** (Michel et al.
2019: the expected |∂L/∂ξ| of a gate on the head; darker = more important, #1 the most). Click a head for its
card.
"""

HEADS_CSS = """
.families { display: flex; flex-wrap: wrap; gap: 18px; }
table.atlas-grid { border-collapse: separate; border-spacing: 3px; }
table.atlas-grid th { font-weight: 500; font-size: 0.8em; opacity: 0.7; padding: 0 4px; }
td.head { width: 64px; height: 38px; text-align: center; cursor: pointer; border-radius: 5px;
          font-family: ui-monospace, monospace; font-size: 0.8em; line-height: 1.15; }
td.head:hover { outline: 2px solid #f97316; }
td.head .rank { color: inherit; opacity: 0.75; font-size: 0.9em; }
table.atlas-grid th, table.atlas-grid td { border: none !important; }
td.head.imp-0 { background: #f1f5f9; color: #0f172a; }
td.head.imp-1 { background: #cbd5e1; color: #0f172a; }
td.head.imp-2 { background: #94a3b8; color: #0f172a; }
td.head.imp-3 { background: #475569; color: #f8fafc; }
td.head.imp-4 { background: #1e293b; color: #f8fafc; }
table.atlas { border-collapse: collapse; font-size: 0.88em; }
table.atlas td, table.atlas th { padding: 3px 8px; border-bottom: 1px solid rgba(148, 163, 184, 0.35); text-align: left; }
table.atlas td.num { text-align: right; font-family: ui-monospace, monospace; }
.small { opacity: 0.7; font-size: 0.85em; }
"""
# A click on a head's cell makes its name the component's value and fires the component's click event.
PICK_HEAD_JS = """
element.addEventListener('click', (event) => {
  const cell = event.target.closest('[data-head]');
  if (!cell) return;
  props.value = cell.dataset.head;
  trigger('click');
});
"""


# --- the atlas ---------------------------------------------------------------------------------------------
def atlas_path(bundle: ModelBundle) -> str | None:
    """The atlas file of the bundle's model folder, or None (a Hub id, or a folder without one)."""
    if bundle.ref and os.path.isdir(bundle.ref):
        path = os.path.join(bundle.ref, ATLAS_FILE)
        return path if os.path.isfile(path) else None
    return None


@lru_cache(maxsize=8)
def _read(path: str, mtime: float) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_atlas(bundle: ModelBundle) -> dict | None:
    """The atlas as written by `training.head_atlas`, checked against the model's heads; None if there is none."""
    path = atlas_path(bundle)
    if path is None:
        return None
    atlas = _read(path, os.path.getmtime(path))
    names = {record.get("name") for record in atlas.get("heads", [])}
    missing = [
        head_label(f, layer, h)
        for f in FAMILIES
        for layer in range(grid_shape(bundle.model, f)[0])
        for h in range(grid_shape(bundle.model, f)[1])
        if head_label(f, layer, h) not in names
    ]
    if missing:
        raise ValueError(
            f"{path} does not describe this model: it has no record for {', '.join(missing[:4])}. "
            "Compute it again with `python -m training.head_atlas` on this model folder."
        )
    return atlas


def no_atlas_message(bundle: ModelBundle) -> str:
    where = bundle.ref or "the model folder"
    return (
        f"This model has no head atlas. Compute it with `python -m training.head_atlas {where}` (it writes "
        f"{ATLAS_FILE} into the folder), then restart the Space."
    )


def _records(atlas: dict) -> dict:
    return {record["name"]: record for record in atlas["heads"]}


def importance_level(atlas: dict, record: dict) -> int:
    """0 (least important fifth of all heads) .. IMPORTANCE_LEVELS - 1 (most important fifth)."""
    n = len(atlas["heads"])
    return min(IMPORTANCE_LEVELS - 1, (n - record["importance_rank"]) * IMPORTANCE_LEVELS // n)


def role_codes(record: dict) -> str:
    """ "P S": the codes of the head's roles ("–" for none)."""
    return " ".join(ROLE_CODES[role] for role in record["roles"] if role in ROLE_CODES) or "–"


def grid_html(bundle: ModelBundle, atlas: dict) -> str:
    """One layer x head table per family; each cell a head: its role codes, shaded by importance."""
    records = _records(atlas)
    tables = []
    for family in FAMILIES:
        n_layers, n_heads = grid_shape(bundle.model, family)
        header = "".join(f"<th>H{h + 1}</th>" for h in range(n_heads))
        rows = []
        for layer in range(n_layers):
            cells = []
            for head in range(n_heads):
                record = records[head_label(family, layer, head)]
                cells.append(
                    f'<td class="head imp-{importance_level(atlas, record)}" data-head="{escape(record["name"])}" '
                    f'title="{escape(record["name"])}: importance rank {record["importance_rank"]}">'
                    f"{escape(role_codes(record))}<br><span class='rank'>#{record['importance_rank']}</span></td>"
                )
            rows.append(f"<tr><th>L{layer + 1}</th>{''.join(cells)}</tr>")
        tables.append(
            f"<div><b>{escape(FAMILY_TITLES[family])}</b><table class='atlas-grid'><tr><th></th>{header}"
            f"</tr>{''.join(rows)}</table></div>"
        )
    return f'<div class="families">{"".join(tables)}</div>'


# --- a head's card -----------------------------------------------------------------------------------------
def _share_rows(record: dict, thresholds: dict) -> str:
    shares = record["shares"]
    rows = []

    def row(label, value, note=""):
        shown = "–" if value is None else f"{value:.1%}"
        rows.append(f"<tr><td>{escape(label)}</td><td class='num'>{shown}</td><td>{escape(note)}</td></tr>")

    if "positional" in shares:
        offset = shares.get("positional_offset")
        where = (
            "the same position"
            if offset == 0
            else f"{abs(offset)} position{'s' if abs(offset) != 1 else ''} {'before' if offset < 0 else 'after'}"
            if offset is not None
            else ""
        )
        row(
            "positional: strongest weight on one relative position",
            shares["positional"],
            f"{where}; role from {thresholds.get('positional', 0.9):.0%}",
        )
    if "diagonal" in shares:
        row(
            "diagonal: source position follows the target position",
            shares["diagonal"],
            f"role from {thresholds.get('diagonal', 0.5):.0%}",
        )
    row(
        "rare-word: strongest weight on the rarest token",
        shares.get("rare_word"),
        f"chance {shares.get('rare_word_chance') or 0:.1%}; role from {thresholds.get('rare-word', 0.5):.0%}",
    )
    row(
        "sink: weight on </s> or punctuation",
        shares.get("sink"),
        f"chance {shares.get('sink_chance') or 0:.1%}; role from {thresholds.get('sink', 0.5):.0%}",
    )
    return "".join(rows)


def pruned_at(atlas: dict, record: dict, group: str) -> float | None:
    """The share of its group's heads pruned at the first step that prunes this head."""
    for point in atlas["pruning"].get(group, []):
        if record["name"] in point.get("pruned", []):
            return point["fraction"]
    return None


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd."""
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def pruning_caption(atlas: dict) -> str:
    """The pruning figure's caption in a few words: the decoding and the metric by name, without the atlas's
    full recipe (settings, tokenisation, the reference file's path on the machine that made it)."""
    decoding = str(atlas.get("decoding", "greedy")).split("(")[0].split(",")[0].strip() or "greedy"
    metric = str(atlas.get("metric", "BLEU")).split("(")[0].split()[0] if atlas.get("metric") else "BLEU"
    return (
        f"**Pruning heads**: the least important first, switched off by zeroing their output; {decoding} "
        f"decoding, {metric} on {atlas.get('sentences', '?')} sentences of the {atlas.get('split', 'val')} split"
    )


def card_html(atlas: dict, name: str) -> str:
    record = _records(atlas).get(name)
    if record is None:
        return status_html([f"{name!r} is not a head of this model."])
    roles = ", ".join(record["roles"]) or "none of the measured roles"
    n = len(atlas["heads"])
    family_share = pruned_at(atlas, record, record["family"])
    all_share = pruned_at(atlas, record, "all")
    order = record["pruning_order"]
    pruning = (
        f"pruned {ordinal(order['family'])} in its family (at {family_share:.0%} of it) and "
        f"{ordinal(order['all'])} of all {n} heads (at {all_share:.0%})"
        if family_share is not None and all_share is not None
        else f"pruned {ordinal(order['family'])} in its family, {ordinal(order['all'])} of all {n} heads"
    )
    return (
        f'<div id="head-card" data-name="{escape(name)}"><h3>{escape(name)} · '
        f"{escape(FAMILY_TITLES[record['family']])}, layer {record['layer'] + 1}, head {record['head'] + 1}</h3>"
        f"<div>Roles: <b>{escape(roles)}</b></div>"
        f'<div>Importance <span id="head-importance" data-importance="{record["importance"]!r}">'
        f"{record['importance']:.3f}</span> (rank {record['importance_rank']} of {n}); {escape(pruning)}.</div>"
        f'<table class="atlas">{_share_rows(record, atlas.get("thresholds", {}))}</table>'
        f'<div class="small">Over {atlas.get("sentences", "?")} sentences of {escape(str(atlas.get("split", "val")))}'
        f", teacher-forced on the reference translations.</div></div>"
    )


@lru_cache(maxsize=4)
def _example_attention(bundle: ModelBundle):
    result = bundle.translate(EXAMPLE)
    return bundle.attention_for({"source_ids": result.source.input_ids, "decoder_ids": result.decoder_ids})


def example_map(bundle: ModelBundle, atlas: dict, name: str):
    """The head's attention map on the example sentence (its own translation), as an RGB array."""
    record = _records(atlas).get(name)
    if record is None:
        return None
    data = _example_attention(bundle)
    family = record["family"]
    rows, columns = FAMILY_SIDES[family]
    return heatmap_image(
        data.matrix(family, record["layer"], record["head"]),
        data.query_tokens(family),
        data.key_tokens(family),
        f"{name} on an example sentence",
        row_axis=f"{rows} token",
        col_axis=f"{columns} token",
    )


def head_outputs(bundle: ModelBundle, name: str):
    """(card HTML, example map or None) for a clicked head."""
    atlas = load_atlas(bundle)
    if atlas is None:
        return status_html([no_atlas_message(bundle)]), None
    return card_html(atlas, name), example_map(bundle, atlas, name)


# --- the tab -----------------------------------------------------------------------------------------------
def build(bundle: ModelBundle, shared) -> None:
    """The tab's components and events (called by app.build_demo inside its gr.Tab)."""
    atlas = load_atlas(bundle)
    gr.Markdown(INTRO)
    if atlas is None:
        gr.HTML(status_html([no_atlas_message(bundle)]), elem_id="atlas-missing")
        return
    grid = gr.HTML(
        "",
        html_template="${grid}",
        css_template=HEADS_CSS,
        js_on_load=PICK_HEAD_JS,
        grid=grid_html(bundle, atlas),
        elem_id="atlas-grid",
    )
    with gr.Row():
        with gr.Column(scale=2):
            card = gr.HTML(
                status_html(["Click a head for its card."]), elem_id="head-card-view", css_template=HEADS_CSS
            )
        with gr.Column(scale=3):
            example = picture("head-example", label="Where it attends on an example sentence")
    figure = os.path.join(bundle.ref, PRUNING_FIGURE)
    if os.path.isfile(figure):
        gr.Markdown(escape(pruning_caption(atlas)), elem_id="atlas-pruning-caption")
        gr.Image(
            figure,
            type="filepath",
            interactive=False,
            show_label=False,
            elem_id="atlas-pruning",
            buttons=["download", "fullscreen"],
        )
    grid.click(lambda name: head_outputs(bundle, name), inputs=grid, outputs=[card, example], api_visibility="private")
