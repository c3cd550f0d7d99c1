"""The "Inside one head" tab: its handlers, its API endpoint, and the tab in a real Chromium.

The numbers the tab shows are compared with `encdec_lens.walkthrough.walkthrough` run directly on the same
model; the words come from `tabs.walkthrough_text`. The model is the untrained `tiny_model_dir` fixture (2
layers of 4 heads; fast). With SAVE_SCREENSHOT set and a trained model in space/model/, that model is served
instead and the browser test also writes space/screenshot_walkthrough.png for the README.
"""

import os
import re
import shutil
import threading
import time

import numpy as np
import pytest
from conftest import GRADIO_WARNINGS, SENTENCE, SPACE, open_page, serve_space, translate_on_page, wait_for_picture

SHOWN_WEIGHT = re.compile(r'<td class="num w">([^<]+)</td>')

pytestmark = GRADIO_WARNINGS


@pytest.fixture(scope="module")
def pair(bundle):
    from tabs import walkthrough_tab

    return walkthrough_tab.make_pair(bundle, SENTENCE)


def direct(bundle, pair, kind, layer, head, **where):
    """`encdec_lens.walkthrough.walkthrough` itself, on the same model and pair (0-based layer and head)."""
    from encdec_lens import walkthrough as wt

    return wt.walkthrough(
        bundle.model, bundle.tokenizer, pair["source_ids"], pair["target"], kind=kind, layer=layer, head=head, **where
    )


def shown_weights(steps_html: str) -> list:
    """The softmax column of the tab's table: floats, or None for a masked position."""
    return [None if "masked" in cell else float(cell) for cell in SHOWN_WEIGHT.findall(steps_html)]


def assert_same_weights(shown, weights, masked):
    assert len(shown) == len(weights)
    for value, weight, is_masked in zip(shown, weights, masked):
        if is_masked:
            assert value is None and weight == 0.0
        else:
            assert value == pytest.approx(weight, abs=6e-5)  # shown with 4 decimals


# --- handlers (no server) --------------------------------------------------------------------------------
def test_default_example_opens_on_it(bundle, pair):
    from encdec_lens import walkthrough as wt
    from tabs import walkthrough_tab

    opening_pair, view = walkthrough_tab.opening_view(bundle)
    assert opening_pair == pair
    assert pair["translation"] == bundle.translate(SENTENCE).text  # the model's own, as the main tab gives it
    tokens = wt.source_tokens(bundle.tokenizer, SENTENCE)
    it = wt.find_token_position(tokens, "it")
    assert view.token == f"source:{it}" and view.result.token.replace("▁", "") == "it"
    assert [label for label, _ in view.token_choices] == [f"{i}: {t}" for i, t in enumerate(tokens)]

    layer, head, weight = walkthrough_tab.strongest_link(bundle, pair)
    assert (view.layer, view.head) == (str(layer + 1), str(head + 1))
    assert f"layer {layer + 1}, head {head + 1}, with a weight of {weight:.1%}" in view.summary
    expected = direct(bundle, pair, "encoder", layer, head)
    softmax = expected.step("softmax").data
    assert_same_weights(shown_weights(view.steps), softmax["weights"], softmax["masked"])
    z = expected.step("weighted_values").data["z"]
    assert f"norm {z['norm']:.3f}" in view.steps and f"{z['first'][0]:.3f}" in view.steps
    emb = expected.step("embedding").data
    for part in ("embedding", "positional_encoding", "sum"):
        assert f"norm {emb[part]['norm']:.3f}" in view.embedding
    assert view.positions.ndim == 3 and view.positions.shape[2] == 3 and view.positions.shape[1] > 300
    config = bundle.model.config
    assert f"d_model = {config.d_model}" in view.summary
    assert f"layer {layer + 1} of {config.encoder_layers}" in view.summary


