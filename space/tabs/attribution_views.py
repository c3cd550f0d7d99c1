"""Sections 5 and 6 of the Circuits tab: direct logit attribution and activation patching.

Both work on the pair of the "Translate & attention" tab (the same `Pair` and state as the rest of the Circuits
tab) and are computed by `encdec_lens.attribution` and `encdec_lens.patching`. Handlers are plain functions of
the `ModelBundle` and the inputs; the API functions return JSON, or `{"error": message}` for bad input.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

import api_args
from components import picture
from encdec_lens.attribution import LogitAttribution, logit_attribution
from encdec_lens.inputs import labels_from_ids
from encdec_lens.patching import ActivationPatching, activation_patching
from encdec_lens.plots import head_values_image
from safe_html import escape
from tabs.pair_views import (
    CIRCUITS_CSS,
    PLOT_TITLES,
    CircuitsInputError,
    Pair,
    bar,
    chip,
    message_html,
    pair_from_api,
    pair_on_screen,
    target_position,
    whole_number,
    with_notices,
)
from translation_engine import EMPTY_MESSAGE, ModelBundle

COMPONENTS_SHOWN = 12  # rows of the attribution table (the API returns every component)
PATCH_EXAMPLE = "A woman is riding a bike."

ATTRIBUTION_HELP = """\
**Direct logit attribution.** The score (logit) the model gives a target token is a sum: in this post-LN
model every LayerNorm is linear once its scale is frozen at its value in this pass, so the logit splits
exactly into what the token embedding, the positional encoding, every decoder self-attention head, every
cross-attention head, every feed-forward block and the biases wrote into the residual stream. Positive
parts push the token up, negative parts push it down. Encoder heads are not in the list: they reach the
decoder only through cross-attention's keys and values (see patching below).
"""

PATCHING_HELP = """\
**Activation patching.** Type the sentence of the first tab with one word changed (the same number of
tokens, e.g. *man* → *woman*). The model reads this **corrupted** sentence, and one part at a time (a head,
or a whole layer's residual stream) gets the value it had on the **clean** sentence. How much of the
clean-vs-corrupted difference in log p(translation) does that part restore? 0: nothing; 1: all of it (as
patching the whole encoder output does, by definition).
"""


# --- computations ------------------------------------------------------------------------------------------
def attribution(bundle: ModelBundle, pair: Pair, position: int) -> LogitAttribution:
    """`logit_attribution` of the token at a 0-based target position (-1 = the last, </s>)."""
    try:
        return logit_attribution(bundle.model, bundle.tokenizer, pair.source_ids, pair.target_ids, position=position)
    except ValueError as err:
        raise CircuitsInputError(str(err)) from None


def patching(bundle: ModelBundle, pair: Pair, corrupted) -> ActivationPatching:
    """`activation_patching` of the pair's source (clean) into `corrupted`, scoring the pair's translation."""
    prepared = bundle.prepare(corrupted)
    if prepared is None:
        raise CircuitsInputError("Type the corrupted sentence: the first tab's sentence with one word changed.")
    try:
        return activation_patching(bundle.model, bundle.tokenizer, pair.source_ids, prepared.input_ids, pair.target_ids)
    except ValueError as err:
        raise CircuitsInputError(str(err)) from None


# --- pictures and HTML -------------------------------------------------------------------------------------
def attribution_html(result: LogitAttribution, shown: int = COMPONENTS_SHOWN) -> str:
    """The logit, the sum of its parts, and the largest parts (by size) with bars."""
    ranked = sorted(result.components, key=lambda c: -abs(c["value"]))
    scale = max([abs(c["value"]) for c in ranked] + [1e-9])
    rows = "".join(
        f'<tr><td>{chip(c["name"])}</td><td class="num" data-value="{c["value"]!r}">{c["value"]:+.3f}</td>'
        f"<td>{bar(c['value'], scale)}</td></tr>"
        for c in ranked[:shown]
    )
    tokens = " ".join(
        f'<span class="cand{" hit" if t == result.position else ""}"><bdi>{escape(token)}</bdi></span>'
        for t, token in enumerate(result.translation_tokens)
    )
    return (
        f"<div>{tokens}</div>"
        f"<div>Logit of {chip(result.token)} at position {result.position + 1}: "
        f'<span class="delta" id="dla-logit" data-logit="{result.logit!r}">{result.logit:.3f}</span> '
        f"(log p = {result.logprob:.3f}); its {len(result.components)} parts add up to "
        f'<span id="dla-total">{result.total:.3f}</span>.</div>'
        f'<table class="circuits" id="dla-table"><tr><th>part</th><th>logit</th><th></th></tr>{rows}</table>'
        f'<div class="small">The {min(shown, len(ranked))} largest of {len(ranked)} parts.</div>'
    )


def patching_image(result: ActivationPatching) -> np.ndarray:
    """One layer x head grid per family of the share of the difference each head restores."""
    grids: dict = {}
    for entry in result.heads:
        rows = grids.setdefault(entry["family"], {})
        rows.setdefault(entry["layer"], {})[entry["head"]] = entry["restored"]
    values = {
        family: [[heads[h] for h in sorted(heads)] for _, heads in sorted(layers.items())]
        for family, layers in grids.items()
    }
    return head_values_image(
        values,
        PLOT_TITLES,
        "share restored",
        f"log p(translation): clean {result.clean_logprob:.2f}, corrupted {result.corrupted_logprob:.2f}",
    )


def patching_html(result: ActivationPatching) -> str:
    """The two ends, every layer's residual stream, and the heads that restore the most."""
    layer_rows = "".join(
        f'<tr><td>{escape(entry["name"])}</td><td class="num" data-restored="{entry["restored"]!r}">'
        f"{entry['restored']:.3f}</td><td>{bar(entry['restored'], 1.0)}</td></tr>"
        for entry in result.layers
    )
    top = sorted(result.heads, key=lambda e: -e["restored"])[:5]
    heads = ", ".join(f"{chip(e['name'])} {e['restored']:.2f}" for e in top)
    return (
        f"<div>Clean <b>{escape(result.clean)}</b> → corrupted <b>{escape(result.corrupted)}</b></div>"
        '<table class="circuits" id="patch-layers"><tr><th>patched</th><th>restored</th><th></th></tr>'
        f'<tr><td>nothing</td><td class="num">{result.nothing_patched:.3f}</td><td></td></tr>'
        f'<tr><td>the whole encoder output</td><td class="num" id="patch-encoder-output">'
        f"{result.encoder_output_patched:.3f}</td><td>{bar(result.encoder_output_patched, 1.0)}</td></tr>"
        f"{layer_rows}</table>"
        f"<div>Heads that restore the most: {heads}</div>"
        f'<div class="small">{len(result.heads) + len(result.layers) + 1} patched runs in one batch, '
        f"{result.seconds:.2f} s</div>"
    )


# --- UI handlers -------------------------------------------------------------------------------------------
def attribution_outputs(bundle: ModelBundle, source, state, position) -> str:
    try:
        pair = pair_on_screen(bundle, source, state)
        count = len(labels_from_ids(bundle.model, pair.target_ids))  # the translation's tokens and </s>
        if not -count <= target_position(position) < count:
            raise CircuitsInputError(
                f"Position {position} does not exist: the translation has {count} tokens "
                f"(1..{count} with the final </s>; -1 is the last)."
            )
        return attribution_html(attribution(bundle, pair, target_position(position)))
    except CircuitsInputError as err:
        return message_html(str(err))


def patching_outputs(bundle: ModelBundle, source, state, corrupted):
    """(picture or None, HTML or a message)."""
    try:
        result = patching(bundle, pair_on_screen(bundle, source, state), corrupted)
    except CircuitsInputError as err:
        return None, message_html(str(err))
    return patching_image(result), patching_html(result)


# --- API ---------------------------------------------------------------------------------------------------
def attribution_json(bundle: ModelBundle, sentence, translation="", position=-1) -> dict:
    """`LogitAttribution.to_dict()` (position counted from 0, -1 = last) and `notices`."""
    try:
        pair = pair_from_api(bundle, sentence, translation)
        position = whole_number(position, -1, "position")
        return with_notices(attribution(bundle, pair, position).to_dict(), pair)
    except CircuitsInputError as err:
        return {"error": str(err)}


def patching_json(bundle: ModelBundle, clean, corrupted, translation="") -> dict:
    """`ActivationPatching.to_dict()` and `notices` (the translation defaults to the model's own of `clean`)."""
    try:
        pair = pair_from_api(bundle, clean, translation)
        if bundle.prepare(corrupted) is None:
            raise CircuitsInputError(EMPTY_MESSAGE)
        return with_notices(patching(bundle, pair, corrupted).to_dict(), pair)
    except CircuitsInputError as err:
        return {"error": str(err)}


# --- the sections ------------------------------------------------------------------------------------------
def build(bundle: ModelBundle, shared) -> None:
    """The two sections' components and events (inside the Circuits tab)."""
    gr.Markdown("### 5 · Direct logit attribution")
    gr.Markdown(ATTRIBUTION_HELP)
    with gr.Row():
        position = gr.Number(
            value=1,
            precision=0,
            label="Target token (1 = the first of the translation, -1 = the last)",
            elem_id="dla-position",
        )
        attribute_button = gr.Button("Split its logit into parts", variant="primary", elem_id="dla-btn")
    attribution_view = gr.HTML(elem_id="dla-view", css_template=CIRCUITS_CSS)

    gr.Markdown("### 6 · Activation patching")
    gr.Markdown(PATCHING_HELP)
    with gr.Row():
        corrupted = gr.Textbox(
            label="Corrupted sentence (one word changed)",
            placeholder=PATCH_EXAMPLE,
            elem_id="patch-corrupted",
            max_lines=1,
        )
        patch_button = gr.Button("Patch clean into corrupted", variant="primary", elem_id="patch-btn")
    with gr.Row():
        with gr.Column(scale=3):
            patch_grid = picture("patch-grid", label="Share restored by each head")
        with gr.Column(scale=2):
            patch_view = gr.HTML(elem_id="patch-summary", css_template=CIRCUITS_CSS)

    on_screen = [shared.source, shared.attention_state]
    private = dict(api_visibility="private")
    views = shared.views

    def attribute(source, state, position_, request: gr.Request):
        return views.latest(request, attribution_outputs(bundle, source, state, position_), views.key_of(state))

    def patch(source, state, corrupted_, request: gr.Request):
        return views.latest(request, patching_outputs(bundle, source, state, corrupted_), views.key_of(state))

    attribute_button.click(attribute, inputs=on_screen + [position], outputs=attribution_view, **private)
    patch_button.click(patch, inputs=on_screen + [corrupted], outputs=[patch_grid, patch_view], **private)
    shared.translate_event.then(
        lambda: ("", None, ""), outputs=[attribution_view, patch_grid, patch_view], show_progress="hidden", **private
    )

    def logit_attribution(sentence: str, translation: str = "", position: int = -1) -> dict:
        """The logit of the target token at `position` (counted from 0, -1 = the last) split into `components`
        ({"name", "value"}: token embedding, positional encoding, every decoder self-attention and cross-attention
        head, every feed-forward block, the biases); they add up to `logit`."""
        return attribution_json(
            bundle,
            api_args.text("sentence", sentence),
            api_args.text("translation", translation),
            api_args.whole_number("position", position, "a whole number (0-based, -1 = the last)"),
        )

    def activation_patching(clean: str, corrupted: str, translation: str = "") -> dict:
        """Patch the clean run's activations into the corrupted run (sources of the same token length), one head
        or one layer's residual stream at a time: `heads` and `layers` give the share of the difference in
        log p(translation) each restores (`nothing_patched` = 0, `encoder_output_patched` = 1)."""
        return patching_json(
            bundle,
            api_args.text("clean", clean),
            api_args.text("corrupted", corrupted),
            api_args.text("translation", translation),
        )

    for fn in (logit_attribution, activation_patching):
        gr.api(fn, api_name=fn.__name__)
