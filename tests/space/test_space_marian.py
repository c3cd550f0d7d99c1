"""The Space and every analysis on a converted OPUS-MT model: `python space/app.py --model OUT` where OUT
was written by `python -m training.convert_marian`.

Nothing is downloaded: a small random-weight MarianMTModel in OPUS-MT's layout (swish, one shared vocabulary with
<pad> last, decoding from <pad>, a non-zero final_logits_bias; `make_marian` of tests/marian_models.py) is built
beside a SentencePiece tokenizer trained here on a few dozen English and German sentences, converted with the
converter's Python entry point, and loaded as the Space loads any model (`translation_engine.load_bundle`). The
token views must show Marian's SentencePiece pieces ("▁dog"), the analyses must hold their identities on it
(attribution parts add up to the logit with the final logits bias among the biases, patching's ends are 0 and 1,
the last logit-lens layer is the output), and the app, its API and the page must work on it.
"""

import copy

import numpy as np
import pytest
import sentencepiece as spm
import torch
from conftest import GRADIO_WARNINGS, attribution_on_page, open_circuits_tab, open_page, serve_space, translate_on_page
from marian_models import make_marian, write_opus_tokenizer

from encdec_lens import (
    activation_patching,
    all_heads,
    head_importance,
    logit_attribution,
    logit_lens,
    residual_stream,
    run_ablation,
)
from encdec_lens.inputs import make_example
from encdec_lens.lens import logit_lens_probs
from training.convert_marian import convert

pytestmark = GRADIO_WARNINGS

SENTENCES = [
    "The animal didn't cross the street because it was too tired.",
    "A dog runs on the beach.",
    "A man is riding a bike.",
    "A woman is riding a horse.",
    "Two children are playing in the snow.",
    "A girl in a red dress is walking her dog.",
    "The man is reading a book in the park.",
    "Three people are sitting at a table.",
    "A boy jumps into the water.",
    "The street was full of people.",
    "A cat sleeps on the sofa.",
    "It was too cold to play outside.",
    "The woman is cooking dinner for her family.",
    "Two dogs play with a ball on the grass.",
    "A small child is eating an apple.",
    "The old man crossed the street slowly.",
    "Das Tier überquerte die Straße nicht, weil es zu müde war.",
    "Ein Hund läuft am Strand.",
    "Ein Mann fährt Fahrrad.",
    "Eine Frau reitet ein Pferd.",
    "Zwei Kinder spielen im Schnee.",
    "Ein Mädchen in einem roten Kleid geht mit ihrem Hund spazieren.",
    "Der Mann liest ein Buch im Park.",
    "Drei Menschen sitzen an einem Tisch.",
    "Ein Junge springt ins Wasser.",
    "Die Straße war voller Menschen.",
    "Eine Katze schläft auf dem Sofa.",
    "Es war zu kalt, um draußen zu spielen.",
    "Die Frau kocht das Abendessen für ihre Familie.",
    "Zwei Hunde spielen mit einem Ball auf dem Gras.",
    "Ein kleines Kind isst einen Apfel.",
    "Der alte Mann überquerte langsam die Straße.",
]
SENTENCE = "The animal didn't cross the street because it was too tired."
CORRUPTED = "The horse didn't cross the street because it was too tired."  # the same number of pieces
GERMAN = "Zwei Kinder spielen im Schnee."
NEW_TOKENS = 8  # the analyses' translations: short, so the file stays fast


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
    return write_opus_tokenizer(tmp_path_factory.mktemp("spm"), SENTENCES * 10, vocab_size=160)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, spm_dir):
    """(Marian source folder, converted folder): swish, shared vocabulary, non-zero final_logits_bias."""
    root = tmp_path_factory.mktemp("opus")
    src = make_marian(root / "opus-mt-en-de", spm_dir, "swish", seed=3)
    result = convert(str(src), str(root / "converted"))
    assert result["max_logit_difference"] <= 1e-4
    return src, root / "converted"


@pytest.fixture(scope="module")
def pieces(spm_dir):
    """SentencePiece's own pieces of a text, as the source side should show them (then </s>)."""
    processor = spm.SentencePieceProcessor(model_file=str(spm_dir / "source.spm"))
    return lambda text: processor.encode(text, out_type=str) + ["</s>"]