def test_strongest_link_is_the_largest_weight_from_it_to_animal(bundle, pair):
    from encdec_lens import walkthrough as wt
    from tabs import walkthrough_tab

    animal = wt.find_token_position(wt.source_tokens(bundle.tokenizer, SENTENCE), "animal")
    config = bundle.model.config
    weights = {
        (layer, head): direct(bundle, pair, "encoder", layer, head).step("softmax").data["weights"][animal]
        for layer in range(config.encoder_layers)
        for head in range(config.encoder_attention_heads)
    }
    layer, head, weight = walkthrough_tab.strongest_link(bundle, pair)
    assert weight == pytest.approx(weights[layer, head], abs=1e-6)
    assert weight == pytest.approx(max(weights.values()), abs=1e-6)
    assert walkthrough_tab.strongest_link(bundle, walkthrough_tab.make_pair(bundle, "A dog runs.")) is None


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_shown_numbers_equal_the_walkthrough(bundle, pair, kind):
    from tabs import walkthrough_tab

    view = walkthrough_tab.walkthrough_view(bundle, pair, kind, "1", "3", None)
    position = int(view.token.split(":")[1])
    expected = direct(bundle, pair, kind, 0, 2, position=position)
    softmax = expected.step("softmax").data
    assert_same_weights(shown_weights(view.steps), softmax["weights"], softmax["masked"])
    if kind == "decoder":
        assert sum(softmax["masked"]) == len(softmax["masked"]) - 1 - position > 0
        assert view.steps.count("−∞ (masked)") == sum(softmax["masked"])
    else:
        assert "−∞" not in view.steps and 'class="masked"' not in view.steps
    assert view.token.startswith("source:" if kind == "encoder" else "target:")
    for candidate in expected.step("output").data["top"]:
        assert f"{candidate['prob']:.4f}" in view.steps
    shapes = expected.step("multi_head").data["shapes"]
    assert f"concatenated [{' × '.join(map(str, shapes['concat']))}]" in view.steps
    config = bundle.model.config
    n_layers = config.encoder_layers if kind == "encoder" else config.decoder_layers
    assert f"head 3 of {config.encoder_attention_heads}" in view.summary and f"layer 1 of {n_layers}" in view.summary


def test_another_token_and_head_change_the_numbers(bundle, pair):
    from encdec_lens import walkthrough as wt
    from tabs import walkthrough_tab

    animal = wt.find_token_position(wt.source_tokens(bundle.tokenizer, SENTENCE), "animal")
    first = walkthrough_tab.walkthrough_view(bundle, pair, "encoder", "2", "1", None)
    view = walkthrough_tab.walkthrough_view(bundle, pair, "encoder", "2", "1", f"source:{animal}")
    assert view.token == f"source:{animal}" and view.result.position == animal
    assert shown_weights(view.steps) != shown_weights(first.steps)
    expected = direct(bundle, pair, "encoder", 1, 0, position=animal).step("softmax").data
    assert_same_weights(shown_weights(view.steps), expected["weights"], expected["masked"])
    # A position of the other side (the dropdown still holds a source token when "cross" is picked): default.
    cross = walkthrough_tab.walkthrough_view(bundle, pair, "cross", "2", "1", f"source:{animal}")
    assert cross.token == f"target:{len(cross.result.query_tokens) // 2}"


def test_the_main_tab_translation_is_followed(bundle):
    from tabs import walkthrough_tab

    translation = bundle.translate("Two dogs play in the snow.", num_beams=1, max_new_tokens=6)
    state = {"source_ids": translation.attention.source_ids, "decoder_ids": translation.attention.target_ids}
    pair = walkthrough_tab.pair_from_main_tab(translation.text, state)
    view = walkthrough_tab.walkthrough_view(bundle, pair, "decoder", "1", "1", None)
    assert view.result.decoder_tokens == translation.attention.target_tokens  # the same ids, not re-translated
    assert walkthrough_tab.pair_from_main_tab("", None) is None
    empty = walkthrough_tab.walkthrough_view(bundle, None, "encoder", "1", "1", None)
    assert "empty" in empty.summary and empty.steps == "" and empty.positions is None


