"""The end of a training run: average checkpoints, choose on validation, evaluate, write a Hub repository.

A saved folder is a complete Hub repository: safetensors weights, `config.json` with `auto_map` and
`custom_pipelines`, the flat remote code (`configuration_transformer.py`, `modeling_transformer.py` and its
`fast_paths.py`, `pipeline_translation.py`), the tokenizer, `generation_config.json` with the paper's decoding settings,
`eval_results.json` and a model card whose YAML metadata `huggingface_hub` validates.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import time

from .atomic_files import staged_folder
from .run_config import TrainConfig, checkpoint_problem, complete_checkpoints, final_eval_limit
from .space_modules import model_metadata

logger = logging.getLogger("training")

PIPELINE = {
    "translation": {"impl": "pipeline_translation.TranslationPipeline", "pt": ["AutoModelForSeq2SeqLM"], "type": "text"}
}


# A tokenizer's files as save_pretrained writes them: its settings, with Marian's SentencePiece files (OPUS-MT) or
# the `tokenizers` library's tokenizer.json (this project's BPE).
TOKENIZER_SETTINGS_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
FAST_TOKENIZER_FILES = ("tokenizer.json", *TOKENIZER_SETTINGS_FILES)
TOKENIZER_FILES = (
    "source.spm",
    "target.spm",
    "vocab.json",
    "target_vocab.json",
    *TOKENIZER_SETTINGS_FILES,
    "tokenizer.json",
)
TOKENIZER_FILE = "|".join(re.escape(name) for name in TOKENIZER_FILES)  # any of them, as a regular expression

# What a model folder of this project holds (save_hub_folder, convert_marian, head_atlas, circuit_atlas's circuits/):
# a folder of only these, with a config.json of model_type "transformer", may be replaced by a new model (an export
# keeps the one it replaces beside it); any other file is the user's.
TRANSLATIONS = "translations"  # a model folder's system outputs on val and the test splits, as scored
MODEL_FOLDER_FILE = re.compile(
    rf"{TOKENIZER_FILE}|(config|generation_config|eval_results|head_atlas)\.json"
    r"|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
    r"|(configuration|modeling)_transformer\.py|fast_paths\.py|pipeline_translation\.py|README\.md|head_atlas_\w+\.png|circuits|ctranslate2|translations|\.gitattributes"
)


def replace_problem(path: str, what: str) -> str | None:
    """Why the folder `path` (named `what` in the message) must not be replaced by a model folder, or None when
    it may: it does not exist, is empty, or holds nothing but a model this project wrote."""
    if not os.path.lexists(path):
        return None
    if not os.path.isdir(path) or os.path.islink(path):
        return f"{what} {path} is not a folder; name a folder (it is created)."
    names = sorted(os.listdir(path))
    if not names:
        return None
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as fh:
            model_type = json.load(fh).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    foreign = [name for name in names if not MODEL_FOLDER_FILE.fullmatch(name)]
    if model_type != "transformer" or foreign:
        shown = ", ".join((foreign or names)[:8]) + (", ..." if len(foreign or names) > 8 else "")
        return (
            f"{what} {path} holds {shown}, which is not a model folder this project wrote; only such a folder is "
            "ever replaced. Name a new or empty folder."
        )
    return None


def generation_config(config: TrainConfig, model_cfg):
    """The decoding settings a model of this run is saved with (section 6.1: beam search with a length penalty)."""
    from transformers import GenerationConfig

    from configuration.configuration_transformer import SPECIAL_TOKEN_SETTINGS

    # Beam settings only with beams: transformers refuses to save early_stopping or a length penalty for greedy search.
    beam = dict(length_penalty=config.length_penalty, early_stopping=True) if config.num_beams > 1 else {}
    special_tokens = {name: getattr(model_cfg, name) for name in SPECIAL_TOKEN_SETTINGS}
    return GenerationConfig(num_beams=config.num_beams, **beam, max_length=config.max_length, **special_tokens)


def average_checkpoints(paths: list[str]):
    """Section 6.1: a model whose parameters are the mean of the given checkpoints' parameters."""
    import torch

    from modeling import TransformerForConditionalGeneration

    if not paths:
        raise ValueError("no checkpoints to average")
    model = TransformerForConditionalGeneration.from_pretrained(paths[0])
    total = {k: v.detach().clone().double() for k, v in model.state_dict().items() if v.is_floating_point()}
    for path in paths[1:]:
        other = TransformerForConditionalGeneration.from_pretrained(path).state_dict()
        for k in total:
            total[k] += other[k].double()
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if k in total:
                v.copy_((total[k] / len(paths)).to(v.dtype))
    return model


