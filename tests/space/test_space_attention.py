"""The Space's computational parts, without a server: attention data, input handling, pictures, HTML, loading.

The model is the untrained `tiny_model_dir` fixture: its translations are garbage but deterministic, so
these tests check structure and behaviour, never translation quality.
"""

import gc
import json
import os

import numpy as np
import pytest
import torch

from encdec_lens.attention import AttentionData, build_attention_data, decoder_ids_from_generated
from encdec_lens.heads import FAMILIES
from conftest import SENTENCE
from translation_engine import EMPTY_MESSAGE, ModelSourceError, load_bundle, resolve_model_source

NASTY = [
    "😀🎉 emoji everywhere 👩‍👩‍👧",
    "שלום עולם مرحبا بالعالم",  # right-to-left scripts
    '<img src=x onerror="alert(1)"><script>alert(2)</script> &amp; <b>bold</b>',
    "bell\x07 nul\x00 escape\x1b[31m del\x7f rlo\u202e zero\u200bwidth",
    "${1+1} {{value}} `tick` $x^2$",
    "lone \ud800 surrogate",
]


@pytest.fixture(scope="module")
def bundle(tiny_model_dir):
    return load_bundle(tiny_model_dir)


@pytest.fixture(scope="module")
def result(bundle):
    return bundle.translate(SENTENCE, num_beams=1, max_new_tokens=12)


# --- attention data: shapes, labels, probabilities, batch contract ---------------------------------------
def test_every_family_has_one_heads_by_query_by_key_array_per_layer(bundle, result):
    data, config = result.attention, bundle.model.config
    S, T = len(data.source_tokens), len(data.target_tokens)
    expected = {
        "encoder": (config.encoder_layers, config.encoder_attention_heads, S, S),
        "decoder": (config.decoder_layers, config.decoder_attention_heads, T, T),
        "cross": (config.decoder_layers, config.decoder_attention_heads, T, S),
    }
    for family in FAMILIES:
        layers = data.layers(family)
        assert len(layers) == expected[family][0]
        for matrix in layers:
            assert isinstance(matrix, np.ndarray) and matrix.dtype == np.float32
            assert matrix.shape == expected[family][1:]
        assert data.to_dict()["shapes"][family] == list(expected[family])


def test_token_labels_come_from_the_ids_of_the_forward_pass(bundle, result):
    data, tok = result.attention, bundle.tokenizer
    assert data.source_ids == result.source.input_ids
    assert data.target_ids == result.decoder_ids
    assert data.source_tokens == tok.convert_ids_to_tokens(data.source_ids)
    assert data.target_tokens == tok.convert_ids_to_tokens(data.target_ids)
    assert data.source_tokens[-1] == tok.eos_token  # the encoder reads the </s> it was trained with
    assert data.target_tokens[0] == tok.convert_ids_to_tokens(bundle.model.config.decoder_start_token_id)
    assert data.predicted_tokens == data.target_tokens[1:] + [tok.eos_token]
    for family in FAMILIES:
        q, k = data.layers(family)[0].shape[1:]
        assert (len(data.query_tokens(family)), len(data.key_tokens(family))) == (q, k)


def test_rows_are_probabilities_and_decoder_self_attention_is_causal(result):
    data = result.attention
    for family in FAMILIES:
        for matrix in data.layers(family):
            assert (matrix >= 0).all()
            np.testing.assert_allclose(matrix.sum(-1), 1.0, atol=1e-4)
    for matrix in data.decoder:
        assert np.abs(np.triu(matrix, k=1)).max() == 0.0  # no token sees a later one


def test_the_forward_pass_is_over_the_final_translation(bundle, result):
    """Greedy decoding picks the argmax at every step: the teacher-forced pass must reproduce it exactly."""
    model = bundle.model
    src = torch.tensor([result.source.input_ids])
    tgt = torch.tensor([result.decoder_ids])
    with torch.inference_mode():
        logits = model(input_ids=src, decoder_input_ids=tgt, use_cache=False).logits[0]
    assert logits.argmax(-1)[:-1].tolist() == result.decoder_ids[1:]


