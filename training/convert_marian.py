"""Convert a Marian translation model (Helsinki-NLP's OPUS-MT, `MarianMTModel`) into this project's Transformer.

    python -m training.convert_marian Helsinki-NLP/opus-mt-en-de opus-mt-en-de
    python -m training.convert_marian path/to/marian-folder OUT [--overwrite]

Marian's models are the 2017 Transformer (post-LN, sinusoidal positions, one vocabulary shared by both
embeddings and the output projection), with three details of their own that `TransformerConfig` names:
the feed-forward activation (`swish` in OPUS-MT), the sinusoid layout (all sines, then all cosines:
`sinusoidal_layout="concatenated"`) and a bias on the logits (`add_final_logits_bias`). The converted model
gives MarianMTModel's logits and its greedy and beam outputs; before anything is written, both models are run
on the same padded batch and the conversion stops if the logits differ by more than 1e-4 or greedy decoding
differs.

OUT is a complete Hub folder, as `training.export` writes for a trained model: safetensors weights, config.json
with `auto_map` and `custom_pipelines`, the flat remote code, the source's generation config, its tokenizer
files (copied as they are) and a model card naming the source model and its license. It is written beside
OUT first and renamed into place, so OUT is never half-written; an OUT that exists and is not empty is
refused unless `--overwrite` is given.

What cannot be converted exactly is refused, naming the setting: a separate decoder vocabulary or
separate source/target embeddings (`share_encoder_decoder_embeddings=False`, `decoder_vocab_size`), an
output projection untied from the embeddings (`tie_word_embeddings=False`), the pre-LN / final-LayerNorm /
embedding-LayerNorm / learned-position variants that older config files name (`normalize_before`,
`add_final_layer_norm`, `normalize_embedding`, `static_position_embeddings=False`), weights that
MarianMTModel itself would not use, an activation this model lacks, and Marian's decoder-only model.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import sys

from .atomic_files import staged_folder
from .evaluate import looks_local
from .export import PIPELINE, TOKENIZER_FILES, describe_model, replace_problem, use_section
from .space_modules import model_metadata

logger = logging.getLogger("training.convert_marian")

TOLERANCE = 1e-4  # the largest logit difference accepted between MarianMTModel and the converted model
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# config.json keys of older (BART-era) Marian exports: the variant each value asks for, which MarianMTModel
# does not implement (it ignores the key), so neither model would run these weights as they were trained.
LEGACY_VARIANTS = {
    "normalize_before": (True, "pre-LN residual blocks (normalize_before=true)"),
    "add_final_layer_norm": (True, "a final LayerNorm on each stack (add_final_layer_norm=true)"),
    "normalize_embedding": (True, "a LayerNorm on the embeddings (normalize_embedding=true, layernorm_embedding)"),
    "static_position_embeddings": (False, "learned positions (static_position_embeddings=false)"),
}


class ConversionError(ValueError):
    """SRC cannot be converted exactly, or OUT cannot be written; the message says why and what to do."""


# --------------------------------------------------------------------------------------------- the source


def resolve_source(src: str) -> tuple[str, bool]:
    """(a local folder holding SRC, whether SRC is a Hub id). A Hub id is downloaded: the config, the weights
    (safetensors when the repository has them), the generation config, the tokenizer files and the card."""
    if looks_local(src):
        path = os.path.expanduser(src)
        if not os.path.exists(path):
            raise ConversionError(
                f"source {src!r} does not exist ({os.path.abspath(path)}); pass a MarianMTModel folder (one with "
                "config.json) or a Hub id such as Helsinki-NLP/opus-mt-en-de."
            )
        if not os.path.isdir(path):
            raise ConversionError(
                f"source {src!r} is a file, not a model folder; pass the folder that holds config.json."
            )
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConversionError(f"source {src!r} is not a model folder (no config.json in it).")
        return path, False
    from huggingface_hub import HfApi, snapshot_download

    wanted = ["config.json", "generation_config.json", "README.md", *TOKENIZER_FILES]
    try:
        files = HfApi().list_repo_files(src)
    except Exception:  # offline: a cached copy may still serve, else snapshot_download below says why
        files = None
    if files is not None and any(f.startswith("model.safetensors") for f in files):
        wanted.append("model.safetensors*")  # not also the .bin copy many OPUS-MT repositories keep
    else:
        wanted += ["model.safetensors*", "pytorch_model.bin*"]
    try:
        path = snapshot_download(src, allow_patterns=wanted)
    except Exception as e:  # offline, no such repository, gated: say which, without a trace
        raise ConversionError(f"could not download {src!r} from the Hugging Face Hub: {type(e).__name__}: {e}") from e
    return path, True


def read_config(folder: str) -> dict:
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read {folder}/config.json: {e}") from e
    if not isinstance(config, dict):
        raise ConversionError(f"{folder}/config.json does not hold a JSON object.")
    return config


def refusals(config: dict) -> list[str]:
    """What in a Marian config.json this architecture cannot represent exactly (empty when it converts)."""
    from configuration.configuration_transformer import ACTIVATIONS

    model_type = config.get("model_type")
    if model_type != "marian":
        return [
            f"it is a {model_type!r} model (config.json model_type), not Marian; this converts MarianMTModel "
            "checkpoints (model_type 'marian'), such as Helsinki-NLP's opus-mt-* models."
        ]
    found = []
    architectures = config.get("architectures") or []
    if architectures and not set(architectures) & {"MarianMTModel", "MarianModel"}:
        found.append(
            f"its architecture is {', '.join(architectures)}, not MarianMTModel: Marian's decoder-only model has no "
            "encoder to convert."
        )
    vocab, decoder_vocab = config.get("vocab_size", 58101), config.get("decoder_vocab_size")
    if decoder_vocab not in (None, vocab):
        found.append(
            f"a separate decoder vocabulary (decoder_vocab_size={decoder_vocab}, vocab_size={vocab}): this model "
            "has one vocabulary shared by source, target and output (section 3.4)."
        )
    elif config.get("share_encoder_decoder_embeddings", True) is False:
        found.append(
            "separate source and target embeddings (share_encoder_decoder_embeddings=false): this model shares "
            "one embedding matrix between encoder, decoder and output (section 3.4)."
        )
    if config.get("tie_word_embeddings", True) is False:
        found.append(
            "an output projection untied from the embeddings (tie_word_embeddings=false): this model ties "
            "them (section 3.4)."
        )
    activation = config.get("activation_function", "gelu")
    if activation not in ACTIVATIONS:
        found.append(f"the activation {activation!r}: this model offers {', '.join(ACTIVATIONS)}.")
    for key, (value, variant) in LEGACY_VARIANTS.items():
        if key in config and config[key] == value:
            found.append(
                f"{variant}: MarianMTModel ignores this key and runs post-LN with sinusoidal positions and no extra "
                "LayerNorm, so neither it nor this conversion reproduces the model these weights were trained as."
            )
    if config.get("pad_token_id") is None:
        found.append("no pad_token_id: Marian pads, and starts decoding, with its <pad> token.")
    return found


def check_convertible(config: dict, src: str) -> None:
    if found := refusals(config):
        lines = "\n  - ".join(found)
        raise ConversionError(
            f"{src} cannot be converted exactly into this architecture:\n  - {lines}\n"
            "Use transformers' MarianMTModel for this model; only what this Transformer represents exactly is converted."
        )


def load_or_refuse(load, folder: str, refusal: Exception, **kwargs):
    """`load(folder, **kwargs)` (a `from_pretrained`). A folder it cannot load (no weights, a damaged file) raises
    `refusal`, its message followed by the cause in one line, not the loader's trace."""
    try:
        return load(folder, **kwargs)
    except Exception as e:
        raise type(refusal)(f"{refusal}: {type(e).__name__}: {e}") from e


