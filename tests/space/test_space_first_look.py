"""What a newcomer sees first: step numbers, captions, a head's card, the strongest links, long pastes and the
examples. The tiny untrained model serves the page; the head atlas is the shipped model's own."""

import json
import logging
import os

import pytest
from conftest import SHIPPED_MODEL


@pytest.fixture(scope="module")
def shipped_atlas():
    path = os.path.join(SHIPPED_MODEL, "head_atlas.json")
    if not os.path.isfile(path):
        pytest.skip(f"no head atlas in {SHIPPED_MODEL}")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def test_walkthrough_steps_are_numbered_once(bundle):
    """The titles carry the step numbers; an ordered list around them showed "1. 4. Score ..."."""
    from tabs import walkthrough_tab
    from tabs.walkthrough_text import explain

    pair = walkthrough_tab.make_pair(bundle, "Two dogs play in the snow.")
    html = walkthrough_tab.steps_html(explain(walkthrough_tab.run_walkthrough(bundle, pair, "encoder", 0, 0)))
    assert "<ol" not in html
    assert '<ul class="wt-texts"><li><b>4. Score against every token (q . k).</b>' in html
    assert "ul.wt-texts { list-style: none;" in walkthrough_tab.WALKTHROUGH_CSS


def test_pruning_caption_names_the_decoding_without_a_file_path(shipped_atlas):
    from tabs import heads_tab

    assert heads_tab.pruning_caption(shipped_atlas) == (
        "**Pruning heads**: the least important first, switched off by zeroing their output; greedy decoding, "
        f"sacreBLEU on {shipped_atlas['sentences']} sentences of the val split"
    )


def test_a_heads_card_says_its_pruning_place_in_words(shipped_atlas):
    from tabs import heads_tab

    record = next(r for r in shipped_atlas["heads"] if r["pruning_order"]["all"] in (21, 22, 23, 27, 11, 12, 13))
    card = heads_tab.card_html(shipped_atlas, record["name"])
    family, everything = record["pruning_order"]["family"], record["pruning_order"]["all"]
    assert f"pruned {heads_tab.ordinal(family)} in its family" in card
    assert f"and {heads_tab.ordinal(everything)} of all {len(shipped_atlas['heads'])} heads" in card
    assert ". of its family" not in card and ". of all" not in card
    assert [heads_tab.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 27, 101, 112)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "23rd",
        "27th",
        "101st",
        "112th",
    ]


def test_decoder_strongest_links_never_list_a_future_token(bundle):
    import app

    data = bundle.translate("A man in a blue shirt is standing on a ladder.", 1, 8).attention
    for query in range(len(data.query_tokens("decoder"))):
        for layer in data.strongest_links("decoder", query, k=3):
            assert all(j <= query for j, _, _ in layer) and len(layer) == min(3, query + 1)
    links = app.explorer_outputs(data, "decoder", "1", "mean", "target:0")[-1]
    assert "0.00" not in links  # the first token sees only itself


def test_a_long_paste_says_what_was_cut_and_what_was_translated(bundle, capfd, caplog):
    from translation_engine import MAX_INPUT_CHARS

    text = "A dog runs on the grass. " * 120  # 3,000 characters, far beyond the model's tokens
    with caplog.at_level(logging.WARNING):
        source = bundle.prepare(text)
    cut, truncated = source.notices
    assert cut == (
        f"The text has {len(text.strip()):,} characters; only the first {MAX_INPUT_CHARS:,} were read: "
        f"the last {len(text.strip()) - MAX_INPUT_CHARS:,} were cut."
    )
    assert truncated.startswith(f"Truncated: the text is {source.original_tokens} subword tokens long")
    assert truncated.endswith(
        f"(the first {bundle.max_source_tokens} tokens, {source.original_tokens - bundle.max_source_tokens} left "
        "out). Split a long text into sentences and translate them one at a time."
    )
    said = capfd.readouterr().err + caplog.text
    assert "Token indices sequence length is longer" not in said


def test_the_examples_lead_with_captions_and_say_the_seed_is_out_of_domain(bundle):
    import gradio as gr

    import app

    demo = app.build_demo(bundle, tabs=[])
    examples = next(b for b in demo.blocks.values() if isinstance(b, gr.Dataset))
    shown = [row[0] for row in examples.samples]
    assert shown[-1] == app.SEED_EXAMPLE and app.SEED_EXAMPLE not in shown[:-1]
    assert all(bundle.prepare(s).notices == [] for s in shown[:-1])  # captions: nothing to warn about
    note = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "examples-note")
    assert note.value.startswith(
        f"The last example, *{app.SEED_EXAMPLE}*, is the sentence about what “it” "
        "refers to, not an image caption: it lies outside what this model learnt from"
    )
