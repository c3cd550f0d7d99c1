"""Export a model of this project to Marian's format (`MarianMTModel`), and from there to CTranslate2.

    python -m training.export_marian MODEL OUT [--overwrite]
    python -m training.export_marian MODEL OUT --ctranslate2 CT2_OUT [--quantization int8] [--overwrite]
    python -m training.export_marian MODEL OUT --onnx ONNX_OUT [--overwrite]

MODEL is a folder this project wrote (training.export, convert_marian) or a Hub id of one. OUT becomes a complete
MarianMTModel folder: safetensors weights, config.json (model_type "marian", no remote code), the generation
config, the tokenizer files and a model card naming MODEL. It is the inverse of `training.convert_marian`.

The architectures are the same but for one detail: this project's sinusoids are interleaved (sin in dimension
2i, cos in 2i + 1; section 3.5), Marian's are concatenated (all sines, then all cosines). That is a fixed
permutation of the model dimension, so every weight that reads the residual stream (embeddings, q/k/v, fc1,
lm_head: input columns) or writes it (out_proj, fc2: output rows and biases; every LayerNorm) is permuted, and
the exported model computes the same function. A model already in Marian's layout (`sinusoidal_layout=
"concatenated"`, e.g. one converted from OPUS-MT) is exported unpermuted.

Before OUT exists, the folder is written beside it and loaded back as MarianMTModel + AutoTokenizer: on real
sentences and on a padded batch covering the vocabulary, the logits must agree with MODEL's to 1e-4 and greedy
and beam outputs must be the same tokens; then it is renamed into place. What MarianMTModel cannot represent is
refused by name: learned positions, pre-LN (with its final LayerNorms), a LayerNorm epsilon other than 1e-5.

Tokenizer: MarianTokenizer reads only SentencePiece files (source.spm, target.spm, vocab.json). A model with
those (converted from OPUS-MT) keeps them; this project's own BPE tokenizer (`tokenizer.json`, from the
`tokenizers` library) has no exact SentencePiece equivalent, so it is shipped as it is, with tokenizer_config.json
naming `PreTrainedTokenizerFast` (the class transformers 4 knows by that name; transformers 5 loads it as
TokenizersBackend): AutoTokenizer then loads it for a MarianMTModel folder, where it would otherwise look for
MarianTokenizer's files. CTranslate2's converter builds its vocabulary from the same AutoTokenizer.

Untied embeddings export too (MarianConfig's share_encoder_decoder_embeddings=false, tie_word_embeddings=false),
but `convert_marian` refuses those, so only tied models make the round trip back.

--ctranslate2 CT2_OUT also writes a CTranslate2 model of OUT (weights in --quantization, float32 by default,
plus the tokenizer files), atomically, after checking its translations of the same sentences against
MarianMTModel's: float32 must give the same tokens (greedy and beam), other types are written with their
agreement reported. CTranslate2's own `ct2-transformers-converter` is not used for this: its Marian loader
assumes OPUS-MT's layout, dropping the last token of the vocabulary (OPUS-MT's <pad>; here it then refuses the
vocabulary size) and starting the decoder from a zero embedding instead of the decoder start token. The loader
here is CTranslate2's BART loader with Marian's settings (post-LN, no embedding LayerNorm), which keeps both.

--onnx ONNX_OUT also writes ONNX graphs of OUT for ONNX Runtime, atomically, after checking them against
MarianMTModel (logits to 1e-4, the same greedy and beam tokens). optimum's exporter (optimum-onnx, whose every
release requires transformers < 4.58) cannot be installed next to this project's transformers 5, so the graphs
are exported here with torch.onnx.export (dynamo): encoder.onnx, cross_attention.onnx (each decoder layer's keys
and values of the encoder states, once per sentence) and decoder.onnx (one step with the self-attention cache).
`load_onnx_model(ONNX_OUT)` wraps them as a transformers model whose generate() runs the usual greedy and beam
search with ONNX Runtime doing every forward pass; `python -m training.translate ONNX_OUT --engine onnxruntime`
uses it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys

from .atomic_files import staged_folder
from .evaluate import looks_local
from .export import FAST_TOKENIZER_FILES, MODEL_FOLDER_FILE, TOKENIZER_FILE, TOKENIZER_FILES, replace_problem
from .space_modules import model_metadata

TOLERANCE = 1e-4  # the largest logit difference accepted between MODEL and the exported MarianMTModel
MAX_CHECK_LENGTH = 48  # generate() length cap of the check: enough for real sentences, quick for random models
MARIAN_LAYER_NORM_EPS = 1e-5  # MarianMTModel's LayerNorms are torch's default; MarianConfig has no setting
CHECK_SENTENCES = [
    "A man in an orange hat starring at something.",
    "A Boston Terrier is running on lush green grass in front of a white fence.",
    "A girl in karate uniform breaking a stick with a front kick.",
    "Five people wearing winter jackets and helmets stand in the snow, with snowmobiles in the background.",
    "People are fixing the roof of a house.",
    "Two dogs play in the water.",
    "The animal didn't cross the street because it was too tired.",
    "A little girl climbs into a wooden playhouse.",
]
# What a CTranslate2 model folder written here holds: only such a folder is replaced by --overwrite.
CT2_FOLDER_FILE = re.compile(
    r"model\.bin|config\.json|(shared|source|target)_vocabulary\.(json|txt)|vocabulary\.(json|txt)"
    rf"|{TOKENIZER_FILE}|generation_config\.json|README\.md|converted_from\.json"
)
QUANTIZATIONS = ("float32", "int8", "int8_float32", "int16", "float16", "bfloat16", "int8_float16", "int8_bfloat16")


class ExportError(ValueError):
    """MODEL cannot be exported exactly, or OUT cannot be written; the message says why and what to do."""


# --------------------------------------------------------------------------------------------- the source


def resolve_model(src: str) -> tuple[str, bool]:
    """(a local folder holding MODEL, whether MODEL is a Hub id); a Hub id is downloaded as convert_marian does."""
    if not looks_local(src):
        from .convert_marian import ConversionError, resolve_source

        try:
            return resolve_source(src)
        except ConversionError as e:
            raise ExportError(str(e)) from None
    path = os.path.expanduser(src)
    if not os.path.isdir(path):
        what = "is a file, not a model folder" if os.path.exists(path) else f"does not exist ({os.path.abspath(path)})"
        raise ExportError(f"model {src!r} {what}; pass a folder this project wrote (one with config.json) or a Hub id.")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ExportError(f"model {src!r} is not a model folder (no config.json in it).")
    return path, False


def load_config(folder: str, src: str):
    """MODEL's TransformerConfig, refusing a folder of another model type."""
    from configuration import TransformerConfig

    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise ExportError(f"cannot read {src}/config.json: {e}") from None
    if model_type != "transformer":
        raise ExportError(
            f"{src} is a {model_type!r} model (config.json model_type), not one of this project's "
            "('transformer'); only those are exported."
        )
    try:
        return TransformerConfig.from_pretrained(folder)
    except ValueError as e:
        raise ExportError(f"{src}/config.json is not a valid TransformerConfig: {e}") from None


