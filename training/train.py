"""Train the Transformer on parallel text with the paper's recipe (section 5) through `Seq2SeqTrainer`.

    python -m training.train --data ../shared/data/multi30k --source-lang en --target-lang de \
        --output-dir runs/en-de [--config training/configs/multi30k_en_de.json] [--resume] [--push-to-hub ID]

Defaults follow the paper where it applies: Adam with beta2 = 0.98 and eps = 1e-9, a linear warm-up then
inverse-square-root decay of the learning rate (section 5.3; optionally a linear cool-down to zero at the
end, `--cooldown-steps`), label smoothing 0.1 and residual dropout
(section 5.4), batches of similar lengths (section 5.1), the average of the last checkpoints (section 6.1)
and beam search with a length penalty for evaluation (beam 4, alpha 0.6, section 6.1).

The output folder holds `tokenizer/`, `checkpoints/` (Trainer checkpoints, with optimizer, scheduler and
RNG state), `train_config.json`, `log.jsonl` and, at the end, `model/`: a complete Hub repository.
The same command runs under `accelerate launch` with several processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field

logger = logging.getLogger("training")


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
        prog="python -m training.train", description=__doc__.split("\n\n")[0],
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


def _logged_seconds(log_path: str) -> float:
    """The last elapsed-time entry of a run's log.jsonl (0 for a new run)."""
    last = 0.0
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    last = max(last, float(json.loads(line).get("time_s", 0.0)))
                except (ValueError, AttributeError):
                    continue
    return last


def learning_rate_factor(step: int, *, warmup_steps: int, max_steps: int, cooldown_steps: int = 0) -> float:
    """The learning rate at `step` as a fraction of `learning_rate` (its peak).

    Section 5.3, eq. 3: lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5), a linear warm-up then
    a decay with the inverse square root of the step. Scaled so that the peak, at step = warmup_steps, is 1:
    min(step / warmup, sqrt(warmup / step)). With `cooldown_steps`, the rate then falls linearly from its value
    at max_steps - cooldown_steps to zero at max_steps.
    """
    def inverse_sqrt(s: int) -> float:
        if s < warmup_steps:
            return s / warmup_steps
        return math.sqrt(max(warmup_steps, 1) / max(s, 1))

    start = max_steps - cooldown_steps
    if cooldown_steps <= 0 or step < start:
        return inverse_sqrt(step)
    return inverse_sqrt(start) * max(0.0, (max_steps - step) / cooldown_steps)


def bf16_unsupported_reason(use_cpu: bool) -> str | None:
    """Why bf16 mixed precision would not pay off on this machine, or None where it does.

    Without native bf16 matmul instructions torch emulates them: measured on an AVX2-only AMD EPYC, a 1024^3
    bf16 matmul ran at 0.8 GFLOP/s against 88 GFLOP/s in fp32 (100x slower). With AMX it ran 4.5x faster.
    """
    import torch

    if not use_cpu:
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return None
        return f"the GPU ({torch.cuda.get_device_name(0)}) has no native bf16 support (it needs compute capability 8.0+)"
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return None
    return (f"this CPU has no AVX512-BF16 or AMX instructions (torch sees {torch.backends.cpu.get_cpu_capability()}), "
            "where bf16 matmuls are emulated and about 100x slower than fp32")


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


