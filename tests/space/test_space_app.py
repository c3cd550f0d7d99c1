"""The running Space: its API through gradio_client, and the page in a real Chromium through Playwright.

One server and one browser serve every test here (module-scoped fixtures). The model is the untrained
`tiny_model_dir` fixture (deterministic garbage), so the tests compare the app with the model it serves,
not with good German. With SAVE_SCREENSHOT set and a trained model in space/model/, that model is served
instead and the browser test also writes space/screenshot.png for the README.
"""

import logging
import os
import shutil
import socket
import threading
import time
import types

import numpy as np
import pytest
from conftest import GRADIO_WARNINGS, SENTENCE, SPACE, open_page, serve_space

pytestmark = GRADIO_WARNINGS


@pytest.fixture(scope="module")
def server(bundle):
    with serve_space(bundle) as url:
        yield url


# --- API -------------------------------------------------------------------------------------------------
def test_translate_endpoint_returns_the_translation_first(client, bundle):
    answer = client.predict(SENTENCE, api_name="/translate")
    assert isinstance(answer, tuple) and len(answer) == 4
    translation, status, source_html, target_html = answer
    expected = bundle.translate(SENTENCE)  # the UI defaults are the bundle's defaults
    assert translation == expected.text
    assert " ms" in status and bundle.language_pair in status
    assert f"({len(expected.attention.source_tokens)} tokens)" in source_html
    assert f"({len(expected.attention.target_tokens)} tokens)" in target_html
    greedy_short = client.predict(SENTENCE, 1, 5, api_name="/translate")[0]
    assert greedy_short == bundle.translate(SENTENCE, num_beams=1, max_new_tokens=5).text


def test_attention_endpoint_returns_tokens_and_every_matrix(client, bundle):
    data = client.predict("Two dogs play in the snow.", api_name="/attention")
    config = bundle.model.config
    S, T = len(data["source_tokens"]), len(data["target_tokens"])
    assert data["source_tokens"][-1] == bundle.tokenizer.eos_token
    assert data["translation"] == bundle.translate("Two dogs play in the snow.").text
    for family, layers, heads, q, k in (
        ("encoder", config.encoder_layers, config.encoder_attention_heads, S, S),
        ("decoder", config.decoder_layers, config.decoder_attention_heads, T, T),
        ("cross", config.decoder_layers, config.decoder_attention_heads, T, S),
    ):
        array = np.asarray(data[family])
        assert array.shape == (layers, heads, q, k) and data["shapes"][family] == [layers, heads, q, k]
        np.testing.assert_allclose(array.sum(-1), 1.0, atol=1e-3)


def test_api_bad_input_gets_messages_not_errors(client, bundle):
    translation, status, source_html, _ = client.predict("   ", api_name="/translate")
    assert translation == "" and "empty" in status and source_html == ""
    assert client.predict("", api_name="/attention")["notices"] == ["Type a sentence to translate (the box is empty)."]
    long_status = client.predict("a dog runs on the grass " * 60, 1, 4, api_name="/translate")[1]
    assert "Truncated" in long_status and str(bundle.max_source_tokens) in long_status
    nasty = '<img src=x onerror="alert(1)"> 😀 שלום \x07\u202e ${1}'
    translation, status, source_html, target_html = client.predict(nasty, 1, 4, api_name="/translate")
    assert isinstance(translation, str)
    for fragment in (status, source_html, target_html):
        assert "<img" not in fragment and "\x07" not in fragment and "${" not in fragment


def test_out_of_range_api_values_log_one_line_not_a_traceback(client, capsys, caplog):
    """The client gets Gradio's message; the server's console gets one line, not a traceback per request."""
    from gradio_client.exceptions import AppError

    with caplog.at_level(logging.WARNING, logger="space"):
        with pytest.raises(AppError, match=r"^Value 100 is greater than maximum value 8\.$"):
            client.predict(SENTENCE, 100, 5, api_name="/translate")
        with pytest.raises(AppError, match=r"^Value 0 is less than minimum value 4\.$"):
            client.predict(SENTENCE, 1, 0, api_name="/translate")
    assert "Traceback" not in capsys.readouterr().err
    assert [record.getMessage() for record in caplog.records if record.name == "space"] == [
        "space/app.py: refused Beam size (1 = greedy) = 100: Value 100 is greater than maximum value 8.",
        "space/app.py: refused Maximum output tokens = 0: Value 0 is less than minimum value 4.",
    ]