def describe_model(model_cfg, source_lang: str, target_lang: str, trained_on: str) -> None:
    """What the Space and the tools need to know about a model, written into its config.json (read back there,
    not from the model card): its source and target language and what it learnt from ("Multi30k", "OPUS")."""
    model_cfg.source_lang, model_cfg.target_lang, model_cfg.trained_on = source_lang, target_lang, trained_on


def save_hub_folder(
    model,
    tokenizer,
    folder: str,
    card: str | None = None,
    results: dict | None = None,
    translations: dict | None = None,
) -> str:
    """Write `model` + `tokenizer` as a complete, flat Hub repository, atomically (FOLDER.partial, then a rename);
    an earlier export there is kept as FOLDER.previous-DATE, never overwritten in place. `translations`:
    {file name: lines}, the system outputs behind `results`, written one sentence per line into translations/
    so that anyone can rescore them."""
    import torch

    import modeling  # noqa: F401  (register_for_auto_class: remote code + auto_map)

    not_finite = next(
        (
            name
            for name, value in model.state_dict().items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())
        ),
        None,
    )
    if not_finite:  # the last guard: nothing non-finite is ever exported
        raise SystemExit(
            f"training: the model has weights that are not finite (NaN or inf, first in {not_finite}); "
            f"nothing was written to {folder}."
        )
    folder = os.path.abspath(folder)
    model.config.custom_pipelines = PIPELINE
    # FOLDER.partial, not a new name each time: a run's output folder may hold it (train.RUN_ENTRIES)
    with staged_folder(folder, keep_previous=True, staging=folder + ".partial") as staged:
        model.save_pretrained(staged.path)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None:  # the last call's truncation/padding is not part of the tokenizer: don't ship it
            backend.no_truncation()
            backend.no_padding()
        tokenizer.save_pretrained(staged.path)
        if results is not None:
            with open(os.path.join(staged.path, "eval_results.json"), "w", encoding="utf-8") as fh:
                json.dump(results, fh, indent=2)
        if card is not None:
            with open(os.path.join(staged.path, "README.md"), "w", encoding="utf-8") as fh:
                fh.write(card)
        for name, lines in (translations or {}).items():
            os.makedirs(os.path.join(staged.path, TRANSLATIONS), exist_ok=True)
            with open(os.path.join(staged.path, TRANSLATIONS, name), "w", encoding="utf-8") as fh:
                fh.writelines(line.replace("\n", " ") + "\n" for line in lines)
    if staged.previous:
        logger.info("kept the previous export as %s", staged.previous)
    return folder


def evaluate_model(
    model, tokenizer, config: TrainConfig, split: str, num_beams: int, length_penalty: float, limit: int = 0
) -> dict:
    from .data import load_corpus
    from .metrics import score
    from .translate_utils import translate_batch

    corpus = load_corpus(config.data, split, config.source_lang, config.target_lang)
    src, ref = corpus.source, corpus.target
    if limit:
        src, ref = src[:limit], ref[:limit]
    if num_beams == 1:
        length_penalty = None  # greedy search has no length penalty
    beam = {"length_penalty": length_penalty} if num_beams > 1 else {}
    start = time.time()
    hyps = translate_batch(
        model, tokenizer, src, batch_size=64, num_beams=num_beams, max_length=config.max_length, **beam
    )
    result = score(
        hyps, ref, config.target_lang, data_folder=config.data if os.path.isdir(config.data) else None, split=split
    )
    result.update(
        split=split, num_beams=num_beams, length_penalty=length_penalty, seconds=round(time.time() - start, 1)
    )
    result["hypotheses"] = hyps  # the system output as scored; finalize writes the chosen model's into its folder
    return result