def refusals(config) -> list[str]:
    """What in `config` MarianMTModel cannot represent exactly (empty when it exports)."""
    from transformers.activations import ACT2FN

    found = []
    if config.position_embedding_type != "sinusoidal":
        found.append(
            f"{config.position_embedding_type} positions (position_embedding_type): MarianMTModel's "
            "positions are always sinusoids it computes; MarianConfig has no learned positions."
        )
    if config.normalize_before:
        found.append(
            "pre-LN residual blocks with a final LayerNorm on each stack (normalize_before=true): "
            "MarianMTModel is post-LN, LayerNorm(x + Sublayer(x)), with no final LayerNorm, and "
            "MarianConfig has no setting for either."
        )
    if config.layer_norm_eps != MARIAN_LAYER_NORM_EPS:
        found.append(
            f"LayerNorm epsilon {config.layer_norm_eps:g} (layer_norm_eps): MarianMTModel's LayerNorms use "
            f"{MARIAN_LAYER_NORM_EPS:g} and MarianConfig has no setting for it."
        )
    if config.activation_function not in ACT2FN:
        found.append(
            f"the activation {config.activation_function!r}: MarianConfig's activation_function takes "
            "transformers' ACT2FN names."
        )
    return found


def check_exportable(config, src: str) -> None:
    if found := refusals(config):
        raise ExportError(
            f"{src} cannot be exported exactly to MarianMTModel: it has {' It has '.join(found)} "
            "Keep this model in this project's format; only what Marian represents exactly is exported."
        )


def load_model(folder: str, src: str):
    """This project's model from `folder`, refusing a checkpoint with missing or unused weights."""
    import modeling  # noqa: F401  (registers the classes)
    from modeling import TransformerForConditionalGeneration

    from .convert_marian import load_or_refuse

    load = TransformerForConditionalGeneration.from_pretrained
    model, info = load_or_refuse(load, folder, ExportError(f"could not load {src}"), output_loading_info=True)
    gaps = sorted(info.get("missing_keys") or []) + sorted(info.get("unexpected_keys") or [])
    if gaps or info.get("mismatched_keys"):
        raise ExportError(
            f"{src} is not a complete checkpoint (missing, unused or misshapen weights: "
            f"{', '.join(map(str, gaps[:5])) or info.get('mismatched_keys')}); it cannot be exported."
        )
    return model.eval()


def load_tokenizer(folder: str, src: str):
    from transformers import AutoTokenizer

    if not any(os.path.isfile(os.path.join(folder, name)) for name in ("tokenizer.json", "source.spm")):
        raise ExportError(
            f"{src} has no tokenizer (tokenizer.json, or Marian's source.spm); a Marian folder needs "
            "one. Save the model's tokenizer into the folder first."
        )
    from .convert_marian import load_or_refuse

    return load_or_refuse(AutoTokenizer.from_pretrained, folder, ExportError(f"could not load the tokenizer of {src}"))


# --------------------------------------------------------------------------------- the permutation


def residual_permutation(config):
    """Index p with marian_hidden = our_hidden[..., p]: the interleaved sin/cos dimensions (0, 2, 4, ... are the
    sines, 1, 3, 5, ... the cosines) in Marian's order, sines first; the identity for a concatenated model."""
    import torch

    d = config.d_model
    if config.sinusoidal_layout == "concatenated":
        return torch.arange(d)
    return torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])


def residual_axis(name: str) -> int | None:
    """Which axis of the weight `name` (this project's names) runs along the residual stream: 1 for a weight that
    reads it, 0 for one that writes it (and LayerNorms), None for one inside a sublayer. Unknown names raise."""
    if "layer_norm" in name or re.search(r"\.(out_proj|fc2)\.(weight|bias)$", name):
        return 0
    if re.search(r"\.(q_proj|k_proj|v_proj|fc1)\.weight$", name) or re.search(r"(embed_tokens|shared)\.weight$", name):
        return 1
    if name == "lm_head.weight":
        return 1
    if re.search(r"\.(q_proj|k_proj|v_proj|fc1)\.bias$", name) or name == "lm_head.bias":
        return None
    raise ExportError(
        f"no rule for the weight {name}: it is not known whether it touches the residual stream, "
        "so the model cannot be permuted safely. Nothing was written."
    )


def permute_residual(state: dict, permutation) -> dict:
    """`state` (this project's names) with the model dimension permuted: state[name] indexed by `permutation`
    along its residual axis. Indexing is exact, so the inverse permutation gives the tensors back bit for bit."""
    permuted = {}
    for name, tensor in state.items():
        axis = residual_axis(name)
        permuted[name] = tensor if axis is None else tensor.index_select(axis, permutation).contiguous()
    return permuted


def marian_names(state: dict) -> dict:
    """This project's names to MarianMTModel's: the feed-forward layers sit in the layer itself, and the logits'
    bias is the (1, V) buffer `final_logits_bias`."""
    renamed = {}
    for name, tensor in state.items():
        if name == "lm_head.bias":
            renamed["final_logits_bias"] = tensor.reshape(1, -1)
        else:
            renamed[name.replace(".ffn.fc1.", ".fc1.").replace(".ffn.fc2.", ".fc2.")] = tensor
    return renamed