def test_batch_size_one_contract(bundle):
    tok, model = bundle.tokenizer, bundle.model
    ids = tok(["A dog runs.", "Two cats sleep."], padding=True, return_tensors="pt").input_ids
    start = [model.config.decoder_start_token_id]
    with pytest.raises(ValueError, match="batch size 1"):
        build_attention_data(model, tok, ids, [start, start])
    with pytest.raises(ValueError, match="batch size 1"):
        build_attention_data(model, tok, ids[:1], torch.tensor([start, start]))
    with pytest.raises(ValueError, match="empty"):
        build_attention_data(model, tok, ids[0, :0], start)
    one = build_attention_data(model, tok, ids[0], start)  # 1-D input is one sentence
    assert one.encoder[0].shape[1] == ids.shape[1] and one.decoder[0].shape[1:] == (1, 1)


def test_mismatched_tokens_and_matrices_are_refused_with_both_sizes(result):
    data = result.attention
    with pytest.raises(ValueError, match=r"encoder layer 0 has shape .* expected \(heads, 2,"):
        AttentionData(data.source_tokens[:2], data.target_tokens, data.encoder, data.decoder, data.cross)
    with pytest.raises(ValueError, match="no cross attention"):
        AttentionData(data.source_tokens, data.target_tokens, data.encoder, data.decoder, [])


def test_decoder_ids_stop_before_end_of_sentence_and_padding():
    assert decoder_ids_from_generated([1, 7, 8, 2, 0, 0], eos_token_id=2, pad_token_id=0) == [1, 7, 8]
    assert decoder_ids_from_generated([1, 7, 8], eos_token_id=2, pad_token_id=0) == [1, 7, 8]  # hit max length
    assert decoder_ids_from_generated([1, 2], eos_token_id=2, pad_token_id=0) == [1]


def test_strongest_links_and_json(result):
    data = result.attention
    it = next(i for i, t in enumerate(data.source_tokens) if t.replace("▁", "") == "it")
    links = data.strongest_links("encoder", it, k=3)
    assert len(links) == data.num_layers("encoder")
    for layer, top in enumerate(links):
        weights = [w for _, _, w in top]
        assert weights == sorted(weights, reverse=True) and len(top) == 3
        row = data.matrix("encoder", layer)[it]
        assert top[0][0] == int(row.argmax()) and top[0][1] == data.source_tokens[top[0][0]]
    head_links = data.strongest_links("cross", 1, head=0, k=2)
    assert all(data.source_tokens[j] == t for top in head_links for j, t, _ in top)
    payload = json.loads(json.dumps(data.to_dict()))
    assert np.asarray(payload["cross"]).shape == (
        data.num_layers("cross"),
        data.num_heads("cross"),
        len(data.target_tokens),
        len(data.source_tokens),
    )
    assert payload["layout"]["cross"] == {"rows": "target_tokens", "columns": "source_tokens"}


# --- input handling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", "\n\t  \n", None])
def test_empty_input_gives_a_friendly_message(bundle, text):
    out = bundle.translate(text)
    assert out.empty and out.text == "" and out.notices == [EMPTY_MESSAGE]


def test_text_longer_than_the_model_limit_is_truncated_with_a_notice(bundle):
    out = bundle.translate("a dog runs on the grass " * 60, num_beams=1, max_new_tokens=4)
    assert len(out.source.input_ids) == bundle.max_source_tokens
    assert out.source.original_tokens > bundle.max_source_tokens
    assert out.source.input_ids[-1] == bundle.tokenizer.eos_token_id
    assert any(n.startswith("Truncated") and str(bundle.max_source_tokens) in n for n in out.notices)
    assert len(out.attention.source_tokens) == bundle.max_source_tokens


@pytest.mark.parametrize("text", NASTY)
def test_emoji_rtl_html_and_control_characters_never_crash(bundle, text):
    out = bundle.translate(text, num_beams=2, max_new_tokens=6)
    assert isinstance(out.text, str) and not out.empty
    assert len(out.attention.source_tokens) == out.attention.encoder[0].shape[-1]


