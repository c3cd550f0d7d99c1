"""The Space's "Circuits" tab: what the heads *do* to the translation on screen.

Views over the sentence and translation of the "Translate & attention" tab, all computed by `encdec_lens`:

1. Head ablation: switch any heads off, re-translate, and compare with the original translation, with
   the change in log-probability of the original translation (in total and per token).
2. Head importance: every head switched off alone (one batched pass); layer x head grids of how much the
   translation's log-probability drops, and the heads ranked.
3. Logit lens: the output projection applied to the residual stream after each decoder layer.
4. Residual stream: per position, the size (L2 norm) of what each sub-layer writes into the stream.

Heads are named in the UI and the API by labels such as "enc L1 H2", "dec-self L3 H1" or "cross L2 H4"
(family, layer, head; layers and heads counted from 1).

Handlers are plain functions of the `ModelBundle` and the inputs (testable without a server). After each
translation the tab is refreshed from the main tab's state alone (`SharedUI.attention_state`: the ids, texts
and key of the last translation); the buttons take the state and the source box and tell a user who has
translated nothing, or edited the sentence since, what to do. Every view is computed for the translation
whose state it read and dropped if a newer translation arrived meanwhile (`SharedUI.views`), so the tab never
shows two sentences at once. The API functions take a sentence and optionally a translation and return
JSON, or `{"error": message}` for bad input.

Every analysis works through `encdec_lens.HookedModel`, whose hooks act only in the request that activated
them: a translation running at the same time on the main tab sees the plain model.
"""

from __future__ import annotations


import gradio as gr
import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

import api_args
from components import FOLLOW_UP, picture
from encdec_lens.ablation import AblationResult, HeadImportance, head_importance, run_ablation
from encdec_lens.heads import (
    FAMILIES,
    FAMILY_RECORDS,
    FAMILY_TAGS,
    all_heads,
    grid_shape,
    head_label,
    normalize_heads,
    parse_head_label,
)
from encdec_lens.lens import LogitLens, ResidualStream, logit_lens, residual_stream
from encdec_lens.plots import CMAP, DPI, figure_to_rgb, head_values_image, plot_label
from safe_html import escape
from tabs.pair_views import (
    CIRCUITS_CSS,
    PLOT_TITLES,
    CircuitsInputError,
    Pair,
    bar,
    chip,
    generation_config,
    NOT_TRANSLATED,
    message_html,
    pair_from_api,
    pair_from_state,
    pair_on_screen,
    whole_number,
    with_notices,
)
from translation_engine import ModelBundle

TAB_TITLE = "Circuits"

FAMILY_NAMES = {name: f"{f.tag} · {f.title.lower()}" for name, f in FAMILY_RECORDS.items()}  # the head pickers
RANKED_SHOWN = 12  # rows of the ranking table (the API returns every head)
ANNOTATE_MAX_COLUMNS = 30  # residual-stream heatmaps print their values up to this many tokens

INTRO = """\
The attention maps show *where* heads look; here you test what they *do*. In the circuits view of a
transformer, every sub-layer reads the **residual stream** and adds its output back into it, and attention
heads move information between positions. Everything below works on the sentence and translation of the
first tab. **Log-probabilities** are natural logs of the model's probability of the whole translation,
token by token with the correct previous tokens given (teacher forcing): closer to 0 is more confident.
"""

ABLATION_HELP = """\
Tick heads to **switch them off** (their output is set to zero before the output projection W<sup>O</sup>;
the rest of the model runs unchanged), then re-translate. The score is the log-probability of the
*original* translation with those heads off: a drop means the heads helped produce it.
"""

IMPORTANCE_HELP = """\
Every head is switched off **alone**, one at a time (all in one batched pass), and the drop in the
translation's log-probability is recorded: red = the translation needs this head, blue = it is more likely
without it. Single-head drops are not additive: heads can stand in for one another. Beside it, the
**gradient importance** of Michel et al. (2019): how fast the loss changes when a head's output is scaled,
a first-order estimate of the same thing from one backward pass, and how well the two rankings agree.
"""