def test_the_words_of_every_step(bundle, pair):
    """`walkthrough_text.explain` gives every step of the numbers a title and a text, and the API's answer is
    the numbers with those words (and the notices)."""
    from tabs import walkthrough_tab, walkthrough_text

    result = direct(bundle, pair, "decoder", 1, 2, position=3)
    told = walkthrough_text.explain(result)
    assert [s.id for s in told.steps] == [s.id for s in result.steps]
    assert all(s.data is result.step(s.id).data and s.title and s.text for s in told.steps)
    assert [s.title.split(".")[0] for s in told.steps if s.id != "positional_table"] == [str(i) for i in range(1, 12)]
    assert told.step("layer_input").title == "2. The vector entering decoder self-attention (masked), layer 2"
    assert told.step("qkv").title == "3. Query, key and value of head 3"
    softmax = result.step("softmax").data
    top = softmax["argmax"]
    assert told.step("softmax").text.endswith(
        f"Here {result.token!r} attends most to {softmax['tokens'][top]!r} ({softmax['weights'][top]:.1%})."
    )
    assert f"the {sum(softmax['masked'])} future positions are masked" in told.step("softmax").text
    answer = walkthrough_tab.walkthrough_json(bundle, SENTENCE, "decoder", 1, 2, result.token.replace("▁", ""))
    assert list(answer) == ["notices", *walkthrough_text.API_FIELDS] and answer["kind_label"] == told.kind_label
    assert [set(s) for s in answer["steps"]] == [{"id", "title", "text", "data"}] * len(result.steps)


def test_api_answer_sends_the_positional_table_only_when_asked(bundle):
    import json

    from tabs import walkthrough_tab

    d_model = bundle.model.config.d_model
    compact = walkthrough_tab.walkthrough_json(bundle, SENTENCE, "encoder", 1, 1, "it")
    full = walkthrough_tab.walkthrough_json(bundle, SENTENCE, "encoder", 1, 1, "it", full_table=True)
    small = next(s for s in compact["steps"] if s["id"] == "positional_table")["data"]
    table = next(s for s in full["steps"] if s["id"] == "positional_table")["data"]
    assert "table" not in small and len(table["table"]) == table["positions"] == small["positions"] >= 50
    assert small["row"] == pytest.approx(table["table"][table["highlight"]], abs=1e-6)
    assert len(small["row"]) == d_model and small["highlight"] == compact["position"]
    # Size bound: the positional step is one row of d_model numbers, not positions x d_model; the whole answer
    # stays small (shipped model, d_model 128: about 75 KB with the table, 27 KB without).
    assert len(json.dumps(small)) < 12 * d_model + 200
    assert len(json.dumps(compact)) < 40_000 and len(json.dumps(full)) > len(json.dumps(compact)) + 40 * 6 * d_model


def test_bad_input_gets_a_message(bundle):
    from tabs import walkthrough_tab

    pair, view = walkthrough_tab.new_sentence_view(bundle, "   ", "encoder", "1", "1")
    assert pair is None and "empty" in view.summary and view.token_choices == []
    api = walkthrough_tab.walkthrough_json
    n_layers, n_heads = bundle.model.config.encoder_layers, bundle.model.config.decoder_attention_heads
    for answer, words in (
        (api(bundle, ""), "empty"),
        (api(bundle, SENTENCE, "encoder", n_layers, 0), f"layer {n_layers} does not exist"),
        (api(bundle, SENTENCE, "cross", 0, n_heads), f"head {n_heads} does not exist"),
        (api(bundle, SENTENCE, "encoder", -1, 0), "layer -1 does not exist"),
        (api(bundle, SENTENCE, "encoder", 0, 0, "giraffe"), "'giraffe' not found"),
        (api(bundle, SENTENCE, "self", 0, 0), "unknown attention kind"),
        (api(bundle, SENTENCE, "encoder", "two", 0), "whole numbers"),
    ):
        assert list(answer) == ["error"] and words in answer["error"] and "Traceback" not in answer["error"]
    # Pickers out of range (only hand-made requests send them): layer and head are clamped; a token position
    # that does not exist gets a message.
    short = walkthrough_tab.make_pair(bundle, "A dog.")
    clamped = walkthrough_tab.walkthrough_view(bundle, short, "encoder", "99", "0", None)
    assert clamped.layer == str(n_layers) and clamped.head == "1" and clamped.result is not None
    outside = walkthrough_tab.walkthrough_view(bundle, short, "encoder", "1", "1", "source:99")
    assert "position 99 is outside" in outside.summary and outside.steps == ""