# --- out-of-domain input ------------------------------------------------------------------------------------
IN_DOMAIN = [  # Multi30k-style captions, the app's examples, and one emoji or foreign word inside English
    "Two dogs play in the snow.",
    "A man with a Hund.",
    "A dog 😀 runs on the grass.",
    "Hund",
    "A cyclist in a yellow jersey rides past a crowd of people.",
]
OUT_OF_DOMAIN = {  # text -> what the note says
    "Ein Mann in einem blauen Hemd steht auf einer Leiter.": "it looks like German, not English (words such as “ein”, “einem”, “auf”, “einer”)",
    "Zwei Hunde spielen im Schnee.": "it looks like German, not English (words such as “zwei”, “im”)",
    "Un homme est assis sur un banc dans le parc.": "it looks like French, not English",
    "Un hombre con una camisa azul está de pie sobre una escalera.": "it looks like Spanish, not English",
    "Muž v modré košili stojí na žebříku.": "it looks like Czech, not English",
    "رجل يقف على سلم وينظف النوافذ": "most of its letters are in Arabic script, not the Latin alphabet",
    "Собака бежит по траве.": "most of its letters are in Cyrillic script, not the Latin alphabet",
    "狗在草地上跑": "most of its letters are in CJK script, not the Latin alphabet",
    "😀🎉👍": "it has no letters, only symbols, digits or emoji",
    "🐶🐶🐶 dog 🎉🎉🎉": "of its characters never occurred in the training text (the tokenizer spells them byte by byte)",
}


def test_out_of_domain_heuristic_on_real_inputs(multi30k_tokenizer):
    """The rules of `out_of_domain_reason`, with a real Multi30k tokenizer (en, de, fr, cs)."""
    import app
    from translation_engine import out_of_domain_reason

    for text in IN_DOMAIN + app.EXAMPLES:
        assert out_of_domain_reason(text, multi30k_tokenizer) is None, text
    for text, reason in OUT_OF_DOMAIN.items():
        found = out_of_domain_reason(text, multi30k_tokenizer)
        assert found is not None and reason in found, (text, found)
    assert out_of_domain_reason("🐶🐶🐶 dog 🎉🎉🎉", multi30k_tokenizer).startswith("67% of its characters")  # 6 of 9
    # Only for a source language written in the Latin alphabet does another script count as foreign.
    assert out_of_domain_reason("Собака бежит по траве.", multi30k_tokenizer, "ru").startswith("95% of its characters")
    assert out_of_domain_reason("Ein Hund und eine Katze.", multi30k_tokenizer, "de") is None


def test_out_of_domain_input_gets_a_notice(bundle):
    german = "Ein Mann in einem blauen Hemd steht auf einer Leiter."
    out = bundle.translate(german, num_beams=1, max_new_tokens=4)
    assert out.notices[0] == (
        "This input looks out of domain: it looks like German, not English (words such as “ein”, “einem”, “auf”, "
        "“einer”). The model learnt from English image captions (Multi30k) only, so expect a confident but wrong "
        "translation."
    )
    assert bundle.translate(SENTENCE, num_beams=1, max_new_tokens=4).notices == [
        "The translation stopped at the maximum length (4 tokens)."
    ]


def test_cut_and_cleaned_input_is_said(bundle):
    """Text at the box's limit says so; a lone surrogate (only the API can send one) is read as "?", with a note."""
    from translation_engine import BOX_MAX_CHARS, MAX_INPUT_CHARS

    pasted = ("a dog runs on the grass " * 400)[: BOX_MAX_CHARS - 1] + " "  # what the box sends of a longer paste
    boxed = bundle.prepare(pasted)
    assert boxed.notices[0] == (
        f"The text has {BOX_MAX_CHARS - 1:,} characters (the text box keeps at most "
        f"{BOX_MAX_CHARS:,}); only the first {MAX_INPUT_CHARS:,} were read: the last "
        f"{BOX_MAX_CHARS - 1 - MAX_INPUT_CHARS:,} were cut."
    )
    shorter = bundle.prepare("a dog runs on the grass " * 100)
    assert shorter.notices[0] == (
        f"The text has 2,399 characters; only the first {MAX_INPUT_CHARS:,} were read: the last 399 were cut."
    )
    surrogate = bundle.prepare("A dog \ud800 runs \udfff.")
    assert surrogate.text == "A dog ? runs ?."
    assert surrogate.notices == [
        "The text held 2 lone surrogate code points (not valid Unicode, only possible "
        "through the API); each was read as “?”."
    ]


