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

import dataclasses
import glob
import json
import logging
import math
import os
import re
import sys
import tempfile
import time

from .export import finalize, generation_config, replace_problem

# TrainConfig, parse_args and complete_checkpoints are also imported from here (training.train) by their users.
from .run_config import (
    REGULARISATION,
    TrainConfig,
    architecture_of,
    checkpoint_problem,
    complete_checkpoints,
    model_arguments,
    parse_args,
    scan_checkpoints,
    short_reason,
)

logger = logging.getLogger("training")


def _logged_seconds(log_path: str) -> float:
    """The last elapsed-time entry of a run's log.jsonl (0 for a new run)."""
    last = 0.0
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    last = max(last, float(json.loads(line).get("time_s", 0.0)))
                except (ValueError, AttributeError, TypeError):  # a damaged line (trim_log names it)
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
        return (
            f"the GPU ({torch.cuda.get_device_name(0)}) has no native bf16 support (it needs compute capability 8.0+)"
        )
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return None
    return (
        f"this CPU has no AVX512-BF16 or AMX instructions (torch sees {torch.backends.cpu.get_cpu_capability()}), "
        "where bf16 matmuls are emulated and about 100x slower than fp32"
    )


def build_tokenizer(config: TrainConfig, train_corpus):
    """Train the joint vocabulary once (main process first) and keep it in the output folder."""
    from transformers import AutoTokenizer

    from .tokenizer import train_tokenizer

    path = os.path.join(config.output_dir, "tokenizer")
    if os.path.isfile(os.path.join(path, "tokenizer.json")):
        logger.info("loading the tokenizer from %s", path)
        try:
            return AutoTokenizer.from_pretrained(path)
        except Exception as e:  # tokenizers and json raise their own types for a damaged file
            raise SystemExit(
                f"training: the run's tokenizer in {path} cannot be read ({short_reason(e)}). "
                f"{_tokenizer_copy_hint(config.output_dir)}"
            ) from None
    if config.init_from:  # fine-tuning keeps the vocabulary the weights were trained with
        logger.info("using the tokenizer of %s", config.init_from)
        tok = AutoTokenizer.from_pretrained(config.init_from, trust_remote_code=True)
        tok.save_pretrained(path + ".tmp")
        os.replace(path + ".tmp", path)
        return tok
    logger.info(
        "training a %d-token joint %s vocabulary on %d sentence pairs",
        config.vocab_size,
        config.tokenizer_type,
        len(train_corpus),
    )
    tok = train_tokenizer(
        train_corpus.source + train_corpus.target,
        config.vocab_size,
        config.tokenizer_type,
        model_max_length=config.max_length,
    )
    tmp = path + ".tmp"
    tok.save_pretrained(tmp)
    os.replace(tmp, path)  # atomic: a half-written tokenizer is never picked up
    return tok


def _tokenizer_copy_hint(output_dir: str) -> str:
    """What to do about a damaged run tokenizer: every checkpoint (and the exported model) holds a copy."""
    copies = [
        os.path.join(p, "tokenizer.json")
        for p in reversed(complete_checkpoints(os.path.join(output_dir, "checkpoints")))
    ]
    copies.append(os.path.join(output_dir, "model", "tokenizer.json"))
    copy = next((c for c in copies if os.path.isfile(c)), None)
    if copy is None:
        return "No copy is left in the run: start over with --overwrite-output-dir."
    return f"A copy is in {copy}: copy it over {os.path.join(output_dir, 'tokenizer', 'tokenizer.json')}, then resume."


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
    """The configuration of a new model: the run's model settings (MODEL_SETTINGS), the tokenizer's vocabulary
    and special tokens, and room for positions a little beyond --max-length."""
    from configuration import TransformerConfig

    return TransformerConfig(
        **{
            **model_arguments(config),
            "vocab_size": len(tokenizer),  # the tokenizer's size: its vocabulary is the model's
            "max_position_embeddings": max(512, config.max_length + 8),
            "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "decoder_start_token_id": tokenizer.bos_token_id,
        }
    )