@pytest.fixture(scope="module")
def bundle(converted):
    from translation_engine import load_bundle

    return load_bundle(str(converted[1]))


@pytest.fixture(scope="module")
def on_screen(bundle):
    return bundle.translate(SENTENCE)


def test_the_converted_model_loads_with_marians_tokenizer_and_is_called_a_converted_opus_mt_model(bundle, converted):
    from transformers import MarianTokenizer

    from translation_engine import out_of_domain_reason

    config = bundle.model.config
    assert isinstance(bundle.tokenizer, MarianTokenizer)
    assert (config.activation_function, config.sinusoidal_layout, config.add_final_logits_bias) == (
        "swish",
        "concatenated",
        True,
    )
    assert bundle.model.lm_head.bias.abs().min() > 0  # Marian's final_logits_bias came across
    assert (bundle.source_lang, bundle.target_lang, bundle.language_pair) == ("en", "de", "English → German")
    assert bundle.trained_on == "OPUS" and "OPUS-MT" in bundle.origin and "converted" in bundle.origin
    assert "Multi30k" not in bundle.origin
    assert bundle.default_num_beams == 4  # OPUS-MT's generation config, carried over
    assert bundle.display_name == converted[1].name
    # German input would be out of domain for a Multi30k model, not for an OPUS-MT one: no notice here.
    assert out_of_domain_reason(GERMAN, bundle.tokenizer, "en") is not None
    german = bundle.translate(GERMAN, max_new_tokens=NEW_TOKENS)
    assert german.notices == [] and german.text


def test_translate_shows_sentencepiece_pieces_and_attention_fits_them(bundle, on_screen, pieces, converted):
    from transformers import MarianMTModel

    result = on_screen
    data = result.attention
    assert data.source_tokens == pieces(SENTENCE) and "▁cross" in data.source_tokens
    assert data.source_tokens[-1] == "</s>" and data.source_ids == result.source.input_ids
    assert data.target_tokens[0] == "<pad>" and data.target_ids[0] == bundle.model.config.decoder_start_token_id
    assert data.target_tokens == bundle.tokenizer.convert_ids_to_tokens(result.decoder_ids)
    assert "".join(data.target_tokens[1:]).replace("▁", " ").strip() == result.text  # pieces, detokenised
    assert data.predicted_tokens == data.target_tokens[1:] + ["</s>"]
    S, T = len(data.source_tokens), len(data.target_tokens)
    config = bundle.model.config
    for family, (q, k) in (("encoder", (S, S)), ("decoder", (T, T)), ("cross", (T, S))):
        layers = data.layers(family)
        assert len(layers) == 2 and all(m.shape == (config.encoder_attention_heads, q, k) for m in layers)
        np.testing.assert_allclose(np.stack(layers).sum(-1), 1.0, atol=1e-5)
    # the translation is MarianMTModel's own (same generation settings, beam 4)
    marian = MarianMTModel.from_pretrained(str(converted[0])).eval()
    gen = bundle.generation_config_for(result.num_beams, result.max_new_tokens)
    with torch.no_grad():
        ids = marian.generate(input_ids=torch.tensor([result.source.input_ids]), generation_config=gen)[0].tolist()
    assert ids[: len(result.decoder_ids)] == result.decoder_ids
    assert bundle.tokenizer.decode(ids, skip_special_tokens=True).strip() == result.text