def test_a_given_translation_is_checked(bundle):
    limit = bundle.max_new_tokens_limit
    assert bundle.target_ids("Ein Hund.") == bundle.tokenizer(text_target="Ein Hund.")["input_ids"]
    with pytest.raises(
        ValueError,
        match=r"^The translation contains a lone surrogate \(\\ud800\), which is not "
        r"valid Unicode text: send it as UTF-8\.$",
    ):
        bundle.target_ids("Ein \ud800 Hund.")
    too_long = " ".join(["Hund"] * limit)
    with pytest.raises(
        ValueError, match=f"^The translation is {limit + 1} subword tokens long; this model writes at most {limit}\\.$"
    ):
        bundle.target_ids(too_long)


def test_the_model_is_named_by_its_card(bundle, tiny_model_dir, tmp_path):
    from translation_engine import ModelBundle

    assert bundle.display_name == os.path.basename(tiny_model_dir)  # no model card: the folder's name
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "README.md").write_text(
        "---\nlanguage:\n- en\n- de\nmodel-index:\n- name: vanilla-transformer-multi30k-en-de\n  results: []\n---\n"
    )
    named = ModelBundle(bundle.model, bundle.tokenizer, ref=str(tmp_path / "model"))
    assert named.display_name == "vanilla-transformer-multi30k-en-de"
    assert ModelBundle(bundle.model, bundle.tokenizer, ref="someone/some-model").display_name == "someone/some-model"


# --- HTML and pictures --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", NASTY)
def test_html_fragments_escape_user_and_model_text(text):
    from safe_html import links_html, status_html, tokens_html

    for fragment in (
        tokens_html([text, "</s>"], {"</s>"}, "t"),
        status_html([text], text),
        links_html(text, 0, [[(0, text, 0.5)]], "head 1", "Cross"),
    ):
        assert "<img" not in fragment and "<script" not in fragment and "<b>bold" not in fragment
        assert "${" not in fragment and "{{" not in fragment
        for ch in "\x07\x00\x1b\u202e\u200b":
            assert ch not in fragment
    if "\x07" in text:
        assert "\\x07" in tokens_html([text]) and "\\u202e" in tokens_html([text])


def test_pictures_are_arrays_and_no_figure_survives(result):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from encdec_lens.plots import head_grid_image, heatmap_image, plot_label

    data = result.attention
    labels = ["$x$", "a$b", "\x07", "😀", "\u202e", "שלום"]
    gc.collect()
    before = sum(issubclass(type(o), Figure) for o in gc.get_objects())
    for _ in range(3):
        img = heatmap_image(np.full((6, 6), 1 / 6), labels, labels, "title with $ sign")
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.std() > 0
        grid = head_grid_image(data.cross[0], "grid", selected=1)
        assert grid.shape[2] == 3
    gc.collect()
    assert plt.get_fignums() == []
    assert sum(issubclass(type(o), Figure) for o in gc.get_objects()) <= before
    assert plot_label("\x07") == "\\x07" and plot_label("$5") == r"\$5"
    with pytest.raises(ValueError, match="does not match"):
        heatmap_image(np.ones((2, 3)), ["a"], ["b"], "t")


