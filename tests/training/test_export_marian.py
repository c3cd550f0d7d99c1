"""`python -m training.export_marian`: a model of this project becomes a MarianMTModel folder that computes the same
thing, and from there a CTranslate2 model that translates the same. Nothing is downloaded: the models are tiny
ones built here (random weights, perturbed biases and LayerNorms, so that a weight permuted wrongly shows) beside
the real Multi30k tokenizer, plus the shipped space/model; the exported folder is loaded in a process where this
project cannot be imported."""

import gzip
import json
import os
import textwrap

import pytest
import torch
from conftest import SHIPPED_MODEL, run_without_project, tiny_config
from test_convert_marian import make_marian, write_opus_tokenizer

from training import convert_marian, export_marian
from training.export_marian import ExportError, export

SENTENCES = [
    "A dog runs on the beach.",
    "Two children are playing in the snow.",
    "A man in a blue shirt is standing on a ladder cleaning windows.",
]
CARD = "---\nlanguage:\n- en\n- de\nlicense: cc-by-4.0\n---\n\n# a tiny test model\n"


def save_model(folder, tokenizer, seed=0, **overrides):
    """A tiny model of this project with weights far from their init (varied outputs, no symmetric LayerNorms or
    zero biases), its tokenizer, a card and beam-search generation settings, saved in `folder`."""
    from modeling import TransformerForConditionalGeneration

    torch.manual_seed(seed)
    values = dict(
        vocab_size=len(tokenizer),
        d_model=32,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        max_position_embeddings=128,
    )
    values.update(overrides)
    model = TransformerForConditionalGeneration(tiny_config(**values)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                parameter.add_(0.3 * torch.randn_like(parameter))
            else:
                parameter.normal_(0.0, 0.3)
    model.generation_config.update(max_length=20, num_beams=3, length_penalty=1.2, early_stopping=True)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(CARD)
    return model


def outputs(model, tokenizer, sentences=SENTENCES, max_length=20):
    """Logits on a padded batch (decoder fed the greedy output) and the greedy and beam-3 token ids."""
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        greedy = model.generate(**batch, num_beams=1, do_sample=False, max_length=max_length)
        beam = model.generate(**batch, num_beams=3, do_sample=False, max_length=max_length, early_stopping=True)
        logits = model(**batch, decoder_input_ids=greedy).logits
    return {"logits": logits, "greedy": greedy, "beam": beam}


def assert_same_outputs(ours, theirs, tolerance=1e-4):
    assert torch.equal(ours["greedy"], theirs["greedy"])
    assert torch.equal(ours["beam"], theirs["beam"])
    assert (ours["logits"] - theirs["logits"]).abs().max() < tolerance


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, multi30k_tokenizer):
    """(source folder, its model, the export folder, export()'s result) for a model with a logits bias."""
    root = tmp_path_factory.mktemp("export")
    model = save_model(root / "ours", multi30k_tokenizer, add_final_logits_bias=True)
    result = export(str(root / "ours"), str(root / "marian"))
    return root / "ours", model, root / "marian", result


# ------------------------------------------------------------------------------------------ exactness


def test_export_is_a_marian_folder_computing_the_same(tiny, multi30k_tokenizer):
    from transformers import AutoTokenizer, MarianMTModel

    source, model, out, result = tiny
    assert result["max_logit_difference"] < 1e-4 and result["same_greedy"] and result["same_beam"]
    assert sorted(os.listdir(out)) == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "marian" and config["architectures"] == ["MarianMTModel"]
    assert "auto_map" not in config  # no remote code
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    card = (out / "README.md").read_text()
    assert str(source) in card and "license: cc-by-4.0" in card

    marian = MarianMTModel.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert tokenizer(SENTENCES)["input_ids"] == multi30k_tokenizer(SENTENCES)["input_ids"]
    assert marian.final_logits_bias.abs().min() > 0  # the logits bias came along
    assert_same_outputs(outputs(model, multi30k_tokenizer), outputs(marian, tokenizer))
    assert marian.generation_config.num_beams == 3 and marian.generation_config.length_penalty == 1.2