def initial_model_history(init_from: str) -> dict:
    """What a fine-tuned model's starting point says of itself: its training time and reproducing command(s),
    from the eval_results.json (or model card) an export wrote. Empty for a Hub id or a folder without them."""
    if not init_from or not os.path.isdir(init_from):
        return {}
    history = {}
    try:
        with open(os.path.join(init_from, "eval_results.json"), encoding="utf-8") as fh:
            record = json.load(fh)
        history["train_seconds"] = float(record.get("total_train_seconds", record.get("train_seconds", 0))) or None
        history["commands"] = record.get("commands")
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    if not history.get("commands"):  # an older export: the command is in its card's "Reproduce" block
        try:
            with open(os.path.join(init_from, "README.md"), encoding="utf-8") as fh:
                card = fh.read()
            block = card.split("## Reproduce", 1)[1].split("```", 2)[1]
            history["commands"] = [line.strip() for line in block.splitlines() if line.strip()]
        except (OSError, IndexError):
            pass
    return {k: v for k, v in history.items() if v}


def _hardware() -> str:
    """What the training ran on, for the model card (the time it states means little without it)."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"a {os.cpu_count()}-core CPU"


def use_section(example: str, pipeline_line: str = "") -> str:
    """A model card's "## Use" section: loading the folder with the Auto classes (remote code), translating
    `example`, and the translation pipeline (`pipeline_line` shows a call of it)."""
    return f"""## Use