def computed_by_marian(name: str) -> bool:
    """A MarianMTModel weight that no checkpoint needs: its sinusoids and the zero `final_logits_bias` are made
    when it is built."""
    return "embed_positions" in name or name == "final_logits_bias"


def with_weights(model, weights: dict, source, error: type[Exception], note: str = ""):
    """`model` holding `weights` (every one of its weights but those MarianMTModel computes), tied, decoding as
    `source` decodes, in eval mode. A mapping gap raises `error`: a half-random model is never saved."""
    result = model.load_state_dict(weights, strict=False)
    missing = [k for k in result.missing_keys if not computed_by_marian(k)]
    if missing or result.unexpected_keys:
        raise error(f"weights left unmapped: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}{note}")
    model.tie_weights()
    model.generation_config = copy.deepcopy(source.generation_config)
    return model.eval()


def load_marian(folder: str, src: str):
    """MarianMTModel from `folder`, refusing a checkpoint with weights it would leave out or initialise at random."""
    from transformers import MarianMTModel

    refusal = ConversionError(f"MarianMTModel could not load {src}")
    marian, info = load_or_refuse(MarianMTModel.from_pretrained, folder, refusal, output_loading_info=True)
    unexpected = sorted(info.get("unexpected_keys") or [])
    missing = sorted(k for k in info.get("missing_keys") or [] if not computed_by_marian(k))
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or [])
    if unexpected or missing or mismatched:
        parts = [
            f"{name}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for name, keys in (
                ("weights MarianMTModel does not use", unexpected),
                ("weights missing from the checkpoint", missing),
                ("weights of the wrong shape", mismatched),
            )
            if keys
        ]
        raise ConversionError(
            f"{src} is not a plain MarianMTModel checkpoint ({'; '.join(parts)}); it cannot be converted exactly."
        )
    return marian.eval()