def test_head_grid_title_leaves_the_buttons_corner_free(result, monkeypatch):
    """The page draws its fullscreen and download buttons over a picture's top-right corner: no text of the
    head grid may lie there (the title was centred at the top and ran under them)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from encdec_lens import plots as attention_plots

    boxes = []
    draw = attention_plots.figure_to_rgb

    def spy(fig):
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        height = fig.bbox.height
        for text in fig.findobj(lambda artist: hasattr(artist, "get_text") and hasattr(artist, "get_window_extent")):
            if text.get_visible() and text.get_text():
                box = text.get_window_extent(renderer)
                boxes.append((text.get_text(), box.x0 / fig.bbox.width, box.x1 / fig.bbox.width, height - box.y1))
        return draw(fig)

    monkeypatch.setattr(attention_plots, "figure_to_rgb", spy)
    title = "Cross-attention (decoder → encoder) · layer 3 · all heads"
    for heads in (result.attention.cross[0], np.ones((8, 5, 5)) / 5):
        boxes.clear()
        image = attention_plots.head_grid_image(heads, title, selected=1)
        assert image.shape[2] == 3
        texts = "".join(text for text, *_ in boxes)
        assert "Cross-attention (decoder → encoder)" in texts and "all heads" in texts
        for text, left, right, top in boxes:
            assert right <= 0.72 or top >= attention_plots.ICON_BAND_PX, (text, left, right, top)
    assert attention_plots.wrap_title(title, 40) == ["Cross-attention (decoder → encoder)", "layer 3 · all heads"]


# --- where the model comes from -----------------------------------------------------------------------------
def test_model_source_order_and_clear_errors(tmp_path, tiny_model_dir):
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelSourceError) as err:
        resolve_model_source(str(missing), env={})
    assert str(missing) in str(err.value) and "config.json" in str(err.value) and "--model" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="holds no config.json"):
        resolve_model_source(str(tmp_path / "empty"), env={})
    with pytest.raises(ModelSourceError, match="MODEL_ID"):
        resolve_model_source(None, env={"MODEL_ID": str(missing)})
    with pytest.raises(ModelSourceError, match=r"default \(space/model/\)"):
        resolve_model_source(None, env={}, default_dir=str(missing))
    assert resolve_model_source(tiny_model_dir, env={"MODEL_ID": "x/y"}).ref == os.path.abspath(tiny_model_dir)
    assert resolve_model_source(None, env={"MODEL_ID": tiny_model_dir}).origin == "MODEL_ID"
    hub = resolve_model_source(None, env={"MODEL_ID": "someone/some-model"})
    assert not hub.is_local and hub.ref == "someone/some-model"


def test_unreachable_hub_model_says_what_was_looked_for(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="Hub repository 'nobody-here/no-such-model'"):
        load_bundle(resolve_model_source("nobody-here/no-such-model", env={}))


def test_bundle_describes_its_limits(bundle):
    assert bundle.max_source_tokens == 64  # the tokenizer's model_max_length in the fixture
    assert bundle.default_max_new_tokens == 31  # generation_config.max_length = 32, minus the start token
    assert bundle.language_pair == "English → German"
    assert "h = 4 heads" in bundle.describe()


def test_languages_are_read_from_the_model_card(tmp_path):
    from model_metadata import card_languages

    (tmp_path / "README.md").write_text("---\nlanguage:\n- en\n- fr\nlicense: apache-2.0\n---\n# model\n")
    assert card_languages(str(tmp_path)) == ("en", "fr")
    (tmp_path / "README.md").write_text("---\nlanguage: [de, en]\n---\n")
    assert card_languages(str(tmp_path)) == ("de", "en")
    assert card_languages(str(tmp_path / "nowhere")) is None


def test_the_attention_cache_is_bounded_and_agrees_with_a_fresh_pass(bundle, result, monkeypatch):
    import translation_engine

    state = {"source_ids": result.source.input_ids, "decoder_ids": result.decoder_ids}
    assert bundle.attention_for(None) is None
    cached = bundle.attention_for(state)
    fresh = build_attention_data(bundle.model, bundle.tokenizer, state["source_ids"], state["decoder_ids"])
    for family in FAMILIES:
        for a, b in zip(cached.layers(family), fresh.layers(family)):
            np.testing.assert_allclose(a, b, atol=1e-6)
    monkeypatch.setattr(translation_engine, "ATTENTION_CACHE_SIZE", 3)
    start = bundle.model.config.decoder_start_token_id
    for i in range(6):
        bundle.attention_data(result.source.input_ids, [start] + [10 + i])
    assert len(bundle._attention_cache) == 3
