"""A training run's settings and its output folder.

`TrainConfig` holds every setting of `python -m training.train`; a JSON config file and command-line flags fill
it (flags win) and `validate` refuses a bad value before any work starts. The output folder holds
`tokenizer/`, `checkpoints/` (Trainer checkpoints), `train_config.json`, `log.jsonl` and, at the end, `model/`;
`complete_checkpoints` lists the checkpoints a run can continue from or average. The model settings among the
fields name the TransformerConfig arguments they give (MODEL_SETTINGS), which both make a new model's
configuration and read an --init-from model's architecture back.

Importing this module loads only the standard library (the checkpoint checks import safetensors and torch when
called), so that a bad setting is refused at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field

DESCRIPTION = "Train the Transformer on parallel text with the paper's recipe (section 5) through `Seq2SeqTrainer`."

# Runs shorter than this many steps score their final candidates on this many sentences per split by default.
SHORT_RUN_STEPS, SHORT_RUN_EVAL_SENTENCES = 1000, 100
# training/tokenizer.py's floor: the 4 special tokens, the 256 byte tokens and at least 100 learned subwords.
MIN_VOCAB_SIZE = 4 + 256 + 100


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The rules of the settings with more than a type to check: (allowed, what the message says is required).
POSITIVE = (lambda v: _is_int(v) and v > 0, "a positive integer")
NON_NEGATIVE = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
FRACTION = (lambda v: _is_finite(v) and 0 <= v < 1, "in [0, 1)")
VOCABULARY = (
    lambda v: _is_int(v) and v >= MIN_VOCAB_SIZE,
    f"an integer >= {MIN_VOCAB_SIZE} (the tokenizer's 4 special and 256 byte tokens, and at least 100 "
    "learned subwords)",
)
LEARNING_RATE = (lambda v: _is_finite(v) and 0 < v < 1, "in (0, 1)")
EPSILON = (lambda v: _is_finite(v) and v > 0, "> 0 and finite")
GRADIENT_NORM = (lambda v: _is_finite(v) and v >= 0, "> 0, or 0 for no gradient clipping (a finite number)")
EVAL_LIMIT = (
    lambda v: v is None or (_is_int(v) and v >= 0),
    "an integer >= 0 (0 = the whole split), or null for the default",
)
FINITE_NUMBERS = (lambda v: isinstance(v, list) and all(map(_is_finite, v)), "a list of numbers, all finite")
SPLIT_NAMES = (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of split names")


def setting(default, help: str, **metadata):
    """A TrainConfig field with its --help text (`help` says what it does and what values are allowed).

    `must`: the rule its value must meet, one of the above (without one: its `choices`, else its default's type).
    `model`: the TransformerConfig argument, or arguments, that the setting gives (MODEL_SETTINGS); the model's
    own value is kept when fine-tuning, unless `regularisation` (how the model is trained, not what it is: the
    run's value is applied to an --init-from model too).
    """
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return field(default=default, metadata={"help": help, **metadata})


@dataclass
class TrainConfig:
    """Every setting of a training run; a JSON config file and command-line flags fill it (flags win)."""

    # data
    data: str = setting(
        "../shared/data/multi30k",
        "the parallel text: a local folder of {split}.{lang}[.gz] files, one sentence per line (the "
        "Multi30k layout: train.en.gz, val.de.gz, ...), or a Hub dataset id such as bentrevett/multi30k",
        metavar="PATH_OR_ID",
    )
    source_lang: str = setting(
        "en", "source language code, as in the file names (Multi30k: en, de, fr, cs)", metavar="LANG"
    )
    target_lang: str = setting("de", "target language code, different from --source-lang", metavar="LANG")
    output_dir: str = setting(
        "runs/en-de",
        "the run's folder: tokenizer/, checkpoints/, train_config.json, log.jsonl "
        "and, at the end, model/ (a complete Hub repository)",
        metavar="DIR",
    )
    train_split: str = setting("train", "the training split", metavar="SPLIT")
    valid_split: str = setting(
        "val",
        "the validation split: periodic BLEU, and the choice of the final weights "
        "(bentrevett/multi30k calls it validation)",
        metavar="SPLIT",
    )
    test_splits: list = setting(
        ["test_2016_flickr"],
        "splits scored at the end with the chosen weights; the flag alone (no values) scores none",
        metavar="SPLIT",
        must=SPLIT_NAMES,
    )
    max_train_samples: int = setting(0, "train on the first N pairs only; 0 = all", must=NON_NEGATIVE)
    # Fine-tune: start from this model's weights (a folder written by this command or save_pretrained, or a Hub
    # id) and keep its tokenizer and architecture; the vocabulary and size settings below are then taken from it.
    init_from: str = setting(
        "",
        "fine-tune this model (a folder written by this command or save_pretrained, or a Hub "
        "model id): its weights, tokenizer and architecture, so the vocabulary and size "
        "settings are taken from it; empty = train from scratch",
        metavar="PATH_OR_ID",
    )
    # tokenizer
    vocab_size: int = setting(
        8000,
        f"size of the joint source+target subword vocabulary, at least {MIN_VOCAB_SIZE} "
        "(the 4 special and 256 byte tokens and 100 learned subwords)",
        must=VOCABULARY,
        model="vocab_size",
    )
    tokenizer_type: str = setting("bpe", "subword model: bpe or unigram", choices=("bpe", "unigram"))
    max_length: int = setting(
        128, "subword tokens per side, positive; longer sentences are truncated (and counted)", must=POSITIVE
    )
    # model (paper's base is 512/2048/8/6+6; this default is sized for a laptop CPU)
    d_model: int = setting(
        256,
        "model width, a multiple of --attention-heads (the paper's base model: 512)",
        must=POSITIVE,
        model="d_model",
    )
    encoder_layers: int = setting(3, "encoder layers, positive (paper: 6)", must=POSITIVE, model="encoder_layers")
    decoder_layers: int = setting(3, "decoder layers, positive (paper: 6)", must=POSITIVE, model="decoder_layers")
    attention_heads: int = setting(
        4,
        "attention heads per layer, positive, dividing --d-model (paper: 8)",
        must=POSITIVE,
        model=("encoder_attention_heads", "decoder_attention_heads"),
    )
    ffn_dim: int = setting(
        1024,
        "inner size of the feed-forward blocks, positive (paper: 2048)",
        must=POSITIVE,
        model=("encoder_ffn_dim", "decoder_ffn_dim"),
    )
    dropout: float = setting(
        0.1, "residual dropout, in [0, 1) (section 5.4: 0.1)", must=FRACTION, model="dropout", regularisation=True
    )
    attention_dropout: float = setting(
        0.0,
        "dropout on the attention weights, in [0, 1) (not in the paper)",
        must=FRACTION,
        model="attention_dropout",
        regularisation=True,
    )
    label_smoothing: float = setting(
        0.1,
        "label smoothing, in [0, 1) (section 5.4: 0.1)",
        must=FRACTION,
        model="label_smoothing",
        regularisation=True,
    )
    position_embedding_type: str = setting(
        "sinusoidal",
        "sinusoidal (section 3.5) or learned (Table 3, row E)",
        choices=("sinusoidal", "learned"),
        model="position_embedding_type",
    )
    normalize_before: bool = setting(
        False, "pre-LN residual blocks instead of the paper's post-LN", model="normalize_before"
    )
    # optimisation (section 5.3)
    learning_rate: float = setting(
        1e-3, "peak learning rate, reached at the end of the warm-up, in (0, 1)", must=LEARNING_RATE
    )
    warmup_steps: int = setting(
        1000,
        "steps of linear warm-up before the inverse-square-root decay, >= 0 (section 5.3: 4000)",
        must=NON_NEGATIVE,
    )
    # Linear decay of the learning rate to zero over the last N steps (0 = the paper's schedule unchanged).
    # The inverse-square-root schedule never lets the rate fall far (still 0.24x its peak after 18 warm-ups'
    # worth of steps), so the weights keep wandering; a short cool-down at the end settles them, much as
    # checkpoint averaging does (section 6.1). Until max_steps - cooldown_steps the rate is exactly eq. 3, so
    # a run resumed with a longer max_steps and a cool-down equals one that planned it from the start.
    cooldown_steps: int = setting(
        0,
        "let the learning rate fall linearly to zero over the last N steps (until then "
        "it is exactly eq. 3, so a resumed run may add one); 0 = none, the paper's "
        "schedule; at most --max-steps minus --warmup-steps",
        must=NON_NEGATIVE,
    )
    adam_beta1: float = setting(0.9, "Adam beta1, in [0, 1) (paper: 0.9)", must=FRACTION)
    adam_beta2: float = setting(0.98, "Adam beta2, in [0, 1) (paper: 0.98)", must=FRACTION)
    adam_epsilon: float = setting(1e-9, "Adam epsilon, > 0 (paper: 1e-9)", must=EPSILON)
    weight_decay: float = setting(0.0, "AdamW weight decay, in [0, 1) (not in the paper)", must=FRACTION)
    max_grad_norm: float = setting(
        1.0, "clip the gradient norm to this value, > 0; 0 = no clipping (the paper does not say)", must=GRADIENT_NORM
    )
    batch_size: int = setting(64, "sentence pairs per batch (per process), unless --max-tokens is set", must=POSITIVE)
    # Batches by size instead (fairseq's --max-tokens, section 5.1): pairs of similar length, as many per batch as
    # keep pairs x longest side <= max_tokens. 0 = batches of batch_size pairs.
    max_tokens: int = setting(
        0,
        "batches by size instead (section 5.1): pairs of similar length, as many as keep "
        "pairs x longest side <= N; at least --max-length; 0 = batches of --batch-size pairs",
        must=NON_NEGATIVE,
    )
    # Mixed precision: the Trainer's bf16 autocast (matmuls in bfloat16; fp32 master weights, optimizer state and
    # saved weights). Refused on hardware without native bf16 matmuls (CPU: AVX512-BF16 or AMX; CUDA: Ampere or
    # newer), where it is slower than fp32 rather than faster.
    bf16: bool = setting(
        False,
        "bf16 mixed precision (autocast; fp32 weights, optimizer state and saved weights); "
        "refused without native bf16 matmuls (CPU: AVX512-BF16 or AMX; CUDA: Ampere or newer)",
    )
    # torch.compile (the Trainer's torch_compile: accelerate wraps the model once; inductor on CPU). The losses are
    # eager's within float rounding (the fused loss of modeling/fast_paths.py steps aside while compiling) and the
    # checkpoints hold the plain model's weights. On a CPU at these sizes it is slower than eager
    # (benchmarks/README.md), so it is off by default; a resumed run may switch it.
    torch_compile: bool = setting(
        False,
        "compile the training step with torch.compile (inductor): the same losses as eager, checkpoints that "
        "load uncompiled; the first steps of each new batch shape pay the compile time",
    )
    torch_compile_backend: str = setting(
        "inductor",
        "torch.compile's backend under --torch-compile: inductor (generated kernels), or aot_eager / eager "
        "(graph capture only, to debug)",
        choices=("inductor", "aot_eager", "eager"),
    )
    gradient_accumulation_steps: int = setting(1, "batches per optimizer step, positive", must=POSITIVE)
    max_steps: int = setting(12000, "optimizer steps in all, positive", must=POSITIVE)
    # evaluation, checkpoints, decoding
    eval_steps: int = setting(1000, "greedy validation BLEU every N steps, a multiple of --save-steps", must=POSITIVE)
    eval_samples: int = setting(300, "validation sentences for the periodic (greedy) BLEU; 0 = all", must=NON_NEGATIVE)
    save_steps: int = setting(
        500, "a checkpoint (weights, optimizer, scheduler, RNG state) every N steps, positive", must=POSITIVE
    )
    keep_checkpoints: int = setting(6, "checkpoints kept on disk (older ones are deleted), positive", must=POSITIVE)
    average_last: int = setting(
        5, "section 6.1: at the end, average the last N checkpoints, positive (1 = none)", must=POSITIVE
    )
    # A tiny run's model is not worth minutes of beam search over whole splits: by default runs shorter than
    # SHORT_RUN_STEPS evaluate their final candidates on the first SHORT_RUN_EVAL_SENTENCES sentences only.
    final_eval_limit: int | None = setting(
        None,
        "evaluate the final candidates on the first N sentences of each split only; 0 = the whole split",
        type=int,
        default_help=f"{SHORT_RUN_EVAL_SENTENCES} for runs of fewer than {SHORT_RUN_STEPS:,} steps, else 0",
        must=EVAL_LIMIT,
    )
    num_beams: int = setting(
        4, "beam size of the final evaluation and the saved model; 1 = greedy (paper: 4)", must=POSITIVE
    )
    length_penalty: float = setting(
        0.6,
        "beam search's length penalty alpha, transformers' length ** alpha, a finite "
        "number (paper: 0.6); unused by greedy decoding",
    )
    # More length penalties to try at the end on the validation split, for the chosen weights; the best is kept
    # in generation_config.json (section 6.1: beam size and alpha "chosen after experimentation on the
    # development set"). Empty: only `length_penalty`.
    length_penalty_candidates: list = setting(
        [],
        "more length penalties to try at the end on the validation split "
        "(section 6.1); the best is kept; none = only --length-penalty",
        item_type=float,
        must=FINITE_NUMBERS,
    )
    logging_steps: int = setting(
        50, "a log.jsonl line (loss, learning rate, elapsed time) every N steps, positive", must=POSITIVE
    )
    seed: int = setting(42, "seed of the initial weights, data order and dropout")
    threads: int = setting(0, "torch threads; 0 = torch's default", must=NON_NEGATIVE)
    overwrite_output_dir: bool = setting(
        False, "start over in an --output-dir that holds an earlier run of this command"
    )
    export_dir: str = setting(
        "",
        "also copy the final model folder here (e.g. space/model); an earlier folder "
        "there is kept as NAME.previous-DATE unless --overwrite-output-dir",
        metavar="DIR",
    )

    def validate(self) -> None:
        """Refuse bad values before any work starts, naming each one and what is allowed (all at once)."""
        problems = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            allowed, requirement = _rule(f)
            if not allowed(value):
                problems[f.name] = f"{f.name} must be {requirement}, got {value!r}"
        problems = list(problems.values()) + self._combination_problems(set(problems))
        if problems:
            raise SystemExit("training: bad configuration:\n  - " + "\n  - ".join(problems))

    def _combination_problems(self, bad: set) -> list[str]:
        """Settings that are fine alone but not together (only among those that passed their own check)."""

        def good(*names):
            return not bad.intersection(names)

        problems = []
        if good("d_model", "attention_heads") and self.d_model % self.attention_heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by attention_heads ({self.attention_heads})")
        if (
            good("warmup_steps", "cooldown_steps", "max_steps")
            and self.cooldown_steps > 0
            and self.warmup_steps + self.cooldown_steps > self.max_steps
        ):
            problems.append(
                f"warmup_steps ({self.warmup_steps}) + cooldown_steps ({self.cooldown_steps}) must not "
                f"exceed max_steps ({self.max_steps})"
            )
        if good("source_lang", "target_lang") and self.source_lang == self.target_lang:
            problems.append(f"source_lang and target_lang are both {self.source_lang!r}")
        if good("eval_steps", "save_steps") and self.eval_steps % self.save_steps:
            problems.append(
                f"eval_steps ({self.eval_steps}) must be a multiple of save_steps ({self.save_steps}) "
                "so the best checkpoint is one that was evaluated"
            )
        if good("max_tokens", "max_length") and 0 < self.max_tokens < self.max_length:
            problems.append(
                f"max_tokens ({self.max_tokens}) must be 0 or at least max_length ({self.max_length}), "
                "so that the longest pair fits in a batch"
            )
        size = ("vocab_size", "d_model", "ffn_dim", "encoder_layers", "decoder_layers")
        if not self.init_from and good(*size) and (need := self.training_bytes()) > (have := physical_memory()) > 0:
            problems.append(
                f"the model would have {self.parameter_count():,} parameters: training needs about "
                f"{need / 2**30:,.1f} GiB for its weights, gradients and Adam's two moments alone, more "
                f"than this machine's {have / 2**30:,.1f} GiB; choose a smaller --d-model, --ffn-dim, "
                "--vocab-size or fewer layers"
            )
        return problems

    def parameter_count(self) -> int:
        """Parameters of the model these settings build (shared embeddings; biases and layer norms counted)."""
        d, f = self.d_model, self.ffn_dim
        attention, ffn, norm = 4 * d * d + 4 * d, 2 * d * f + f + d, 2 * d
        encoder_layer = attention + ffn + 2 * norm
        decoder_layer = 2 * attention + ffn + 3 * norm
        return self.vocab_size * d + self.encoder_layers * encoder_layer + self.decoder_layers * decoder_layer

    def training_bytes(self) -> int:
        """fp32 weights, gradients and Adam's two moments: 16 bytes a parameter, before any activation."""
        return 16 * self.parameter_count()


# The model settings, read off the fields above: which TransformerConfig argument(s) each gives (attention_heads:
# both stacks' heads). It is read both ways: the run's values make a new model's configuration (model_arguments),
# and a model's configuration gives the run's architecture settings back (architecture_of).
_MODEL_FIELDS = [f for f in dataclasses.fields(TrainConfig) if "model" in f.metadata]
MODEL_SETTINGS: dict[str, tuple[str, ...]] = {
    f.name: (f.metadata["model"],) if isinstance(f.metadata["model"], str) else tuple(f.metadata["model"])
    for f in _MODEL_FIELDS
}
# What the model is (kept from an --init-from model), and how the run trains it (applied to any model).
ARCHITECTURE = tuple(f.name for f in _MODEL_FIELDS if not f.metadata.get("regularisation"))
REGULARISATION = tuple(f.name for f in _MODEL_FIELDS if f.metadata.get("regularisation"))


def model_arguments(config: TrainConfig, settings=None) -> dict:
    """The TransformerConfig arguments that the run's model settings give (those of `settings`; None: all)."""
    return {
        argument: getattr(config, name)
        for name in (MODEL_SETTINGS if settings is None else settings)
        for argument in MODEL_SETTINGS[name]
    }


def architecture_of(model_config) -> dict:
    """The run's architecture settings that describe a model's configuration (a TransformerConfig): each from
    the first argument it gives (attention_heads from encoder_attention_heads)."""
    return {name: getattr(model_config, MODEL_SETTINGS[name][0]) for name in ARCHITECTURE}


def physical_memory() -> int:
    """Bytes of RAM this machine has (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def final_eval_limit(config: TrainConfig) -> int:
    """How many sentences of each split the end-of-run evaluation reads (0 = all): --final-eval-limit when given,
    else all for a run of at least SHORT_RUN_STEPS steps and the first SHORT_RUN_EVAL_SENTENCES for a shorter one."""
    if config.final_eval_limit is not None:
        return config.final_eval_limit
    return 0 if config.max_steps >= SHORT_RUN_STEPS else SHORT_RUN_EVAL_SENTENCES


def _rule(f: dataclasses.Field) -> tuple:
    """(allowed, requirement) for a setting: its own rule, its choices, else what its default's type asks."""
    if "must" in f.metadata:
        return f.metadata["must"]
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    choices = f.metadata.get("choices")
    if choices:
        return (lambda v: v in choices), " or ".join(repr(c) for c in choices)
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, float):
        return _is_finite, "a finite number"
    if isinstance(default, int):
        return _is_int, "an integer"
    return (lambda v: isinstance(v, type(default))), f"a {type(default).__name__}"


def _flag_help(f: dataclasses.Field, default) -> str:
    """The field's help text and its default, as --help shows them."""
    if isinstance(default, bool):
        return f.metadata["help"]
    if "default_help" in f.metadata:
        shown = f.metadata["default_help"]
    elif isinstance(default, list):
        shown = " ".join(map(str, default)) or "none"
    elif isinstance(default, str):
        shown = default or "none"
    else:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
    return f"{f.metadata['help']} (default: {shown})"


def _metavar(f: dataclasses.Field, value_type: type) -> str:
    if "choices" in f.metadata:
        return "{" + ",".join(f.metadata["choices"]) + "}"
    if "metavar" in f.metadata:
        return f.metadata["metavar"]
    return {int: "N", float: "X"}.get(value_type, "TEXT")


def build_parser() -> argparse.ArgumentParser:
    """The command line: --config, --resume, --push-to-hub, and one flag per TrainConfig field, with its help."""
    # No abbreviations: a typo such as --max-step must be an error, not silently taken for --max-steps.
    parser = argparse.ArgumentParser(
        prog="python -m training.train",
        description=DESCRIPTION,
        allow_abbrev=False,
        usage="%(prog)s [--config FILE] [--resume] [--push-to-hub REPO_ID] [--SETTING VALUE ...]",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="JSON file with any of the settings below, named as the flags with _ for - (flags override it)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --output-dir from its newest loadable checkpoint"
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the final model folder to this Hub repository")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        common = dict(dest=f.name, default=None, help=_flag_help(f, default))
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
        elif isinstance(default, list):
            item_type = f.metadata.get("item_type", str)
            parser.add_argument(flag, nargs="*", type=item_type, metavar=f.metadata.get("metavar", "X"), **common)
        else:
            value_type = f.metadata.get("type", type(default))
            parser.add_argument(flag, type=value_type, metavar=_metavar(f, value_type), **common)
    return parser


# Settings a resumed run may change: how long it goes on, how often it logs, saves and evaluates, how it ends
# and where its data and folders are. Everything else (the model, its tokenizer, the optimisation so far) is the
# run's own, read from its train_config.json.
RESUMABLE = frozenset(
    {
        "output_dir",
        "data",
        "max_steps",
        "cooldown_steps",
        "eval_steps",
        "eval_samples",
        "save_steps",
        "keep_checkpoints",
        "average_last",
        "final_eval_limit",
        "num_beams",
        "length_penalty",
        "length_penalty_candidates",
        "test_splits",
        "logging_steps",
        "threads",
        "torch_compile",
        "torch_compile_backend",
        "export_dir",
        "overwrite_output_dir",
    }
)


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    """The run's settings from the command line and the --config file (flags win), validated. With --resume the
    run's own train_config.json comes first: a flag may change only the RESUMABLE settings."""
    args = build_parser().parse_args(argv)
    values = read_config_file(args.config) if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    if args.resume:
        values = resumed_settings(values)
    config = TrainConfig(**values)
    config.validate()
    return config, args


def resumed_settings(given: dict) -> dict:
    """The settings of the run being resumed (its train_config.json) with the `given` ones that may change on
    resume; a given setting that contradicts the run is refused by name. No train_config.json: `given` as it is
    (a run that never started)."""
    output_dir = given.get("output_dir", TrainConfig.output_dir)
    path = os.path.join(output_dir, "train_config.json")
    if not os.path.exists(path):
        return given
    try:
        with open(path, encoding="utf-8") as fh:
            saved = json.load(fh)
        if not isinstance(saved, dict):
            raise ValueError(f"it holds {_json_kind(saved)}, not an object of settings")
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"training: --resume: the run's settings file {path} is damaged ({e}). Restore it (a JSON "
            "object of the run's settings, as --config takes), or start a new run in another "
            "--output-dir."
        ) from None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = {name: value for name, value in saved.items() if name in names}
    contradicted = [
        name for name, value in given.items() if name not in RESUMABLE and name in saved and value != saved[name]
    ]
    if contradicted:
        listed = "; ".join(
            f"--{name.replace('_', '-')} {given[name]!r} (the run has {saved[name]!r})" for name in contradicted
        )
        raise SystemExit(
            f"training: --resume: {listed}. A resumed run keeps its settings from {path}; drop these "
            "flags, or start a new run in another --output-dir. Only these may change on resume: "
            f"{', '.join('--' + n.replace('_', '-') for n in sorted(RESUMABLE))}."
        )
    return {**saved, **given}


def _json_kind(value) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )


def read_config_file(path: str) -> dict:
    """The settings of a JSON config file (an object whose keys are TrainConfig field names)."""
    try:
        with open(path, encoding="utf-8") as fh:
            values = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"training: cannot read config file {path}: {e}") from None
    if not isinstance(values, dict):
        raise SystemExit(
            f"training: config file {path} must hold a JSON object of settings, such as "
            f'{{"max_steps": 1000, "dropout": 0.3}}; it holds {_json_kind(values)}'
        )
    unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise SystemExit(f"training: unknown setting(s) in {path}: {', '.join(sorted(unknown))}")
    return values


# ------------------------------------------------------------------------------ the run folder's checkpoints

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_CHECKPOINT_FILES = ("model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt")


def scan_checkpoints(folder: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The checkpoints that were written completely, oldest first, and the incomplete ones with the reason
    [(path, why)] (a kill during saving leaves one). Cheap: it only lists files and reads trainer_state.json."""
    if not os.path.isdir(folder):
        return [], []
    found, incomplete = [], []
    for name in os.listdir(folder):
        m = _CHECKPOINT.match(name)
        if not m:
            continue
        path = os.path.join(folder, name)
        if why := _incomplete(path):
            incomplete.append((int(m.group(1)), path, why))
        else:
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)], [(p, why) for _, p, why in sorted(incomplete)]


def _incomplete(path: str) -> str | None:
    missing = [f for f in _CHECKPOINT_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        return f"incomplete, no {', '.join(missing)} (a save was interrupted)"
    # trainer_state.json is written last, but not atomically: a kill while it is written leaves it cut.
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as fh:
            state = json.load(fh)
        state["global_step"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"trainer_state.json cannot be read ({short_reason(e)})"
    if problem := _trainer_state_problem(state):
        return f"trainer_state.json is damaged ({problem})"
    return None


def _trainer_state_problem(state: dict) -> str | None:
    """What in a trainer_state.json the Trainer would trip over (a wrong type), or None."""
    step = state["global_step"]
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"global_step is {step!r}, not a step number"
    if not isinstance(state.get("log_history", []), list):
        return f"log_history is {_json_kind(state['log_history'])}, not an array"
    best = state.get("best_model_checkpoint")
    if best is not None and not isinstance(best, str):
        return f"best_model_checkpoint is {_json_kind(best)}, not a path"
    metric = state.get("best_metric")
    if metric is not None and (not isinstance(metric, (int, float)) or isinstance(metric, bool)):
        return f"best_metric is {_json_kind(metric)}, not a number"
    return None


def complete_checkpoints(folder: str) -> list[str]:
    """Checkpoints that were written completely, oldest first (a kill during saving leaves an incomplete one)."""
    return scan_checkpoints(folder)[0]


def checkpoint_problem(path: str, weights_only: bool = False) -> str | None:
    """Why a complete checkpoint cannot be used (a truncated or corrupt file, weights that are not finite), or
    None. The weights are read; of the torch files only the zip directories (memory-mapped, as the Trainer loads
    them). `weights_only`: check only model.safetensors (all that averaging needs)."""
    from safetensors import safe_open

    import torch

    try:  # every tensor is read: weights that are NaN or infinite (a diverged run) are as unusable as a cut file
        with safe_open(os.path.join(path, "model.safetensors"), "pt") as weights:
            not_finite = next(
                (name for name in sorted(weights.keys()) if not bool(torch.isfinite(weights.get_tensor(name)).all())),
                None,
            )
    except Exception as e:  # safetensors raises its own error type for a cut or corrupt file
        return f"model.safetensors cannot be read ({short_reason(e)})"
    if not_finite:
        return f"model.safetensors holds weights that are not finite (NaN or inf, first in {not_finite}): the run had diverged"
    if weights_only:
        return None

    for name in ("optimizer.pt", "scheduler.pt"):
        try:  # as the Trainer loads them (memory-mapped here: the zip directory and pickle, not the data)
            torch.load(os.path.join(path, name), map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            return f"{name} cannot be read ({short_reason(e)})"
    for rng in sorted(glob.glob(os.path.join(path, "rng_state*.pth"))):
        try:  # numpy's state inside needs the Trainer's allow-list to unpickle: check the zip directory only
            with zipfile.ZipFile(rng) as archive:
                archive.infolist()
        except (OSError, zipfile.BadZipFile) as e:
            return f"{os.path.basename(rng)} cannot be read ({short_reason(e)})"
    return None


def short_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