def load_initial_model(config: TrainConfig, tokenizer):
    """The model `--init-from` names, with this run's dropout and label smoothing (its weights unchanged)."""
    from modeling import TransformerForConditionalGeneration

    try:
        model = TransformerForConditionalGeneration.from_pretrained(
            config.init_from, **model_arguments(config, REGULARISATION)
        )
    except (OSError, ValueError) as e:
        raise SystemExit(f"training: cannot load --init-from {config.init_from}: {e}") from None
    if model.config.vocab_size != len(tokenizer):
        raise SystemExit(
            f"training: --init-from {config.init_from} has a vocabulary of {model.config.vocab_size} but "
            f"its tokenizer has {len(tokenizer)} tokens; export the model and tokenizer together."
        )
    ignored = {k: (getattr(config, k), v) for k, v in architecture_of(model.config).items() if getattr(config, k) != v}
    if ignored:
        logger.warning(
            "--init-from: the size settings come from %s; ignoring %s",
            config.init_from,
            ", ".join(f"{k}={mine!r} (it has {theirs!r})" for k, (mine, theirs) in ignored.items()),
        )
    logger.info(
        "fine-tuning %s: its weights, tokenizer and architecture; dropout %g, label smoothing %g",
        config.init_from,
        config.dropout,
        config.label_smoothing,
    )
    return model


class TrainingDiverged(RuntimeError):
    """The loss of a training step is NaN or infinite: the run stops before that step's update is saved."""

    def __init__(self, step: int, loss: float, learning_rate: float):
        super().__init__(
            f"the loss is {loss} at step {step} (learning rate {learning_rate:.3g}): training diverged "
            "and stopped, and nothing was exported. Lower --learning-rate, lengthen --warmup-steps or "
            "clip gradients (--max-grad-norm), then start over (--overwrite-output-dir)."
        )
        self.step = step


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

        def training_step(self, model, inputs, num_items_in_batch=None):
            """One step; a loss that is not finite stops the run (the Trainer would log the average so far and
            go on training, and save, weights that are NaN)."""
            import torch

            loss = super().training_step(model, inputs, num_items_in_batch)
            if not bool(torch.isfinite(loss)):
                raise TrainingDiverged(self.state.global_step + 1, float(loss), self.lr_scheduler.get_last_lr()[0])
            return loss

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None and self.schedule is not None:
                import functools

                from torch.optim.lr_scheduler import LambdaLR

                # A partial of a module-level function: the saved scheduler state stays small and loads back
                # into a scheduler rebuilt from the config (so a resumed run may add a cool-down).
                self.lr_scheduler = LambdaLR(
                    optimizer or self.optimizer, functools.partial(learning_rate_factor, **self.schedule)
                )
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
            return self.accelerator.prepare(
                DataLoader(
                    dataset,
                    batch_sampler=sampler,
                    collate_fn=self.data_collator,
                    num_workers=self.args.dataloader_num_workers,
                )
            )

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = getattr(self, "pair_lengths", None)
            if lengths is None or len(lengths) != len(dataset):
                return super()._get_train_sampler(train_dataset)
            # Under several processes accelerate shards the resulting batches: every process builds the same
            # seeded order and takes its own batches, each still of similar lengths.
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedBatchSampler(lengths, batch, self.args.seed, lambda: self.state.epoch or 0)

    return TransformerTrainer


# ------------------------------------------------------------------------------------ the run, step by step


def output_dir_problem(path: str) -> str | None:
    """Why `path` cannot be the run's folder (a file is in the way), or None."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"--output-dir {path} is a file, not a folder: choose another --output-dir or move the file away."
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"--output-dir {path} cannot be created: {parent} is a file. Choose another --output-dir."
    return unwritable_problem(path if os.path.isdir(path) else parent, "--output-dir", path)


def unwritable_problem(folder: str, flag: str, path: str) -> str | None:
    """Why nothing can be written into `folder` (read-only file system, no permission), or None. Tried by creating
    and removing a temporary file there, the one test that also holds for root and for read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return (
            f"{flag} {path} cannot be written: creating a file in {folder} failed ({err.strerror or err}). "
            f"Choose a {flag} on a writable disk, or make {folder} writable."
        )
    return None


# Everything a run writes into its output folder: --overwrite-output-dir removes these and nothing else.
RUN_ENTRIES = (
    "checkpoints",
    "tokenizer",
    "tokenizer.tmp",
    "log.jsonl",
    "log.jsonl.tmp",
    "model",
    "model.partial",
    "train_config.json",
    "train_config.json.tmp",
)
_PREVIOUS_EXPORT = re.compile(r"^model\.previous-[\d-]+$")  # an earlier export of the run, kept aside by export.py