# ------------------------------------------------------------------------------------------ the export


def marian_config(config):
    """The MarianConfig of a MarianMTModel computing what this project's model with `config` computes."""
    from transformers import MarianConfig

    from .convert_marian import shared_settings

    values = shared_settings(config)
    values["init_std"] = float(config.init_std if config.init_std is not None else config.d_model**-0.5)
    tied = bool(config.tie_word_embeddings)
    return MarianConfig(
        **values,
        decoder_vocab_size=config.vocab_size,
        share_encoder_decoder_embeddings=tied,
        tie_word_embeddings=tied,
        forced_eos_token_id=None,  # MarianConfig's default (0) would force a token this model never forces
        use_cache=True,
        architectures=["MarianMTModel"],
    )


def to_marian(model):
    """A MarianMTModel holding `model`'s weights, permuted into Marian's sinusoid layout, in their dtype."""
    from transformers import MarianMTModel

    from .convert_marian import with_weights

    marian = MarianMTModel(marian_config(model.config)).to(model.dtype)
    weights = marian_names(permute_residual(model.state_dict(), residual_permutation(model.config)))
    return with_weights(marian, weights, model, ExportError, "; nothing was written.")


# ------------------------------------------------------------------------------------------ the check


def beam_settings(generation_config) -> dict:
    """The beam search both engines run in the check: the model's own beams and length penalty (4 beams for a
    greedy model), stopping once that many hypotheses are finished (early_stopping, as CTranslate2 stops)."""
    beams = generation_config.num_beams if (generation_config.num_beams or 1) > 1 else 4
    penalty = float(generation_config.length_penalty or 1.0)
    return {"num_beams": beams, "length_penalty": penalty, "early_stopping": True}


def check_length(generation_config) -> int:
    return min(generation_config.max_length or MAX_CHECK_LENGTH, MAX_CHECK_LENGTH)


def decode_both(source, exported, batch: dict, **settings) -> tuple:
    import torch

    with torch.no_grad():
        return (
            source.generate(**batch, do_sample=False, **settings),
            exported.generate(**batch, do_sample=False, **settings),
        )


def max_logit_difference(source, exported, batch: dict, decoder_input_ids) -> float:
    """Largest |logit difference| over the decoder positions generation reads: up to each row's first end token
    (the padding after it is never decoded from)."""
    import torch

    inputs = dict(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids
    )
    is_end = (decoder_input_ids == source.config.eos_token_id).int()
    decoded = (is_end.cumsum(1) - is_end) == 0  # no end token before this position
    with torch.no_grad():
        difference = (source(**inputs).logits.float() - exported(**inputs).logits.float()).abs().amax(-1)
    return difference[decoded].max().item()


def compare(source, exported, tokenizer) -> dict:
    """How `exported` (MarianMTModel) agrees with `source` on CHECK_SENTENCES and on convert_marian's padded batch
    over the vocabulary: the largest logit difference, and whether greedy and beam outputs are equal."""
    from .convert_marian import check_batch

    limit = source.config.max_position_embeddings  # Marian has positions up to here only
    batch = dict(tokenizer(CHECK_SENTENCES, return_tensors="pt", padding=True, truncation=True, max_length=limit))
    length = min(check_length(source.generation_config), limit)
    greedy = decode_both(source, exported, batch, num_beams=1, max_length=length)
    beam = decode_both(source, exported, batch, max_length=length, **beam_settings(source.generation_config))
    random_batch = check_batch(source.config)
    shifted = source.prepare_decoder_input_ids_from_labels(random_batch["labels"])
    difference = max(
        max_logit_difference(source, exported, batch, greedy[0]),
        max_logit_difference(source, exported, batch, beam[0]),
        max_logit_difference(source, exported, random_batch, shifted),
    )
    return {
        "max_logit_difference": difference,
        "same_greedy": same_tokens(*greedy),
        "same_beam": same_tokens(*beam),
        "sentences": len(CHECK_SENTENCES),
    }