def test_ablation_importance_lens_and_residual_stream(bundle, on_screen):
    model, tok = bundle.model, bundle.tokenizer
    gen = dict(num_beams=1, max_new_tokens=NEW_TOKENS)
    nothing = run_ablation(model, tok, SENTENCE, [], **gen)
    assert nothing.delta == 0 and not nothing.changed and nothing.translation_tokens[-1] == "</s>"
    heads = all_heads(model, ("cross",))
    ablated = run_ablation(model, tok, SENTENCE, heads, translation=nothing.translation_ids, **gen)
    assert ablated.translation_ids == nothing.translation_ids and ablated.logprob == pytest.approx(nothing.logprob)
    assert ablated.delta == pytest.approx(ablated.ablated_logprob - ablated.logprob) and ablated.delta != 0
    assert ablated.delta == pytest.approx(sum(ablated.ablated_token_logprobs) - sum(ablated.token_logprobs), abs=1e-4)
    with pytest.raises(ValueError, match=r"cross layer 5 does not exist: the model has 2"):
        run_ablation(model, tok, SENTENCE, [("cross", 5, 0)], **gen)

    importance = head_importance(model, tok, SENTENCE, nothing.translation_ids)
    assert len(importance.ranking) == len(all_heads(model)) == 24
    assert importance.logprob == pytest.approx(nothing.logprob, abs=1e-4)
    top = importance.ranking[0]
    single = run_ablation(
        model, tok, SENTENCE, [(top["family"], top["layer"], top["head"])], translation=nothing.translation_ids, **gen
    )
    assert -single.delta == pytest.approx(top["drop"], abs=1e-4)  # the batched ablation agrees with one at a time
    assert importance.source_tokens[-1] == "</s>" and "▁cross" in importance.source_tokens

    example = make_example(model, tok, SENTENCE, nothing.translation_ids)
    lens_probs, final = logit_lens_probs(model, example)
    torch.testing.assert_close(lens_probs[-1], final, atol=1e-6, rtol=0)  # post-LN: the last layer is the output
    lens = logit_lens(model, tok, SENTENCE, nothing.translation_ids, top_k=3)
    assert lens.input_tokens[0] == "<pad>" and lens.target_tokens == nothing.translation_tokens
    assert [p["top"] for p in lens.layers[-1]["positions"]] == [p["top"] for p in lens.final]

    stream = residual_stream(model, tok, SENTENCE, nothing.translation_ids)
    assert len(stream.encoder) == len(stream.decoder) == 2
    assert len(stream.encoder[0]["ffn"]) == len(on_screen.source.input_ids)
    assert len(stream.decoder[0]["cross_attn"]) == len(nothing.translation_ids)
    for side in (stream.encoder, stream.decoder):  # each layer reads what the one before wrote
        np.testing.assert_allclose(side[1]["input_norm"], side[0]["output_norm"], rtol=1e-6)


def test_attribution_adds_up_with_the_final_logits_bias_among_the_biases(bundle):
    model, tok = bundle.model, bundle.tokenizer
    gen = dict(num_beams=1, max_new_tokens=NEW_TOKENS)
    result = logit_attribution(model, tok, SENTENCE, position=1, **gen)
    values = {c["name"]: c["value"] for c in result.components}
    assert sum(values.values()) == pytest.approx(result.logit, abs=1e-4)
    assert len(values) == 3 + 2 * (2 * 4 + 1) and result.input_tokens[0] == "<pad>"
    # One more unit of final_logits_bias on this token: the logit and "biases" grow by 1, nothing else moves.
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        shifted.lm_head.bias[result.token_id] += 1.0
    again = logit_attribution(shifted, tok, SENTENCE, result.translation_ids, position=1)
    moved = {c["name"]: c["value"] for c in again.components}
    assert again.logit == pytest.approx(result.logit + 1.0, abs=1e-4)
    assert moved["biases"] == pytest.approx(values["biases"] + 1.0, abs=1e-6)
    assert all(moved[name] == pytest.approx(value, abs=1e-6) for name, value in values.items() if name != "biases")
    with pytest.raises(ValueError, match=r"position 999 does not exist"):
        logit_attribution(model, tok, SENTENCE, result.translation_ids, position=999)


def test_activation_patching_ends_at_0_and_1(bundle):
    model, tok = bundle.model, bundle.tokenizer
    assert len(bundle.prepare(CORRUPTED).input_ids) == len(bundle.prepare(SENTENCE).input_ids)
    result = activation_patching(model, tok, SENTENCE, CORRUPTED, num_beams=1, max_new_tokens=NEW_TOKENS)
    assert result.nothing_patched == 0 and result.encoder_output_patched == pytest.approx(1, abs=1e-5)
    last_encoder = next(e for e in result.layers if e["name"] == "encoder L2")
    assert last_encoder["restored"] == pytest.approx(1, abs=1e-5)
    assert result.clean_tokens[-1] == "</s>" and result.clean_tokens != result.corrupted_tokens
    assert len(result.heads) == 24
    with pytest.raises(ValueError, match=r"same number of tokens"):
        activation_patching(model, tok, SENTENCE, "A dog.", result.translation_ids)