def build_tokenizer(config: TrainConfig, train_corpus):
    """Train the joint vocabulary once (main process first) and keep it in the output folder."""
    from transformers import AutoTokenizer

    from .tokenizer import train_tokenizer

    path = os.path.join(config.output_dir, "tokenizer")
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        logger.info("loading the tokenizer from %s", path)
        return AutoTokenizer.from_pretrained(path)
    if config.init_from:  # fine-tuning keeps the vocabulary the weights were trained with
        logger.info("using the tokenizer of %s", config.init_from)
        tok = AutoTokenizer.from_pretrained(config.init_from, trust_remote_code=True)
        tok.save_pretrained(path + ".tmp")
        os.replace(path + ".tmp", path)
        return tok
    logger.info("training a %d-token joint %s vocabulary on %d sentence pairs", config.vocab_size,
                config.tokenizer_type, len(train_corpus))
    tok = train_tokenizer(train_corpus.source + train_corpus.target, config.vocab_size, config.tokenizer_type,
                          model_max_length=config.max_length)
    tmp = path + ".tmp"
    tok.save_pretrained(tmp)
    os.replace(tmp, path)  # atomic: a half-written tokenizer is never picked up
    return tok


def encode(tokenizer, corpus, max_length: int):
    """Tokenise a corpus into a `datasets.Dataset` with input_ids, attention_mask, labels and a length column."""
    import datasets

    enc = tokenizer(corpus.source, text_target=corpus.target, truncation=True, max_length=max_length)
    truncated = sum(len(x) == max_length for x in enc["input_ids"]) + sum(len(x) == max_length for x in enc["labels"])
    if truncated:
        logger.warning("truncated %d sentences longer than %d tokens", truncated, max_length)
    lengths = [len(s) + len(t) for s, t in zip(enc["input_ids"], enc["labels"])]
    return datasets.Dataset.from_dict({**enc, "length": lengths}), truncated


def model_config(config: TrainConfig, tokenizer):
    from configuration import TransformerConfig

    return TransformerConfig(
        vocab_size=len(tokenizer),
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.attention_heads,
        decoder_attention_heads=config.attention_heads,
        encoder_ffn_dim=config.ffn_dim,
        decoder_ffn_dim=config.ffn_dim,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        label_smoothing=config.label_smoothing,
        position_embedding_type=config.position_embedding_type,
        normalize_before=config.normalize_before,
        max_position_embeddings=max(512, config.max_length + 8),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
    )


def architecture_of(model_cfg) -> dict:
    """The TrainConfig size settings that describe a model's configuration."""
    return dict(d_model=model_cfg.d_model, encoder_layers=model_cfg.encoder_layers,
                decoder_layers=model_cfg.decoder_layers, attention_heads=model_cfg.encoder_attention_heads,
                ffn_dim=model_cfg.encoder_ffn_dim, vocab_size=model_cfg.vocab_size,
                position_embedding_type=model_cfg.position_embedding_type, normalize_before=model_cfg.normalize_before)


def load_initial_model(config: TrainConfig, tokenizer):
    """The model `--init-from` names, with this run's dropout and label smoothing (its weights unchanged)."""
    from modeling import TransformerForConditionalGeneration

    try:
        model = TransformerForConditionalGeneration.from_pretrained(
            config.init_from, dropout=config.dropout, attention_dropout=config.attention_dropout,
            label_smoothing=config.label_smoothing)
    except (OSError, ValueError) as e:
        raise SystemExit(f"training: cannot load --init-from {config.init_from}: {e}")
    if model.config.vocab_size != len(tokenizer):
        raise SystemExit(f"training: --init-from {config.init_from} has a vocabulary of {model.config.vocab_size} but "
                         f"its tokenizer has {len(tokenizer)} tokens; export the model and tokenizer together.")
    ignored = {k: (getattr(config, k), v) for k, v in architecture_of(model.config).items() if getattr(config, k) != v}
    if ignored:
        logger.warning("--init-from: the size settings come from %s; ignoring %s", config.init_from,
                       ", ".join(f"{k}={mine!r} (it has {theirs!r})" for k, (mine, theirs) in ignored.items()))
    logger.info("fine-tuning %s: its weights, tokenizer and architecture; dropout %g, label smoothing %g",
                config.init_from, config.dropout, config.label_smoothing)
    return model