# ------------------------------------------------------------------------------------------ the conversion


# What MarianMTModel fixes in its code, where TransformerConfig has a setting for it.
MARIAN_FIXED = dict(
    position_embedding_type="sinusoidal",
    sinusoidal_layout="concatenated",  # Marian: the sines, then the cosines
    normalize_before=False,  # Marian is post-LN, as the paper
    tie_word_embeddings=True,
    add_final_logits_bias=True,  # Marian's final_logits_bias
    label_smoothing=0.0,  # MarianMTModel's loss is plain cross-entropy
    layer_norm_eps=1e-5,  # Marian's LayerNorms use torch's default
    use_cache=True,
)


def shared_settings(config) -> dict:
    """The settings MarianConfig names as TransformerConfig does, with the same meaning, read from `config` (either
    kind; the dropouts as floats, scale_embedding as a bool): taken as they are here, given back by export_marian."""
    from configuration.configuration_transformer import DROPOUT_SETTINGS, SIZE_SETTINGS, SPECIAL_TOKEN_SETTINGS

    names = (
        *SIZE_SETTINGS,
        *DROPOUT_SETTINGS,
        "activation_function",
        "max_position_embeddings",
        "scale_embedding",
        "init_std",
        *SPECIAL_TOKEN_SETTINGS,
    )
    values = {name: getattr(config, name) for name in names}
    values.update(
        {name: float(values[name]) for name in DROPOUT_SETTINGS},
        scale_embedding=bool(values["scale_embedding"]),
    )
    return values


def transformer_config(marian_config):
    """The `TransformerConfig` that computes what MarianMTModel computes with `marian_config`."""
    from configuration import TransformerConfig

    try:
        return TransformerConfig(**shared_settings(marian_config), **MARIAN_FIXED)
    except ValueError as e:
        raise ConversionError(f"the Marian settings do not make a valid TransformerConfig: {e}") from e


def converted_state_dict(marian) -> dict:
    """MarianMTModel's weights under this model's names: the feed-forward layers sit in `ffn`, and the
    (1, V) `final_logits_bias` buffer becomes the bias of `lm_head`. Positions are computed, not stored."""
    state = {}
    for name, tensor in marian.state_dict().items():
        if "embed_positions" in name:
            continue
        if name == "final_logits_bias":
            state["lm_head.bias"] = tensor.reshape(-1)  # (1, V) -> (V,)
            continue
        state[name.replace(".fc1.", ".ffn.fc1.").replace(".fc2.", ".ffn.fc2.")] = tensor
    return state


def convert_model(marian):
    """This project's `TransformerForConditionalGeneration` holding `marian`'s weights, in their dtype."""
    import modeling  # noqa: F401  (registers the classes for remote code and auto_map)
    from modeling import TransformerForConditionalGeneration

    model = TransformerForConditionalGeneration(transformer_config(marian.config)).to(marian.dtype)
    return with_weights(model, converted_state_dict(marian), marian, ConversionError)


def check_batch(config) -> dict:
    """A fixed padded batch of source and target ids over the whole vocabulary, specials included."""
    import torch

    g = torch.Generator().manual_seed(0)
    special = {config.pad_token_id, config.eos_token_id, config.decoder_start_token_id}
    ordinary = torch.tensor([i for i in range(config.vocab_size) if i not in special])
    source = ordinary[torch.randint(len(ordinary), (3, 11), generator=g)]
    source[:, -1] = config.eos_token_id
    attention_mask = torch.ones_like(source)
    attention_mask[1, 7:], attention_mask[2, 4:] = 0, 0  # padded rows
    source = source.masked_fill(attention_mask == 0, config.pad_token_id)
    labels = ordinary[torch.randint(len(ordinary), (3, 9), generator=g)]
    return {"input_ids": source, "attention_mask": attention_mask, "labels": labels}