LENS_HELP = """\
The **logit lens** applies the output projection to the residual stream after each decoder layer, as if
the model stopped there: how the answer forms layer by layer. The model reads the token on the left and
must predict the next one; the correct token is highlighted, with its probability and rank under each list.
After the last layer this is the model's real output.
"""

RESIDUAL_HELP = """\
How much each sub-layer **writes** into the residual stream at each position: the L2 norm of its output
before it is added to the stream. Large writes change the stream a lot; near-zero writes mean the sub-layer
leaves that position alone.
"""


# --- head labels -----------------------------------------------------------------------------------------
def head_choices(model, family: str) -> list[tuple[str, str]]:
    """(shown text, label) of every head of one family, for a CheckboxGroup: ("L1 H2", "enc L1 H2")."""
    return [
        (f"L{layer + 1} H{head + 1}", head_label(family, layer, head)) for _, layer, head in all_heads(model, (family,))
    ]


def parse_head_labels(model, labels) -> list[tuple[str, int, int]]:
    """Labels ("cross L1 H2", a list or one comma-separated string) -> circuits' (family, layer, head)."""
    if labels is None:
        return []
    if isinstance(labels, str):
        labels = [part for part in labels.split(",") if part.strip()]
    heads = []
    for label in labels:
        try:
            family, layer, head = parse_head_label(label)
        except ValueError as err:
            raise CircuitsInputError(str(err)) from None
        n_layers, n_heads = grid_shape(model, family)
        if not (0 <= layer < n_layers and 0 <= head < n_heads):
            raise CircuitsInputError(
                f"{str(label).strip()!r} does not exist: this model's {FAMILY_TAGS[family]} heads are "
                f"L1..L{n_layers} × H1..H{n_heads}."
            )
        heads.append((family, layer, head))
    return normalize_heads(model, heads)


# --- computations ------------------------------------------------------------------------------------------
def ablation(bundle: ModelBundle, pair: Pair, heads, beam_size=None, max_new_tokens=None) -> AblationResult:
    """`run_ablation` on the pair, re-translating with the Space's decoding settings."""
    parsed = parse_head_labels(bundle.model, heads)
    return run_ablation(
        bundle.model,
        bundle.tokenizer,
        pair.source_ids,
        parsed,
        translation=pair.target_ids,
        generation_config=generation_config(bundle, beam_size, max_new_tokens),
    )


def importance(bundle: ModelBundle, pair: Pair) -> HeadImportance:
    """`head_importance`: every head switched off alone, in one batched pass, and its gradient importance."""
    return head_importance(bundle.model, bundle.tokenizer, pair.source_ids, pair.target_ids)


def lens(bundle: ModelBundle, pair: Pair, top_k=3) -> LogitLens:
    """`logit_lens` with 1 to 10 top tokens per layer and position."""
    top_k = max(1, min(whole_number(top_k, 3, "top_k"), 10))
    return logit_lens(bundle.model, bundle.tokenizer, pair.source_ids, pair.target_ids, top_k=top_k)


def stream(bundle: ModelBundle, pair: Pair) -> ResidualStream:
    """`residual_stream`: the norms of every sub-layer's write."""
    return residual_stream(bundle.model, bundle.tokenizer, pair.source_ids, pair.target_ids)


def importance_image(result: HeadImportance) -> np.ndarray:
    """One layer x head grid per family, coloured by the drop (shared scale centred on 0), values printed."""
    return head_values_image(
        {family: grid["drop"] for family, grid in result.grids.items()},
        PLOT_TITLES,
        "drop in log p",
        f"log p(translation) = {result.logprob:.2f} with every head on",
    )


