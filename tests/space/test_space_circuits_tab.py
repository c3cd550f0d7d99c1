"""The Space's Circuits tab: its handlers, its API through gradio_client, and the page in Chromium.

The handlers are checked against direct calls to `encdec_lens` on the same model. The model is the
untrained `tiny_model_dir` fixture (fast, deterministic). With SAVE_SCREENSHOT set and a trained model in
space/model/, that model is served instead and the browser test also writes space/screenshot_circuits.png.
"""

import os

import pytest

from encdec_lens import ablation as ablation_lib
from encdec_lens import lens as lens_lib
from encdec_lens.heads import all_heads, head_label
from tabs import circuits_tab as tab
from conftest import (
    GRADIO_WARNINGS,
    SENTENCE,
    SPACE,
    attribution_on_page,
    open_circuits_tab,
    open_page,
    save_readme_picture,
    serve_space,
    translate_on_page,
    wait_for_picture,
)

pytestmark = GRADIO_WARNINGS
CROSS_LAYER_0 = ["cross L1 H1", "cross L1 H2", "cross L1 H3", "cross L1 H4"]


@pytest.fixture(scope="module")
def on_screen(bundle):
    """The main tab's translation of SENTENCE and the state it keeps: (translation, state)."""
    result = bundle.translate(SENTENCE)
    return result, {"source_ids": result.source.input_ids, "decoder_ids": result.decoder_ids}


def direct_ablation(bundle, state, heads, num_beams=None, max_new_tokens=None):
    """circuits.run_ablation on the bundle's own model, decoding as the Translate button does."""
    gen = bundle.generation_config_for(
        num_beams or bundle.default_num_beams, max_new_tokens or bundle.default_max_new_tokens
    )
    return ablation_lib.run_ablation(
        bundle.model,
        bundle.tokenizer,
        state["source_ids"],
        heads,
        translation=state["decoder_ids"],
        generation_config=gen,
    )


def shown_delta(summary_html: str) -> float:
    return float(summary_html.split('data-delta="', 1)[1].split('"', 1)[0])


# --- handlers --------------------------------------------------------------------------------------------
def test_head_labels_name_every_head_once(bundle):
    heads = all_heads(bundle.model)
    labels = [head_label(*h) for h in heads]
    assert labels[0] == "enc L1 H1" and "dec-self L2 H3" in labels and labels[-1] == "cross L2 H4"
    assert tab.parse_head_labels(bundle.model, labels) == heads
    assert tab.parse_head_labels(bundle.model, "cross L2 H1, ENC l1 h2") == [("encoder", 0, 1), ("cross", 1, 0)]
    for bad in ("cross L3 H1", "enc L1 H5", "cross L0 H1", "encoder:0:1", "<b>x</b>"):
        with pytest.raises(tab.CircuitsInputError, match="head"):
            tab.parse_head_labels(bundle.model, [bad])


def test_ablating_nothing_keeps_the_translation_and_the_score(bundle, on_screen):
    result, state = on_screen
    original, ablated, summary, per_token = tab.ablation_outputs(bundle, SENTENCE, state, [])
    assert original == ablated == result.text
    assert shown_delta(summary) == 0.0 and "+0.000" in summary and "did not change" in summary
    assert per_token.count("<tr>") == len(result.decoder_ids) + 1  # y_1 .. y_n </s>, and the header


def test_ablation_matches_circuits(bundle, on_screen):
    _, state = on_screen
    heads = ["enc L2 H3", *CROSS_LAYER_0]
    original, ablated, summary, _ = tab.ablation_outputs(bundle, SENTENCE, state, heads, 1, 20)
    expected = direct_ablation(bundle, state, tab.parse_head_labels(bundle.model, heads), 1, 20)
    assert (original, ablated) == (expected.translation, expected.ablated_translation)
    assert shown_delta(summary) == expected.delta != 0.0
    for label in heads:
        assert label in summary
    api = tab.ablation_json(bundle, SENTENCE, heads)  # no translation given: the model's own, default decoding
    default = direct_ablation(bundle, state, tab.parse_head_labels(bundle.model, heads))
    assert api == {**default.to_dict(), "heads": heads, "notices": []}