def test_walkthrough_checks_and_marians_positional_layout(bundle):
    from tabs import walkthrough_tab

    answer = walkthrough_tab.walkthrough_json(bundle, SENTENCE)
    assert "error" not in answer, answer
    # N(0, 1) weights make activations of a few hundred: float32 rounding of the sums is ~1e-4 there
    assert max(answer["checks"].values()) < 5e-4 and max(answer["checks"][k] for k in ("weights", "probs")) < 1e-5, (
        answer["checks"]
    )
    assert (
        answer["query_tokens"][answer["position"]] == answer["token"] == "it" and answer["source_tokens"][-1] == "</s>"
    )
    assert answer["sizes"]["sinusoidal_layout"] == "concatenated"
    positional = next(s for s in answer["steps"] if s["id"] == "positional_table")
    assert "Marian's layout" in positional["text"] and "first d_model/2 dimensions" in positional["text"]
    cross = walkthrough_tab.walkthrough_json(bundle, SENTENCE, "cross", 1, 3)
    assert max(cross["checks"].values()) < 5e-4 and cross["decoder_tokens"][0] == "<pad>"
    assert walkthrough_tab.walkthrough_json(bundle, SENTENCE, "cross", 7, 0) == {
        "error": "layer 7 does not exist: the decoder has 2 (0..1)."
    }


# --- the whole app, its API through a real server, and the page ------------------------------------------------
def test_the_app_builds_names_the_model_and_labels_the_start_token(bundle):
    import gradio as gr

    import app

    demo = app.build_demo(bundle)
    texts = [block.value for block in demo.blocks.values() if isinstance(block, gr.Markdown)]
    assert any(bundle.origin in t and "Multi30k" not in t for t in texts if t.startswith("# "))
    explainer = next(
        block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "attention-explainer"
    )
    assert "(`<pad>` first)" in explainer and "<s>" not in explainer
    demo.close()


@pytest.fixture(scope="module")
def server(bundle):
    with serve_space(bundle) as url:
        yield url


def test_api_translate_attention_and_attribution(client, bundle, on_screen, pieces):
    translation, status, source_html, target_html = client.predict(SENTENCE, api_name="/translate")
    assert translation == on_screen.text and "English → German" in status and "notice" not in status
    assert f"({len(pieces(SENTENCE))} tokens)" in source_html and "<bdi>▁cross</bdi>" in source_html
    assert '<span class="tok special" title="#0"><span class="idx">0</span><bdi>&lt;pad&gt;</bdi>' in target_html

    data = client.predict(GERMAN, 1, NEW_TOKENS, api_name="/attention")
    assert data["notices"] == [] and data["source_tokens"] == pieces(GERMAN)
    S, T = len(data["source_tokens"]), len(data["target_tokens"])
    assert data["shapes"] == {"encoder": [2, 4, S, S], "decoder": [2, 4, T, T], "cross": [2, 4, T, S]}
    assert np.asarray(data["cross"]).shape == (2, 4, T, S)

    answer = client.predict(SENTENCE, "", -1, api_name="/logit_attribution")
    assert answer["token"] == "</s>" and answer["input_tokens"][0] == "<pad>"
    assert sum(c["value"] for c in answer["components"]) == pytest.approx(answer["logit"], abs=1e-4)
    assert answer["translation_ids"] == on_screen.decoder_ids[1:] + [0]
    assert "does not exist" in client.predict(SENTENCE, "", 999, api_name="/logit_attribution")["error"]


@pytest.mark.browser
def test_browser_token_chips_are_sentencepiece_pieces_and_attribution_appears(
    browser, server, bundle, on_screen, client, pieces
):
    from playwright.sync_api import expect

    with open_page(browser, server) as page:
        translate_on_page(page, SENTENCE, on_screen.text)
        chips = page.locator("#src-tokens .tok bdi")
        expect(chips).to_have_count(len(pieces(SENTENCE)))
        assert chips.all_inner_texts() == pieces(SENTENCE)
        first_target = page.locator("#out-tokens .tok").first
        expect(first_target).to_have_class("tok special")
        expect(first_target.locator("bdi")).to_have_text("<pad>")
        expect(page.locator("#out-tokens .tok bdi")).to_have_count(len(on_screen.decoder_ids))

        open_circuits_tab(page)
        api = attribution_on_page(page, client, SENTENCE)
        expect(page.locator("#dla-view")).to_contain_text(api["token"])