```python
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

model = AutoModelForSeq2SeqLM.from_pretrained("<this repo>", trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained("<this repo>", trust_remote_code=True)
batch = tokenizer(["{example}"], return_tensors="pt")
print(tokenizer.batch_decode(model.generate(**batch), skip_special_tokens=True))

translator = pipeline("translation", model="<this repo>", trust_remote_code=True)
{pipeline_line + chr(10) if pipeline_line else ""}```
"""


def model_card(
    config: TrainConfig,
    results: dict,
    chosen: str,
    train_seconds: float,
    command: str,
    n_params: int,
    history: dict | None = None,
) -> str:
    """The README.md of the model repository, with metadata `huggingface_hub` validates. `history`: what
    `initial_model_history` found for a fine-tuned model (read here when not given)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    src, tgt = config.source_lang, config.target_lang
    language_name = model_metadata().language_name
    pair = f"{language_name(src)}->{language_name(tgt)}"
    eval_results = []
    for split, r in results.items():
        for metric, key, name in (
            ("bleu", "bleu_lc_tok", "BLEU (lowercased, Moses-tokenised)"),
            ("sacrebleu", "bleu", "sacreBLEU (cased, detokenised)"),
            ("chrf", "chrf", "chrF"),
        ):
            eval_results.append(
                EvalResult(
                    task_type="translation",
                    task_name=f"Translation {pair}",
                    dataset_type="multi30k",
                    dataset_name=f"Multi30k ({split})",
                    dataset_split=split,
                    dataset_config=f"{src}-{tgt}",
                    metric_type=metric,
                    metric_name=name,
                    metric_value=r[key],
                )
            )
    data = ModelCardData(
        language=[src, tgt],
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="translation",
        tags=["translation", "transformer", "attention-is-all-you-need", "vanilla-transformer"],
        datasets=["bentrevett/multi30k"],
        metrics=["bleu", "chrf"],
        model_name=f"vanilla-transformer-multi30k-{src}-{tgt}",
        eval_results=eval_results,
    )
    rows = "\n".join(
        f"| {split} | {r['bleu_lc_tok']} | {r['bleu']} | {r['chrf']} | {r['sentences']} |"
        for split, r in results.items()
    )
    signature = next(iter(results.values()))["bleu_signature"]
    hours = train_seconds / 3600
    tried = sorted({float(v) for v in config.length_penalty_candidates} | {config.length_penalty})
    tried = f"; chosen on {config.valid_split} among {', '.join(f'{v:g}' for v in tried)}" if len(tried) > 1 else ""
    decoding = (
        f"beam {config.num_beams}, length penalty {config.length_penalty} (transformers' `length ** alpha` form{tried})"
        if config.num_beams > 1
        else "greedy"
    )
    cooldown_steps = config.cooldown_steps
    cooldown = (
        f" (learning rate falling linearly to zero over the last {cooldown_steps} steps)" if cooldown_steps else ""
    )
    decay = (
        "a linear decay to zero"
        if cooldown_steps and config.warmup_steps + cooldown_steps >= config.max_steps
        else "inverse-square-root decay"
    )
    origin = f"fine-tuned from `{config.init_from}`" if config.init_from else "trained from scratch"
    if history is None:
        history = initial_model_history(config.init_from)
    before = ""
    if history.get("train_seconds"):
        total = (history["train_seconds"] + train_seconds) / 3600
        before = f" (after the initial model's {history['train_seconds'] / 3600:.2f} h: {total:.2f} h in all)"
    commands = [*history.get("commands", []), command]
    batches = (
        f"batches of up to {config.max_tokens} tokens (pairs x longest side)"
        if config.max_tokens
        else f"{config.batch_size} sentence pairs"
    )
    precision = "bf16 mixed precision (autocast; fp32 weights)" if config.bf16 else "fp32"
    content = f"""---
{data.to_yaml()}
---

# vanilla-transformer: Multi30k {pair}

The original Transformer of "Attention Is All You Need" (Vaswani et al., 2017), post-LN, sinusoidal positions,
shared embeddings scaled by sqrt(d_model), {origin} on the Multi30k training pairs
({pair}) with the paper's recipe (section 5.3-5.4): Adam ({config.adam_beta1}, {config.adam_beta2}, {config.adam_epsilon:g}),
a linear warm-up over {config.warmup_steps} steps to a peak learning rate of {config.learning_rate:g} then {decay},
label smoothing {config.label_smoothing}, dropout {config.dropout}.

- size: d_model {config.d_model}, {config.encoder_layers}+{config.decoder_layers} layers, {config.attention_heads} heads,
  FFN {config.ffn_dim}, joint {config.tokenizer_type.upper()} vocabulary of {config.vocab_size}, {n_params / 1e6:.2f}M parameters
- weights: {chosen}
- training: {config.max_steps} steps of {batches}{cooldown} in {precision}, {hours:.2f} h wall-clock on {_hardware()}{before}
- decoding: {decoding}

## Results

| split | BLEU (lowercased, tokenised) | sacreBLEU (cased) | chrF | sentences |
|---|---|---|---|---|
{rows}

The first BLEU column is the Multi30k convention (output lowercased, punctuation-normalised and
Moses-tokenised, against the official tokenised references); sacreBLEU signature: `{signature}`.
The translations scored are in `translations/` (SPLIT.{config.target_lang}, one sentence per line), to rescore.

{use_section("A man is riding a bike.", 'print(translator("Two dogs play in the snow.", num_beams=4))')}
## Reproduce

```
{chr(10).join(commands)}
```

Data: Multi30k (Elliott et al., 2016), text only. Cite the dataset paper when reporting results.
"""
    ModelCard(content)  # parses the YAML header: a malformed card fails here, not on the Hub
    return content


def _rank(result: dict) -> tuple:
    """How validation results are compared: lowercased-tokenised BLEU, then cased BLEU, then chrF."""
    return result["bleu_lc_tok"], result["bleu"], result["chrf"]


def choose_length_penalty(model, tokenizer, config: TrainConfig, val_result: dict):
    """Try `config.length_penalty_candidates` on the validation split for the chosen weights and keep the best
    (section 6.1 chose beam size and alpha on the development set). A tie keeps the configured value.
    Returns the chosen value, the validation result decoded with it, and {value: result} of every value tried."""
    candidates = config.length_penalty_candidates
    scores = {config.length_penalty: val_result}
    best_lp, best = config.length_penalty, val_result
    if config.num_beams == 1:
        if candidates:
            logger.info("greedy decoding (--num-beams 1) has no length penalty: --length-penalty-candidates ignored")
        return best_lp, best, scores
    for lp in candidates:
        lp = float(lp)
        if lp in scores:
            continue
        r = evaluate_model(
            model, tokenizer, config, config.valid_split, config.num_beams, lp, limit=final_eval_limit(config)
        )
        logger.info("validation, length penalty %g: BLEU %.2f (lc-tok %.2f)", lp, r["bleu"], r["bleu_lc_tok"])
        scores[lp] = r
        if _rank(r) > _rank(best):
            best_lp, best = lp, r
    if len(scores) > 1:
        logger.info("length penalty chosen on validation: %g (tried %s)", best_lp, ", ".join(f"{v:g}" for v in scores))
    return best_lp, best, scores