def test_importance_lens_and_stream_match_circuits(bundle, on_screen):
    _, state = on_screen
    args = (bundle.model, bundle.tokenizer, state["source_ids"], state["decoder_ids"])
    expected = ablation_lib.head_importance(*args)
    picture, ranking, ranked = tab.importance_outputs(bundle, SENTENCE, state)
    assert ranked == [head_label(r["family"], r["layer"], r["head"]) for r in expected.ranking]
    assert picture.ndim == 3 and picture.shape[1] > 500
    assert ranked[0] in ranking and f"{expected.ranking[0]['drop']:+.3f}" in ranking

    lens = lens_lib.logit_lens(*args, top_k=2)
    html = tab.lens_outputs(bundle, SENTENCE, state, top_k=2)
    assert html.count("<tr>") == len(lens.target_tokens) + 1
    assert html.count('class="cand') == 2 * len(lens.target_tokens) * len(lens.layers)
    assert "(= output)" in html

    context, lens_html, residual, caption, *cleared = tab.refresh_outputs(bundle, state, 2)
    assert "Working on" in context and lens_html == html and residual.ndim == 3 and "mean norm" in caption
    assert cleared == ["", "", "", "", None, "", []]

    importance, direct = tab.importance_json(bundle, SENTENCE), expected.to_dict()
    assert [r.pop("label") for r in importance["ranking"]] == ranked
    for key in ("seconds", "notices"):
        importance.pop(key), direct.pop(key, None)
    assert importance == direct  # the API translates as the Translate button did, so the same pair
    assert tab.lens_json(bundle, SENTENCE, top_k=2) == {**lens.to_dict(), "notices": []}
    assert tab.residual_json(bundle, SENTENCE) == {**lens_lib.residual_stream(*args).to_dict(), "notices": []}


def test_refresh_shows_the_translation_of_the_state_even_after_the_box_changed(bundle, on_screen):
    """After a translation the tab shows that translation (with its notices), whatever the box holds by then:
    the follow-up reads the state alone."""
    from safe_html import escape

    result, state = on_screen
    german = bundle.translate("Ein Mann in einem blauen Hemd steht auf einer Leiter.")
    german_state = {
        "key": "k2",
        "source_ids": german.source.input_ids,
        "decoder_ids": german.decoder_ids,
        "notices": german.notices,
    }
    context, lens_view, *_ = tab.refresh_outputs(bundle, german_state, 2)
    assert "Working on <b>Ein Mann in einem blauen Hemd" in context
    assert german.notices and all(escape(notice) in context for notice in german.notices)  # the state's notices
    assert lens_view.count("<tr>") == len(german.decoder_ids) + 1
    assert tab.pair_from_state(german_state) == tab.Pair(german.source.input_ids, german.decoder_ids, german.notices)
    with pytest.raises(tab.CircuitsInputError, match="^Nothing translated yet"):
        tab.pair_from_state(None)


def test_a_given_translation_is_capped_and_must_be_valid_text(bundle):
    """The API's `translation` argument: at most the model's output length, and no lone surrogate (the
    tokenizer raised a TypeError on one); the same messages as /walkthrough."""
    limit = bundle.max_new_tokens_limit
    too_long = "ein Hund " * limit
    n_tokens = len(bundle.tokenizer(text_target=too_long.strip())["input_ids"])
    long_message = f"The translation is {n_tokens} subword tokens long; this model writes at most {limit}."
    surrogate_message = (
        "The translation contains a lone surrogate (\\ud800), which is not valid Unicode text: send it as UTF-8."
    )
    for answer in (
        tab.lens_json(bundle, SENTENCE, too_long),
        tab.residual_json(bundle, SENTENCE, too_long),
        tab.importance_json(bundle, SENTENCE, too_long),
        tab.ablation_json(bundle, SENTENCE, [], too_long),
    ):
        assert answer == {"error": long_message}
    for answer in (
        tab.lens_json(bundle, SENTENCE, "Ein \ud800 Hund."),
        tab.residual_json(bundle, SENTENCE, "\ud800"),
        tab.importance_json(bundle, SENTENCE, "\ud800"),
        tab.ablation_json(bundle, SENTENCE, [], "\ud800"),
    ):
        assert answer == {"error": surrogate_message}
    # A lone surrogate in the source is read as "?", and said so.
    assert "lone surrogate" in tab.residual_json(bundle, "A dog \ud800 runs.")["notices"][0]