def generation_config(config: TrainConfig, model_cfg):
    from transformers import GenerationConfig

    # Beam settings only with beams: transformers refuses to save early_stopping or a length penalty for greedy search.
    beam = dict(length_penalty=config.length_penalty, early_stopping=True) if config.num_beams > 1 else {}
    return GenerationConfig(
        num_beams=config.num_beams,
        **beam,
        max_length=config.max_length,
        bos_token_id=model_cfg.bos_token_id,
        eos_token_id=model_cfg.eos_token_id,
        pad_token_id=model_cfg.pad_token_id,
        decoder_start_token_id=model_cfg.decoder_start_token_id,
    )


def make_trainer_class():
    from torch.utils.data import Sampler
    from transformers import Seq2SeqTrainer

    class LengthGroupedBatchSampler(Sampler):
        """Shuffled indices in which every run of `batch_size` items has similar source+target length
        (section 5.1: "sentence pairs were batched together by approximate sequence length")."""

        def __init__(self, lengths, batch_size, seed, epoch_getter):
            self.lengths, self.batch_size, self.seed, self.epoch_getter = lengths, batch_size, seed, epoch_getter

        def __len__(self):
            return len(self.lengths)

        def __iter__(self):
            import torch

            g = torch.Generator().manual_seed(self.seed + int(self.epoch_getter()))
            perm = torch.randperm(len(self.lengths), generator=g).tolist()
            pool = self.batch_size * 100  # sort within pools of 100 batches: similar lengths, still random
            batches = []
            for start in range(0, len(perm), pool):
                chunk = sorted(perm[start : start + pool], key=lambda i: self.lengths[i])
                batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            order = torch.randperm(len(batches), generator=g).tolist()
            for b in order:
                yield from batches[b]

    class TransformerTrainer(Seq2SeqTrainer):
        schedule = None  # keyword arguments of learning_rate_factor; None: the scheduler TrainingArguments names

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None and self.schedule is not None:
                import functools

                from torch.optim.lr_scheduler import LambdaLR

                # A partial of a module-level function: the saved scheduler state stays small and loads back
                # into a scheduler rebuilt from the config (so a resumed run may add a cool-down).
                self.lr_scheduler = LambdaLR(optimizer or self.optimizer,
                                             functools.partial(learning_rate_factor, **self.schedule))
                self._created_lr_scheduler = True
            return super().create_scheduler(num_training_steps, optimizer)

        token_batches = None  # keyword arguments of TokenBatchSampler; None: batches of a fixed number of pairs

        def get_train_dataloader(self):
            if self.token_batches is None:
                return super().get_train_dataloader()
            from torch.utils.data import DataLoader

            from .batching import TokenBatchSampler

            # Under several processes accelerate deals the batches out in turn (every process builds the same order).
            dataset = self._remove_unused_columns(self.train_dataset, description="Training")
            sampler = TokenBatchSampler(**self.token_batches)
            return self.accelerator.prepare(DataLoader(dataset, batch_sampler=sampler, collate_fn=self.data_collator,
                                                       num_workers=self.args.dataloader_num_workers))

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = getattr(self, "pair_lengths", None)
            if lengths is None or len(lengths) != len(dataset):
                return super()._get_train_sampler(train_dataset)
            # Under several processes accelerate shards the resulting batches: every process builds the same
            # seeded order and takes its own batches, each still of similar lengths.
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedBatchSampler(lengths, batch, self.args.seed,
                                             lambda: self.state.epoch or 0)

    return TransformerTrainer