def test_api_caps_the_translation_as_the_circuits_endpoints_do(bundle):
    """A given translation longer than the model writes is refused with the Circuits endpoints' own message,
    before any forward pass (30,000 characters took 23 s and 3.3 GB, quadratic in the length)."""
    import time

    from tabs import circuits_tab
    from tabs import walkthrough_tab

    limit = bundle.max_new_tokens_limit
    huge = "ein Hund läuft " * 2000  # 30,000 characters
    n_tokens = len(bundle.tokenizer(text_target=huge.strip())["input_ids"])
    message = f"The translation is {n_tokens} subword tokens long; this model writes at most {limit}."
    start = time.perf_counter()
    assert walkthrough_tab.walkthrough_json(bundle, SENTENCE, "cross", 0, 0, "", huge) == {"error": message}
    assert time.perf_counter() - start < 5
    assert circuits_tab.lens_json(bundle, SENTENCE, huge) == {"error": message}
    with pytest.raises(
        ValueError, match=f"^The translation is {n_tokens} subword tokens long; this model writes at most {limit}\\.$"
    ):
        walkthrough_tab.make_pair(bundle, SENTENCE, huge)
    # Exactly at the limit is fine: `limit` tokens with the closing </s>.
    longest = " ".join(["ein"] * (limit - 1))
    assert len(bundle.tokenizer(text_target=longest)["input_ids"]) == limit
    fits = walkthrough_tab.walkthrough_json(bundle, SENTENCE, "cross", 0, 0, "", longest)
    assert "error" not in fits and len(fits["target_tokens"]) == limit


def test_a_lone_surrogate_gets_a_clean_error_or_a_notice(bundle):
    """In the translation a lone surrogate is an error (it was a TypeError inside the tokenizer, and the API
    answered {"error": null}); in the sentence it is read as "?" and a notice says so."""
    from tabs import circuits_tab
    from tabs import walkthrough_tab

    message = "The translation contains a lone surrogate (\\ud800), which is not valid Unicode text: send it as UTF-8."
    assert walkthrough_tab.walkthrough_json(bundle, SENTENCE, "encoder", 0, 0, "", "Der \ud800 Hund.") == {
        "error": message
    }
    assert circuits_tab.lens_json(bundle, SENTENCE, "Der \ud800 Hund.") == {"error": message}
    answer = walkthrough_tab.walkthrough_json(bundle, "A dog \ud800 runs.", "encoder", 0, 0)
    assert answer["sentence"] == "A dog ? runs."
    assert answer["notices"][0] == (
        "The text held 1 lone surrogate code point (not valid Unicode, only possible "
        "through the API); each was read as “?”."
    )
    # The other text arguments already answered with a message.
    token = walkthrough_tab.walkthrough_json(bundle, SENTENCE, "encoder", 0, 0, "\ud800")
    assert list(token) == ["error"] and token["error"].startswith("token '\\ud800' not found in ['")
    assert walkthrough_tab.walkthrough_json(bundle, SENTENCE, "\ud800", 0, 0) == {
        "error": "unknown attention kind '\\ud800': use one of ('encoder', 'decoder', 'cross')."
    }


def test_typed_text_and_tokens_are_escaped(bundle):
    from tabs import walkthrough_tab

    text = '<img src=x onerror="alert(1)"><b>bold</b> ${1} \u202e it'
    pair, view = walkthrough_tab.new_sentence_view(bundle, text, "encoder", "1", "1")
    assert view.result is not None
    for fragment in (view.summary, view.embedding, view.steps):
        assert "<img" not in fragment and "<b>bold" not in fragment and "${" not in fragment
        assert "\u202e" not in fragment
    assert "&lt;" in view.steps  # the tokens are there, as text
    assert all("\u202e" not in label for label, _ in view.token_choices)