def test_top_heads_fill_the_pickers(bundle):
    ranked = ["cross L2 H1", "enc L1 H3", "dec-self L1 H1", "enc L2 H2"]
    assert tab.top_heads_selection(bundle, ranked, 3) == (["enc L1 H3"], ["dec-self L1 H1"], ["cross L2 H1"])
    assert tab.top_heads_selection(bundle, [], 3) == ([], [], [])


def test_bad_input_gets_a_message(bundle, on_screen):
    result, state = on_screen
    for source, state_, message in (
        ("  ", state, "empty"),
        (SENTENCE, None, "Nothing translated yet"),
        (SENTENCE + " Again.", state, "press Translate again"),
    ):
        _, _, summary, _ = tab.ablation_outputs(bundle, source, state_, ["cross L1 H1"])
        assert message in summary
        picture, ranking, ranked = tab.importance_outputs(bundle, source, state_)
        assert picture is None and ranked == [] and message in ranking
        assert message in tab.lens_outputs(bundle, source, state_)
        assert message in tab.residual_outputs(bundle, source, state_)[1]
    context, lens_view, picture, _, *_ = tab.refresh_outputs(bundle, None)
    assert "Nothing translated yet" in context and "Nothing translated yet" in lens_view and picture is None
    assert "empty" in tab.importance_json(bundle, "")["error"]
    assert "cross L9 H1" in tab.ablation_json(bundle, SENTENCE, ["cross L9 H1"])["error"]
    assert "beam_size" in tab.ablation_json(bundle, SENTENCE, [], beam_size="many")["error"]
    nasty = '<img src=x onerror="alert(1)"> \u202e ${x}'
    summary = tab.ablation_outputs(bundle, SENTENCE, state, [nasty])[2]
    html = tab.lens_html(lens_lib.logit_lens(bundle.model, bundle.tokenizer, SENTENCE, nasty))
    for fragment in (summary, html):
        assert "<img" not in fragment and "\u202e" not in fragment and "${" not in fragment


# --- API through a running server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(bundle):
    with serve_space(bundle, tabs=[tab]) as url:
        yield url


def test_api_endpoints(client, bundle, on_screen):
    result, state = on_screen
    answer = client.predict(SENTENCE, CROSS_LAYER_0, api_name="/ablate")
    expected = tab.ablation_json(bundle, SENTENCE, CROSS_LAYER_0)
    assert answer["heads"] == CROSS_LAYER_0 and answer["translation"] == result.text
    assert answer["delta"] == pytest.approx(expected["delta"], abs=1e-6) and answer["delta"] != 0
    assert answer["ablated_translation"] == expected["ablated_translation"]

    ranking = client.predict(SENTENCE, api_name="/head_importance")["ranking"]
    assert [r["label"] for r in ranking] == tab.importance_outputs(bundle, SENTENCE, state)[2]
    lens = client.predict(SENTENCE, "Ein Hund.", 2, api_name="/logit_lens")
    assert lens["target_tokens"][-1] == bundle.tokenizer.eos_token and len(lens["final"][0]["top"]) == 2
    stream = client.predict(SENTENCE, api_name="/residual_stream")
    assert len(stream["decoder"]) == bundle.model.config.decoder_layers
    assert len(stream["encoder"][0]["ffn"]) == len(result.source.input_ids)

    assert "is not a head label" in client.predict(SENTENCE, ["bogus"], api_name="/ablate")["error"]
    assert "empty" in client.predict("   ", api_name="/residual_stream")["error"]


# --- a real browser -----------------------------------------------------------------------------------------
@pytest.fixture
def page(browser, server):  # noqa: F811 (browser: the imported fixture)
    with open_page(browser, server, width=1300) as page:
        yield page