def _is_run_entry(name: str) -> bool:
    return name in RUN_ENTRIES or bool(_PREVIOUS_EXPORT.match(name))


def not_a_run_problem(output_dir: str) -> str | None:
    """Why --overwrite-output-dir must not clear this folder (it does not look like a run of this command), or None."""
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return None
    names = sorted(os.listdir(output_dir))
    if "train_config.json" not in names:
        return (
            f"{output_dir} does not look like a run of this command (no train_config.json); it holds "
            f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}. Choose another --output-dir."
        )
    foreign = [name for name in names if not _is_run_entry(name)]
    if foreign:
        return (
            f"{output_dir} holds a run but also {', '.join(foreign)}, which this command did not write. Move "
            "them away or choose another --output-dir."
        )
    return None


def clear_previous_run(output_dir: str) -> None:
    """Remove what an earlier run wrote into `output_dir` (never anything else, never through a link), with
    train_config.json last: a kill in between leaves a folder that still looks like a run, so the same command
    clears it again."""
    import shutil

    names = sorted(
        (name for name in os.listdir(output_dir) if _is_run_entry(name)),
        key=lambda name: (name == "train_config.json", name),
    )
    for name in names:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    if names:
        logger.info("--overwrite-output-dir: removed the previous run's %s from %s", ", ".join(names), output_dir)


def export_dir_problem(config: TrainConfig) -> str | None:
    """Why --export-dir cannot receive the final model (checked before training, and again when copying), or None:
    it must not hold or be part of the run, and may only replace a model folder this project wrote."""
    export_dir, output_dir = os.path.abspath(config.export_dir), os.path.abspath(config.output_dir)
    if os.path.commonpath([export_dir, output_dir]) == export_dir:
        return (
            f"--export-dir {config.export_dir} is or contains the run's --output-dir {config.output_dir}: copying "
            "the model there would replace the run. Name another folder."
        )
    inside = os.path.relpath(export_dir, output_dir).split(os.sep)[0]
    if os.path.commonpath([export_dir, output_dir]) == output_dir and _is_run_entry(inside):
        return (
            f"--export-dir {config.export_dir} is part of the run in {config.output_dir} ({inside}); the run's "
            "model is written to its model/ folder anyway. Name a folder outside the run."
        )
    if problem := replace_problem(config.export_dir, "--export-dir"):
        return problem
    parent = os.path.dirname(export_dir)  # the model is staged beside the export folder, then swapped in
    while not os.path.isdir(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    return unwritable_problem(parent, "--export-dir", config.export_dir)


def refuse_before_any_work(config: TrainConfig, args) -> None:
    """Refuse an existing run, or an --init-from that cannot be a model, before any import or work (fast, and
    nothing in the output folder is touched)."""
    if problem := output_dir_problem(config.output_dir):
        raise SystemExit(f"training: {problem}")
    ckpt_dir = os.path.join(config.output_dir, "checkpoints")
    if config.overwrite_output_dir and not args.resume and (problem := not_a_run_problem(config.output_dir)):
        raise SystemExit(f"training: --overwrite-output-dir refused: {problem}")
    if (
        os.path.isdir(config.output_dir)
        and os.listdir(config.output_dir)
        and not (args.resume or config.overwrite_output_dir)
    ):
        raise SystemExit(
            f"training: {config.output_dir} already holds a run ({len(complete_checkpoints(ckpt_dir))} checkpoints). "
            "Pass --resume to continue it, choose another --output-dir, or pass --overwrite-output-dir to start "
            "over in it."
        )
    if config.export_dir and (problem := export_dir_problem(config)):
        raise SystemExit(f"training: {problem}")
    if (
        config.init_from
        and os.path.exists(config.init_from)
        and not os.path.isfile(os.path.join(config.init_from, "config.json"))
    ):
        raise SystemExit(
            f"training: --init-from {config.init_from} is not a model folder (no config.json in it); "
            "name a folder written by this command or save_pretrained, or a Hub model id."
        )
    if (
        config.init_from
        and not os.path.exists(config.init_from)
        and not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", config.init_from)
    ):
        raise SystemExit(
            f"training: --init-from {config.init_from}: no such folder, and not a Hub model id; train or download that model first."
        )


# glibc's malloc options (malloc.h): M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process for the next step instead of returning it to the kernel.

    By default every block above a few MB (a step's activations, the (B, T, V) logits) is mmapped when allocated
    and unmapped when freed, so each training step faults in and zeroes all its pages again: on the wu2021 recipe
    about 93,000 page faults a second and 11% of the CPU time in the kernel (benchmarks/README.md). A step
    allocates the same sizes every time, so the memory is better kept. True when glibc took the settings; False
    (and nothing changed) where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 1 << 34), (_M_TOP_PAD, 1 << 30))
    return all(mallopt(option, value) == 1 for option, value in settings)