def residual_image(result: ResidualStream) -> np.ndarray:
    """Two heatmaps (encoder, decoder): rows = sub-layers, columns = positions, colour = norm of the write."""
    sides = [
        ("Encoder", result.source_tokens, result.encoder, (("self_attn", "self-attn"), ("ffn", "FFN"))),
        (
            "Decoder",
            result.input_tokens,
            result.decoder,
            (("self_attn", "self-attn"), ("cross_attn", "cross-attn"), ("ffn", "FFN")),
        ),
    ]
    columns = max(len(result.source_tokens), len(result.input_tokens))
    rows = [len(layers) * len(names) for _, _, layers, names in sides]
    fig = Figure(
        figsize=(float(np.clip(2.6 + 0.42 * columns, 7.0, 18.0)), 2.2 + 0.3 * sum(rows)), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(2, 1, height_ratios=rows)
    for ax, (side, tokens, layers, names) in zip(axes, sides):
        labels = [f"L{layer['layer'] + 1} {shown}" for layer in layers for _, shown in names]
        norms = np.asarray([layer[key] for layer in layers for key, _ in names], dtype=np.float32)
        # Square-root colour scale: a few very large writes (often at </s> or <s>) would leave the rest dark.
        image = ax.imshow(
            norms,
            cmap=CMAP,
            norm=PowerNorm(0.5, vmin=0.0, vmax=max(float(norms.max()), 1e-6)),
            aspect="auto",
            interpolation="nearest",
        )
        if len(tokens) <= ANNOTATE_MAX_COLUMNS:
            top = float(norms.max())
            for (row, col), value in np.ndenumerate(norms):
                ax.text(
                    col,
                    row,
                    f"{value:.1f}" if value < 10 else f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > 0.35 * top else "white",
                )
        ax.set_xticks(range(len(tokens)), [plot_label(t) for t in tokens], rotation=90, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        reads = "source token" if side == "Encoder" else "token the decoder reads"
        ax.set_title(f"{side}: size of each sub-layer's write, per {reads}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.9, label="L2 norm")
    return figure_to_rgb(fig)


# --- HTML --------------------------------------------------------------------------------------------------
def context_html(bundle: ModelBundle, pair: Pair) -> str:
    """Which pair this tab is working on."""
    tokenizer = bundle.tokenizer
    source = tokenizer.decode(pair.source_ids, skip_special_tokens=True).strip()
    target = tokenizer.decode(pair.target_ids, skip_special_tokens=True).strip()
    notices = "".join(f'<div class="notice">{escape(n)}</div>' for n in pair.notices)
    return f"{notices}<div>Working on <b>{escape(source)}</b> → <b>{escape(target)}</b></div>"


def ablation_html(result: AblationResult) -> tuple[str, str]:
    """The summary (which heads, the log-prob before and after, the change) and the per-token table."""
    heads = [head_label(*h) for h in result.heads]
    switched = (
        f"Switched off {len(heads)} head{'s' if len(heads) != 1 else ''}: " + " ".join(map(chip, heads))
        if heads
        else "No head switched off: this is the normal model."
    )
    changed = (
        '<div class="changed">The translation changed.</div>'
        if result.changed
        else '<div class="ok">The translation did not change.</div>'
    )
    summary = (
        f"<div>{switched}</div>{changed}"
        '<table class="circuits">'
        f'<tr><td>log p(original translation), all heads on</td><td class="num">{result.logprob:.3f}</td></tr>'
        f'<tr><td>the same translation with the heads off</td><td class="num">{result.ablated_logprob:.3f}</td></tr>'
        f'<tr><td>change</td><td class="num"><span class="delta" id="ablation-delta" '
        f'data-delta="{result.delta!r}">{result.delta:+.3f}</span></td></tr>'
        f'<tr><td>probability ratio (off / on)</td><td class="num">× {np.exp(result.delta):.3g}</td></tr>'
        "</table>"
    )
    deltas = [off - on for on, off in zip(result.token_logprobs, result.ablated_token_logprobs)]
    scale = max([abs(d) for d in deltas] + [1e-9])
    rows = "".join(
        f'<tr><td class="num">{t}</td><td>{chip(token)}</td><td class="num">{on:.2f}</td>'
        f'<td class="num">{off:.2f}</td><td class="num">{d:+.2f}</td><td>{bar(d, scale)}</td></tr>'
        for t, (token, on, off, d) in enumerate(
            zip(result.translation_tokens, result.token_logprobs, result.ablated_token_logprobs, deltas)
        )
    )
    per_token = (
        "<div><b>Per token</b> (log p of each token of the original translation)</div>"
        '<table class="circuits"><tr><th>#</th><th>token</th><th>heads on</th><th>off</th><th>change</th>'
        f"<th></th></tr>{rows}</table>"
    )
    return summary, per_token


def ranking_html(result: HeadImportance, shown: int = RANKED_SHOWN) -> str:
    """The most important heads first, with their drop and a bar, beside their gradient importance."""
    scale = max([abs(r["drop"]) for r in result.ranking] + [1e-9])
    rows = "".join(
        f'<tr><td class="num">{r["rank"]}</td><td>{chip(head_label(r["family"], r["layer"], r["head"]))}</td>'
        f'<td class="num">{r["drop"]:+.3f}</td><td>{bar(-r["drop"], scale)}</td>'
        f'<td class="num">{r["ablated_logprob"]:.2f}</td><td class="num">{r["gradient"]:.3f}</td>'
        f'<td class="num">{r["gradient_rank"]:g}</td></tr>'
        for r in result.ranking[:shown]
    )
    helping = sum(r["drop"] > 0.1 for r in result.ranking)
    hurting = sum(r["drop"] < -0.1 for r in result.ranking)
    return (
        f"<div><b>Most important heads</b> (top {min(shown, len(result.ranking))} of {len(result.ranking)}; "
        f"{helping} lower log p by more than 0.1 when switched off, {hurting} raise it by more than 0.1)</div>"
        '<table class="circuits"><tr><th>rank</th><th>head</th><th>drop</th><th></th><th>log p, head off</th>'
        "<th>|∂L/∂ξ|</th><th>its rank</th></tr>"
        f"{rows}</table>"
        f'<div class="small">Gradient importance (Michel et al. 2019): |∂L/∂ξ| for a gate ξ = 1 on each head, '
        f"all heads in one backward pass. Rank correlation with the ablation drops: Spearman ρ = "
        f'<span id="importance-rho" data-rho="{result.rank_correlation!r}">{result.rank_correlation:+.2f}</span>.'
        f"</div>"
        f'<div class="small">{len(result.ranking)} ablations in {result.seconds:.2f} s</div>'
    )


def lens_html(result: LogitLens) -> str:
    """Rows: target positions; columns: decoder layers; each cell the top tokens, the correct one marked."""
    n = len(result.layers)
    header = "".join(
        f"<th>after layer {layer['layer'] + 1}{' (= output)' if i == n - 1 else ''}</th>"
        for i, layer in enumerate(result.layers)
    )
    rows = []
    for t in range(len(result.target_tokens)):
        cells = []
        for layer in result.layers:
            position = layer["positions"][t]
            candidates = "".join(
                f'<div class="cand{" hit" if c["id"] == result.translation_ids[t] else ""}"><bdi>{escape(c["token"])}'
                f"</bdi> {c['prob']:.2g}</div>"
                for c in position["top"]
            )
            cells.append(
                f'<td>{candidates}<div class="small">correct: p = {position["target_prob"]:.2g}, '
                f"rank {position['target_rank']}</div></td>"
            )
        rows.append(
            f'<tr><td class="num">{t}</td><td>{chip(result.input_tokens[t])}</td>'
            f"<td>{chip(result.target_tokens[t])}</td>{''.join(cells)}</tr>"
        )
    return (
        '<div class="lens-wrap"><table class="circuits" id="lens-table"><tr><th>#</th><th>reads</th>'
        f"<th>should predict</th>{header}</tr>{''.join(rows)}</table></div>"
    )


def residual_caption(result: ResidualStream) -> str:
    """The stream's own size, to compare the writes with."""

    def mean(values):
        return sum(values) / len(values)

    if result.normalize_before:
        norm = "normalised only inside each sub-layer (pre-LN): the writes accumulate"
    else:
        norm = "layer-normalised after every sub-layer (post-LN)"
    return (
        f'<div class="small">For scale: the stream entering the encoder has mean norm '
        f"{mean(result.encoder[0]['input_norm']):.1f} and leaves it at {mean(result.encoder[-1]['output_norm']):.1f}; "
        f"entering the decoder {mean(result.decoder[0]['input_norm']):.1f}, leaving it "
        f"{mean(result.decoder[-1]['output_norm']):.1f}. In this model the stream is {escape(norm)}.</div>"
    )


# --- UI handlers (plain functions: testable without a server) -----------------------------------------------
def ablation_outputs(bundle: ModelBundle, source, state, heads, beam_size=None, max_new_tokens=None):
    """(original translation, translation with the heads off, summary HTML, per-token HTML)."""
    try:
        result = ablation(bundle, pair_on_screen(bundle, source, state), heads, beam_size, max_new_tokens)
    except CircuitsInputError as err:
        return "", "", message_html(str(err)), ""
    summary, per_token = ablation_html(result)
    return result.translation, result.ablated_translation, summary, per_token


def importance_outputs(bundle: ModelBundle, source, state):
    """(grid picture or None, ranking HTML or a message, head labels ranked most important first)."""
    try:
        result = importance(bundle, pair_on_screen(bundle, source, state))
    except CircuitsInputError as err:
        return None, message_html(str(err)), []
    ranked = [head_label(r["family"], r["layer"], r["head"]) for r in result.ranking]
    return importance_image(result), ranking_html(result), ranked


def top_heads_selection(bundle: ModelBundle, ranked: list[str], count) -> tuple[list[str], list[str], list[str]]:
    """The ablation pickers' values (encoder, decoder self, cross) with the `count` top-ranked heads ticked."""
    chosen = list(ranked or [])[: max(0, whole_number(count, 3, "count"))]
    heads = parse_head_labels(bundle.model, chosen)
    return tuple([head_label(*h) for h in heads if h[0] == family] for family in FAMILIES)


def lens_outputs(bundle: ModelBundle, source, state, top_k=3) -> str:
    """The logit-lens table, or a message."""
    try:
        return lens_html(lens(bundle, pair_on_screen(bundle, source, state), top_k))
    except CircuitsInputError as err:
        return message_html(str(err))


def _residual_views(bundle: ModelBundle, pair: Pair):
    result = stream(bundle, pair)
    return residual_image(result), residual_caption(result)


def residual_outputs(bundle: ModelBundle, source, state):
    """(picture or None, caption HTML or a message)."""
    try:
        return _residual_views(bundle, pair_on_screen(bundle, source, state))
    except CircuitsInputError as err:
        return None, message_html(str(err))


def refresh_outputs(bundle: ModelBundle, state, top_k=3):
    """After a translation: the context line, the logit lens and the residual stream of the translation in
    `state` (the main tab's); the ablation and importance views are cleared (their buttons compute them)."""
    cleared = ("", "", "", "", None, "", [])
    try:
        pair = pair_from_state(state)
    except CircuitsInputError as err:
        return (message_html(str(err)), message_html(str(err)), None, "") + cleared
    return (context_html(bundle, pair), lens_html(lens(bundle, pair, top_k)), *_residual_views(bundle, pair)) + cleared


# --- API (JSON; {"error": message} for bad input) --------------------------------------------------------------
def ablation_json(bundle: ModelBundle, source, heads, translation="", beam_size=None, max_new_tokens=None) -> dict:
    """`AblationResult.to_dict()` with `heads` as labels, and `notices`."""
    try:
        pair = pair_from_api(bundle, source, translation, beam_size, max_new_tokens)
        result = ablation(bundle, pair, heads, beam_size, max_new_tokens)
    except CircuitsInputError as err:
        return {"error": str(err)}
    return with_notices({**result.to_dict(), "heads": [head_label(*h) for h in result.heads]}, pair)


def importance_json(bundle: ModelBundle, source, translation="") -> dict:
    """`HeadImportance.to_dict()` with a `label` in every ranking entry, and `notices`."""
    try:
        pair = pair_from_api(bundle, source, translation)
        result = importance(bundle, pair).to_dict()
    except CircuitsInputError as err:
        return {"error": str(err)}
    for entry in result["ranking"]:
        entry["label"] = head_label(entry["family"], entry["layer"], entry["head"])
    return with_notices(result, pair)


def lens_json(bundle: ModelBundle, source, translation="", top_k=5) -> dict:
    """`LogitLens.to_dict()` and `notices`."""
    try:
        pair = pair_from_api(bundle, source, translation)
        return with_notices(lens(bundle, pair, top_k).to_dict(), pair)
    except CircuitsInputError as err:
        return {"error": str(err)}


def residual_json(bundle: ModelBundle, source, translation="") -> dict:
    """`ResidualStream.to_dict()` and `notices`."""
    try:
        pair = pair_from_api(bundle, source, translation)
        return with_notices(stream(bundle, pair).to_dict(), pair)
    except CircuitsInputError as err:
        return {"error": str(err)}


# --- the tab -----------------------------------------------------------------------------------------------
def build(bundle: ModelBundle, shared) -> None:
    """The tab's components and events (called by app.build_demo inside its gr.Tab)."""
    model = bundle.model
    gr.Markdown(INTRO)
    context = gr.HTML(message_html(NOT_TRANSLATED), elem_id="circuits-context", css_template=CIRCUITS_CSS)
    ranked = gr.State([])

    gr.Markdown("### 1 · Head ablation")
    gr.Markdown(ABLATION_HELP)
    with gr.Row():
        pickers = [
            gr.CheckboxGroup(
                head_choices(model, family),
                label=FAMILY_NAMES[family],
                show_select_all=True,
                elem_id=f"ablate-{FAMILY_TAGS[family]}",
            )
            for family in FAMILIES
        ]
    ablate_button = gr.Button("Switch these heads off and re-translate", variant="primary", elem_id="ablate-btn")
    with gr.Row():
        original = gr.Textbox(label="Original translation", interactive=False, elem_id="circuits-original")
        ablated = gr.Textbox(label="Translation with the heads off", interactive=False, elem_id="ablated-translation")
    with gr.Row():
        summary = gr.HTML(elem_id="ablation-summary", css_template=CIRCUITS_CSS)
        per_token = gr.HTML(elem_id="ablation-tokens", css_template=CIRCUITS_CSS)

    gr.Markdown("### 2 · Head importance")
    gr.Markdown(IMPORTANCE_HELP)
    with gr.Row():
        importance_button = gr.Button("Rank every head", variant="primary", elem_id="importance-btn")
        top_count = gr.Slider(1, 12, value=3, step=1, label="How many of the top heads", elem_id="top-count")
        top_button = gr.Button("Switch off the top heads (ablation above)", elem_id="ablate-top-btn")
    with gr.Row():
        with gr.Column(scale=3):
            grid = picture("importance-grid", label="Drop in log p when each head alone is off")
        with gr.Column(scale=2):
            ranking = gr.HTML(elem_id="importance-ranking", css_template=CIRCUITS_CSS)

    gr.Markdown("### 3 · Logit lens")
    gr.Markdown(LENS_HELP)
    top_k = gr.Radio([1, 2, 3, 4, 5], value=3, label="Tokens per layer", elem_id="lens-top-k")
    lens_view = gr.HTML(elem_id="logit-lens", css_template=CIRCUITS_CSS)

    gr.Markdown("### 4 · Residual stream")
    gr.Markdown(RESIDUAL_HELP)
    residual = picture("residual-stream", label="Size of what each sub-layer writes")
    residual_note = gr.HTML(elem_id="residual-caption", css_template=CIRCUITS_CSS)

    on_screen = [shared.source, shared.attention_state]
    private = dict(api_visibility="private")
    # Every view here belongs to the main tab's translation whose state it was computed from: a result that
    # comes back after a newer translation (a late ablation, ranking or refresh) is dropped (`views.latest`),
    # so the tab never mixes two sentences; the refresh for the newest one always runs ("always_last").
    views = shared.views

    def run_ablation(source, state, enc, dec, cross, beam_size, max_new_tokens, request: gr.Request):
        outputs = ablation_outputs(bundle, source, state, [*enc, *dec, *cross], beam_size, max_new_tokens)
        return views.latest(request, outputs, views.key_of(state))

    def rank_heads(source, state, request: gr.Request):
        return views.latest(request, importance_outputs(bundle, source, state), views.key_of(state))

    def relens(source, state, k, request: gr.Request):
        return views.latest(request, lens_outputs(bundle, source, state, k), views.key_of(state))

    def refresh(state, k, request: gr.Request):
        if not views.is_current(request, views.key_of(state)):  # a newer translation's refresh follows
            return gr.skip()
        return views.latest(request, refresh_outputs(bundle, state, k), views.key_of(state))

    ablation_inputs = on_screen + pickers + [shared.beam_size, shared.max_new_tokens]
    ablation_views = [original, ablated, summary, per_token]
    ablate_button.click(run_ablation, inputs=ablation_inputs, outputs=ablation_views, **private)
    importance_button.click(rank_heads, inputs=on_screen, outputs=[grid, ranking, ranked], **private)
    top_button.click(
        lambda ranked_, count: top_heads_selection(bundle, ranked_, count),
        inputs=[ranked, top_count],
        outputs=pickers,
        **private,
    ).then(run_ablation, inputs=ablation_inputs, outputs=ablation_views, **private)
    top_k.input(relens, inputs=on_screen + [top_k], outputs=lens_view, trigger_mode="always_last", **private)
    shared.translate_event.then(
        refresh,
        inputs=[shared.attention_state, top_k],
        outputs=[
            context,
            lens_view,
            residual,
            residual_note,
            original,
            ablated,
            summary,
            per_token,
            grid,
            ranking,
            ranked,
        ],
        **FOLLOW_UP,
    )

    def ablate(
        source: str,
        heads: list[str],
        translation: str = "",
        beam_size: int = bundle.default_num_beams,
        max_new_tokens: int = bundle.default_max_new_tokens,
    ) -> dict:
        """Switch heads off (labels like "cross L1 H2", counted from 1) and re-translate. Scores `translation`
        (default: the model's own) with and without them: `delta` is the change of its log-probability."""
        return ablation_json(
            bundle,
            api_args.text("source", source),
            api_args.labels("heads", heads, "cross L1 H2"),
            api_args.text("translation", translation),
            api_args.whole_number("beam_size", beam_size),
            api_args.whole_number("max_new_tokens", max_new_tokens),
        )

    def head_importance(source: str, translation: str = "") -> dict:
        """Every head switched off alone: `grids[family]["drop"][layer][head]` (0-based indices) and `ranking`
        (most important first, each with its `label`)."""
        return importance_json(bundle, api_args.text("source", source), api_args.text("translation", translation))

    def logit_lens(source: str, translation: str = "", top_k: int = 5) -> dict:
        """Top tokens and probabilities per target position read from the residual stream after each decoder
        layer (`layers`), and the model's real output (`final`)."""
        return lens_json(
            bundle,
            api_args.text("source", source),
            api_args.text("translation", translation),
            api_args.whole_number("top_k", top_k, "a whole number from 1 to 10"),
        )

    def residual_stream(source: str, translation: str = "") -> dict:
        """Per layer and position, the L2 norm of what each sub-layer writes into the residual stream."""
        return residual_json(bundle, api_args.text("source", source), api_args.text("translation", translation))

    for fn in (ablate, head_importance, logit_lens, residual_stream):
        gr.api(fn, api_name=fn.__name__)

    from tabs import attribution_views  # sections 5 and 6, on the same pair and the same state

    attribution_views.build(bundle, shared)


__all__ = [
    "TAB_TITLE",
    "CircuitsInputError",
    "Pair",
    "ablation_json",
    "ablation_outputs",
    "build",
    "importance_json",
    "importance_outputs",
    "lens_json",
    "lens_outputs",
    "pair_from_api",
    "pair_from_state",
    "pair_on_screen",
    "parse_head_labels",
    "refresh_outputs",
    "residual_json",
    "residual_outputs",
    "top_heads_selection",
]