def max_logit_difference(marian, model) -> float:
    """Largest |logit difference| of the two models on `check_batch`, and a refusal when greedy decoding differs."""
    import torch

    batch = check_batch(marian.config)
    with torch.no_grad():
        difference = (marian(**batch).logits.float() - model(**batch).logits.float()).abs().max().item()
        generate = dict(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            num_beams=1,
            do_sample=False,
            max_length=9,
        )
        same_greedy = torch.equal(marian.generate(**generate), model.generate(**generate))
    if not difference <= TOLERANCE or not same_greedy:
        raise ConversionError(
            f"the converted model does not reproduce MarianMTModel (max logit difference {difference:.3g}, "
            f"greedy outputs {'equal' if same_greedy else 'different'}); nothing was written."
        )
    return difference


# ----------------------------------------------------------------------------------------- the Hub folder


def source_card(folder: str) -> dict:
    """License and languages from the source's model card metadata (empty when it has none)."""
    path = os.path.join(folder, "README.md")
    if not os.path.isfile(path):
        return {}
    try:
        from huggingface_hub import ModelCard

        return ModelCard.load(path).data.to_dict()
    except Exception:  # a card without valid metadata: the license is then "not stated"
        return {}


def languages(folder: str, card: dict) -> list[str]:
    """The source and target languages: the card's, else the tokenizer config's source_lang / target_lang."""
    found = card.get("language")
    if isinstance(found, str):
        found = [found]
    if found:
        return [str(x) for x in found]
    try:
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as fh:
            tok = json.load(fh)
        return [x for x in (tok.get("source_lang"), tok.get("target_lang")) if isinstance(x, str) and x]
    except (OSError, ValueError, AttributeError):
        return []


def source_link_and_card_data(src: str, is_hub: bool, langs: list[str], license_: str | None, tags: list[str]):
    """The card of a model made from `src` (converted from it, or exported): a Markdown link to `src`, and the
    card metadata naming its languages, its license and, for a Hub id, `src` as the base model."""
    from huggingface_hub import ModelCardData

    link = f"[{src}](https://huggingface.co/{src})" if is_hub else f"`{src}`"
    data = ModelCardData(
        language=langs or None,
        license=license_ or "unknown",
        library_name="transformers",
        pipeline_tag="translation",
        tags=tags,
        base_model=src if is_hub else None,
    )
    return link, data


def source_license_line(src: str, license_: str | None, what: str) -> str:
    """The card's sentence on the license of `src`, whose weights `what` (the card's model) carries."""
    if license_:
        return f"The weights are {src}'s, under its license: **{license_}**."
    return f"The source's model card states no license: check {src}'s terms before you use or share {what}."


def model_card(
    src: str, is_hub: bool, folder: str, model, difference: float, command: str, tokenizer_files: list[str]
) -> str:
    from huggingface_hub import ModelCard

    card = source_card(folder)
    license_ = card.get("license")
    langs = languages(folder, card)
    pair = "->".join(map(model_metadata().language_name, langs)) if len(langs) == 2 else ", ".join(langs)
    link, data = source_link_and_card_data(
        src, is_hub, langs, license_, ["translation", "marian", "opus-mt", "transformer", "vanilla-transformer"]
    )
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    if "source.spm" in tokenizer_files:
        tokenizer = (
            "tokenizer: the source's files, as they are (MarianTokenizer, SentencePiece: `pip install "
            "sentencepiece`); `tokenizer_class` added to tokenizer_config.json where it was missing"
        )
    elif tokenizer_files:
        tokenizer = f"tokenizer: the source's files, as they are ({', '.join(tokenizer_files)})"
    else:
        tokenizer = f"tokenizer: none in the source; use {src}'s tokenizer"
    license_line = source_license_line(src, license_, "these weights")
    content = f"""---
{data.to_yaml()}
---

# {os.path.basename(src.rstrip("/"))} in vanilla-transformer{f" ({pair})" if pair else ""}

The Marian translation model {link}, converted into the original Transformer of "Attention Is All You Need"
(Vaswani et al., 2017) as implemented by vanilla-transformer. {license_line}

- size: d_model {c.d_model}, {c.encoder_layers}+{c.decoder_layers} layers, {c.encoder_attention_heads} heads, FFN {c.encoder_ffn_dim},
  {c.activation_function} activation, shared vocabulary of {c.vocab_size}, {n_params / 1e6:.2f}M parameters
- Marian's details, as config settings: `sinusoidal_layout="concatenated"` (the sines, then the cosines),
  `add_final_logits_bias=true` (Marian's `final_logits_bias`), `label_smoothing=0.0` (MarianMTModel's loss)
- exact: on a padded check batch the logits differ from MarianMTModel's by at most {difference:.1e}, and greedy
  decoding gives the same tokens; the generation settings (`generation_config.json`) are the source's
- {tokenizer}

{use_section("The animal didn't cross the street because it was too tired.")}
## Reproduce

```
{command}
```

Cite the source model's authors (OPUS-MT: Tiedemann and Thottingal, 2020) when you use it.
"""
    ModelCard(content)  # parses the YAML header: a malformed card fails here, not on the Hub
    return content