def test_walkthrough_while_another_thread_translates(bundle, pair):
    """Its hooks record only the calling thread's forward pass, even while a translation runs alongside. Both
    threads record when each of their calls started and ended, and the test fails unless a translation and a
    walkthrough were running at the same time."""
    from tabs import walkthrough_tab

    stop = threading.Event()
    translating = threading.Event()
    translations, walkthroughs = [], []  # (start, end) of each call, time.perf_counter()

    def translate_forever():
        while not stop.is_set():
            start = time.perf_counter()
            translating.set()
            bundle.translate("A man in a blue shirt is standing on a ladder.", num_beams=2, max_new_tokens=8)
            translations.append((start, time.perf_counter()))

    thread = threading.Thread(target=translate_forever)
    thread.start()
    try:
        assert translating.wait(60), "the translating thread never started"
        for kind in ("encoder", "decoder", "cross", "encoder"):
            start = time.perf_counter()
            result = walkthrough_tab.run_walkthrough(bundle, pair, kind, 1, 1)
            walkthroughs.append((start, time.perf_counter()))
            assert max(result.checks.values()) < 1e-5, result.checks
    finally:
        stop.set()
        thread.join()
    overlapping = [(w, t) for w in walkthroughs for t in translations if t[0] < w[1] and w[0] < t[1]]
    assert overlapping, f"no walkthrough ran while a translation did: {walkthroughs=} {translations=}"


# --- the API on a running server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(bundle):
    with serve_space(bundle) as url:
        yield url


def test_walkthrough_endpoint(server, bundle, pair):
    from gradio_client import Client

    from encdec_lens import walkthrough as wt

    client = Client(server, verbose=False)
    answer = client.predict(SENTENCE, "cross", 1, 2, "", "", api_name="/walkthrough")
    expected = direct(bundle, pair, "cross", 1, 2)
    assert answer["translation"] == pair["translation"] and answer["position"] == expected.position
    assert [s["id"] for s in answer["steps"]] == [s.id for s in expected.steps]
    softmax = next(s for s in answer["steps"] if s["id"] == "softmax")["data"]
    assert softmax["weights"] == pytest.approx(expected.step("softmax").data["weights"], abs=1e-6)
    assert max(answer["checks"].values()) < 1e-5
    positional = next(s for s in answer["steps"] if s["id"] == "positional_table")["data"]
    assert "table" not in positional and len(positional["row"]) == bundle.model.config.d_model
    full = client.predict(SENTENCE, "cross", 1, 2, "", "", True, api_name="/walkthrough")  # full_table
    table = next(s for s in full["steps"] if s["id"] == "positional_table")["data"]
    np.testing.assert_allclose(table["table"], expected.step("positional_table").data["table"], atol=1e-6)

    given = client.predict(SENTENCE, "encoder", 0, 0, "animal", "Das Tier ist müde.", api_name="/walkthrough")
    tokens = wt.source_tokens(bundle.tokenizer, SENTENCE)
    assert given["position"] == wt.find_token_position(tokens, "animal")
    assert given["translation"] == "Das Tier ist müde."
    assert client.predict(SENTENCE, "encoder", 7, 0, "it", "", api_name="/walkthrough") == {
        "error": f"layer 7 does not exist: the encoder has {bundle.model.config.encoder_layers} "
        f"(0..{bundle.model.config.encoder_layers - 1})."
    }