# A wrongly typed argument, as a hand-made call sends it, for every endpoint: the message the caller gets.
WRONG_TYPES = [
    ("/translate", (SENTENCE, "abc", 5), 'beam_size must be a whole number from 1 to 8; got "abc".'),
    ("/translate", (SENTENCE, None, 5), "beam_size must be a whole number from 1 to 8; got null."),
    ("/translate", (SENTENCE, 1.5, 5), "beam_size must be a whole number from 1 to 8; got 1.5."),
    ("/translate", (SENTENCE, 1, [5]), "max_new_tokens must be a whole number from 4 to {limit}; got [5]."),
    ("/translate", (["A dog."], 1, 5), 'text must be a string; got ["A dog."].'),
    ("/attention", (SENTENCE, "abc"), 'beam_size must be a whole number; got "abc".'),
    ("/attention", (SENTENCE, 1, None), "max_new_tokens must be a whole number; got null."),
    ("/attention", (7,), "text must be a string; got 7."),
    ("/ablate", (SENTENCE, 5), "heads must be a list of strings such as ['cross L1 H2']; got 5."),
    ("/ablate", (SENTENCE, [1]), "heads must be a list of strings such as ['cross L1 H2']; got [1]."),
    ("/ablate", (SENTENCE, [], "", True), "beam_size must be a whole number; got true."),
    ("/head_importance", (SENTENCE, ["Ein Hund."]), 'translation must be a string; got ["Ein Hund."].'),
    ("/logit_lens", (SENTENCE, "", "abc"), 'top_k must be a whole number from 1 to 10; got "abc".'),
    ("/residual_stream", ({"text": "A dog."},), 'source must be a string; got {"text": "A dog."}.'),
    ("/walkthrough", (SENTENCE, "encoder", None), "layer must be a whole number (0-based); got null."),
    ("/walkthrough", (SENTENCE, 1), "kind must be a string; got 1."),
    ("/walkthrough", (SENTENCE, "encoder", 0, 0, "", "", "yes"), 'full_table must be true or false; got "yes".'),
    (
        "/logit_attribution",
        (SENTENCE, "", "last"),
        'position must be a whole number (0-based, -1 = the last); got "last".',
    ),
    ("/activation_patching", (SENTENCE, 5), "corrupted must be a string; got 5."),
]


@pytest.mark.parametrize("endpoint, args, message", WRONG_TYPES, ids=[f"{e} {a[1:]!r}" for e, a, _ in WRONG_TYPES])
def test_a_wrongly_typed_argument_gets_a_message_naming_it(client, bundle, capsys, caplog, endpoint, args, message):
    """Not Gradio's "{"error": null}" and a traceback in the server's log: a message naming the argument and what
    it takes, and one line in the log."""
    import re

    from gradio_client.exceptions import AppError

    message = message.replace("{limit}", str(bundle.max_new_tokens_limit))
    with caplog.at_level(logging.WARNING, logger="space"):
        with pytest.raises(AppError, match=f"^{re.escape(message)}$"):
            client.predict(*args, api_name=endpoint)
    assert "Traceback" not in capsys.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "space"] == [f"space/app.py: refused {message}"]


def test_uploads_are_refused(server):
    """The app has no file input: Gradio's upload route refuses a file instead of storing any size."""
    import httpx

    big = b"x" * 2_000_000
    answer = httpx.post(f"{server}gradio_api/upload", files={"files": ("big.bin", big)}, timeout=60)
    assert answer.status_code == 413
    assert answer.text == "File size exceeded maximum allowed size of 0 bytes."


# The endpoints README.md and space/README.md document; every other event (explorer pickers, Examples, the
# other tabs' buttons and follow-ups) is UI-only and must not be an API endpoint.
DOCUMENTED_ENDPOINTS = {
    "/translate",
    "/attention",
    "/ablate",
    "/head_importance",
    "/logit_lens",
    "/residual_stream",
    "/walkthrough",
    "/logit_attribution",
    "/activation_patching",
    "/circuit_graph",
}