def start_processes(config: TrainConfig):
    """Torch threads, CPU or GPU, the bf16 check, and accelerate's view of the processes. Returns (state, use_cpu)."""
    import torch
    from accelerate import PartialState

    if config.threads:
        torch.set_num_threads(config.threads)
    if keep_freed_memory():
        logger.info("memory: freed blocks stay in the process for the next step (glibc mallopt)")
    # On CPU, accelerate only sees a multi-process launch as distributed (gloo) when told it runs on CPU; without
    # this, every process believes it is the main one before the Trainer sets up (all train the tokenizer at once).
    use_cpu = not torch.cuda.is_available() or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    if config.bf16 and (reason := bf16_unsupported_reason(use_cpu)):
        raise SystemExit(f'training: --bf16 refused: {reason}. Train in fp32 (drop --bf16 / set "bf16": false).')
    return PartialState(cpu=use_cpu), use_cpu


def load_data(config: TrainConfig):
    """The training pairs (the first max_train_samples) and the validation pairs; bad data is refused here,
    before the output folder is created or touched."""
    from .data import DataError, load_corpus

    try:
        train_corpus = load_corpus(config.data, config.train_split, config.source_lang, config.target_lang)
        valid_corpus = load_corpus(config.data, config.valid_split, config.source_lang, config.target_lang)
    except DataError as e:
        raise SystemExit(f"training: {e}") from None
    if config.max_train_samples:
        train_corpus.source = train_corpus.source[: config.max_train_samples]
        train_corpus.target = train_corpus.target[: config.max_train_samples]
    return train_corpus, valid_corpus


def prepare_output_dir(config: TrainConfig, args, state) -> None:
    """Start over if asked (--overwrite-output-dir), create the folder and record the settings."""
    if config.overwrite_output_dir and not args.resume and state.is_main_process and os.path.isdir(config.output_dir):
        # Start over: the whole earlier run goes now (its tokenizer may have another vocabulary size, and its
        # model/ must not sit beside the new run's checkpoints until the end).
        clear_previous_run(config.output_dir)
    state.wait_for_everyone()
    os.makedirs(config.output_dir, exist_ok=True)
    write_train_config(config, state)


def write_train_config(config: TrainConfig, state) -> None:
    """The run's settings (what --resume reads back), replaced atomically: a kill never leaves half a file."""
    if state.is_main_process:
        path = os.path.join(config.output_dir, "train_config.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(config), fh, indent=2)
        os.replace(path + ".tmp", path)


def prepare_datasets(config: TrainConfig, state, train_corpus, valid_corpus):
    """The tokenizer (trained once, by the main process first) and the encoded training and periodic-validation
    sets. Returns (tokenizer, train_ds, eval_ds)."""
    with state.main_process_first():
        tokenizer = build_tokenizer(config, train_corpus)
    train_ds, truncated = encode(tokenizer, train_corpus, config.max_length)
    n_eval = min(config.eval_samples or len(valid_corpus), len(valid_corpus))
    eval_ds, _ = encode(
        tokenizer, type(valid_corpus)(valid_corpus.source[:n_eval], valid_corpus.target[:n_eval]), config.max_length
    )
    logger.info(
        "train: %d pairs (%d empty skipped, %d truncated); periodic validation on %d pairs",
        len(train_ds),
        train_corpus.skipped_empty,
        truncated,
        n_eval,
    )
    return tokenizer, train_ds, eval_ds


def build_model(config: TrainConfig, tokenizer, state):
    """A new model of the configured size, or the --init-from one (whose architecture then becomes the run's
    record: train_config.json and the model card say so). Returns (config, model)."""
    import modeling  # noqa: F401  (registers the Auto classes and remote code)
    from modeling import TransformerForConditionalGeneration

    if config.init_from:
        model = load_initial_model(config, tokenizer)
        model_cfg = model.config
        config = dataclasses.replace(config, **architecture_of(model_cfg))
        write_train_config(config, state)
    else:
        model_cfg = model_config(config, tokenizer)
        model = TransformerForConditionalGeneration(model_cfg)
    model.generation_config = generation_config(config, model_cfg)
    model.fused_loss = True  # the cheaper backward of an eager step (its loss has no path through the logits)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "model: %.2fM parameters (d_model %d, %d+%d layers, %d heads, FFN %d, vocab %d)",
        n_params / 1e6,
        config.d_model,
        config.encoder_layers,
        config.decoder_layers,
        config.attention_heads,
        config.ffn_dim,
        model_cfg.vocab_size,
    )
    return config, model