def loadable_checkpoints(ckpt_dir: str) -> list[str]:
    """The complete checkpoints whose weights load, oldest first; any other is left out, saying why."""
    found = []
    for path in complete_checkpoints(ckpt_dir):
        if problem := checkpoint_problem(path, weights_only=True):
            logger.warning("leaving out %s: %s", path, problem)
        else:
            found.append(path)
    return found


def final_candidates(checkpoints: list[str], best: str | None, average_last: int) -> list[tuple[str, list[str]]]:
    """The weights compared on validation at the end, as (name, the checkpoints to average): the average of the
    last `average_last` checkpoints, the best validation checkpoint and the last one, each distinct set once
    (an average of one checkpoint is that checkpoint; the best one may be the last)."""
    last = checkpoints[-1]
    averaged = checkpoints[-average_last:]
    candidates = []
    if len(averaged) > 1:
        names = ", ".join(os.path.basename(p) for p in averaged)
        candidates.append((f"average of the last {len(averaged)} checkpoints ({names})", averaged))
    if best and best != last:
        candidates.append((f"best validation checkpoint ({os.path.basename(best)})", [best]))
    also_best = ", also the best on validation" if best == last else ""
    candidates.append((f"last checkpoint ({os.path.basename(last)}){also_best}", [last]))
    return candidates


def load_candidate(paths: list[str]):
    from modeling import TransformerForConditionalGeneration

    if len(paths) > 1:
        return average_checkpoints(paths)
    return TransformerForConditionalGeneration.from_pretrained(paths[0])


def choose_weights(config: TrainConfig, tokenizer) -> tuple[str, object, dict, dict]:
    """Score every final candidate on validation; returns the best one's (name, model, result) and
    {name: result} of all."""
    ckpt_dir = os.path.join(config.output_dir, "checkpoints")
    checkpoints = loadable_checkpoints(ckpt_dir)
    if not checkpoints:
        raise SystemExit(f"training: no complete checkpoint with finite weights in {ckpt_dir} to export.")
    with open(os.path.join(checkpoints[-1], "trainer_state.json"), encoding="utf-8") as fh:
        best = json.load(fh).get("best_model_checkpoint")
    best = next((p for p in checkpoints if best and os.path.realpath(p) == os.path.realpath(best)), None)
    scored = []
    for name, paths in final_candidates(checkpoints, best, config.average_last):
        model = load_candidate(paths).eval()
        r = evaluate_model(
            model,
            tokenizer,
            config,
            config.valid_split,
            config.num_beams,
            config.length_penalty,
            limit=final_eval_limit(config),
        )
        logger.info("validation, %s: BLEU %.2f (lc-tok %.2f)", name, r["bleu"], r["bleu_lc_tok"])
        scored.append((name, model, r))
    # Lowercased-tokenised BLEU, then cased BLEU, then chrF: so that a tie at BLEU 0 (an early model) goes to the
    # candidate that writes something rather than to one that only outputs empty translations.
    chosen, model, val_result = max(scored, key=lambda x: _rank(x[2]))
    logger.info("chosen on validation: %s", chosen)
    return chosen, model, val_result, {name: r for name, _, r in scored}


def evaluate_test_splits(model, tokenizer, config: TrainConfig) -> dict:
    """{split: result} for the test splits that could be evaluated (a missing one is logged, not fatal)."""
    results = {}
    for split in config.test_splits:
        try:
            results[split] = evaluate_model(
                model, tokenizer, config, split, config.num_beams, config.length_penalty, limit=final_eval_limit(config)
            )
            logger.info(
                "%s: BLEU %.2f (lc-tok %.2f), chrF %.2f",
                split,
                results[split]["bleu"],
                results[split]["bleu_lc_tok"],
                results[split]["chrf"],
            )
        except Exception as e:  # a missing test split must not lose the trained model
            logger.warning("could not evaluate on %s: %s", split, e)
    return results