def test_api_lists_exactly_the_documented_endpoints(client, server):
    import httpx

    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == DOCUMENTED_ENDPOINTS
    assert api["unnamed_endpoints"] == {}
    # Nor callable but hidden ("undocumented"): the API page's full list holds the same seven.
    everything = httpx.get(f"{server}gradio_api/info", params={"all_endpoints": "true"}, timeout=60).json()
    assert set(everything["named_endpoints"]) == DOCUMENTED_ENDPOINTS
    assert everything["unnamed_endpoints"] == {}


# --- command line and extension points ------------------------------------------------------------------
def test_wrong_model_path_says_what_was_looked_for(tmp_path, capsys):
    import app

    missing = tmp_path / "not_a_model"
    assert app.main(["--model", str(missing), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "config.json" in err and "Traceback" not in err


def test_a_busy_port_says_to_use_port(tiny_model_dir, capsys):
    import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert app.main(["--model", tiny_model_dir, "--host", "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert (
        f"space/app.py: port {port} on 127.0.0.1 is in use (another server?); pick a free one with --port, "
        f"e.g. --port {port + 1}."
    ) in err
    assert "Traceback" not in err and "server_port" not in err


def test_the_page_names_the_model_and_the_box_says_its_limit(bundle, tmp_path):
    import gradio as gr

    import app
    from translation_engine import BOX_MAX_CHARS, ModelBundle

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "README.md").write_text(
        "---\nlanguage:\n- en\n- de\nmodel-index:\n- name: vanilla-transformer-multi30k-en-de\n  results: []\n---\n"
    )
    named = ModelBundle(bundle.model, bundle.tokenizer, ref=str(tmp_path / "model"))
    demo = app.build_demo(named, tabs=[])
    blocks = list(demo.blocks.values())
    heading = next(b.value for b in blocks if isinstance(b, gr.Markdown) and "# Attention Is All You Need" in b.value)
    assert heading.endswith("model `vanilla-transformer-multi30k-en-de`")
    source = next(b for b in blocks if getattr(b, "elem_id", None) == "src")
    assert source.max_length == BOX_MAX_CHARS == 8000
    assert source.info == (
        "The box keeps at most 8,000 characters and drops the rest of a longer paste; the model "
        f"reads the first 2,000 characters, up to {bundle.max_source_tokens} subword tokens."
    )


def test_view_keys_drop_late_results():
    import gradio as gr

    import app

    keys = app.ViewKeys(max_sessions=2)
    one, two = types.SimpleNamespace(session_hash="one"), types.SimpleNamespace(session_hash="two")
    first, second = keys.new_key(), keys.new_key()
    assert first != second
    assert keys.is_current(one, first)  # nothing published yet for this session
    keys.publish(one, first)
    keys.publish(one, second)
    assert keys.latest(one, ("view",), second) == ("view",)
    assert keys.latest(one, ("view",), first) == gr.skip()  # a result for the older translation is dropped
    assert keys.is_current(two, first) and keys.is_current(None, first)  # other sessions, direct calls
    keys.publish(one, first, name="pair")
    assert keys.is_current(one, first, name="pair") and not keys.is_current(one, first)
    for name in ("two", "three"):  # bounded: the oldest session is forgotten
        keys.publish(types.SimpleNamespace(session_hash=name), "k")
    assert keys.is_current(one, first) and len(keys._keys) == 2
    assert app.ViewKeys.key_of({"key": "abc"}) == "abc" and app.ViewKeys.key_of(None) is None


def test_the_state_of_a_translation_carries_its_key_and_texts(bundle):
    import app

    *_, state = app.translate_outputs(bundle, "  Two dogs play in the snow. ", 1, 6, key="k1")
    result = bundle.translate("Two dogs play in the snow.", 1, 6)
    assert state == {
        "key": "k1",
        "source": "Two dogs play in the snow.",
        "translation": result.text,
        "notices": result.notices,
        "source_ids": result.source.input_ids,
        "decoder_ids": result.decoder_ids,
    }
    assert (
        app.translate_outputs(bundle, "Two dogs.", 1, 6)[-1]["key"]
        != app.translate_outputs(bundle, "Two dogs.", 1, 6)[-1]["key"]
    )
    assert app.translate_outputs(bundle, "   ", 1, 6)[-1] is None


def test_defaults_are_local_and_private():
    import app

    args = app.parse_args([])
    assert args.host == os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1") and args.share is False
    assert args.threads == 1


def test_an_optional_tab_module_adds_a_tab(bundle):
    import gradio as gr

    import app

    seen = {}

    def build(bundle_, shared):
        seen["shared"] = shared
        gr.Markdown("extra tab body", elem_id="extra-tab-body")

    tab = types.SimpleNamespace(TAB_TITLE="Extra tab", build=build, __name__="extra_tab")
    demo = app.build_demo(bundle, tabs=[tab])
    assert isinstance(seen["shared"], app.SharedUI) and seen["shared"].bundle is bundle
    labels = [block.label for block in demo.blocks.values() if isinstance(block, gr.Tab)]
    assert labels == ["Translate & attention", "Extra tab"]
    assert app.discover_tabs(["surely_no_such_tab_module"]) == []


# --- a real browser --------------------------------------------------------------------------------------
@pytest.fixture
def page(browser, server):
    with open_page(browser, server, width=1280) as page:
        yield page


def _image_src(page, selector):
    return page.locator(f"{selector} img").first.get_attribute("src")


def _wait_for_new_image(page, selector, old_src):
    """Until the image's src differs from `old_src` and the new picture has loaded with a real width."""
    page.wait_for_function(
        """([sel, old]) => { const img = document.querySelector(sel + ' img');
             return img && img.src && img.getAttribute('src') !== old && img.complete && img.naturalWidth > 0; }""",
        arg=[selector, old_src],
    )
    return _image_src(page, selector)


@pytest.mark.browser
def test_browser_translate_then_explore_the_attention(page, bundle, tmp_path):
    from playwright.sync_api import expect

    expected = bundle.translate(SENTENCE)
    page.locator("#examples").get_by_text(SENTENCE).click()  # a UI-only (private) event still fills the box
    expect(page.locator("#src textarea")).to_have_value(SENTENCE)
    page.locator("#translate-btn").click()
    expect(page.locator("#translation textarea")).to_have_value(expected.text)
    expect(page.locator("#src-tokens .tok")).to_have_count(len(expected.attention.source_tokens))
    expect(page.locator("#heatmap img")).to_be_visible()
    src = _wait_for_new_image(page, "#heatmap", None)
    assert page.locator("#heatmap img").evaluate("img => img.naturalWidth") > 0
    expect(page.locator("#head-grid img")).to_be_visible()
    expect(page.locator("#links")).to_contain_text("Layer 1")

    seen = {src}
    grid_src = _image_src(page, "#head-grid")
    for picker, choice in (("#family", "Cross-attention"), ("#layer", "1"), ("#head", "2")):
        page.locator(f"{picker} label", has_text=choice).first.click()
        src = _wait_for_new_image(page, "#heatmap", src)
        assert src not in seen  # a new picture for every new selection
        seen.add(src)
    grid_now = _wait_for_new_image(page, "#head-grid", grid_src)  # the grid follows family and layer
    assert grid_now != grid_src
    expect(page.locator("#head input[value='2']")).to_be_checked()

    page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
    assert (tmp_path / "app.png").stat().st_size > 10_000
    if os.environ.get("SAVE_SCREENSHOT"):  # the README's picture: "it" in the last encoder layer, mean of heads
        last_layer = str(bundle.model.config.encoder_layers)
        for picker, choice in (("#family", "Encoder self-attention"), ("#layer", last_layer), ("#head", "mean")):
            page.locator(f"{picker} label", has_text=choice).first.click()
            src = _wait_for_new_image(page, "#heatmap", src)
        page.screenshot(path=str(tmp_path / "readme.png"), full_page=True)
        shutil.copyfile(tmp_path / "readme.png", os.path.join(SPACE, "screenshot.png"))


@pytest.mark.browser
def test_browser_shows_html_and_control_characters_escaped(page, bundle):
    from playwright.sync_api import expect

    from safe_html import visible

    text = '<img src=x onerror="window.__pwned=1"><b>bold</b> 😀 שלום \u202e end'
    page.locator("#src textarea").fill(text)
    page.locator("#translate-btn").click()
    expect(page.locator("#src-tokens .tok").first).to_be_visible()
    assert page.locator("#src-tokens img, #out-tokens img, #status img").count() == 0
    assert page.locator("#src-tokens b", has_text="bold").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    shown = page.locator("#src-tokens").inner_text()
    assert "\u202e" not in shown  # a right-to-left override would reorder the page
    for token in bundle.tokenizer.convert_ids_to_tokens(bundle.prepare(text).input_ids):
        assert visible(token) in shown  # every token appears as text, markup included
    page.locator("#src textarea").fill("   ")
    page.locator("#translate-btn").click()
    expect(page.locator("#status")).to_contain_text("empty")


def slowed(fn, seconds, done=None):
    """`fn`, taking `seconds` longer (and setting the event `done` when it returns): makes a race certain."""

    def wrapper(*args, **kwargs):
        time.sleep(seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            if done is not None:
                done.set()

    return wrapper


QUICK = [
    "Two dogs play in the snow.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "People sit at a table.",
]


def _translate_and_wait(page, bundle, sentence):
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Translate & attention").click()
    page.locator("#src textarea").fill(sentence)
    page.locator("#translate-btn").click()
    expect(page.locator("#src-tokens .tok")).to_have_count(len(bundle.prepare(sentence).input_ids))
    expect(page.locator("#translation textarea")).to_have_value(bundle.translate(sentence).text)


@pytest.mark.browser
def test_browser_three_quick_translations_every_tab_shows_the_last(page, bundle, monkeypatch):
    """Each translation's follow-ups (explorer, "Inside one head", Circuits) are slowed so that the next
    translation arrives while they run. Gradio used to skip a follow-up while the previous one was pending, so
    those tabs stayed on the first sentence for good."""
    from playwright.sync_api import expect

    import app
    from tabs import circuits_tab
    from tabs import walkthrough_tab
    from safe_html import visible

    monkeypatch.setattr(app, "explorer_outputs", slowed(app.explorer_outputs, 2.0))
    monkeypatch.setattr(walkthrough_tab, "walkthrough_view", slowed(walkthrough_tab.walkthrough_view, 2.0))
    monkeypatch.setattr(circuits_tab, "refresh_outputs", slowed(circuits_tab.refresh_outputs, 2.0))
    for sentence in QUICK:  # each clicked as soon as the previous translation is on screen
        _translate_and_wait(page, bundle, sentence)

    last = bundle.translate(QUICK[-1])
    tokens = last.attention.source_tokens
    expect(page.locator("#query-token input")).to_have_value(f"0: {visible(tokens[0])}")
    expect(page.locator("#links")).to_contain_text(f"Layer {bundle.model.config.encoder_layers}")
    page.get_by_role("tab", name="Inside one head").click()
    expect(page.locator("#wt-sentence textarea")).to_have_value(QUICK[-1])
    expect(page.locator("#wt-translation textarea")).to_have_value(last.text)
    expect(page.locator("#wt-weights td.w")).to_have_count(len(tokens))
    page.get_by_role("tab", name="Circuits").click()
    source = bundle.tokenizer.decode(last.source.input_ids, skip_special_tokens=True).strip()
    expect(page.locator("#circuits-context")).to_contain_text(f"Working on {source} →")
    expect(page.locator("#lens-table tr")).to_have_count(len(last.decoder_ids) + 1)


@pytest.mark.browser
def test_browser_a_late_ablation_for_an_older_translation_is_dropped(page, bundle, monkeypatch):
    """An ablation still running when the next translation arrives must not land on the tab, which by then
    shows the new sentence (it used to: header and logit lens on one sentence, ablation on another)."""
    from playwright.sync_api import expect

    from tabs import circuits_tab

    done = threading.Event()
    monkeypatch.setattr(circuits_tab, "ablation_outputs", slowed(circuits_tab.ablation_outputs, 3.0, done))
    _translate_and_wait(page, bundle, QUICK[0])
    page.get_by_role("tab", name="Circuits").click()
    expect(page.locator("#circuits-context")).to_contain_text("Working on")
    page.locator("#ablate-cross input.select-all-checkbox").click()
    page.locator("#ablate-btn").click()  # runs 3 s longer than usual
    _translate_and_wait(page, bundle, QUICK[2])
    page.get_by_role("tab", name="Circuits").click()
    source = bundle.tokenizer.decode(bundle.prepare(QUICK[2]).input_ids, skip_special_tokens=True).strip()
    expect(page.locator("#circuits-context")).to_contain_text(f"Working on {source} →")
    assert done.wait(60)
    page.wait_for_timeout(3000)  # time for a result to reach the page, if one were sent
    expect(page.locator("#circuits-context")).to_contain_text(f"Working on {source} →")
    assert page.locator("#circuits-original textarea").input_value() == ""
    assert page.locator("#ablated-translation textarea").input_value() == ""
    assert page.locator("#ablation-summary").inner_text().strip() == ""
    # Switching heads off now works on the sentence shown.
    page.locator("#ablate-btn").click()
    expect(page.locator("#circuits-original textarea")).to_have_value(bundle.translate(QUICK[2]).text)


@pytest.mark.browser
def test_browser_out_of_domain_note(page, bundle):
    from playwright.sync_api import expect

    _translate_and_wait(page, bundle, "Ein Mann in einem blauen Hemd steht auf einer Leiter.")
    expect(page.locator("#status .notice").first).to_have_text(
        "This input looks out of domain: it looks like German, not English (words such as “ein”, “einem”, “auf”, "
        "“einer”). The model learnt from English image captions (Multi30k) only, so expect a confident but wrong "
        "translation."
    )
    _translate_and_wait(page, bundle, SENTENCE)
    expect(page.locator("#status")).not_to_contain_text("out of domain")


@pytest.mark.browser
def test_browser_source_limit_and_links_table(page, bundle):
    from playwright.sync_api import expect

    expect(page.locator("#src")).to_contain_text("The box keeps at most 8,000 characters")
    _translate_and_wait(page, bundle, SENTENCE)
    # The strongest-links table: light row lines only, the last row's included (Gradio's dark cell frame,
    # collapsed with them, left the last row without a bottom edge: the table looked cut off).
    expect(page.locator("#links table tr")).to_have_count(bundle.model.config.encoder_layers + 1)
    style = page.evaluate("""() => {
        const table = document.querySelector('#links table'), css = e => getComputedStyle(e);
        const cells = [...table.querySelectorAll('td, th')], last = [...table.rows].at(-1).cells;
        return {frame: [css(table).borderTopStyle, css(table).borderLeftStyle, css(table).borderBottomStyle],
                sides: [...new Set(cells.flatMap(c => [css(c).borderTopStyle, css(c).borderLeftStyle,
                                                        css(c).borderRightStyle]))],
                lastBottom: [...new Set([...last].map(c => css(c).borderBottomStyle + ' ' + css(c).borderBottomWidth))],
                inside: table.getBoundingClientRect().bottom <= document.querySelector('#links').getBoundingClientRect().bottom};
    }""")
    assert style == {"frame": ["none", "none", "none"], "sides": ["none"], "lastBottom": ["solid 1px"], "inside": True}


def test_benchmark_helpers_against_the_running_server(server, bundle):
    """benchmarks/bench_space.py, in miniature, so the script does not rot."""
    import importlib.util

    path = os.path.join(os.path.dirname(SPACE), "benchmarks", "bench_space.py")
    spec = importlib.util.spec_from_file_location("bench_space", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    timing = bench.measure_server_time(bundle, repeats=2, num_beams=1)
    assert timing["words"] == 15 and timing["median_ms"] > 0
    load = bench.load_test(server, clients=2, requests=2, pid=os.getpid(), sentences=bench.LOAD_SENTENCES[:2])
    assert load["requests"] == 4 and load["errors"] == 0, load["error_samples"]
    assert load["rss_mb"]["after_round_1"] > 0
    mixed = bench.mixed_load_test(server, clients=2, requests=3, pid=os.getpid(), sentences=bench.LOAD_SENTENCES[:2])
    assert mixed["requests"] == 6 and mixed["errors"] == 0, mixed["error_samples"]
    assert set(mixed["endpoints"]) == {name for name, _ in bench.MIXED_CALLS}
    table = bench.markdown_table({"server_time": [timing], "load": load, "mixed_load": mixed, "machine": "test"})
    assert "p50 / p95" in table and "4/4 correct" in table and "mixed load `/translate`" in table