def main(argv=None) -> int:
    config, args = parse_args(argv)
    ckpt_dir = os.path.join(config.output_dir, "checkpoints")
    # Refuse an existing run before any import or work (fast, and nothing in the folder is touched).
    if os.path.isdir(config.output_dir) and os.listdir(config.output_dir) and not (args.resume or config.overwrite_output_dir):
        raise SystemExit(
            f"training: {config.output_dir} already holds a run ({len(complete_checkpoints(ckpt_dir))} checkpoints). "
            "Pass --resume to continue it, choose another --output-dir, or pass --overwrite-output-dir to start "
            "over in it."
        )
    if config.init_from and os.path.exists(config.init_from) and not os.path.isfile(
            os.path.join(config.init_from, "config.json")):
        raise SystemExit(f"training: --init-from {config.init_from} is not a model folder (no config.json in it); "
                         "name a folder written by this command or save_pretrained, or a Hub model id.")
    if config.init_from and not os.path.exists(config.init_from) and not re.fullmatch(
            r"[\w.-]+(/[\w.-]+)?", config.init_from):
        raise SystemExit(f"training: --init-from {config.init_from}: no such folder, and not a Hub model id; train or download that model first.")
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO,
                        stream=sys.stdout)
    import torch
    from accelerate import PartialState
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainingArguments, TrainerCallback, set_seed

    import modeling  # noqa: F401  (registers the Auto classes and remote code)
    from modeling import TransformerForConditionalGeneration

    from .data import DataError, load_corpus
    from .metrics import score

    if config.threads:
        torch.set_num_threads(config.threads)
    # On CPU, accelerate only sees a multi-process launch as distributed (gloo) when told it runs on CPU; without
    # this, every process believes it is the main one before the Trainer sets up (all train the tokenizer at once).
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if config.bf16 and (reason := bf16_unsupported_reason(use_cpu)):
        raise SystemExit(f"training: --bf16 refused: {reason}. Train in fp32 (drop --bf16 / set \"bf16\": false).")
    state = PartialState(cpu=use_cpu)
    # Bad data is refused before the output folder is created or touched.
    try:
        train_corpus = load_corpus(config.data, config.train_split, config.source_lang, config.target_lang)
        valid_corpus = load_corpus(config.data, config.valid_split, config.source_lang, config.target_lang)
    except DataError as e:
        raise SystemExit(f"training: {e}")
    if config.overwrite_output_dir and not args.resume and state.is_main_process:
        import shutil

        # Start over: the old checkpoints, tokenizer (it may have another vocabulary size) and log go.
        for name in ("checkpoints", "tokenizer", "tokenizer.tmp"):
            shutil.rmtree(os.path.join(config.output_dir, name), ignore_errors=True)
        if os.path.isfile(os.path.join(config.output_dir, "log.jsonl")):
            os.remove(os.path.join(config.output_dir, "log.jsonl"))
    state.wait_for_everyone()
    existing = complete_checkpoints(ckpt_dir)
    os.makedirs(config.output_dir, exist_ok=True)
    if state.is_main_process:
        with open(os.path.join(config.output_dir, "train_config.json"), "w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(config), fh, indent=2)

    set_seed(config.seed)
    if config.max_train_samples:
        train_corpus.source = train_corpus.source[: config.max_train_samples]
        train_corpus.target = train_corpus.target[: config.max_train_samples]
    with state.main_process_first():
        tokenizer = build_tokenizer(config, train_corpus)
    train_ds, truncated = encode(tokenizer, train_corpus, config.max_length)
    n_eval = min(config.eval_samples or len(valid_corpus), len(valid_corpus))
    eval_ds, _ = encode(tokenizer, type(valid_corpus)(valid_corpus.source[:n_eval], valid_corpus.target[:n_eval]),
                        config.max_length)
    logger.info("train: %d pairs (%d empty skipped, %d truncated); periodic validation on %d pairs",
                len(train_ds), train_corpus.skipped_empty, truncated, n_eval)

    if config.init_from:
        model = load_initial_model(config, tokenizer)
        model_cfg = model.config
        # The architecture is the initial model's: the record of this run (train_config.json, model card) says so.
        config = dataclasses.replace(config, **architecture_of(model_cfg))
        if state.is_main_process:
            with open(os.path.join(config.output_dir, "train_config.json"), "w", encoding="utf-8") as fh:
                json.dump(dataclasses.asdict(config), fh, indent=2)
    else:
        model_cfg = model_config(config, tokenizer)
        model = TransformerForConditionalGeneration(model_cfg)
    model.generation_config = generation_config(config, model_cfg)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %.2fM parameters (d_model %d, %d+%d layers, %d heads, FFN %d, vocab %d)", n_params / 1e6,
                config.d_model, config.encoder_layers, config.decoder_layers, config.attention_heads, config.ffn_dim,
                model_cfg.vocab_size)

    def compute_metrics(pred):
        import numpy as np

        # With several processes, accelerate completes the last batches with repeats of the first sentences so
        # that every process gets full batches; they come after the n_eval real rows (in order): drop them.
        ids = np.where(pred.predictions < 0, tokenizer.pad_token_id, pred.predictions)[:n_eval]
        hyps = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return {k: v for k, v in score(hyps, valid_corpus.target[:n_eval], config.target_lang).items()
                if isinstance(v, (int, float))}

    log_path = os.path.join(config.output_dir, "log.jsonl")

    class JsonLog(TrainerCallback):
        """A readable, machine-parsable log line per logging step (loss, lr, BLEU, elapsed time)."""

        def __init__(self):
            # Wall-clock training time accumulates over resumed sessions (read back from the log).
            self.start = time.time() - _logged_seconds(log_path)

        def on_log(self, args_, state_, control, logs=None, **kwargs):
            if state_.is_world_process_zero and logs:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"step": state_.global_step, "time_s": round(time.time() - self.start, 1),
                                         **logs}) + "\n")

    training_args = Seq2SeqTrainingArguments(
        output_dir=ckpt_dir,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=64,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        bf16=config.bf16,
        learning_rate=config.learning_rate,
        lr_scheduler_type="inverse_sqrt",  # what the schedule is before any cool-down; built by create_scheduler
        warmup_steps=config.warmup_steps,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        adam_epsilon=config.adam_epsilon,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        max_steps=config.max_steps,
        eval_strategy="steps",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.keep_checkpoints,
        metric_for_best_model="bleu",
        greater_is_better=True,
        predict_with_generate=True,
        generation_num_beams=1,
        generation_max_length=config.max_length,
        logging_steps=config.logging_steps,
        report_to="none",
        seed=config.seed,
        dataloader_num_workers=0,
        use_cpu=use_cpu,
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer_cls = make_trainer_class()
    trainer = trainer_cls(
        model=model,
        args=training_args,
        train_dataset=train_ds.remove_columns(["length"]),
        eval_dataset=eval_ds.remove_columns(["length"]),
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=compute_metrics,
        callbacks=[JsonLog()],
    )
    trainer.pair_lengths = train_ds["length"]
    if config.max_tokens:
        trainer.token_batches = dict(
            lengths=[max(len(s), len(t)) for s, t in zip(train_ds["input_ids"], train_ds["labels"])],
            max_tokens=config.max_tokens, seed=config.seed)
    trainer.schedule = dict(warmup_steps=config.warmup_steps, max_steps=config.max_steps,
                            cooldown_steps=config.cooldown_steps)

    resume_from = None
    if args.resume:
        if existing:
            resume_from = existing[-1]
            logger.info("resuming from %s", resume_from)
        else:
            logger.info("--resume: no complete checkpoint in %s yet, starting from step 0", ckpt_dir)
    t0 = time.time()
    already_done = resume_from and json.load(open(os.path.join(resume_from, "trainer_state.json")))["global_step"] >= config.max_steps
    if not already_done:
        trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = _logged_seconds(log_path) or (time.time() - t0)
    state.wait_for_everyone()
    if state.is_main_process:
        from .export import finalize

        finalize(config, trainer, tokenizer, train_seconds=train_seconds, push_to_hub=args.push_to_hub,
                 argv=["python", "-m", "training.train", *(sys.argv[1:] if argv is None else argv)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
