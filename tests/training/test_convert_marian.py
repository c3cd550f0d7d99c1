"""`python -m training.convert_marian`: a MarianMTModel in OPUS-MT's shape becomes this project's Transformer and
computes the same thing. Nothing is downloaded: the Marian models are built here with random weights (OPUS-MT's
layout at small sizes: swish or relu, one shared vocabulary with <pad> last, decoding from <pad>, a non-zero
final_logits_bias, OPUS-MT's generation settings) beside a SentencePiece tokenizer trained here, and the
converted folders are loaded in a process where this project cannot be imported."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, run_without_project
from marian_models import make_marian, write_opus_tokenizer

from training import convert_marian
from training.convert_marian import ConversionError, convert

SENTENCES = [
    "The animal didn't cross the street because it was too tired.",
    "A dog runs on the beach.",
    "Two children are playing in the snow.",
    "Das Tier überquerte die Straße nicht, weil es zu müde war.",
    "Ein Hund läuft am Strand.",
    "Zwei Kinder spielen im Schnee.",
]
INPUTS = ["The animal didn't cross the street because it was too tired.", "A dog runs.", "Two children play."]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_opus_tokenizer(tmp_path_factory.mktemp("spm"), SENTENCES * 20, vocab_size=60)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tokenizer_dir):
    """{activation: (source folder, converted folder, convert()'s result)} for OPUS-MT's swish and for relu."""
    root = tmp_path_factory.mktemp("marian")
    found = {}
    for seed, activation in enumerate(("swish", "relu")):
        src = make_marian(root / f"opus-mt-{activation}", tokenizer_dir, activation, seed=seed)
        found[activation] = (
            src,
            root / f"converted-{activation}",
            convert(str(src), str(root / f"converted-{activation}")),
        )
    return found


@pytest.fixture(scope="module")
def inputs(converted, tokenizer_dir):
    """A padded batch from the source tokenizer, and padded labels (-100) with their decoder mask."""
    from transformers import MarianTokenizer

    tokenizer = MarianTokenizer.from_pretrained(str(tokenizer_dir))
    batch = tokenizer(
        INPUTS,
        text_target=["Das Tier ging nicht.", "Ein Hund.", "Zwei Kinder spielen im Schnee."],
        return_tensors="pt",
        padding=True,
    )
    assert (batch["attention_mask"] == 0).any() and (batch["labels"] == tokenizer.pad_token_id).any()
    labels = batch["labels"].masked_fill(batch["labels"] == tokenizer.pad_token_id, -100)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


# The child: this project off every import path (as in test_remote_code.py), then each converted folder
# loaded through the Auto classes with trust_remote_code, run on the parent's inputs.
CHILD = textwrap.dedent(
    """
    inputs_path, out_path, folders = sys.argv[2], sys.argv[3], sys.argv[4:]

    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    torch.set_num_threads(1)
    inputs = torch.load(inputs_path)
    source = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    results = {}
    for folder in folders:
        model = AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        with torch.no_grad():
            out = model(**inputs)
            eager = model(**inputs, output_attentions=True)  # the attention views' path
            results[folder] = {
                "class": type(model).__module__ + "." + type(model).__name__,
                "tokenizer": type(tokenizer).__name__,
                "tokenized": tokenizer(["A dog runs."])["input_ids"],
                "logits": out.logits, "loss": out.loss, "eager_logits": eager.logits,
                "encoder_attentions": eager.encoder_attentions, "decoder_attentions": eager.decoder_attentions,
                "cross_attentions": eager.cross_attentions,
                "greedy": model.generate(**source, num_beams=1),
                "beam": model.generate(**source),  # the generation config: beam 4, as OPUS-MT's
                "beam_n": model.generate(**source, num_beams=3, num_return_sequences=2, max_length=12),
                "greedy_no_repeat": model.generate(**source, num_beams=1, no_repeat_ngram_size=1, max_length=17),
            }
    torch.save(results, out_path)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("modeling", "configuration", "training"))
    print(json.dumps({"project_modules": loaded}))
    """
)


@pytest.fixture(scope="module")
def child(converted, inputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("child")
    torch.save(inputs, tmp / "inputs.pt")
    folders = [str(out) for _, out, _ in converted.values()]
    result = run_without_project(CHILD, [tmp / "inputs.pt", tmp / "out.pt", *folders], tmp)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"project_modules": []}
    return torch.load(tmp / "out.pt")


def marian_outputs(src, inputs):
    """MarianMTModel's outputs, with the default (sdpa) attention and, for the attention maps, with eager attention:
    at these weight scales the two backends differ by about 4e-4 in the logits, so each is compared with its own."""
    from transformers import MarianMTModel

    marian = MarianMTModel.from_pretrained(str(src)).eval()
    eager = MarianMTModel.from_pretrained(str(src), attn_implementation="eager").eval()
    source = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = marian(**inputs)
        maps = eager(**inputs, output_attentions=True)
        return {
            "logits": out.logits,
            "loss": out.loss,
            "eager_logits": maps.logits,
            "encoder_attentions": maps.encoder_attentions,
            "decoder_attentions": maps.decoder_attentions,
            "cross_attentions": maps.cross_attentions,
            "greedy": marian.generate(**source, num_beams=1),
            "beam": marian.generate(**source),
            "beam_n": marian.generate(**source, num_beams=3, num_return_sequences=2, max_length=12),
            "greedy_no_repeat": marian.generate(**source, num_beams=1, no_repeat_ngram_size=1, max_length=17),
        }


# ------------------------------------------------------------------------------------------ exactness


def test_concatenated_sinusoids_are_marians_table_bit_for_bit():
    from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

    import modeling.modeling_transformer as mt

    for positions, d_model in ((512, 512), (33, 7)):  # OPUS-MT's size, an odd width
        marian = MarianSinusoidalPositionalEmbedding(positions, d_model).create_weight()
        assert torch.equal(mt.sinusoidal_table(positions, d_model, "concatenated"), marian)
    # the same sines and cosines as the paper's interleaved table, in Marian's order (float32 there: 1e-4 close)
    interleaved = mt.sinusoidal_table(512, 512)
    reordered = torch.cat([interleaved[:, 0::2], interleaved[:, 1::2]], dim=1)
    torch.testing.assert_close(mt.sinusoidal_table(512, 512, "concatenated"), reordered, atol=1e-4, rtol=0)
    assert not torch.equal(interleaved, mt.sinusoidal_table(512, 512, "concatenated"))


@pytest.mark.parametrize("activation", ["swish", "relu"])
def test_converted_model_computes_what_marian_computes(activation, converted, inputs, child):
    src, out, result = converted[activation]
    got, want = child[str(out)], marian_outputs(src, inputs)
    assert got["class"].startswith("transformers_modules.") and got["class"].endswith(
        "TransformerForConditionalGeneration"
    )

    difference = (got["logits"] - want["logits"]).abs().max().item()
    assert difference <= 1e-4, difference
    assert (got["eager_logits"] - want["eager_logits"]).abs().max().item() <= 1e-4
    assert result["max_logit_difference"] <= 1e-4
    torch.testing.assert_close(got["loss"], want["loss"], atol=1e-5, rtol=0)  # plain cross-entropy, as Marian's
    for family in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert len(got[family]) == 2
        for ours, theirs in zip(got[family], want[family]):
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    assert torch.equal(got["greedy"], want["greedy"])
    assert torch.equal(got["beam"], want["beam"])
    assert torch.equal(got["beam_n"], want["beam_n"])
    # Random models repeat themselves; with no token allowed twice, each step ranks the rest of the vocabulary.
    assert torch.equal(got["greedy_no_repeat"], want["greedy_no_repeat"])
    assert want["greedy_no_repeat"].shape[1] > 8
    # the outputs say something: each sentence its own, and beam search chose differently from greedy somewhere
    assert len({tuple(row) for row in want["greedy"].tolist()}) == len(INPUTS)
    assert not torch.equal(want["greedy"], want["beam"])


def test_the_check_batch_logits_difference_is_small_and_reported(converted, capsys):
    """convert() compares the two models itself before writing; main() prints the measured difference."""
    src, _, _ = converted["swish"]
    out = src.parent / "printed"
    assert convert_marian.main([str(src), str(out)]) == 0
    line = capsys.readouterr().out
    assert "max logit difference to MarianMTModel" in line and str(out) in line


def test_the_paper_defaults_and_the_shipped_model_are_unchanged():
    from configuration import TransformerConfig
    from modeling import TransformerForConditionalGeneration

    config = TransformerConfig()
    assert (config.sinusoidal_layout, config.add_final_logits_bias) == ("interleaved", False)
    shipped = TransformerConfig.from_pretrained(os.path.join(ROOT, "space", "model"))  # written before the switches
    assert (shipped.sinusoidal_layout, shipped.add_final_logits_bias) == ("interleaved", False)
    from conftest import tiny_config

    assert TransformerForConditionalGeneration(tiny_config()).lm_head.bias is None
    with pytest.raises(
        ValueError, match=r"unknown `sinusoidal_layout` 'marian'; choose one of interleaved, concatenated"
    ):
        TransformerConfig(sinusoidal_layout="marian")
    with pytest.raises(ValueError, match=r"`add_final_logits_bias` must be True or False"):
        TransformerConfig(add_final_logits_bias="yes")


def test_final_logits_bias_trains_and_survives_save_and_load(tmp_path):
    """A model of this project with Marian's switches: the bias starts at zero, enters the logits and the
    label-smoothed loss, gets a gradient; saved and loaded, its logits are unchanged (positions recomputed)."""
    import torch.nn.functional as F
    from conftest import tiny_config

    from modeling import TransformerForConditionalGeneration
    from modeling.modeling_transformer import sinusoidal_table

    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(
        tiny_config(
            add_final_logits_bias=True, sinusoidal_layout="concatenated", activation_function="swish", dropout=0.0
        )
    )
    assert torch.equal(model.lm_head.bias, torch.zeros(99))
    with torch.no_grad():
        model.lm_head.bias.normal_()
    batch = {
        "input_ids": torch.tensor([[5, 6, 7, 2], [8, 9, 2, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "labels": torch.tensor([[10, 11, 2], [12, 2, -100]]),
    }
    out = model(**batch)
    hidden = model.model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        decoder_input_ids=model.prepare_decoder_input_ids_from_labels(batch["labels"]),
    ).last_hidden_state
    torch.testing.assert_close(out.logits, hidden @ model.lm_head.weight.T + model.lm_head.bias)
    torch.testing.assert_close(
        out.loss,
        F.cross_entropy(
            out.logits.reshape(-1, 99), batch["labels"].reshape(-1), label_smoothing=0.1, ignore_index=-100
        ),
    )
    out.loss.backward()
    assert model.lm_head.bias.grad is not None and model.lm_head.bias.grad.abs().sum() > 0
    model.eval().save_pretrained(tmp_path)
    loaded = TransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    assert torch.equal(loaded.model.encoder.embed_positions.weight, sinusoidal_table(64, 16, "concatenated"))


# ------------------------------------------------------------------------------------------ the Hub folder


def test_output_is_a_complete_hub_folder(converted, tokenizer_dir):
    from huggingface_hub import ModelCard
    from transformers import AutoTokenizer, MarianTokenizer

    src, out, result = converted["swish"]
    files = set(os.listdir(out))
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "configuration_transformer.py",
        "modeling_transformer.py",
        "fast_paths.py",
        "pipeline_translation.py",
        "README.md",
        "source.spm",
        "target.spm",
        "vocab.json",
        "tokenizer_config.json",
    } <= files
    assert not [f for f in os.listdir(out.parent) if ".partial" in f or f.endswith(".old")]
    for name in ("modeling_transformer.py", "configuration_transformer.py"):
        assert (out / name).read_bytes() == open(os.path.join(ROOT, name.split("_")[0], name), "rb").read()
    for name in ("source.spm", "target.spm", "vocab.json"):  # copied as they are
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert result["tokenizer_files"] == ["source.spm", "target.spm", "vocab.json", "tokenizer_config.json"]

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "transformer" and config["auto_map"]["AutoModelForSeq2SeqLM"].startswith(
        "modeling_transformer."
    )
    assert "translation" in config["custom_pipelines"]
    assert (config["source_lang"], config["target_lang"], config["trained_on"]) == ("en", "de", "OPUS")
    assert {
        k: config[k]
        for k in (
            "activation_function",
            "sinusoidal_layout",
            "add_final_logits_bias",
            "label_smoothing",
            "normalize_before",
            "scale_embedding",
            "tie_word_embeddings",
        )
    } == {
        "activation_function": "swish",
        "sinusoidal_layout": "concatenated",
        "add_final_logits_bias": True,
        "label_smoothing": 0.0,
        "normalize_before": False,
        "scale_embedding": True,
        "tie_word_embeddings": True,
    }
    vocab = len(json.loads((src / "vocab.json").read_text()))
    assert (config["pad_token_id"], config["decoder_start_token_id"], config["eos_token_id"]) == (
        vocab - 1,
        vocab - 1,
        0,
    )

    def generation(folder):
        return {
            k: v
            for k, v in json.loads((folder / "generation_config.json").read_text()).items()
            if k != "transformers_version"
        }

    assert generation(out) == generation(src)  # bad_words_ids=[[pad]], forced eos, beam 4: carried over

    card = ModelCard.load(out / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.language == ["en", "de"]
    assert str(src) in card.text and "convert_marian" in card.text

    tokenizer = AutoTokenizer.from_pretrained(str(out), trust_remote_code=True)
    assert isinstance(tokenizer, MarianTokenizer)
    original = MarianTokenizer.from_pretrained(str(src))
    assert tokenizer(INPUTS)["input_ids"] == original(INPUTS)["input_ids"]
    assert "▁" in "".join(tokenizer.convert_ids_to_tokens(tokenizer("A dog runs.")["input_ids"]))


def test_translation_pipeline_gives_marians_translation(converted):
    from transformers import MarianMTModel, MarianTokenizer, pipeline

    src, out, _ = converted["relu"]
    translator = pipeline("translation", model=str(out), trust_remote_code=True)
    tokenizer = MarianTokenizer.from_pretrained(str(src))
    marian = MarianMTModel.from_pretrained(str(src)).eval()
    with torch.no_grad():
        expected = tokenizer.decode(
            marian.generate(**tokenizer(INPUTS[:1], return_tensors="pt"))[0], skip_special_tokens=True
        )
    assert translator(INPUTS[0]) == [{"translation_text": expected.strip()}]


def test_source_without_tokenizer_or_card_converts(tmp_path, tokenizer_dir):
    src = make_marian(tmp_path / "bare", tokenizer_dir, card=False)
    for name in os.listdir(tokenizer_dir):
        os.remove(src / name)
    result = convert(str(src), str(tmp_path / "out"))
    assert result["tokenizer_files"] == []
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: unknown" in card and "states no license" in card


def test_a_hub_id_is_downloaded_and_named_in_the_card(marian_src, tmp_path, monkeypatch):
    """No network here: the Hub's file listing and download are stood in for by the local Marian folder."""
    import huggingface_hub
    from huggingface_hub import ModelCard

    asked = {}

    def snapshot_download(repo_id, allow_patterns):
        asked.update(repo_id=repo_id, allow_patterns=allow_patterns)
        return str(marian_src)

    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "list_repo_files",
        lambda self, repo_id: ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "source.spm"],
    )
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    convert("Helsinki-NLP/opus-mt-en-de", str(tmp_path / "out"))
    assert asked["repo_id"] == "Helsinki-NLP/opus-mt-en-de"
    assert "model.safetensors*" in asked["allow_patterns"] and not any(
        p.startswith(("pytorch_model", "tf_model")) for p in asked["allow_patterns"]
    )  # one copy of the weights
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.base_model == "Helsinki-NLP/opus-mt-en-de"
    assert "[Helsinki-NLP/opus-mt-en-de](https://huggingface.co/Helsinki-NLP/opus-mt-en-de)" in card.text

    def offline(repo_id, allow_patterns):
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConversionError, match=r"could not download 'Helsinki-NLP/opus-mt-en-de' .*offline mode"):
        convert("Helsinki-NLP/opus-mt-en-de", str(tmp_path / "again"))
    assert not (tmp_path / "again").exists()