def bleu_metric(tokenizer, references: list[str], target_lang: str):
    """`compute_metrics` for the periodic validation: greedy output against the first len(references) pairs."""
    from .metrics import score

    n_eval = len(references)

    def compute_metrics(pred):
        import numpy as np

        # With several processes, accelerate completes the last batches with repeats of the first sentences so
        # that every process gets full batches; they come after the n_eval real rows (in order): drop them.
        ids = np.where(pred.predictions < 0, tokenizer.pad_token_id, pred.predictions)[:n_eval]
        hyps = [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return {k: v for k, v in score(hyps, references, target_lang).items() if isinstance(v, (int, float))}

    return compute_metrics


def json_log(log_path: str):
    """A callback writing a readable, machine-parsable log line per logging step (loss, lr, BLEU, elapsed time)."""
    from transformers import TrainerCallback

    class JsonLog(TrainerCallback):
        def __init__(self):
            # Wall-clock training time accumulates over resumed sessions (read back from the log).
            self.start = time.time() - _logged_seconds(log_path)

        def on_log(self, args_, state_, control, logs=None, **kwargs):
            if state_.is_world_process_zero and logs:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(
                        json.dumps({"step": state_.global_step, "time_s": round(time.time() - self.start, 1), **logs})
                        + "\n"
                    )

    return JsonLog()


def training_arguments(config: TrainConfig, use_cpu: bool):
    from transformers import Seq2SeqTrainingArguments

    return Seq2SeqTrainingArguments(
        output_dir=os.path.join(config.output_dir, "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=64,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        bf16=config.bf16,
        torch_compile=config.torch_compile,
        torch_compile_backend=config.torch_compile_backend if config.torch_compile else None,
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


def build_trainer(config: TrainConfig, model, tokenizer, train_ds, eval_ds, eval_references: list[str], use_cpu: bool):
    """The Trainer with the paper's schedule, length-grouped (or token-sized) batches and the JSON log."""
    from transformers import DataCollatorForSeq2Seq

    trainer = make_trainer_class()(
        model=model,
        args=training_arguments(config, use_cpu),
        train_dataset=train_ds.remove_columns(["length"]),
        eval_dataset=eval_ds.remove_columns(["length"]),
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=bleu_metric(tokenizer, eval_references, config.target_lang),
        callbacks=[json_log(os.path.join(config.output_dir, "log.jsonl"))],
    )
    trainer.pair_lengths = train_ds["length"]
    if config.max_tokens:
        trainer.token_batches = dict(
            lengths=[max(len(s), len(t)) for s, t in zip(train_ds["input_ids"], train_ds["labels"])],
            max_tokens=config.max_tokens,
            seed=config.seed,
        )
    trainer.schedule = dict(
        warmup_steps=config.warmup_steps, max_steps=config.max_steps, cooldown_steps=config.cooldown_steps
    )
    return trainer


def resume_checkpoint(config: TrainConfig, args, state) -> str | None:
    """With --resume, the newest checkpoint that loads (None: start from step 0). The log loses the lines of the
    steps that will be trained again."""
    if not args.resume:
        return None
    ckpt_dir = os.path.join(config.output_dir, "checkpoints")
    chosen = newest_loadable_checkpoint(ckpt_dir, report=state.is_main_process)
    if chosen is None:
        logger.info("--resume: no loadable checkpoint in %s yet, starting from step 0", ckpt_dir)
    else:
        logger.info("resuming from %s", chosen)
        if not glob.glob(os.path.join(chosen, "rng_state*.pth")) and state.is_main_process:
            logger.warning(
                "--resume: %s has no rng_state.pth: the dropout draws will differ from those of an uninterrupted run",
                chosen,
            )
    if state.is_main_process:
        trim_log(os.path.join(config.output_dir, "log.jsonl"), checkpoint_step(chosen) if chosen else 0)
    return chosen


def newest_loadable_checkpoint(ckpt_dir: str, report: bool = True) -> str | None:
    """The newest complete checkpoint whose files load, or None; with `report`, every checkpoint passed over
    (incomplete, or with a file that does not load) is logged with the reason."""
    complete, passed_over = scan_checkpoints(ckpt_dir)
    chosen = None
    for path in reversed(complete):
        if problem := checkpoint_problem(path):
            passed_over.append((path, problem))
        else:
            chosen = path
            break
    if report:
        for path, why in passed_over:
            logger.warning("--resume: skipping %s: %s", path, why)
    return chosen


def checkpoint_step(path: str) -> int:
    with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as fh:
        return json.load(fh)["global_step"]


def trim_log(log_path: str, step: int) -> None:
    """Drop the log lines after `step` (a killed run's, which the resumed run writes again) and any line a kill
    cut short, atomically (a temporary file, then a rename)."""
    if not os.path.isfile(log_path):
        return
    with open(log_path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for number, line in enumerate(lines, 1):
        if _log_step(line) is None and (number < len(lines) or line.endswith("\n")):  # the last may be a kill's
            logger.warning(
                "log.jsonl: line %d is damaged (not a JSON object with a step): dropped. The log is a "
                "record only; training goes on.",
                number,
            )
    kept = [line for line in lines if _log_step(line) is not None and _log_step(line) <= step]
    if len(kept) == len(lines):
        return
    tmp = log_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(line if line.endswith("\n") else line + "\n" for line in kept)
    os.replace(tmp, log_path)
    logger.info("log.jsonl: dropped %d lines after step %d (they are trained again)", len(lines) - len(kept), step)


def _log_step(line: str) -> int | None:
    """The step of a log.jsonl line, or None for a line cut short by a kill."""
    try:
        step = json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def run_training(trainer, config: TrainConfig, resume_from: str | None) -> float:
    """Train to max_steps (nothing to do if the checkpoint is already there); returns the wall-clock training
    time of the whole run, resumed sessions included."""
    t0 = time.time()
    if not (resume_from and checkpoint_step(resume_from) >= config.max_steps):
        trainer.train(resume_from_checkpoint=resume_from)
    return _logged_seconds(os.path.join(config.output_dir, "log.jsonl")) or (time.time() - t0)


def main(argv=None) -> int:
    config, args = parse_args(argv)
    refuse_before_any_work(config, args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, stream=sys.stdout)
    state, use_cpu = start_processes(config)
    train_corpus, valid_corpus = load_data(config)
    prepare_output_dir(config, args, state)

    from transformers import set_seed

    set_seed(config.seed)
    tokenizer, train_ds, eval_ds = prepare_datasets(config, state, train_corpus, valid_corpus)
    config, model = build_model(config, tokenizer, state)
    resume_from = resume_checkpoint(config, args, state)  # before the Trainer, whose log reads back the time so far
    trainer = build_trainer(config, model, tokenizer, train_ds, eval_ds, valid_corpus.target[: len(eval_ds)], use_cpu)
    try:
        train_seconds = run_training(trainer, config, resume_from)
    except TrainingDiverged as e:
        raise SystemExit(
            f"training: {e} The checkpoints before step {e.step} are in "
            f"{os.path.join(config.output_dir, 'checkpoints')}."
        ) from None

    state.wait_for_everyone()
    if state.is_main_process:
        finalize(
            config,
            trainer,
            tokenizer,
            train_seconds=train_seconds,
            push_to_hub=args.push_to_hub,
            argv=["python", "-m", "training.train", *(sys.argv[1:] if argv is None else argv)],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