@pytest.mark.parametrize(
    "overrides",
    [
        {"d_model": 15, "encoder_attention_heads": 3, "decoder_attention_heads": 5},  # odd width: 8 sines, 7 cosines
        {"tie_word_embeddings": False},  # three matrices: MarianConfig's share_encoder_decoder_embeddings=false
        {"activation_function": "gelu", "scale_embedding": False},
        {"sinusoidal_layout": "concatenated"},  # already Marian's layout: copied unpermuted
    ],
    ids=["odd-width", "untied", "gelu-unscaled", "concatenated"],
)
def test_every_variant_marian_represents_exports_exactly(tmp_path, multi30k_tokenizer, overrides):
    from transformers import MarianMTModel

    model = save_model(tmp_path / "ours", multi30k_tokenizer, seed=1, **overrides)
    result = export(str(tmp_path / "ours"), str(tmp_path / "marian"))
    assert result["max_logit_difference"] < 1e-4
    marian = MarianMTModel.from_pretrained(str(tmp_path / "marian")).eval()
    assert_same_outputs(outputs(model, multi30k_tokenizer), outputs(marian, multi30k_tokenizer))


def test_round_trip_through_convert_marian_gives_the_model_back(tiny, tmp_path, multi30k_tokenizer):
    from modeling import TransformerForConditionalGeneration

    _, model, out, _ = tiny
    convert_marian.convert(str(out), str(tmp_path / "back"))
    back = TransformerForConditionalGeneration.from_pretrained(str(tmp_path / "back")).eval()
    assert back.config.sinusoidal_layout == "concatenated"
    # Un-permuting the model dimension gives every tensor back bit for bit.
    inverse = torch.argsort(export_marian.residual_permutation(model.config))
    restored = export_marian.permute_residual(back.state_dict(), inverse)
    original = model.state_dict()
    assert set(restored) == set(original)
    assert all(torch.equal(restored[name], original[name]) for name in original)
    assert_same_outputs(outputs(model, multi30k_tokenizer), outputs(back, multi30k_tokenizer))


def test_a_model_converted_from_opus_mt_exports_back_to_the_same_weights(tmp_path):
    """OPUS-MT's layout (SentencePiece tokenizer, <pad> last and the decoder start): Marian -> this project ->
    Marian gives the original tensors and tokenizer files."""
    from transformers import MarianMTModel, MarianTokenizer

    (tmp_path / "spm").mkdir()
    spm = write_opus_tokenizer(tmp_path / "spm", SENTENCES * 30, vocab_size=60)
    original = make_marian(tmp_path / "opus", spm, activation="swish")
    convert_marian.convert(str(original), str(tmp_path / "ours"))
    export(str(tmp_path / "ours"), str(tmp_path / "marian"))
    before = MarianMTModel.from_pretrained(str(original)).state_dict()
    after = MarianMTModel.from_pretrained(str(tmp_path / "marian")).state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "marian" / "source.spm").read_bytes() == (original / "source.spm").read_bytes()
    assert isinstance(MarianTokenizer.from_pretrained(str(tmp_path / "marian")), MarianTokenizer)


EXPORTED_CHILD = textwrap.dedent(
    """
    folder, sentences = sys.argv[2], json.loads(sys.argv[3])
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()  # no trust_remote_code: plain transformers
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        beam = model.generate(**batch, num_beams=3, max_length=20, early_stopping=True)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling", "configuration", "training"))
    print(json.dumps({"class": type(model).__name__, "beam": beam.tolist(), "project_modules": loaded}))
    """
)


def test_the_export_loads_without_this_project_or_remote_code(tiny, tmp_path, multi30k_tokenizer):
    _, model, out, _ = tiny
    child = run_without_project(EXPORTED_CHILD, [out, json.dumps(SENTENCES)], tmp_path)
    found = json.loads(child.stdout.strip().splitlines()[-1])
    assert found["class"] == "MarianMTModel" and found["project_modules"] == []
    assert found["beam"] == outputs(model, multi30k_tokenizer)["beam"].tolist()


# ------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"position_embedding_type": "learned"}, r"learned positions .*MarianConfig has no learned positions"),
        ({"normalize_before": True}, r"pre-LN residual blocks .*normalize_before=true.*MarianMTModel is post-LN"),
        ({"layer_norm_eps": 1e-6}, r"LayerNorm epsilon 1e-06 .*MarianMTModel's LayerNorms use 1e-05"),
    ],
    ids=["learned-positions", "pre-ln", "layer-norm-eps"],
)
def test_what_marian_cannot_represent_is_refused_by_name(tmp_path, multi30k_tokenizer, overrides, match):
    save_model(tmp_path / "ours", multi30k_tokenizer, **overrides)
    with pytest.raises(ExportError, match=match):
        export(str(tmp_path / "ours"), str(tmp_path / "marian"))
    assert sorted(os.listdir(tmp_path)) == ["ours"]  # nothing written, no temporary folder left