def test_raw_http_call_with_a_lone_surrogate_gets_the_message(server):
    """JSON may carry a lone surrogate ("\\ud800"); gradio_client cannot send one, a raw HTTP call can."""
    import json

    import httpx

    body = json.dumps({"data": [SENTENCE, "encoder", 0, 0, "", "Der \ud800 Hund.", False]})  # ASCII: "\\ud800"
    assert "\\ud800" in body
    posted = httpx.post(
        f"{server}gradio_api/call/walkthrough", content=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    events = httpx.get(f"{server}gradio_api/call/walkthrough/{posted.json()['event_id']}", timeout=120).text
    kind, _, data = events.strip().partition("\n")
    assert kind == "event: complete", events
    assert json.loads(data.removeprefix("data: ")) == [
        {
            "error": "The translation contains a lone surrogate (\\ud800), which is not valid Unicode text: send it as UTF-8."
        }
    ]


# --- a real browser --------------------------------------------------------------------------------------
@pytest.fixture
def page(browser, server):
    with open_page(browser, server, width=1320) as page:
        page.get_by_role("tab", name="Inside one head").click()
        yield page


def _weight_cells(page) -> list:
    return page.locator("#wt-weights td.w").all_inner_texts()


def _pick_and_wait(page, pick) -> list:
    """Run `pick` (a click), wait until the softmax column shows other numbers, and return them."""
    before = _weight_cells(page)
    pick()
    page.wait_for_function(
        """old => { const cells = [...document.querySelectorAll('#wt-weights td.w')].map(c => c.innerText);
                    return cells.length > 0 && JSON.stringify(cells) !== JSON.stringify(old); }""",
        arg=before,
    )
    return [None if "masked" in text else float(text) for text in _weight_cells(page)]


@pytest.mark.browser
def test_browser_pick_another_token_and_head(page, bundle, pair, tmp_path):
    from playwright.sync_api import expect

    from encdec_lens import walkthrough as wt
    from tabs import walkthrough_tab

    layer, head, _ = walkthrough_tab.strongest_link(bundle, pair)
    other_head = (head + 1) % bundle.model.config.encoder_attention_heads
    tokens = wt.source_tokens(bundle.tokenizer, SENTENCE)
    animal = wt.find_token_position(tokens, "animal")
    expect(page.locator("#wt-weights")).to_be_visible()
    expect(page.locator("#wt-translation textarea")).to_have_value(pair["translation"])
    expect(page.locator("#wt-summary")).to_contain_text(f"layer {layer + 1}, head {head + 1}")
    assert page.locator("#wt-positions img").evaluate("img => img.complete && img.naturalWidth") > 0
    expected = direct(bundle, pair, "encoder", layer, head).step("softmax").data
    at_it = [float(text) for text in _weight_cells(page)]
    assert_same_weights(at_it, expected["weights"], expected["masked"])

    def pick_animal():
        page.locator("#wt-token input").click()
        page.get_by_role("option", name=f"{animal}: {tokens[animal]}", exact=True).click()

    shown = _pick_and_wait(page, pick_animal)
    expected = direct(bundle, pair, "encoder", layer, head, position=animal).step("softmax").data
    assert_same_weights(shown, expected["weights"], expected["masked"])
    expect(page.locator("#wt-summary")).to_contain_text(tokens[animal])

    shown = _pick_and_wait(
        page, lambda: page.locator("#wt-head label").get_by_text(str(other_head + 1), exact=True).click()
    )
    expected = direct(bundle, pair, "encoder", layer, other_head, position=animal).step("softmax").data
    assert_same_weights(shown, expected["weights"], expected["masked"])

    shown = _pick_and_wait(page, lambda: page.locator("#wt-kind label", has_text="Decoder self-attention").click())
    expected = direct(bundle, pair, "decoder", layer, other_head).step("softmax").data
    assert_same_weights(shown, expected["weights"], expected["masked"])
    assert page.locator("#wt-weights tr.masked").count() == sum(expected["masked"]) > 0

    page.screenshot(path=str(tmp_path / "walkthrough.png"), full_page=True)
    assert (tmp_path / "walkthrough.png").stat().st_size > 10_000


@pytest.mark.browser
def test_browser_follows_the_main_tab(page, bundle):
    from playwright.sync_api import expect

    sentence = "Two dogs play in the snow."
    page.get_by_role("tab", name="Translate & attention").click()
    translate_on_page(page, sentence, bundle.translate(sentence).text)
    page.get_by_role("tab", name="Inside one head").click()
    expect(page.locator("#wt-sentence textarea")).to_have_value(sentence)
    expect(page.locator("#wt-translation textarea")).to_have_value(bundle.translate(sentence).text)
    n_tokens = len(bundle.prepare(sentence).input_ids)
    expect(page.locator("#wt-weights td.w")).to_have_count(n_tokens)


@pytest.mark.browser
@pytest.mark.skipif(not os.environ.get("SAVE_SCREENSHOT"), reason="set SAVE_SCREENSHOT to write the README's picture")
def test_browser_screenshot_of_the_default_example(page, tmp_path):
    """The README's picture (with the shipped model): the tab as it opens, on "it"."""
    from playwright.sync_api import expect

    expect(page.locator("#wt-weights")).to_be_visible()
    wait_for_picture(page, "#wt-positions")
    page.screenshot(path=str(tmp_path / "walkthrough.png"), full_page=True)
    shutil.copyfile(tmp_path / "walkthrough.png", os.path.join(SPACE, "screenshot_walkthrough.png"))