@pytest.mark.browser
def test_browser_switch_heads_off_and_rank_them(page, bundle, on_screen, tmp_path):
    from playwright.sync_api import expect

    result, state = on_screen
    translate_on_page(page, SENTENCE, result.text)
    open_circuits_tab(page)
    expect(page.locator("#lens-table tr")).to_have_count(len(result.decoder_ids) + 1)
    wait_for_picture(page, "#residual-stream")
    page.locator("#lens-top-k label", has_text="1").click()  # one token per layer and position
    layers = bundle.model.config.decoder_layers
    expect(page.locator("#lens-table .cand")).to_have_count(layers * len(result.decoder_ids))

    page.locator("#ablate-cross input.select-all-checkbox").click()  # every cross-attention head off
    page.locator("#ablate-enc label", has_text="L1 H2").click()
    page.locator("#ablate-btn").click()
    expect(page.locator("#ablation-delta")).to_be_visible()
    heads = [("encoder", 0, 1)] + all_heads(bundle.model, ("cross",))
    expected = direct_ablation(bundle, state, heads)
    shown = float(page.locator("#ablation-delta").inner_text())
    assert shown != 0 and shown == pytest.approx(round(expected.delta, 3), abs=1e-9)
    expect(page.locator("#ablated-translation textarea")).to_have_value(expected.ablated_translation)
    expect(page.locator("#circuits-original textarea")).to_have_value(result.text)

    page.locator("#importance-btn").click()
    expect(page.locator("#importance-ranking")).to_contain_text("Most important heads")
    wait_for_picture(page, "#importance-grid")
    ranked = tab.importance_outputs(bundle, SENTENCE, state)[2]
    page.locator("#ablate-top-btn").click()  # the top 3 heads, ticked and switched off
    for label in ranked[:3]:
        expect(page.locator("#ablation-summary")).to_contain_text(label)
    page.screenshot(path=str(tmp_path / "circuits.png"), full_page=True)
    assert (tmp_path / "circuits.png").stat().st_size > 10_000
    if os.environ.get("SAVE_SCREENSHOT"):  # the README's picture: ablation and importance
        save_readme_picture(page, tmp_path, "screenshot_circuits.png", ["#importance-grid", "#importance-ranking"])