# ------------------------------------------------------------------------------------------ refusals


@pytest.fixture(scope="module")
def marian_src(tmp_path_factory, tokenizer_dir):
    return make_marian(tmp_path_factory.mktemp("plain") / "opus-mt", tokenizer_dir)


def patched(marian_src, tmp_path, **changes):
    """A copy of the Marian folder whose config.json has `changes` (None removes a key)."""
    folder = tmp_path / "patched"
    shutil.copytree(marian_src, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        config.pop(key, None) if value is None else config.__setitem__(key, value)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


REFUSED = [
    (dict(model_type="bart"), r"'bart' model \(config.json model_type\), not Marian"),
    (dict(architectures=["MarianForCausalLM"]), r"MarianForCausalLM, not MarianMTModel.*decoder-only"),
    (dict(decoder_vocab_size=7), r"separate decoder vocabulary \(decoder_vocab_size=7"),
    (
        dict(share_encoder_decoder_embeddings=False),
        r"separate source and target embeddings \(share_encoder_decoder_embeddings=false\)",
    ),
    (dict(tie_word_embeddings=False), r"output projection untied from the embeddings \(tie_word_embeddings=false\)"),
    (dict(normalize_before=True), r"pre-LN residual blocks \(normalize_before=true\)"),
    (dict(add_final_layer_norm=True), r"final LayerNorm on each stack \(add_final_layer_norm=true\)"),
    (dict(normalize_embedding=True), r"LayerNorm on the embeddings \(normalize_embedding=true, layernorm_embedding\)"),
    (dict(static_position_embeddings=False), r"learned positions \(static_position_embeddings=false\)"),
    (dict(activation_function="gelu_fast"), r"the activation 'gelu_fast': this model offers relu, gelu"),
    (dict(pad_token_id=None), r"no pad_token_id"),
]


@pytest.mark.parametrize(
    "changes, message", REFUSED, ids=[next(iter(c)) + "=" + str(next(iter(c.values()))) for c, _ in REFUSED]
)
def test_what_cannot_be_represented_exactly_is_refused_by_name(changes, message, marian_src, tmp_path):
    src = patched(marian_src, tmp_path, **changes)
    with pytest.raises(ConversionError, match=message):
        convert(str(src), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["patched"]  # nothing written, no temporary folder left


def test_the_legacy_keys_opus_mt_configs_carry_are_accepted(marian_src, tmp_path):
    """Older OPUS-MT config.json files name the variants they do not use (all false/true as MarianMTModel runs)."""
    src = patched(
        marian_src,
        tmp_path,
        normalize_before=False,
        add_final_layer_norm=False,
        normalize_embedding=False,
        static_position_embeddings=True,
        add_bias_logits=False,
        num_beams=4,
        max_length=24,
    )
    assert convert(str(src), str(tmp_path / "out"))["max_logit_difference"] <= 1e-4


def test_weights_marian_does_not_use_are_refused(marian_src, tmp_path):
    from safetensors.torch import load_file, save_file

    src = patched(marian_src, tmp_path)
    weights = load_file(src / "model.safetensors")
    weights["model.encoder.layernorm_embedding.weight"] = torch.ones(32)
    save_file(weights, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        ConversionError, match=r"weights MarianMTModel does not use: model.encoder.layernorm_embedding.weight"
    ):
        convert(str(src), str(tmp_path / "out"))


def test_our_own_model_folder_is_not_a_marian_model(tmp_path):
    from conftest import tiny_config

    from modeling import TransformerForConditionalGeneration

    TransformerForConditionalGeneration(tiny_config()).save_pretrained(tmp_path / "ours")
    with pytest.raises(ConversionError, match=r"'transformer' model .*not Marian"):
        convert(str(tmp_path / "ours"), str(tmp_path / "out"))


def test_missing_source_and_folder_without_config(tmp_path):
    with pytest.raises(ConversionError, match=r"source '.*nowhere' does not exist"):
        convert(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match=r"not a model folder \(no config.json in it\)"):
        convert(str(tmp_path / "empty"), str(tmp_path / "out"))


# ------------------------------------------------------------------------------------------ OUT


def test_existing_output_is_refused_unless_overwrite(marian_src, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match=r"exists and is not empty; pass --overwrite"):
        convert(str(marian_src), str(out))
    assert os.listdir(out) == ["keep.txt"]
    # --overwrite replaces only a model folder this project wrote, never the user's files.
    with pytest.raises(
        ConversionError,
        match=r"--overwrite refused: output folder .*out holds keep.txt, which is not "
        r"a model folder this project wrote",
    ):
        convert(str(marian_src), str(out), overwrite=True)
    assert os.listdir(out) == ["keep.txt"]
    os.remove(out / "keep.txt")
    convert(str(marian_src), str(out))
    convert(str(marian_src), str(out), overwrite=True)  # an earlier conversion is replaced
    assert "model.safetensors" in os.listdir(out)
    assert sorted(os.listdir(tmp_path)) == ["out"]

    empty = tmp_path / "empty"
    empty.mkdir()
    convert(str(marian_src), str(empty))  # an empty folder is filled
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConversionError, match=r"is a file"):
        convert(str(marian_src), str(tmp_path / "file"))


def test_a_failure_while_writing_leaves_no_half_written_output(marian_src, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(convert_marian, "model_card", fail)
    with pytest.raises(OSError, match="disk full"):
        convert(str(marian_src), str(tmp_path / "out"))
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    convert(str(marian_src), str(tmp_path / "out"))
    before = sorted(os.listdir(tmp_path / "out"))
    monkeypatch.setattr(convert_marian, "model_card", fail)
    with pytest.raises(OSError, match="disk full"):
        convert(str(marian_src), str(tmp_path / "out"), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["out"] and sorted(os.listdir(tmp_path / "out")) == before


def test_overwrite_never_replaces_the_source_or_a_folder_holding_it(marian_src, tmp_path):
    import shutil

    src = tmp_path / "models" / "opus"
    shutil.copytree(marian_src, src)
    before = sorted(os.listdir(src))
    for out in (src, tmp_path / "models"):
        with pytest.raises(
            ConversionError,
            match=r"is or contains the source .*opus; writing it would replace the "
            r"model being converted",
        ):
            convert(str(src), str(out), overwrite=True)
    assert sorted(os.listdir(src)) == before


def test_command_line_errors_are_one_line(tmp_path, capsys):
    assert convert_marian.main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m training.convert_marian: error: source") and "Traceback" not in err
    result = subprocess.run(
        [sys.executable, "-m", "training.convert_marian", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "--overwrite" in result.stdout