def copy_tokenizer_files(folder: str, out: str) -> list[str]:
    """Copy the tokenizer files SRC has. tokenizer_config.json gains `tokenizer_class` when it lacks one: the
    converted config's model_type is this project's, so AutoTokenizer could not infer MarianTokenizer from it."""
    copied = []
    for name in TOKENIZER_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            shutil.copyfile(path, os.path.join(out, name))
            copied.append(name)
    if "source.spm" in copied:
        path = os.path.join(out, "tokenizer_config.json")
        tok = {}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                tok = json.load(fh)
        if not tok.get("tokenizer_class"):
            tok["tokenizer_class"] = "MarianTokenizer"
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(tok, fh, indent=2, ensure_ascii=False)
            if "tokenizer_config.json" not in copied:
                copied.append("tokenizer_config.json")
    return copied


def check_out(out: str, overwrite: bool, src: str | None = None) -> str:
    """OUT as an absolute path, refused when it may not be written: not empty without --overwrite, and even with
    it unless it holds nothing but a model folder this project wrote (never SRC or a folder holding it)."""
    out = os.path.abspath(os.path.expanduser(out))
    if src is not None and os.path.exists(src):
        source = os.path.abspath(src)
        if os.path.commonpath([out, source]) == out:
            raise ConversionError(
                f"output folder {out} is or contains the source {source}; writing it would replace "
                "the model being converted. Name another output folder."
            )
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ConversionError(f"output {out} is a file; pass a folder path (it is created).")
        if os.listdir(out) and not overwrite:
            raise ConversionError(f"output folder {out} exists and is not empty; pass --overwrite to replace it.")
        if problem := replace_problem(out, "output folder"):
            raise ConversionError(f"--overwrite refused: {problem}")
    parent = os.path.dirname(out)
    if not os.path.isdir(parent):
        raise ConversionError(f"the folder that would hold the output, {parent}, does not exist.")
    return out


def convert(src: str, out: str, overwrite: bool = False, command: str | None = None) -> dict:
    """Convert SRC into the Hub folder OUT; returns {"out", "max_logit_difference", "tokenizer_files"}."""
    out = check_out(out, overwrite, src)  # before any download: a refused OUT costs nothing
    folder, is_hub = resolve_source(src)
    check_convertible(read_config(folder), src)
    marian = load_marian(folder, src)
    model = convert_model(marian)
    difference = max_logit_difference(marian, model)
    command = command or f"python -m training.convert_marian {src} {os.path.basename(out)}"

    with staged_folder(out) as staged:  # an existing OUT (empty, or --overwrite) is replaced once this is whole
        model.config.custom_pipelines = PIPELINE
        langs = languages(folder, source_card(folder))
        if len(langs) == 2:
            describe_model(model.config, *langs, "OPUS")
        model.save_pretrained(staged.path)
        copied = copy_tokenizer_files(folder, staged.path)
        with open(os.path.join(staged.path, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(model_card(src, is_hub, folder, model, difference, command, copied))
    return {"out": out, "max_logit_difference": difference, "tokenizer_files": copied}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.convert_marian",
        description="Convert a MarianMTModel (e.g. Helsinki-NLP/opus-mt-en-de) into this project's Transformer, exactly.",
    )
    parser.add_argument(
        "src", help="MarianMTModel folder (with config.json) or Hub id, e.g. Helsinki-NLP/opus-mt-en-de"
    )
    parser.add_argument("out", help="output folder: a complete Hub repository of this project's format")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT when it exists and is not empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = " ".join(
        ["python -m training.convert_marian", args.src, args.out, *(["--overwrite"] if args.overwrite else [])]
    )
    try:
        result = convert(args.src, args.out, overwrite=args.overwrite, command=command)
    except ConversionError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {result['out']} (max logit difference to MarianMTModel: {result['max_logit_difference']:.2g}; "
        f"tokenizer files: {', '.join(result['tokenizer_files']) or 'none in the source'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