def reproducing_command(argv) -> str:
    """The command that reproduces this model: what was run, without the resumption flag."""
    args = [a for a in (argv or [])[1:] if a != "--resume"]
    if args[:2] == ["-m", "training.train"]:
        args = args[2:]
    return " ".join(["python", "-m", "training.train", *args])


def finalize(
    config: TrainConfig, trainer, tokenizer, train_seconds: float, push_to_hub: str | None = None, argv=None
) -> str:
    """Keep whichever of (average of the last checkpoints, best, last) scores highest on validation, choose its
    length penalty there, evaluate it on the test splits, write `output_dir/model` (and `export_dir`), optionally
    push. (`trainer`, the one that wrote the checkpoints, is not needed any more; the argument stays for callers.)"""
    chosen, model, val_result, on_validation = choose_weights(config, tokenizer)
    length_penalty, val_result, lp_scores = choose_length_penalty(model, tokenizer, config, val_result)
    config = dataclasses.replace(config, length_penalty=length_penalty)
    results = {config.valid_split: val_result, **evaluate_test_splits(model, tokenizer, config)}
    translations = {f"{split}.{config.target_lang}": r.pop("hypotheses") for split, r in results.items()}
    for r in [*on_validation.values(), *lp_scores.values()]:
        r.pop("hypotheses", None)

    # Rebuilt from the settings, with the length penalty chosen: the Trainer's evaluation fills every transformers
    # default into its model's generation config, which the saved file need not repeat.
    model.generation_config = generation_config(config, model.config)
    command = reproducing_command(argv)
    n_params = sum(p.numel() for p in model.parameters())
    history = initial_model_history(config.init_from)
    card = model_card(config, results, chosen, train_seconds, command, n_params, history)
    describe_model(model.config, config.source_lang, config.target_lang, "Multi30k")
    record = {
        "chosen": chosen,
        "train_seconds": round(train_seconds),
        "total_train_seconds": round(train_seconds + history.get("train_seconds", 0)),
        "commands": [*history.get("commands", []), command],
        "results": results,
        "candidates_on_validation": on_validation,
    }
    if len(lp_scores) > 1:
        record["length_penalty_on_validation"] = {f"{lp:g}": r["bleu_lc_tok"] for lp, r in lp_scores.items()}
    out = save_hub_folder(model, tokenizer, os.path.join(config.output_dir, "model"), card, record, translations)
    logger.info("model folder: %s", out)
    if config.export_dir:
        copy_to_export_dir(out, config.export_dir, keep_previous=not config.overwrite_output_dir)
    if push_to_hub:
        push_folder(out, push_to_hub)
    return out


def copy_to_export_dir(folder: str, export_dir: str, keep_previous: bool) -> None:
    """Copy the model folder to --export-dir; an earlier model folder there is kept aside (renamed) unless told
    not to. Anything else there (the user's files, the run itself) is never touched: refused, checked again here
    because the folder may have changed since the run started."""
    if problem := replace_problem(export_dir, "--export-dir"):
        raise SystemExit(f"training: the model is in {folder}, but it was not copied: {problem}")
    export_dir = os.path.abspath(export_dir)
    os.makedirs(os.path.dirname(export_dir), exist_ok=True)
    with staged_folder(export_dir, keep_previous=keep_previous) as staged:  # a kill never leaves half a model there
        shutil.copytree(folder, staged.path, dirs_exist_ok=True)
    if staged.previous:
        logger.info("kept the previous %s as %s", export_dir, staged.previous)
    logger.info("copied to %s", export_dir)


def push_folder(folder: str, repo_id: str) -> None:
    """Upload a saved model folder as a Hub model repository."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", exist_ok=True)
    api.upload_folder(
        folder_path=folder, repo_id=repo_id, repo_type="model", commit_message="Upload vanilla-transformer model"
    )
    logger.info("pushed %s to https://huggingface.co/%s", folder, repo_id)