def test_a_marian_folder_or_a_folder_without_tokenizer_is_refused(tiny, tmp_path, multi30k_tokenizer):
    _, _, out, _ = tiny
    with pytest.raises(ExportError, match=r"is a 'marian' model .*not one of this project's"):
        export(str(out), str(tmp_path / "again"))
    model = save_model(tmp_path / "bare", multi30k_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.remove(tmp_path / "bare" / name)
    with pytest.raises(ExportError, match=r"has no tokenizer \(tokenizer.json, or Marian's source.spm\)"):
        export(str(tmp_path / "bare"), str(tmp_path / "marian"))
    with pytest.raises(ExportError, match=r"does not exist"):
        export(str(tmp_path / "missing"), str(tmp_path / "marian"))
    assert model is not None


def test_out_is_replaced_only_with_overwrite_and_only_when_it_holds_a_model(tiny, tmp_path):
    source, _, _, _ = tiny
    out = tmp_path / "marian"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"exists and is not empty; pass --overwrite"):
        export(str(source), str(out))
    with pytest.raises(ExportError, match=r"--overwrite refused: .*holds notes.txt"):
        export(str(source), str(out), overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    os.remove(out / "notes.txt")
    export(str(source), str(out))
    export(str(source), str(out), overwrite=True)  # a Marian export of this tool is a model folder: replaced
    assert sorted(os.listdir(tmp_path)) == ["marian"]  # no temporary folder left beside it
    with pytest.raises(ExportError, match=r"is or contains the model .*Name another output folder"):
        export(str(source), str(source.parent), overwrite=True)


def test_the_command_line_says_what_was_wrong_in_one_line(tmp_path, multi30k_tokenizer, capsys):
    save_model(tmp_path / "ours", multi30k_tokenizer, normalize_before=True)
    capsys.readouterr()
    assert export_marian.main([str(tmp_path / "ours"), str(tmp_path / "marian")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.export_marian: error: ") and err.count("\n") == 1
    assert "it has pre-LN residual blocks with a final LayerNorm on each stack (normalize_before=true)" in err


# --------------------------------------------------------------------------------------- the shipped model


@pytest.fixture(scope="module")
def flickr_lines(data_dir):
    with gzip.open(os.path.join(data_dir, "test_2016_flickr.en.gz"), "rt", encoding="utf-8") as fh:
        return [next(fh).strip() for _ in range(20)]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """space/model, loaded, and its Marian export."""
    from transformers import AutoTokenizer

    from modeling import TransformerForConditionalGeneration

    if not os.path.isfile(os.path.join(SHIPPED_MODEL, "model.safetensors")):
        pytest.skip(f"the shipped model is not in {SHIPPED_MODEL}")
    out = tmp_path_factory.mktemp("shipped") / "marian"
    result = export(SHIPPED_MODEL, str(out))
    model = TransformerForConditionalGeneration.from_pretrained(SHIPPED_MODEL).eval()
    return model, AutoTokenizer.from_pretrained(SHIPPED_MODEL), out, result


@pytest.fixture(scope="module")
def shipped_translations(shipped, flickr_lines):
    """space/model's own translations of the lines, {beams: token ids}: greedy, and its generation settings
    (beam 5, length penalty 1.4, stopping once 5 hypotheses are finished)."""
    model, tokenizer, _, _ = shipped
    return {
        1: export_marian.torch_translate(model, tokenizer, flickr_lines, num_beams=1),
        5: export_marian.torch_translate(model, tokenizer, flickr_lines, num_beams=5, early_stopping=True),
    }


def test_the_shipped_model_exports_exactly(shipped, flickr_lines, shipped_translations):
    from transformers import MarianMTModel

    _, tokenizer, out, result = shipped
    assert result["max_logit_difference"] < 1e-4
    marian = MarianMTModel.from_pretrained(str(out)).eval()
    for num_beams, ours in shipped_translations.items():
        stop = {"early_stopping": True} if num_beams > 1 else {}
        assert export_marian.torch_translate(marian, tokenizer, flickr_lines, num_beams=num_beams, **stop) == ours


# ----------------------------------------------------------------------------------------------- CTranslate2


@pytest.fixture(scope="module")
def ctranslate2():
    return pytest.importorskip("ctranslate2", reason="ctranslate2 is not installed (pip install ctranslate2)")


def ctranslate2_ids(ctranslate2, folder, tokenizer, lines, beam_size, length_penalty):
    """CTranslate2's translations as a user runs them: tokens in, tokens out (the end token kept, so that the
    length penalty counts it as generate() does)."""
    translator = ctranslate2.Translator(str(folder), device="cpu", intra_threads=1)
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(lines)["input_ids"]]
    results = translator.translate_batch(
        tokens, beam_size=beam_size, length_penalty=length_penalty, return_end_token=True, max_decoding_length=127
    )
    return [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]


@pytest.fixture(scope="module")
def ctranslate2_models(ctranslate2, shipped, tmp_path_factory):
    _, _, out, _ = shipped
    root = tmp_path_factory.mktemp("ct2")
    return {q: export_marian.to_ctranslate2(str(out), str(root / q), q) for q in ("float32", "int8")}


def test_ctranslate2_float32_translates_as_the_model(
    ctranslate2, ctranslate2_models, shipped, flickr_lines, shipped_translations
):
    model, tokenizer, _, _ = shipped
    folder = ctranslate2_models["float32"]["out"]
    assert {"model.bin", "config.json", "shared_vocabulary.json", "tokenizer.json"} <= set(os.listdir(folder))
    penalty = model.generation_config.length_penalty
    for num_beams, ours in shipped_translations.items():
        assert ctranslate2_ids(ctranslate2, folder, tokenizer, flickr_lines, num_beams, penalty) == ours


def test_ctranslate2_int8_translates_and_its_agreement_is_reported(
    ctranslate2, ctranslate2_models, shipped, flickr_lines, shipped_translations
):
    model, tokenizer, _, _ = shipped
    result = ctranslate2_models["int8"]
    assert result["quantization"] == "int8" and 0 <= result["greedy"] <= result["sentences"]
    penalty = model.generation_config.length_penalty
    agree = {}
    for num_beams, ours in shipped_translations.items():
        theirs = ctranslate2_ids(ctranslate2, result["out"], tokenizer, flickr_lines, num_beams, penalty)
        assert len(theirs) == len(ours) and all(theirs)  # a translation of every line
        agree[num_beams] = sum(a == b for a, b in zip(ours, theirs))
    print(
        f"CTranslate2 int8 on {len(flickr_lines)} test_2016_flickr lines: greedy {agree[1]}, beam 5 {agree[5]} "
        "translations equal to PyTorch's"
    )


def test_ctranslate2_refuses_an_activation_it_lacks_and_a_taken_folder(ctranslate2, tmp_path, multi30k_tokenizer):
    save_model(tmp_path / "ours", multi30k_tokenizer, activation_function="tanh")
    with pytest.raises(ExportError, match=r"CTranslate2 has no 'tanh' activation"):
        export(str(tmp_path / "ours"), str(tmp_path / "marian"), ct2_out=str(tmp_path / "ct2"))
    assert sorted(os.listdir(tmp_path)) == ["ours"]  # checked before the Marian folder was written, too
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"--overwrite refused: .*holds notes.txt"):
        export(str(tmp_path / "ours"), str(tmp_path / "marian2"), ct2_out=str(tmp_path / "taken"), overwrite=True)


def test_translate_cli_on_the_ctranslate2_engine_gives_the_models_translations(
    ctranslate2, ctranslate2_models, shipped, flickr_lines, tmp_path
):
    """`training.translate --engine ctranslate2` reads the decoding settings saved beside the CTranslate2 model
    and writes, line for line (blank lines kept), what the PyTorch model's generate() writes."""
    import subprocess
    import sys

    from conftest import ROOT

    from training.translate_utils import translate_batch

    model, tokenizer, _, _ = shipped
    folder = ctranslate2_models["float32"]["out"]
    lines = [flickr_lines[0], "", *flickr_lines[1:6]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "training.translate", folder, "--engine", "ctranslate2"],
        input="\n".join(lines) + "\n",
        cwd=ROOT,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with torch.no_grad():
        expected = translate_batch(model, tokenizer, flickr_lines[:6])  # its generation_config: beam 5
    assert result.stdout.split("\n")[:-1] == [expected[0], "", *expected[1:]]
    refused = subprocess.run(
        [sys.executable, "-m", "training.translate", str(tmp_path), "--engine", "ctranslate2"],
        input="x\n",
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode == 1 and "is not a CTranslate2 model folder (no model.bin)" in refused.stderr
