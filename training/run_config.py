"""A training run's settings and its output folder.

`TrainConfig` holds every setting of `python -m training.train`; a JSON config file and command-line flags fill
it (flags win) and `validate` refuses a bad value before any work starts. The output folder holds
`tokenizer/`, `checkpoints/` (Trainer checkpoints), `train_config.json`, `log.jsonl` and, at the end, `model/`;
`complete_checkpoints` lists the checkpoints a run can continue from or average.

Only the standard library is imported here, so that a bad setting is refused at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
from dataclasses import dataclass, field

DESCRIPTION = "Train the Transformer on parallel text with the paper's recipe (section 5) through `Seq2SeqTrainer`."


@dataclass
class TrainConfig:
    """Every setting of a training run; a JSON config file and command-line flags fill it (flags win)."""

    data: str = "../shared/data/multi30k"
    source_lang: str = "en"
    target_lang: str = "de"
    output_dir: str = "runs/en-de"
    train_split: str = "train"
    valid_split: str = "val"
    test_splits: list = field(default_factory=lambda: ["test_2016_flickr"])
    max_train_samples: int = 0  # 0 = all
    # Fine-tune: start from this model's weights (a folder written by this command or save_pretrained, or a Hub
    # id) and keep its tokenizer and architecture; the vocabulary and size settings below are then taken from it.
    init_from: str = ""
    # tokenizer
    vocab_size: int = 8000
    tokenizer_type: str = "bpe"
    max_length: int = 128  # subword tokens per side; longer sentences are truncated and counted
    # model (paper's base is 512/2048/8/6+6; this default is sized for a laptop CPU)
    d_model: int = 256
    encoder_layers: int = 3
    decoder_layers: int = 3
    attention_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.0
    label_smoothing: float = 0.1
    position_embedding_type: str = "sinusoidal"
    normalize_before: bool = False
    # optimisation (section 5.3)
    learning_rate: float = 1e-3
    warmup_steps: int = 1000
    # Linear decay of the learning rate to zero over the last N steps (0 = the paper's schedule unchanged).
    # The inverse-square-root schedule never lets the rate fall far (still 0.24x its peak after 18 warm-ups'
    # worth of steps), so the weights keep wandering; a short cool-down at the end settles them, much as
    # checkpoint averaging does (section 6.1). Until max_steps - cooldown_steps the rate is exactly eq. 3, so
    # a run resumed with a longer max_steps and a cool-down equals one that planned it from the start.
    cooldown_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-9
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_size: int = 64  # sentence pairs per batch (per process), unless max_tokens is set
    # Batches by size instead (fairseq's --max-tokens, section 5.1): pairs of similar length, as many per batch as
    # keep pairs x longest side <= max_tokens. 0 = batches of batch_size pairs.
    max_tokens: int = 0
    # Mixed precision: the Trainer's bf16 autocast (matmuls in bfloat16; fp32 master weights, optimizer state and
    # saved weights). Refused on hardware without native bf16 matmuls (CPU: AVX512-BF16 or AMX; CUDA: Ampere or
    # newer), where it is slower than fp32 rather than faster.
    bf16: bool = False
    gradient_accumulation_steps: int = 1
    max_steps: int = 12000
    # evaluation, checkpoints, decoding
    eval_steps: int = 1000
    eval_samples: int = 300  # validation sentences for the periodic (greedy) BLEU
    save_steps: int = 500
    keep_checkpoints: int = 6
    average_last: int = 5  # section 6.1: average the last N checkpoints
    final_eval_limit: int = 0  # evaluate the final candidates on only the first N sentences (0 = whole split)
    num_beams: int = 4
    length_penalty: float = 0.6
    # More length penalties to try at the end on the validation split, for the chosen weights; the best is kept
    # in generation_config.json (section 6.1: beam size and alpha "chosen after experimentation on the
    # development set"). Empty: only `length_penalty`.
    length_penalty_candidates: list = field(default_factory=list, metadata={"item_type": float})
    logging_steps: int = 50
    seed: int = 42
    threads: int = 0  # torch threads, 0 = torch's default
    overwrite_output_dir: bool = False
    export_dir: str = ""  # also copy the final model folder here (e.g. space/model), refusing to overwrite

    def validate(self) -> None:
        """Refuse a bad value before any work starts, naming it and what is allowed."""
        problems = []
        for name in ("vocab_size", "max_length", "d_model", "encoder_layers", "decoder_layers", "attention_heads",
                     "ffn_dim", "batch_size", "gradient_accumulation_steps", "max_steps", "eval_steps", "save_steps",
                     "keep_checkpoints", "average_last", "num_beams", "logging_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        for name in ("warmup_steps", "cooldown_steps", "max_train_samples", "eval_samples", "threads", "final_eval_limit",
                     "max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("dropout", "attention_dropout", "label_smoothing", "adam_beta1", "adam_beta2", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                problems.append(f"{name} must be in [0, 1), got {value!r}")
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < 1):
            problems.append(f"learning_rate must be in (0, 1), got {self.learning_rate!r}")
        if not (isinstance(self.adam_epsilon, (int, float)) and self.adam_epsilon > 0):
            problems.append(f"adam_epsilon must be > 0, got {self.adam_epsilon!r}")
        if isinstance(self.d_model, int) and isinstance(self.attention_heads, int) and self.attention_heads > 0 \
                and self.d_model % self.attention_heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by attention_heads ({self.attention_heads})")
        if all(isinstance(getattr(self, n), int) for n in ("warmup_steps", "cooldown_steps", "max_steps")) \
                and self.cooldown_steps > 0 and self.warmup_steps + self.cooldown_steps > self.max_steps:
            problems.append(f"warmup_steps ({self.warmup_steps}) + cooldown_steps ({self.cooldown_steps}) must not "
                            f"exceed max_steps ({self.max_steps})")
        if self.tokenizer_type not in ("bpe", "unigram"):
            problems.append(f"tokenizer_type must be 'bpe' or 'unigram', got {self.tokenizer_type!r}")
        if self.position_embedding_type not in ("sinusoidal", "learned"):
            problems.append(f"position_embedding_type must be 'sinusoidal' or 'learned', got {self.position_embedding_type!r}")
        if self.source_lang == self.target_lang:
            problems.append(f"source_lang and target_lang are both {self.source_lang!r}")
        if not isinstance(self.length_penalty_candidates, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.length_penalty_candidates):
            problems.append(f"length_penalty_candidates must be a list of numbers, got {self.length_penalty_candidates!r}")
        if isinstance(self.save_steps, int) and isinstance(self.eval_steps, int) and self.save_steps > 0 \
                and self.eval_steps % self.save_steps:
            problems.append(f"eval_steps ({self.eval_steps}) must be a multiple of save_steps ({self.save_steps}) "
                            "so the best checkpoint is one that was evaluated")
        if isinstance(self.max_tokens, int) and isinstance(self.max_length, int) and 0 < self.max_tokens < self.max_length:
            problems.append(f"max_tokens ({self.max_tokens}) must be 0 or at least max_length ({self.max_length}), "
                            "so that the longest pair fits in a batch")
        if problems:
            raise SystemExit("training: bad configuration:\n  - " + "\n  - ".join(problems))


def parse_args(argv=None) -> tuple[TrainConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", help="JSON file with any of the settings below (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint in --output-dir")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the final model folder to this Hub repository")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, list):
            parser.add_argument(flag, dest=f.name, nargs="*", type=f.metadata.get("item_type", str), default=None)
        else:
            parser.add_argument(flag, dest=f.name, type=type(default), default=None, help=f"(default {default!r})")
    args = parser.parse_args(argv)
    values = {}
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as fh:
                values = json.load(fh)
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"training: cannot read config file {args.config}: {e}")
        unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
        if unknown:
            raise SystemExit(f"training: unknown setting(s) in {args.config}: {', '.join(sorted(unknown))}")
    for f in dataclasses.fields(TrainConfig):
        if getattr(args, f.name) is not None:
            values[f.name] = getattr(args, f.name)
    config = TrainConfig(**values)
    config.validate()
    return config, args


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_CHECKPOINT_FILES = ("model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt")


def complete_checkpoints(folder: str) -> list[str]:
    """Checkpoints that were written completely, oldest first (a kill during saving leaves an incomplete one)."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        m = _CHECKPOINT.match(name)
        path = os.path.join(folder, name)
        if m and all(os.path.isfile(os.path.join(path, f)) for f in _CHECKPOINT_FILES):
            # trainer_state.json is written last, but not atomically: a kill while it is written leaves it cut.
            try:
                with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as fh:
                    json.load(fh)["global_step"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            found.append((int(m.group(1)), path))
    return [p for _, p in sorted(found)]