def same_tokens(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def check_agreement(found: dict, src: str) -> None:
    difference = found["max_logit_difference"]
    if not difference <= TOLERANCE or not found["same_greedy"] or not found["same_beam"]:
        raise ExportError(
            f"the exported MarianMTModel does not reproduce {src} (max logit difference {difference:.3g}, greedy "
            f"outputs {'equal' if found['same_greedy'] else 'different'}, beam outputs "
            f"{'equal' if found['same_beam'] else 'different'}); nothing was written."
        )


def check_tokenizer(source_tokenizer, folder: str) -> str:
    """The class AutoTokenizer loads from the written `folder`, refusing one that tokenizes differently."""
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(folder)
    except Exception as e:
        raise ExportError(
            f"AutoTokenizer cannot load the exported tokenizer: {type(e).__name__}: {e}; nothing was written."
        ) from None
    if (
        loaded(CHECK_SENTENCES)["input_ids"] != source_tokenizer(CHECK_SENTENCES)["input_ids"]
        or loaded.get_vocab() != source_tokenizer.get_vocab()
    ):
        raise ExportError("the exported tokenizer does not tokenize as the model's own; nothing was written.")
    return type(loaded).__name__


# ----------------------------------------------------------------------------------------- the folder


def write_tokenizer(folder: str, out: str) -> list[str]:
    """The source's tokenizer files in `out`: Marian's SentencePiece files as they are, or this project's
    tokenizer.json with tokenizer_config.json naming PreTrainedTokenizerFast (MarianTokenizer cannot read it)."""
    if os.path.isfile(os.path.join(folder, "source.spm")):
        from .convert_marian import copy_tokenizer_files

        return copy_tokenizer_files(folder, out)
    copied = []
    for name in FAST_TOKENIZER_FILES:
        if name != "tokenizer_config.json" and os.path.isfile(os.path.join(folder, name)):
            shutil.copyfile(os.path.join(folder, name), os.path.join(out, name))
            copied.append(name)
    settings = {}
    path = os.path.join(folder, "tokenizer_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            settings = json.load(fh)
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"  # not TokenizersBackend: transformers 4 knows this one
    for key in ("is_local", "local_files_only"):  # how the source was loaded, not a setting of the tokenizer
        settings.pop(key, None)
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(settings, fh, indent=2, ensure_ascii=False)
    return [*copied, "tokenizer_config.json"]


def source_license(folder: str) -> tuple[str | None, list[str]]:
    from .convert_marian import source_card

    card = source_card(folder)
    langs = card.get("language") or []
    return card.get("license"), [langs] if isinstance(langs, str) else [str(x) for x in langs]


def model_card(src: str, is_hub: bool, folder: str, config, found: dict, tokenizer_class: str, command: str) -> str:
    from huggingface_hub import ModelCard

    from .convert_marian import source_license_line, source_link_and_card_data

    license_, langs = source_license(folder)
    link, data = source_link_and_card_data(
        src, is_hub, langs, license_, ["translation", "marian", "vanilla-transformer"]
    )
    layout = (
        'already in Marian\'s layout (`sinusoidal_layout="concatenated"`), so the weights are copied unpermuted'
        if config.sinusoidal_layout == "concatenated"
        else "interleaved there (sin in dimension 2i, cos in 2i + 1) and concatenated in Marian (all sines, then all "
        "cosines); the export permutes the model dimension of every weight that reads or writes the residual "
        "stream accordingly"
    )
    license_line = source_license_line(src, license_, "it")
    content = f"""---
{data.to_yaml()}
---

# {os.path.basename(src.rstrip("/"))} as a MarianMTModel

{link}, a model of vanilla-transformer (the Transformer of "Attention Is All You Need"), exported to
transformers' `MarianMTModel`: no remote code is needed. {license_line}

- the only difference between the two architectures is the sinusoid layout: {layout}
- exact: on {found["sentences"]} real sentences and a padded batch over the vocabulary the logits differ from the
  source's by at most {found["max_logit_difference"]:.1e}, and greedy and beam-search outputs are the same tokens
- tokenizer: loaded by `AutoTokenizer` as `{tokenizer_class}`
- Marian computes positions only up to `max_position_embeddings` ({config.max_position_embeddings}); the source
  extends its sinusoids to any length

## Use

```python
from transformers import AutoTokenizer, MarianMTModel

model = MarianMTModel.from_pretrained("<this folder>")
tokenizer = AutoTokenizer.from_pretrained("<this folder>")
batch = tokenizer(["{CHECK_SENTENCES[-2]}"], return_tensors="pt")
print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))
```

For CTranslate2 use `python -m training.export_marian {src} OUT --ctranslate2 CT2_OUT`, not
`ct2-transformers-converter`: CTranslate2's Marian loader assumes OPUS-MT's vocabulary, whose last token is the
<pad> it drops (here it refuses the vocabulary size), and starts the decoder from a zero embedding, not from
the decoder start token this model starts from.

## Reproduce

```
{command}
```
"""
    ModelCard(content)  # parses the YAML header: a malformed card fails here
    return content


def is_model_folder(path: str, model_type: str, names_rule) -> bool:
    """`path` holds nothing but files `names_rule` accepts, and a config.json of `model_type` (None: any)."""
    names = os.listdir(path)
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return False
    return (
        all(names_rule.fullmatch(n) for n in names)
        and isinstance(found, dict)
        and (model_type is None or found.get("model_type") == model_type)
    )


def out_problem(out: str, overwrite: bool, kind: str) -> str | None:
    """Why OUT (a `kind` folder: "marian", "ctranslate2" or "onnx") may not be written, or None. Not empty needs
    --overwrite, and even then OUT must hold nothing but a model: one of this project's (replace_problem's
    rule), a Marian folder of the same files, or a CTranslate2 or ONNX model written here."""
    if not os.path.lexists(out):
        return None if os.path.isdir(os.path.dirname(out)) else f"the folder that would hold {out} does not exist."
    if not os.path.isdir(out) or os.path.islink(out):
        return f"{out} is not a folder; name a folder (it is created)."
    if not os.listdir(out):
        return None
    if not overwrite:
        return f"output folder {out} exists and is not empty; pass --overwrite to replace it."
    if kind == "marian" and is_model_folder(out, "marian", MODEL_FOLDER_FILE):
        return None
    if (
        kind == "ctranslate2"
        and os.path.isfile(os.path.join(out, "model.bin"))
        and is_model_folder(out, None, CT2_FOLDER_FILE)
    ):
        return None
    if (
        kind == "onnx"
        and all(os.path.isfile(os.path.join(out, name)) for name in ONNX_GRAPHS)
        and is_model_folder(out, "marian", ONNX_FOLDER_FILE)
    ):
        return None
    problem = replace_problem(out, "output folder")
    return None if problem is None else f"--overwrite refused: {problem}"


def check_paths(
    src: str, out: str, ct2_out: str | None, overwrite: bool, onnx_out: str | None = None
) -> tuple[str, str | None, str | None]:
    """OUT, CT2_OUT and ONNX_OUT as absolute paths, refused when one may not be written, would replace the source
    or overlaps another."""
    out = os.path.abspath(os.path.expanduser(out))
    ct2_out = os.path.abspath(os.path.expanduser(ct2_out)) if ct2_out else None
    onnx_out = os.path.abspath(os.path.expanduser(onnx_out)) if onnx_out else None
    source = os.path.abspath(os.path.expanduser(src)) if os.path.exists(os.path.expanduser(src)) else None
    for path in filter(None, (out, ct2_out, onnx_out)):
        if source and os.path.commonpath([path, source]) == path:
            raise ExportError(
                f"output folder {path} is or contains the model {source}; writing it would replace the "
                "model being exported. Name another output folder."
            )
    named = [(path, what) for path, what in ((out, "Marian"), (ct2_out, "CTranslate2"), (onnx_out, "ONNX")) if path]
    for i, (a, a_name) in enumerate(named):
        for b, b_name in named[i + 1 :]:
            if os.path.commonpath([a, b]) in (a, b):
                raise ExportError(
                    f"the {b_name} folder {b} and the {a_name} folder {a} overlap; name separate folders."
                )
    for path, kind in ((out, "marian"), (ct2_out, "ctranslate2"), (onnx_out, "onnx")):
        if path and (problem := out_problem(path, overwrite, kind)):
            raise ExportError(problem)
    return out, ct2_out, onnx_out


def write_marian(model, tokenizer, folder: str, tmp: str) -> tuple[dict, str]:
    """Save the MarianMTModel of `model` into `tmp` and check it as written: ({agreement}, tokenizer class)."""
    from transformers import MarianMTModel

    to_marian(model).save_pretrained(tmp)
    write_tokenizer(folder, tmp)
    tokenizer_class = check_tokenizer(tokenizer, tmp)
    exported = MarianMTModel.from_pretrained(tmp).eval()
    return compare(model, exported, tokenizer), tokenizer_class


def export(
    src: str,
    out: str,
    overwrite: bool = False,
    command: str | None = None,
    ct2_out: str | None = None,
    quantization: str = "float32",
    onnx_out: str | None = None,
) -> dict:
    """Export MODEL `src` to the MarianMTModel folder `out` (and CTranslate2 `ct2_out`, ONNX `onnx_out`); returns
    what was checked."""
    # before any download: a refused OUT costs nothing
    out, ct2_out, onnx_out = check_paths(src, out, ct2_out, overwrite, onnx_out)
    if ct2_out:
        ctranslate2_module()  # not installed: say so before the export's work
    if onnx_out:
        onnx_modules()
    folder, is_hub = resolve_model(src)
    config = load_config(folder, src)
    check_exportable(config, src)
    if ct2_out:
        check_ctranslate2_activation(config.activation_function)  # before OUT is written, too
    model, tokenizer = load_model(folder, src), load_tokenizer(folder, src)
    command = command or f"python -m training.export_marian {src} {os.path.basename(out)}"
    with staged_folder(out) as staged:  # an existing OUT (empty, or --overwrite) is replaced once this is whole
        found, tokenizer_class = write_marian(model, tokenizer, folder, staged.path)
        check_agreement(found, src)
        with open(os.path.join(staged.path, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(model_card(src, is_hub, folder, config, found, tokenizer_class, command))
    result = {"out": out, **found, "tokenizer_class": tokenizer_class}
    if ct2_out:
        result["ctranslate2"] = to_ctranslate2(out, ct2_out, quantization, overwrite, source=(src, folder))
    if onnx_out:
        result["onnx"] = to_onnx(out, onnx_out, overwrite)
    return result


# -------------------------------------------------------------------------------------------- CTranslate2


def ctranslate2_module():
    try:
        import ctranslate2
    except ImportError:
        raise ExportError(
            "--ctranslate2 needs the ctranslate2 package, which is not installed: pip install ctranslate2"
        ) from None
    return ctranslate2


def check_ctranslate2_activation(activation: str) -> None:
    from ctranslate2.converters.transformers import _SUPPORTED_ACTIVATIONS

    if activation not in _SUPPORTED_ACTIVATIONS:
        raise ExportError(
            f"CTranslate2 has no {activation!r} activation (it has "
            f"{', '.join(sorted(_SUPPORTED_ACTIVATIONS))}); this model cannot be converted to it. "
            "Nothing was written."
        )


def exact_marian_loader():
    """CTranslate2's loader for a MarianMTModel as it is: its BART loader with Marian's post-LN and no embedding
    LayerNorm. Unlike its Marian loader, it keeps the whole vocabulary and starts the decoder from the config's
    decoder_start_token_id, as transformers does (OPUS-MT's <pad>-last, zero-embedding start is not assumed)."""
    from ctranslate2.converters.transformers import BartLoader

    class ExactMarianLoader(BartLoader):
        @property
        def architecture_name(self):
            return "MarianMTModel"

        def get_model_spec(self, model):
            check_ctranslate2_activation(model.config.activation_function)
            model.config.normalize_before = False
            model.config.normalize_embedding = False
            return super().get_model_spec(model)

    return ExactMarianLoader()


def ctranslate2_converter(marian, tokenizer):
    from ctranslate2.converters import Converter

    class MarianConverter(Converter):
        def _load(self):
            return exact_marian_loader()(marian, tokenizer)

    return MarianConverter()


def ctranslate2_translate(
    translator, tokenizer, sentences: list[str], beam_size: int, length_penalty: float, max_length: int
) -> list[list[int]]:
    """Token ids of CTranslate2's translations, decoded as transformers' generate() decodes: the length that the
    penalty divides by counts the end token, and max_length counts the start token."""
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in tokenizer(sentences)["input_ids"]]
    results = translator.translate_batch(
        tokens,
        beam_size=beam_size,
        length_penalty=length_penalty,
        max_decoding_length=max_length - 1,
        return_end_token=True,
    )
    return [tokenizer.convert_tokens_to_ids(r.hypotheses[0]) for r in results]


def torch_translate(model, tokenizer, sentences: list[str], **settings) -> list[list[int]]:
    """generate()'s token ids without the start token and the padding after the end token."""
    import torch

    batch = tokenizer(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**batch, do_sample=False, **settings)
    ids = []
    for row in output[:, 1:].tolist():
        end = row.index(model.config.eos_token_id) + 1 if model.config.eos_token_id in row else len(row)
        ids.append(row[:end])
    return ids


def ctranslate2_agreement(model, tokenizer, folder: str) -> dict:
    """Of CHECK_SENTENCES, how many CTranslate2 (the model in `folder`) translates as `model.generate()` does, greedy
    and with beam search."""
    import ctranslate2

    translator = ctranslate2.Translator(folder, device="cpu", inter_threads=1, intra_threads=1)
    length = check_length(model.generation_config)
    beam = beam_settings(model.generation_config)
    agree = {}
    for name, settings in (("greedy", {"num_beams": 1}), ("beam", beam)):
        ours = torch_translate(model, tokenizer, CHECK_SENTENCES, max_length=length, **settings)
        theirs = ctranslate2_translate(
            translator, tokenizer, CHECK_SENTENCES, settings["num_beams"], beam["length_penalty"], length
        )
        agree[name] = sum(a == b for a, b in zip(ours, theirs))
    return {**agree, "sentences": len(CHECK_SENTENCES)}


def to_ctranslate2(
    marian_folder: str,
    ct2_out: str,
    quantization: str = "float32",
    overwrite: bool = False,
    source: tuple[str, str] | None = None,
) -> dict:
    """Convert the MarianMTModel folder `marian_folder` to a CTranslate2 model in `ct2_out` (its tokenizer files
    copied beside), atomically. float32 must translate CHECK_SENTENCES as MarianMTModel does (greedy and beam);
    other quantizations are written with their agreement reported. `source`: (MODEL as given, its folder), recorded
    with the SHA-256 of its weights, by which the Space knows the copy belongs to the model beside it."""
    from transformers import AutoTokenizer, MarianMTModel

    ctranslate2_module()
    if quantization not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}.")
    ct2_out = os.path.abspath(os.path.expanduser(ct2_out))
    if problem := out_problem(ct2_out, overwrite, "ctranslate2"):
        raise ExportError(problem)
    tokenizer = AutoTokenizer.from_pretrained(marian_folder)
    with staged_folder(ct2_out) as staged:
        # A copy of its own: CTranslate2's quantization changes the weights it is handed, in place.
        converted = MarianMTModel.from_pretrained(marian_folder).eval()
        ctranslate2_converter(converted, tokenizer).convert(staged.path, quantization=quantization, force=True)
        del converted
        copy_tokenizer(marian_folder, staged.path)
        if source is not None:
            write_conversion_record(source, staged.path)
        agree = ctranslate2_agreement(MarianMTModel.from_pretrained(marian_folder).eval(), tokenizer, staged.path)
        if quantization == "float32":
            check_ctranslate2_agreement(agree, ct2_out)
    return {"out": ct2_out, "quantization": quantization, **agree}


def write_conversion_record(source: tuple[str, str], out: str) -> None:
    """CTRANSLATE2_RECORD in `out`: which model this copy was converted from, and the SHA-256 of its weights."""
    metadata = model_metadata()
    src, folder = source
    with open(os.path.join(out, metadata.CTRANSLATE2_RECORD), "w", encoding="utf-8") as fh:
        json.dump({"source": src, "weights_sha256": metadata.weights_sha256(folder)}, fh, indent=2)
        fh.write("\n")


def copy_tokenizer(marian_folder: str, out: str) -> None:
    """The tokenizer files and the decoding settings (generation_config.json, read by `training.translate
    --engine ctranslate2`) beside the CTranslate2 model."""
    for name in sorted({*TOKENIZER_FILES, "generation_config.json"}):
        if os.path.isfile(os.path.join(marian_folder, name)):
            shutil.copyfile(os.path.join(marian_folder, name), os.path.join(out, name))


def check_ctranslate2_agreement(agree: dict, ct2_out: str) -> None:
    n = agree["sentences"]
    if agree["greedy"] < n or agree["beam"] < n:
        raise ExportError(
            f"CTranslate2 (float32) translates differently from MarianMTModel (greedy {agree['greedy']}/"
            f"{n}, beam {agree['beam']}/{n} sentences equal); {ct2_out} was not written."
        )


# ------------------------------------------------------------------------------------------- ONNX Runtime


def onnx_modules(export: bool = True) -> None:
    """Refuse, naming what to install, when a package is missing: the export needs torch.onnx's exporter (onnx,
    onnxscript) and onnxruntime for its check; running the graphs needs onnxruntime only."""
    try:
        import onnxruntime  # noqa: F401

        if export:
            import onnx  # noqa: F401
            import onnxscript  # noqa: F401  (torch.onnx.export(dynamo=True) builds the graphs with it)
    except ImportError as e:
        needed = "onnx, onnxscript and onnxruntime" if export else "onnxruntime"
        raise ExportError(
            f"{'--onnx' if export else 'running an ONNX folder'} needs {needed} ({e.name} is not "
            f"installed): pip install {needed.replace(' and', '').replace(',', '')}, or "
            "pip install -e '.[deploy]'"
        ) from None


def onnx_graphs(marian):
    """The three torch modules exported to ONNX, computing what MarianMTModel `marian` computes in generate():

    - encoder (input_ids, attention_mask) -> encoder_hidden_states: MarianMTModel's own encoder;
    - cross_attention (encoder_hidden_states) -> cross.{i}.key, cross.{i}.value: every decoder layer's keys and
      values of the encoder states, computed once per sentence (per beam) at the first step;
    - decoder (input_ids of one step, encoder_attention_mask, past.{i}.key/value, cross.{i}.key/value) -> logits,
      present.{i}.key/value: one decoder step with the self-attention cache, its keys and values of the new token
      (the caller appends them). The step is written out from MarianMTModel's own layers (post-LN, Marian's
      concatenated sinusoids, scaled embeddings, the logits bias); the check after export holds it to generate()."""
    import torch
    from torch import nn

    decoder = marian.model.decoder
    layers = list(decoder.layers)

    def heads(x, attention):  # (B, T, D) -> (B, H, T, head_dim)
        return x.view(x.shape[0], x.shape[1], -1, attention.head_dim).transpose(1, 2)

    def attend(attention, h, keys, values, mask=None):
        query = heads(attention.q_proj(h), attention)
        weights = torch.matmul(query, keys.transpose(2, 3)) * attention.scaling
        if mask is not None:
            weights = weights + mask
        out = torch.matmul(torch.softmax(weights, dim=-1), values).transpose(1, 2)
        return attention.out_proj(out.reshape(h.shape[0], h.shape[1], -1))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = marian.model.encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    class CrossAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(layers)

        def forward(self, encoder_hidden_states):
            out = []
            for layer in self.layers:
                attention = layer.encoder_attn
                out += [
                    heads(attention.k_proj(encoder_hidden_states), attention),
                    heads(attention.v_proj(encoder_hidden_states), attention),
                ]
            return tuple(out)

    class DecoderStep(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder, self.lm_head = decoder, marian.lm_head
            self.register_buffer("final_logits_bias", marian.final_logits_bias.detach().clone(), persistent=False)

        def forward(self, input_ids, encoder_attention_mask, past, cross):
            position = past[0].shape[2]  # tokens decoded before this one
            h = self.decoder.embed_tokens(input_ids) * self.decoder.embed_scale
            h = h + self.decoder.embed_positions.weight.narrow(0, position, 1)
            mask = (1.0 - encoder_attention_mask[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
            present = []
            for i, layer in enumerate(self.decoder.layers):
                attention = layer.self_attn
                key, value = heads(attention.k_proj(h), attention), heads(attention.v_proj(h), attention)
                present += [key, value]
                keys, values = torch.cat([past[2 * i], key], 2), torch.cat([past[2 * i + 1], value], 2)
                h = layer.self_attn_layer_norm(h + attend(attention, h, keys, values))
                h = layer.encoder_attn_layer_norm(
                    h + attend(layer.encoder_attn, h, cross[2 * i], cross[2 * i + 1], mask)
                )
                h = layer.final_layer_norm(h + layer.fc2(layer.activation_fn(layer.fc1(h))))
            logits = self.lm_head(h[:, 0]) + self.final_logits_bias[0]
            return (logits, *present)

    return Encoder().eval(), CrossAttention().eval(), DecoderStep().eval()


ONNX_GRAPHS = ("encoder.onnx", "cross_attention.onnx", "decoder.onnx")
# What an ONNX folder written here holds: only such a folder is replaced by --overwrite.
ONNX_FOLDER_FILE = re.compile(
    r"(encoder|cross_attention|decoder)\.onnx|config\.json|generation_config\.json"
    rf"|{TOKENIZER_FILE}|README\.md"
)


def export_onnx_graphs(marian, out: str) -> None:
    """encoder.onnx, cross_attention.onnx and decoder.onnx of `marian` in `out` (torch.onnx.export, dynamo), with
    dynamic batch, source length and decoded length; each one file (weights inside)."""
    import warnings

    import torch

    config = marian.config
    encoder, cross, step = onnx_graphs(marian)
    layers = config.decoder_layers
    batch, source, past = torch.export.Dim("batch"), torch.export.Dim("source"), torch.export.Dim("past")
    b, s, t = 2, 5, 3  # example sizes (not 0 or 1, which torch.export would specialize)
    head_dim = config.d_model // config.decoder_attention_heads
    ids = torch.full((b, s), config.eos_token_id, dtype=torch.long)
    mask = torch.ones((b, s), dtype=torch.long)
    hidden = torch.zeros((b, s, config.d_model))
    kv = lambda n: torch.zeros((b, config.decoder_attention_heads, n, head_dim))  # noqa: E731
    names = lambda kind: [f"{kind}.{i}.{x}" for i in range(layers) for x in ("key", "value")]  # noqa: E731
    exports = [
        (
            encoder,
            (ids, mask),
            ["input_ids", "attention_mask"],
            ["encoder_hidden_states"],
            {"input_ids": {0: batch, 1: source}, "attention_mask": {0: batch, 1: source}},
        ),
        (cross, (hidden,), ["encoder_hidden_states"], names("cross"), {"encoder_hidden_states": {0: batch, 1: source}}),
        (
            step,
            (ids[:, :1], mask, [kv(t) for _ in range(2 * layers)], [kv(s) for _ in range(2 * layers)]),
            ["input_ids", "encoder_attention_mask", *names("past"), *names("cross")],
            ["logits", *names("present")],
            {
                "input_ids": {0: batch},
                "encoder_attention_mask": {0: batch, 1: source},
                "past": [{0: batch, 2: past}] * (2 * layers),
                "cross": [{0: batch, 2: source}] * (2 * layers),
            },
        ),
    ]
    for (module, args, inputs, outputs, shapes), name in zip(exports, ONNX_GRAPHS):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=shapes,
                verbose=False,
                report=False,
            )
        program.save(os.path.join(out, name), external_data=False)


def onnx_session(path: str, threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def load_onnx_model(folder: str, threads: int | None = None):
    """The ONNX folder `folder` (written by --onnx) as a transformers model: generate() runs its usual greedy or
    beam search (the folder's generation_config.json, logits processors, length penalty, stopping) while every
    forward pass runs in ONNX Runtime: the encoder once, the cross-attention keys and values once, then one
    decoder step per token with the self-attention cache that generate() keeps and reorders between beams."""
    import torch
    from torch import nn
    from transformers import GenerationConfig, GenerationMixin, MarianConfig, PreTrainedModel
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache
    from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput

    onnx_modules(export=False)
    sessions = {name: onnx_session(os.path.join(folder, name), threads) for name in ONNX_GRAPHS}
    config = MarianConfig.from_pretrained(folder)
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    head_dim = config.d_model // heads

    def run(name, feeds):
        return sessions[name].run(None, {k: v.detach().contiguous().numpy() for k, v in feeds.items()})

    class Encoder(nn.Module):
        main_input_name = "input_ids"

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            (hidden,) = run("encoder.onnx", {"input_ids": input_ids.long(), "attention_mask": attention_mask.long()})
            return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    class OnnxMarianMTModel(PreTrainedModel, GenerationMixin):
        config_class = MarianConfig
        base_model_prefix = "model"
        main_input_name = "input_ids"

        def __init__(self, config):
            super().__init__(config)
            self.encoder = Encoder()

        @property
        def device(self):
            return torch.device("cpu")

        @property
        def dtype(self):
            return torch.float32

        def get_encoder(self, *args, **kwargs):
            return self.encoder

        def forward(
            self,
            input_ids=None,
            attention_mask=None,
            decoder_input_ids=None,
            encoder_outputs=None,
            cache=None,
            use_cache=None,
            **kwargs,
        ):
            """Logits of every token of decoder_input_ids (the tokens after those already in `cache`)."""
            if encoder_outputs is None:
                encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            hidden = encoder_outputs[0]
            if attention_mask is None:
                attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long)
            if cache is None:
                cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
            self_cache, cross_cache = cache.self_attention_cache, cache.cross_attention_cache
            if cross_cache.get_seq_length() == 0:
                cross = run("cross_attention.onnx", {"encoder_hidden_states": hidden})
                for i in range(layers):
                    cross_cache.update(torch.from_numpy(cross[2 * i]), torch.from_numpy(cross[2 * i + 1]), i)
            cross = {
                f"cross.{i}.{x}": getattr(cross_cache.layers[i], x + "s")
                for i in range(layers)
                for x in ("key", "value")
            }
            all_logits = []
            for column in decoder_input_ids.long().unbind(1):
                if self_cache.get_seq_length() == 0:
                    empty = torch.zeros((hidden.shape[0], heads, 0, head_dim))
                    past = {f"past.{i}.{x}": empty for i in range(layers) for x in ("key", "value")}
                else:
                    past = {
                        f"past.{i}.{x}": getattr(self_cache.layers[i], x + "s")
                        for i in range(layers)
                        for x in ("key", "value")
                    }
                logits, *present = run(
                    "decoder.onnx",
                    {"input_ids": column[:, None], "encoder_attention_mask": attention_mask.long(), **past, **cross},
                )
                for i in range(layers):
                    self_cache.update(torch.from_numpy(present[2 * i]), torch.from_numpy(present[2 * i + 1]), i)
                all_logits.append(torch.from_numpy(logits))
            return Seq2SeqLMOutput(logits=torch.stack(all_logits, 1), cache=cache)

    model = OnnxMarianMTModel(config).eval()
    try:
        model.generation_config = GenerationConfig.from_pretrained(folder)
    except OSError:
        pass
    model.sessions = sessions
    return model


def to_onnx(marian_folder: str, onnx_out: str, overwrite: bool = False) -> dict:
    """Export the MarianMTModel folder `marian_folder` to ONNX in `onnx_out` (the three graphs, config.json,
    generation_config.json, the tokenizer files), atomically: the folder is written beside `onnx_out`, loaded in
    ONNX Runtime and held to MarianMTModel (logits to TOLERANCE, the same greedy and beam tokens on
    CHECK_SENTENCES) before it is renamed into place."""
    from transformers import AutoTokenizer, MarianMTModel

    onnx_modules()
    onnx_out = os.path.abspath(os.path.expanduser(onnx_out))
    if problem := out_problem(onnx_out, overwrite, "onnx"):
        raise ExportError(problem)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # torchvision absent
    tokenizer = AutoTokenizer.from_pretrained(marian_folder)
    marian = MarianMTModel.from_pretrained(marian_folder).eval()
    with staged_folder(onnx_out) as staged:
        export_onnx_graphs(marian, staged.path)
        copy_tokenizer(marian_folder, staged.path)
        shutil.copyfile(os.path.join(marian_folder, "config.json"), os.path.join(staged.path, "config.json"))
        found = compare(marian, load_onnx_model(staged.path), tokenizer)
        difference = found["max_logit_difference"]
        if not difference <= TOLERANCE or not found["same_greedy"] or not found["same_beam"]:
            raise ExportError(
                f"ONNX Runtime does not reproduce MarianMTModel (max logit difference {difference:.3g}, greedy outputs "
                f"{'equal' if found['same_greedy'] else 'different'}, beam outputs "
                f"{'equal' if found['same_beam'] else 'different'}); {onnx_out} was not written."
            )
    return {"out": onnx_out, **found}


# ------------------------------------------------------------------------------------------------ the CLI


def summary(result: dict) -> str:
    lines = [
        f"wrote {result['out']} (MarianMTModel; max logit difference to the source: "
        f"{result['max_logit_difference']:.2g}; greedy and beam outputs equal on {result['sentences']} sentences; "
        f"tokenizer: {result['tokenizer_class']})"
    ]
    if ct2 := result.get("ctranslate2"):
        lines.append(
            f"wrote {ct2['out']} (CTranslate2, {ct2['quantization']}; translations equal to MarianMTModel's: "
            f"greedy {ct2['greedy']}/{ct2['sentences']}, beam {ct2['beam']}/{ct2['sentences']})"
        )
    if onnx := result.get("onnx"):
        lines.append(
            f"wrote {onnx['out']} (ONNX, for ONNX Runtime; max logit difference to MarianMTModel: "
            f"{onnx['max_logit_difference']:.2g}; greedy and beam outputs equal on {onnx['sentences']} "
            "sentences)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export_marian",
        description="Export a model of this project to an exact MarianMTModel folder (and CTranslate2).",
    )
    parser.add_argument("model", help="a model folder this project wrote, or its Hub id")
    parser.add_argument("out", help="output folder: a complete MarianMTModel folder")
    parser.add_argument("--ctranslate2", metavar="CT2_OUT", help="also write a CTranslate2 model of OUT here")
    parser.add_argument(
        "--quantization", default="float32", choices=QUANTIZATIONS, help="CTranslate2 weight type (default float32)"
    )
    parser.add_argument("--onnx", metavar="ONNX_OUT", help="also write an ONNX model of OUT here (ONNX Runtime)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT (and CT2_OUT, ONNX_OUT) when not empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = " ".join(
        [
            "python -m training.export_marian",
            args.model,
            args.out,
            *(["--ctranslate2", args.ctranslate2, "--quantization", args.quantization] if args.ctranslate2 else []),
            *(["--onnx", args.onnx] if args.onnx else []),
            *(["--overwrite"] if args.overwrite else []),
        ]
    )
    try:
        result = export(
            args.model,
            args.out,
            overwrite=args.overwrite,
            command=command,
            ct2_out=args.ctranslate2,
            quantization=args.quantization,
            onnx_out=args.onnx,
        )
    except ExportError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