def test_benchmark_times_head_importance(bundle):
    """benchmarks/bench_space.py's head-importance timing, in miniature, so the script does not rot."""
    import importlib.util

    path = os.path.join(os.path.dirname(SPACE), "benchmarks", "bench_space.py")
    spec = importlib.util.spec_from_file_location("bench_space", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.measure_head_importance(bundle, repeats=1, threads=(1, 1))
    heads = len(all_heads(bundle.model))
    assert len(rows) == 1 and rows[0]["words"] == 15 and rows[0]["heads"] == heads and rows[0]["median_s"] > 0
    table = bench.markdown_table({"head_importance": rows, "machine": "test"})
    assert f"Circuits head importance ({heads} heads off one at a time), 15-word sentence, 1 thread" in table


# --- direct logit attribution, activation patching, gradient importance ---------------------------------------
from tabs import attribution_views as views  # noqa: E402

WORDS = ("dog", "man", "cat", "boy", "girl", "road", "car", "house", "small", "old")


def corrupted_sentence(bundle) -> str:
    """SENTENCE with one word changed, of the same token length (found with the bundle's tokenizer)."""
    length = len(bundle.prepare(SENTENCE).input_ids)
    for word in SENTENCE.split():
        for other in WORDS:
            candidate = SENTENCE.replace(f" {word} ", f" {other} ", 1)
            if candidate != SENTENCE and len(bundle.prepare(candidate).input_ids) == length:
                return candidate
    raise AssertionError(f"no one-word change of {SENTENCE!r} keeps its token length")


def test_attribution_parts_add_up_to_the_shown_logit(bundle, on_screen):
    result, state = on_screen
    shown = views.attribution_outputs(bundle, SENTENCE, state, 2)
    data = views.attribution_json(bundle, SENTENCE, "", 1)  # the model's own translation, as on screen
    assert data["position"] == 1 and data["token"] == bundle.tokenizer.convert_ids_to_tokens(result.decoder_ids[2])
    assert sum(c["value"] for c in data["components"]) == pytest.approx(data["logit"], abs=1e-4)
    assert f'data-logit="{data["logit"]!r}"' in shown
    layers = bundle.model.config.decoder_layers
    heads = bundle.model.config.decoder_attention_heads
    assert len(data["components"]) == 3 + layers * (2 * heads + 1)  # embedding, positions, biases; heads, ffn
    assert "999 does not exist" in views.attribution_json(bundle, SENTENCE, "", 999)["error"]
    assert "Position 999 does not exist" in views.attribution_outputs(bundle, SENTENCE, state, 999)
    assert "count from 1" in views.attribution_outputs(bundle, SENTENCE, state, 0)


def test_patching_ends_and_a_clear_error_for_different_lengths(bundle, on_screen):
    result, state = on_screen
    corrupted = corrupted_sentence(bundle)
    data = views.patching_json(bundle, SENTENCE, corrupted)
    assert data["nothing_patched"] == 0 and data["encoder_output_patched"] == 1
    assert len(data["heads"]) == len(all_heads(bundle.model))
    assert [entry["name"] for entry in data["layers"]][0] == "encoder L1"
    picture, html = views.patching_outputs(bundle, SENTENCE, state, corrupted)
    assert picture.ndim == 3 and f"{data['encoder_output_patched']:.3f}" in html
    longer = views.patching_json(bundle, SENTENCE, "A much longer sentence than the clean one, by many words.")
    assert "same number of tokens" in longer["error"]
    assert "Type the corrupted sentence" in views.patching_outputs(bundle, SENTENCE, state, "  ")[1]


def test_ranking_shows_gradient_importance_and_its_rank_correlation(bundle, on_screen):
    _, state = on_screen
    data = tab.importance_json(bundle, SENTENCE)
    assert all(entry["gradient"] >= 0 for entry in data["ranking"])
    assert -1 <= data["rank_correlation"] <= 1
    html = tab.importance_outputs(bundle, SENTENCE, state)[1]
    assert f'data-rho="{data["rank_correlation"]!r}"' in html


def test_api_attribution_and_patching(client, bundle, on_screen):
    result, _ = on_screen
    answer = client.predict(SENTENCE, "", -1, api_name="/logit_attribution")
    assert answer["token"] == bundle.tokenizer.eos_token
    assert answer["logit"] == pytest.approx(views.attribution_json(bundle, SENTENCE, "", -1)["logit"], abs=1e-5)
    corrupted = corrupted_sentence(bundle)
    patched = client.predict(SENTENCE, corrupted, "", api_name="/activation_patching")
    assert patched["translation"] == result.text and patched["nothing_patched"] == 0
    assert {"name", "restored"} <= set(patched["heads"][0])
    assert (
        "same number of tokens" in client.predict(SENTENCE, "Two dogs.", "", api_name="/activation_patching")["error"]
    )


@pytest.mark.browser
def test_browser_attribution_patching_and_gradient_read_the_api_numbers(page, bundle, on_screen, client, tmp_path):
    from playwright.sync_api import expect

    result, _ = on_screen
    translate_on_page(page, SENTENCE, result.text)
    open_circuits_tab(page)

    api = attribution_on_page(page, client, SENTENCE)
    shown = {
        row.locator("td").nth(0).inner_text(): float(row.locator("td").nth(1).get_attribute("data-value"))
        for row in page.locator("#dla-table tr").all()[1:]
    }
    by_name = {c["name"]: c["value"] for c in api["components"]}
    assert shown and all(value == pytest.approx(by_name[name], abs=1e-5) for name, value in shown.items())

    corrupted = corrupted_sentence(bundle)
    page.locator("#patch-corrupted textarea, #patch-corrupted input").first.fill(corrupted)
    page.locator("#patch-btn").click()
    expect(page.locator("#patch-encoder-output")).to_be_visible()
    wait_for_picture(page, "#patch-grid")
    api = client.predict(SENTENCE, corrupted, "", api_name="/activation_patching")
    cells = page.locator("#patch-layers td[data-restored]")
    expect(cells).to_have_count(len(api["layers"]))
    for cell, entry in zip(cells.all(), api["layers"]):
        assert float(cell.get_attribute("data-restored")) == pytest.approx(entry["restored"], abs=1e-5)

    page.locator("#importance-btn").click()
    expect(page.locator("#importance-rho")).to_be_visible()
    rho = client.predict(SENTENCE, api_name="/head_importance")["rank_correlation"]
    assert float(page.locator("#importance-rho").get_attribute("data-rho")) == pytest.approx(rho, abs=1e-6)
    if os.environ.get("SAVE_SCREENSHOT"):  # the README's picture: attribution and patching
        save_readme_picture(
            page, tmp_path, "screenshot_attribution.png", ["#patch-grid", "#patch-summary"], "#dla-position", 60
        )
