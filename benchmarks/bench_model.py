"""Speed of this project's Transformer against transformers' MarianMTModel and a torch.nn.Transformer seq2seq.

    python benchmarks/bench_model.py [--quick] [--json results.json] [--threads N] [--sizes small,base]
                                     [--peers ours,marian,torch] [--tasks train,greedy,beam4,pipeline]
                                     [--precisions fp32,bf16]

Three peers, all with random weights, the same sizes and the same inputs:
  ours    `TransformerForConditionalGeneration` (this repository, sdpa attention);
  marian  `MarianMTModel` from a `MarianConfig`: ReLU, scale_embedding, shared and tied embeddings, post-LN,
          dropout 0.1, attention/activation dropout 0 (sdpa attention);
  torch   a seq2seq around `torch.nn.Transformer` (batch_first, post-LN, ReLU; its attention and FFN-inner
          dropout set to 0 like the others), with scaled token embeddings, sinusoidal positions and the output
          projection tied to the embedding. It has no key/value cache, so its greedy and beam searches rerun
          the decoder over the whole prefix at every step (its best available); `nn.Transformer` also adds a
          final LayerNorm to each stack.

Measured, each case in its own subprocess (warm-up first, medians over repeats):
  train   real (non-padding) target tokens per second of forward + label-smoothed (0.1) loss + backward +
          gradient clipping (1.0) + AdamW, on random batches of 64 Multi30k-shaped sentence pairs; once per
          precision (--precisions): fp32, and bf16 mixed precision, where the forward (model call and loss)
          runs under `torch.autocast("cpu", dtype=torch.bfloat16)` and backward, clipping and the optimizer
          step outside it, with fp32 weights and optimizer state: what the training CLI's --bf16 does
          (the Trainer's bf16=True), and the same for every peer. On a machine without native bf16 matmuls
          (no AVX512-BF16 or AMX; training.train.bf16_unsupported_reason) the bf16 cases are skipped and the
          table says why. Generation and the pipeline always run in fp32;
  greedy / beam4   generated tokens per second for 32 source sentences x exactly 20 new tokens
          (min_new_tokens = max_new_tokens = 20 for the Hugging Face models; the tokens of the returned
          sequences are counted, not those of the beams); each generation case runs in 3 processes
          (--gen-processes), peers alternating, and the median process is reported, because the speed of
          generation varies from process to process much more than within one;
  peak resident memory (ru_maxrss) of the subprocess, imports included;
  model FLOP utilisation: analytic matmul FLOPs of the work (padded shapes; cached decoding for all peers,
          so the cache-less peer is charged only the useful work) / time / the machine's matmul rate in the
          row's precision, measured here with a large torch.matmul on the same number of threads: fp32
          matrices for fp32 rows, bf16 matrices for bf16 rows (best of 8, before and after the cases);
  pipeline  this project's model (small) trained on the first batches of an epoch of the training pipeline's
          `LengthGroupedBatchSampler` (training/train.py) against plain random batches: real target
          tokens per second, the two interleaved in one process.

Sentence lengths are the real Multi30k training distribution (../shared/data/multi30k/train.{en,de}.gz, or
$MULTI30K_DIR): round(1.3 x whitespace words), which matches the project's 8000-token BPE (with </s>) to
within a few percent; token ids are random. `--quick` runs tiny models with one or two repeats (a smoke test
for CI, same JSON keys); its numbers mean nothing.

The summary checks targets: ours / Marian per task and size (memory: ours <= Marian), length-grouped /
random batches, and for bf16 at the small size (tiny with --quick) ours-bf16 / ours-fp32 training tokens/s
(>= 2.0) and ours-bf16 / Marian-bf16 (>= 1.3).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PEERS = ("ours", "marian", "torch")
# Opt-in (--peers): ours under torch.compile (inductor), training only; its loss is the library's (no fused
# projection: the training CLI fuses only when it does not compile). The first step, compile included, is
# reported as first_step_s for every training case.
OPTIONAL_PEERS = ("ours-compiled",)
TASKS = ("train", "greedy", "beam4")
PRECISIONS = ("fp32", "bf16")  # bf16: autocast around the forward, for the train task only
DEVICE = "cpu"  # every case runs on the CPU (the autocast device type too)
SIZES = {
    # d_model, d_ff, heads, encoder layers, decoder layers, vocabulary
    "small": dict(d_model=256, ffn=1024, heads=4, enc=3, dec=3, vocab=8000),
    "base": dict(d_model=512, ffn=2048, heads=8, enc=6, dec=6, vocab=8000),  # the paper's base, vocab 8000
    "tiny": dict(d_model=64, ffn=128, heads=2, enc=1, dec=1, vocab=1000),  # --quick only
    "wu2021": dict(d_model=128, ffn=256, heads=4, enc=4, dec=4, vocab=10000),  # training/configs/wu2021_tiny.json
}
PAD, BOS, EOS = 0, 1, 2
DROPOUT, LABEL_SMOOTHING = 0.1, 0.1
TRAIN_BATCH, GEN_BATCH, NEW_TOKENS = 64, 32, 20
TARGETS = {  # issue 4: ours / marian at the small size (memory: ours <= marian), base no slower
    "small_train_vs_marian": 1.15,
    "small_greedy_vs_marian": 1.25,
    "small_beam4_vs_marian": 1.25,
    "small_memory_vs_marian": 1.0,
    "base_train_vs_marian": 1.0,
    "base_greedy_vs_marian": 1.0,
    "base_beam4_vs_marian": 1.0,
    "pipeline_grouped_vs_random": 1.4,
    # bf16 mixed precision, small size, training target tokens/s
    "small_train_bf16_vs_fp32": 2.0,  # ours-bf16 / ours-fp32
    "small_train_bf16_vs_marian_bf16": 1.3,  # ours-bf16 / Marian-bf16
}
PROFILES = {
    # warm-up steps, timed repeats, training batches per repeat, pipeline batches per side
    "full": dict(warmup=2, repeats=5, train_batches=6, gen_repeats=5, pipeline_batches=24, pipeline_repeats=3),
    "quick": dict(warmup=1, repeats=2, train_batches=2, gen_repeats=2, pipeline_batches=3, pipeline_repeats=1),
}


# --- inputs ------------------------------------------------------------------------------------------------
def data_dir() -> str:
    return os.environ.get("MULTI30K_DIR", os.path.join(ROOT, "..", "shared", "data", "multi30k"))


def pair_lengths(limit: int = 0) -> tuple[list[tuple[int, int]], str]:
    """(source, target) token lengths of the Multi30k en-de training pairs: round(1.3 x words), at least 2.

    Without the data (a bare CI machine), a fixed synthetic distribution of the same mean is used and named.
    """
    folder = data_dir()
    paths = [os.path.join(folder, f"train.{lang}.gz") for lang in ("en", "de")]
    if all(os.path.isfile(p) for p in paths):
        sides = []
        for path in paths:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                sides.append([max(2, round(1.3 * len(line.split()))) for line in fh.read().splitlines()])
        pairs = [(s, t) for s, t in zip(*sides) if s > 2 and t > 2]
        return (pairs[:limit] if limit else pairs), "multi30k train en-de, round(1.3 x words)"
    import random

    rng = random.Random(0)
    pairs = [
        (max(3, round(rng.lognormvariate(2.45, 0.35))), max(3, round(rng.lognormvariate(2.45, 0.38))))
        for _ in range(limit or 29000)
    ]
    return pairs, "synthetic log-normal lengths (Multi30k not found)"


def make_batch(lengths: list[tuple[int, int]], vocab: int, generator) -> dict:
    """Padded tensors for one batch: random ids in [3, vocab), the last target token is </s>.

    `decoder_input_ids` is the labels shifted right behind <s> (teacher forcing), as the training pipeline's
    collator makes it; padded label positions are -100 and no decoder mask is passed (causality suffices).
    """
    import torch

    B, S, T = len(lengths), max(s for s, _ in lengths), max(t for _, t in lengths)
    input_ids = torch.full((B, S), PAD, dtype=torch.long)
    attention_mask = torch.zeros(B, S, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(lengths):
        input_ids[i, :s] = torch.randint(3, vocab, (s,), generator=generator)
        input_ids[i, s - 1] = EOS
        attention_mask[i, :s] = 1
        labels[i, :t] = torch.randint(3, vocab, (t,), generator=generator)
        labels[i, t - 1] = EOS
    decoder_input_ids = torch.full((B, T), PAD, dtype=torch.long)
    decoder_input_ids[:, 0] = BOS
    decoder_input_ids[:, 1:] = labels[:, :-1].clamp(min=PAD)
    real = int((labels != -100).sum())
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        labels=labels,
        real_target_tokens=real,
        padded_target_tokens=B * T,
        S=S,
        T=T,
        B=B,
    )


def random_batches(pairs, n: int, batch_size: int, vocab: int, seed: int) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(pairs), generator=g).tolist()
    return [make_batch([pairs[i] for i in perm[k * batch_size : (k + 1) * batch_size]], vocab, g) for k in range(n)]


def grouped_batches(pairs, n: int, batch_size: int, vocab: int, seed: int) -> list[dict]:
    """The first `n` batches of an epoch of the training pipeline's own `LengthGroupedBatchSampler`."""
    import types

    import torch

    from training.train import make_trainer_class

    trainer_cls = make_trainer_class()
    fake_trainer = types.SimpleNamespace(  # just what `_get_train_sampler` reads
        pair_lengths=[s + t for s, t in pairs],
        train_dataset=pairs,
        args=types.SimpleNamespace(world_size=1, train_batch_size=batch_size, gradient_accumulation_steps=1, seed=seed),
        state=types.SimpleNamespace(epoch=0),
    )
    sampler = trainer_cls._get_train_sampler(fake_trainer)
    order = list(sampler)
    g = torch.Generator().manual_seed(seed)
    return [make_batch([pairs[i] for i in order[k * batch_size : (k + 1) * batch_size]], vocab, g) for k in range(n)]


# --- peers -------------------------------------------------------------------------------------------------
def sized_settings(size: dict) -> dict:
    """The settings of a `size` that TransformerConfig and MarianConfig both name, with the same meaning."""
    return dict(
        vocab_size=size["vocab"],
        d_model=size["d_model"],
        encoder_layers=size["enc"],
        decoder_layers=size["dec"],
        encoder_attention_heads=size["heads"],
        decoder_attention_heads=size["heads"],
        encoder_ffn_dim=size["ffn"],
        decoder_ffn_dim=size["ffn"],
        dropout=DROPOUT,
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=512,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
    )


def build_ours(size: dict):
    from configuration import TransformerConfig
    from modeling import TransformerForConditionalGeneration

    config = TransformerConfig(**sized_settings(size), label_smoothing=LABEL_SMOOTHING)
    model = TransformerForConditionalGeneration(config)
    model.fused_loss = True  # as `python -m training.train` trains it (the opt-in fused projection + loss)
    return model


def build_marian(size: dict):
    from transformers import MarianConfig, MarianMTModel

    config = MarianConfig(
        **sized_settings(size),
        decoder_vocab_size=size["vocab"],
        activation_function="relu",
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        forced_eos_token_id=None,
    )
    return MarianMTModel(config)


def build_torch(size: dict):
    import torch
    from torch import nn

    class TorchSeq2Seq(nn.Module):
        """nn.Transformer with scaled, tied token embeddings and sinusoidal positions (section 3.4, 3.5)."""

        def __init__(self):
            super().__init__()
            d = size["d_model"]
            self.scale = math.sqrt(d)
            self.embed = nn.Embedding(size["vocab"], d, padding_idx=PAD)
            nn.init.normal_(self.embed.weight, std=d**-0.5)
            position = torch.arange(512, dtype=torch.float32)[:, None]
            inv_freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
            pe = torch.zeros(512, d)
            pe[:, 0::2], pe[:, 1::2] = torch.sin(position * inv_freq), torch.cos(position * inv_freq)
            self.register_buffer("pe", pe, persistent=False)
            self.dropout = nn.Dropout(DROPOUT)
            self.transformer = nn.Transformer(
                d, size["heads"], size["enc"], size["dec"], size["ffn"], DROPOUT, batch_first=True
            )
            for layer in list(self.transformer.encoder.layers) + list(self.transformer.decoder.layers):
                layer.dropout.p = 0.0  # dropout inside the FFN (activation dropout): 0 like the other peers
                for attn in (getattr(layer, "self_attn", None), getattr(layer, "multihead_attn", None)):
                    if attn is not None:
                        attn.dropout = 0.0  # attention dropout 0 like the other peers

        def embed_tokens(self, ids):
            return self.dropout(self.embed(ids) * self.scale + self.pe[: ids.shape[1]])

        def encode(self, input_ids, attention_mask):
            padding = attention_mask == 0
            return self.transformer.encoder(self.embed_tokens(input_ids), src_key_padding_mask=padding), padding

        def decode(self, decoder_input_ids, memory, memory_padding):
            T = decoder_input_ids.shape[1]
            causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=memory.dtype)
            return self.transformer.decoder(
                self.embed_tokens(decoder_input_ids),
                memory,
                tgt_mask=causal,
                tgt_is_causal=True,
                memory_key_padding_mask=memory_padding,
            )

        def logits(self, hidden):
            return nn.functional.linear(hidden, self.embed.weight)  # tied output projection

        def forward(self, input_ids, attention_mask, decoder_input_ids):
            memory, padding = self.encode(input_ids, attention_mask)
            return self.logits(self.decode(decoder_input_ids, memory, padding))

    return TorchSeq2Seq()


def build_ours_compiled(size: dict):
    model = build_ours(size)
    model.fused_loss = False
    return model


BUILDERS = {"ours": build_ours, "marian": build_marian, "torch": build_torch, "ours-compiled": build_ours_compiled}


def bf16_skip_reason() -> str | None:
    """Why bf16 cases are skipped on this machine (no native bf16 matmuls: emulated, ~100x slower), or None."""
    from training.train import bf16_unsupported_reason

    return bf16_unsupported_reason(use_cpu=DEVICE == "cpu")


def forward_context(precision: str):
    """The context of the forward pass (model call and loss): bf16 autocast, or nothing for fp32."""
    import torch

    if precision == "bf16":
        return torch.autocast(DEVICE, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}")
    return contextlib.nullcontext()


def train_step_fn(peer: str, model, optimizer, precision: str = "fp32"):
    """One training step; for bf16 the forward (model call and loss) runs under autocast, the backward,
    clipping and optimizer step outside it (as the Trainer's bf16=True does), identically for every peer."""
    import torch
    import torch.nn.functional as F

    def loss_of(logits, labels):
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, label_smoothing=LABEL_SMOOTHING
        )

    call = torch.compile(model) if peer == "ours-compiled" else model

    def forward(batch):
        if peer in ("ours", "ours-compiled"):  # the model computes its own label-smoothed loss from `labels`
            return call(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                decoder_input_ids=batch["decoder_input_ids"],
                labels=batch["labels"],
            ).loss
        if peer == "marian":  # Marian's built-in loss has no smoothing: the same loss, computed outside
            logits = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                decoder_input_ids=batch["decoder_input_ids"],
                use_cache=False,
            ).logits
            return loss_of(logits, batch["labels"])
        return loss_of(model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"]), batch["labels"])

    def step(batch):
        with forward_context(precision):
            loss = forward(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def generate_fn(peer: str, model, num_beams: int):
    """A function that decodes a batch to exactly NEW_TOKENS new tokens and returns the sequences."""
    import torch

    if peer in ("ours", "marian"):

        def run(batch):
            return model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                num_beams=num_beams,
                do_sample=False,
                min_new_tokens=NEW_TOKENS,
                max_new_tokens=NEW_TOKENS,
                length_penalty=1.0,
                early_stopping=False,
            )

        return run

    def run(batch):  # nn.Transformer: no cache, the decoder reruns over the prefix each step
        memory, padding = model.encode(batch["input_ids"], batch["attention_mask"])
        B = memory.shape[0]
        if num_beams > 1:
            memory, padding = memory.repeat_interleave(num_beams, 0), padding.repeat_interleave(num_beams, 0)
        ys = torch.full((B * num_beams, 1), BOS, dtype=torch.long)
        scores = torch.zeros(B, num_beams)
        scores[:, 1:] = float("-inf")  # all beams start identical: keep one alive at step 1
        for _ in range(NEW_TOKENS):
            logits = model.logits(model.decode(ys, memory, padding)[:, -1])  # (B*k, V)
            logits[:, EOS] = float("-inf")  # min_new_tokens: no </s> before NEW_TOKENS
            if num_beams == 1:
                ys = torch.cat([ys, logits.argmax(-1, keepdim=True)], dim=1)
                continue
            V = logits.shape[-1]
            candidates = (scores.view(-1, 1) + logits.log_softmax(-1)).view(B, num_beams * V)
            scores, flat = candidates.topk(num_beams, dim=-1)  # (B, k)
            origin = (flat // V + torch.arange(B)[:, None] * num_beams).view(-1)
            ys = torch.cat([ys[origin], (flat % V).view(-1, 1)], dim=1)
        if num_beams > 1:
            ys = ys.view(B, num_beams, -1)[:, 0]  # the best beam of each sentence
        return ys

    return run


# --- FLOPs -------------------------------------------------------------------------------------------------
def forward_flops(size: dict, B: int, S: int, T: int) -> float:
    """Matmul FLOPs (2 per multiply-add) of one teacher-forced forward pass over padded shapes.

    Attention scores and contexts are counted in full (causal masking not discounted), as the kernels compute.
    """
    d, f, V, L_e, L_d = size["d_model"], size["ffn"], size["vocab"], size["enc"], size["dec"]
    enc = L_e * (2 * 4 * d * d * B * S + 2 * 2 * B * S * S * d + 2 * 2 * d * f * B * S)
    dec = L_d * (
        2 * 4 * d * d * B * T
        + 2 * 2 * B * T * T * d  # self-attention
        + 2 * 2 * d * d * B * T
        + 2 * 2 * d * d * B * S
        + 2 * 2 * B * T * S * d  # cross-attention
        + 2 * 2 * d * f * B * T
    )
    return float(enc + dec + 2 * d * V * B * T)


def generation_flops(size: dict, B: int, S: int, new: int, beams: int) -> float:
    """Useful matmul FLOPs of cached decoding: the encoder once per input, cross K/V once, then per step
    the decoder on one position per beam (attending to the prefix) and the output projection."""
    d, f, V, L_e, L_d = size["d_model"], size["ffn"], size["vocab"], size["enc"], size["dec"]
    R = B * beams
    total = L_e * (2 * 4 * d * d * B * S + 2 * 2 * B * S * S * d + 2 * 2 * d * f * B * S)
    total += L_d * 2 * 2 * d * d * B * S  # cross-attention keys/values of the encoder output
    for t in range(1, new + 1):
        total += L_d * (
            2 * 4 * d * d * R + 2 * 2 * R * t * d + 2 * 2 * d * d * R + 2 * 2 * R * S * d + 2 * 2 * d * f * R
        )
        total += 2 * d * V * R
    return float(total)


def matmul_gflops(threads: int, n: int = 2048, repeats: int = 8, precision: str = "fp32") -> float:
    """The machine's matmul rate in `precision` (fp32, or bf16 matrices): best of `repeats` (n x n) @ (n x n)
    products, in GFLOP/s."""
    import torch

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# --- one case ----------------------------------------------------------------------------------------------
def run_case(case: dict) -> dict:
    """Build one peer at one size and time one task; everything seeded so every peer sees the same inputs."""
    import torch

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    import transformers

    transformers.logging.set_verbosity_error()
    profile = PROFILES[case["profile"]]
    size = SIZES[case["size"]]
    pairs, _ = pair_lengths()
    peer, task = case["peer"], case["task"]
    precision = case.get("precision", "fp32")
    if task != "train" and precision != "fp32":
        raise ValueError(f"{task} runs in fp32 only")
    if task != "train" and peer in OPTIONAL_PEERS:
        raise ValueError(f"{peer} times training only")
    model = BUILDERS[peer](size)
    out = dict(peer=peer, size=case["size"], task=task, precision=precision)

    if task == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
        step = train_step_fn(peer, model, optimizer, precision)
        batches = random_batches(pairs, profile["train_batches"], TRAIN_BATCH, size["vocab"], seed=1)
        t0 = time.perf_counter()
        step(batches[0])  # compiled: compiles here
        out["first_step_s"] = time.perf_counter() - t0
        for b in batches[1 : profile["warmup"]]:
            step(b)
        tokens = sum(b["real_target_tokens"] for b in batches)
        flops = 3 * sum(forward_flops(size, b["B"], b["S"], b["T"]) for b in batches)
        runs = []
        for _ in range(profile["repeats"]):
            t0 = time.perf_counter()
            for b in batches:
                loss = step(b)
            runs.append(time.perf_counter() - t0)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"{peer} ({precision}): non-finite training loss {loss.item()}")
        out.update(
            unit="real target tokens/s",
            tokens=tokens,
            padding=1 - tokens / sum(b["padded_target_tokens"] for b in batches),
        )
    else:
        num_beams = 1 if task == "greedy" else 4
        model.eval()
        run = generate_fn(peer, model, num_beams)
        g = torch.Generator().manual_seed(2)
        pick = torch.randperm(len(pairs), generator=g)[:GEN_BATCH].tolist()
        batch = make_batch([pairs[i] for i in pick], size["vocab"], g)
        with torch.inference_mode():
            for _ in range(profile["warmup"]):
                sequences = run(batch)
            runs = []
            for _ in range(profile["gen_repeats"]):
                t0 = time.perf_counter()
                sequences = run(batch)
                runs.append(time.perf_counter() - t0)
        new = sequences.shape[1] - 1  # the returned sequences start with the decoder start token
        if sequences.shape[0] != GEN_BATCH or new != NEW_TOKENS:
            raise RuntimeError(
                f"{peer} {task}: returned {tuple(sequences.shape)}, expected {GEN_BATCH} x {NEW_TOKENS} new tokens"
            )
        tokens = GEN_BATCH * NEW_TOKENS
        flops = generation_flops(size, GEN_BATCH, batch["S"], NEW_TOKENS, num_beams)
        out.update(unit="generated tokens/s", tokens=tokens)
    seconds = statistics.median(runs)
    out.update(
        seconds_median=seconds,
        seconds_runs=runs,
        spread=max(runs) / min(runs),
        tokens_per_s=tokens / seconds,
        gflops_per_s=flops / seconds / 1e9,
        parameters=sum(p.numel() for p in model.parameters()),
    )
    return out


def run_pipeline(case: dict) -> dict:
    """Length-grouped against random batches for this project's model, interleaved in one process."""
    import torch

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    profile = PROFILES[case["profile"]]
    size = SIZES[case["size"]]
    pairs, _ = pair_lengths()
    n = profile["pipeline_batches"]
    sets = {
        "grouped": grouped_batches(pairs, n, TRAIN_BATCH, size["vocab"], seed=42),
        "random": random_batches(pairs, n, TRAIN_BATCH, size["vocab"], seed=42),
    }
    model = build_ours(size)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)
    step = train_step_fn("ours", model, optimizer)
    for name in sets:
        for b in sets[name][: profile["warmup"]]:
            step(b)
    runs = {name: [] for name in sets}
    for _ in range(profile["pipeline_repeats"]):
        for name, batches in sets.items():
            t0 = time.perf_counter()
            for b in batches:
                step(b)
            runs[name].append(time.perf_counter() - t0)
    out = dict(peer="ours", size=case["size"], task="pipeline", precision="fp32", batches=n)
    for name, batches in sets.items():
        real = sum(b["real_target_tokens"] for b in batches)
        padded = sum(b["padded_target_tokens"] for b in batches)
        src_real = sum(int(b["attention_mask"].sum()) for b in batches)
        src_padded = sum(b["B"] * b["S"] for b in batches)
        seconds = statistics.median(runs[name])
        out[name] = dict(
            real_target_tokens=real,
            target_padding=1 - real / padded,
            source_padding=1 - src_real / src_padded,
            seconds_median=seconds,
            seconds_runs=runs[name],
            tokens_per_s=real / seconds,
        )
    out["ratio"] = out["grouped"]["tokens_per_s"] / out["random"]["tokens_per_s"]
    return out


def child_main(spec: str) -> None:
    """Entry of a subprocess: run the cases in `spec` (JSON list), print one JSON line with the results."""
    import warnings

    warnings.filterwarnings("ignore")  # e.g. nn.Transformer's nested-tensor prototype notice
    cases = json.loads(spec)
    import torch  # noqa: F401  (imports first, so that their memory is measured apart from the model's)

    if any(c["peer"] == "ours" for c in cases):
        import modeling  # noqa: F401
    if any(c["peer"] == "marian" for c in cases):
        from transformers import MarianMTModel  # noqa: F401
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    results = [run_pipeline(c) if c["task"] == "pipeline" else run_case(c) for c in cases]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in results:
        r.update(peak_rss_mib=peak_mib, rss_after_imports_mib=before_mib, cases_in_process=len(cases))
    print("BENCH-RESULT " + json.dumps(results), flush=True)


# --- driver ------------------------------------------------------------------------------------------------
def run_group(cases: list[dict], timeout: float) -> list[dict]:
    cmd = [sys.executable, os.path.abspath(__file__), "--case", json.dumps(cases)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT ") :])
    raise RuntimeError(f"case {cases} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def merge_processes(results: list[dict]) -> list[dict]:
    """One row per case: where a case ran in several processes, the process with the median speed (its
    memory too), with every process's tokens/s kept in `tokens_per_s_processes`."""
    by_case = {}
    for r in results:
        by_case.setdefault((r["peer"], r["size"], r["task"], r.get("precision", "fp32")), []).append(r)
    merged = []
    for rows in by_case.values():
        rows = sorted(rows, key=lambda r: r.get("tokens_per_s", 0.0))
        chosen = dict(rows[(len(rows) - 1) // 2])  # the lower median for an even count
        if "tokens_per_s" in chosen:
            chosen["tokens_per_s_processes"] = [r["tokens_per_s"] for r in rows]
        merged.append(chosen)
    return merged


def case_key(size: str, task: str, precision: str) -> str:
    """The name of a case in `ratios`: "small_train" in fp32 (as before precisions existed), else with the
    precision appended ("small_train_bf16")."""
    return f"{size}_{task}" + ("" if precision == "fp32" else f"_{precision}")


def summarise(results: list[dict], peak_gflops: dict) -> dict:
    """MFU per row (over the matmul rate of the row's precision), the ratios to Marian (same size, task and
    precision), bf16 / fp32 per peer, and the targets."""
    rows = [r for r in results if r["task"] != "pipeline"]
    for r in rows:
        r["mfu"] = r["gflops_per_s"] / peak_gflops[r["precision"]]
    by = {(r["peer"], r["size"], r["task"], r["precision"]): r for r in rows}
    ratios = {}
    for (peer, size, task, precision), r in by.items():
        marian = by.get(("marian", size, task, precision))
        if peer != "marian" and marian:
            key = case_key(size, task, precision)
            ratios.setdefault(f"{peer}_vs_marian", {})[key] = r["tokens_per_s"] / marian["tokens_per_s"]
            ratios[f"{peer}_vs_marian"][f"{key}_memory"] = r["peak_rss_mib"] / marian["peak_rss_mib"]
        fp32 = by.get((peer, size, task, "fp32"))
        if precision == "bf16" and fp32:
            ratios.setdefault("bf16_vs_fp32", {})[f"{peer}_{size}_{task}"] = r["tokens_per_s"] / fp32["tokens_per_s"]
    pipeline = next((r for r in results if r["task"] == "pipeline"), None)
    targets = {}
    size = "small" if any(r["size"] == "small" for r in rows) else "tiny"
    ours_vs_marian = ratios.get("ours_vs_marian", {})
    mem_ratios = [
        ours_vs_marian[case_key(size, task, "fp32") + "_memory"]
        for task in TASKS
        if case_key(size, task, "fp32") + "_memory" in ours_vs_marian
    ]
    checks = {
        "small_train_vs_marian": ours_vs_marian.get(f"{size}_train"),
        "small_greedy_vs_marian": ours_vs_marian.get(f"{size}_greedy"),
        "small_beam4_vs_marian": ours_vs_marian.get(f"{size}_beam4"),
        "small_memory_vs_marian": max(mem_ratios) if mem_ratios else None,
        "base_train_vs_marian": ours_vs_marian.get("base_train"),
        "base_greedy_vs_marian": ours_vs_marian.get("base_greedy"),
        "base_beam4_vs_marian": ours_vs_marian.get("base_beam4"),
        "pipeline_grouped_vs_random": pipeline["ratio"] if pipeline else None,
        "small_train_bf16_vs_fp32": ratios.get("bf16_vs_fp32", {}).get(f"ours_{size}_train"),
        "small_train_bf16_vs_marian_bf16": ours_vs_marian.get(case_key(size, "train", "bf16")),
    }
    for name, value in checks.items():
        goal = TARGETS[name]
        met = None if value is None else (value <= goal if name.endswith("memory_vs_marian") else value >= goal)
        targets[name] = dict(value=value, target=(f"<= {goal}" if "memory" in name else f">= {goal}"), met=met)
    return dict(ratios=ratios, targets=targets)


def table(results: list[dict], summary: dict, peak_gflops: dict, bf16_skipped: str | None = None) -> str:
    rates = "; ".join(f"{p} matmul rate: {g:.1f} GFLOP/s" for p, g in peak_gflops.items() if g is not None)
    lines = [rates, ""]
    if bf16_skipped:
        lines += [f"bf16 cases skipped: {bf16_skipped}.", ""]
    lines += [
        "| size | task | precision | peer | tokens/s | vs Marian | MFU | peak RSS MiB | above imports MiB "
        "| median s | max/min | first step s |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [r for r in results if r["task"] != "pipeline"]
    by = {(r["peer"], r["size"], r["task"], r["precision"]): r for r in rows}
    sizes = [s for s in SIZES if any(r["size"] == s for r in rows)]
    for size in sizes:
        for task in TASKS:
            for precision in PRECISIONS:
                marian = by.get(("marian", size, task, precision))
                for peer in PEERS + OPTIONAL_PEERS:
                    r = by.get((peer, size, task, precision))
                    if r is None:
                        continue
                    vs = f"{r['tokens_per_s'] / marian['tokens_per_s']:.2f}x" if marian else "-"
                    above = (
                        "-"
                        if r["rss_after_imports_mib"] is None
                        else f"{r['peak_rss_mib'] - r['rss_after_imports_mib']:.0f}"
                    )
                    first = f"{r['first_step_s']:.2f}" if "first_step_s" in r else "-"
                    lines.append(
                        f"| {size} | {task} | {precision} | {peer} | {r['tokens_per_s']:,.0f} | {vs} "
                        f"| {100 * r['mfu']:.1f}% | {r['peak_rss_mib']:.0f} | {above} "
                        f"| {r['seconds_median']:.3f} | {r['spread']:.2f} | {first} |"
                    )
    pipeline = next((r for r in results if r["task"] == "pipeline"), None)
    if pipeline:
        lines += [
            "",
            "| pipeline (ours, %s, fp32, %d batches of %d) | real target tokens/s | target padding "
            "| source padding |" % (pipeline["size"], pipeline["batches"], TRAIN_BATCH),
            "| --- | ---: | ---: | ---: |",
        ]
        for name in ("grouped", "random"):
            p = pipeline[name]
            lines.append(
                f"| {name} | {p['tokens_per_s']:,.0f} | {100 * p['target_padding']:.0f}% "
                f"| {100 * p['source_padding']:.0f}% |"
            )
        lines.append(f"| grouped / random | {pipeline['ratio']:.2f}x | | |")
    lines += ["", "| target | value | goal | met |", "| --- | ---: | --- | --- |"]
    for name, t in summary["targets"].items():
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        met = "-" if t["met"] is None else ("met" if t["met"] else "missed")
        lines.append(f"| {name} | {value} | {t['target']} | {met} |")
    if bf16_skipped:
        lines.append(f"(bf16 targets not measured: {bf16_skipped}.)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 1-2 repeats: a smoke test (CI)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per case (0: all cores)")
    parser.add_argument(
        "--sizes", default="small,base", help="comma-separated: small, base, wu2021 (ignored by --quick)"
    )
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    parser.add_argument("--tasks", default=",".join(TASKS) + ",pipeline", help="subset of train,greedy,beam4,pipeline")
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        help="precisions of the train task: fp32 and/or bf16 (autocast around the forward); "
        "bf16 is skipped, with the reason printed, where the machine lacks native bf16",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per subprocess")
    parser.add_argument("--gen-processes", type=int, default=3, help="processes per generation case (median)")
    parser.add_argument("--in-process", action="store_true", help="run the cases in this process (tests)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        child_main(args.case)
        return 0

    import torch

    threads = args.threads or os.cpu_count() or 1
    profile = "quick" if args.quick else "full"
    sizes = ["tiny"] if args.quick else [s.strip() for s in args.sizes.split(",") if s.strip()]
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for name, chosen, allowed in (
        ("size", sizes, SIZES),
        ("peer", peers, PEERS + OPTIONAL_PEERS),
        ("task", tasks, TASKS + ("pipeline",)),
        ("precision", precisions, PRECISIONS),
    ):
        bad = [c for c in chosen if c not in allowed]
        if bad:
            parser.error(f"unknown {name}(s) {bad}; choose from {list(allowed)}")
    bf16_skipped = None
    if "bf16" in precisions and "train" in tasks:
        bf16_skipped = bf16_skip_reason()
        if bf16_skipped:
            print(f"bf16 cases skipped: {bf16_skipped}", file=sys.stderr, flush=True)
            precisions = [p for p in precisions if p != "bf16"]
    n = 1024 if args.quick else 2048
    run_bf16 = "bf16" in precisions and "train" in tasks
    peak = {"fp32": matmul_gflops(threads, n=n)}
    if run_bf16:  # measured only where bf16 is native: emulated, a 2048^3 product takes many seconds
        peak["bf16"] = matmul_gflops(threads, n=n, precision="bf16")

    cases = []
    for s in sizes:
        for t in tasks:
            if t == "pipeline":
                continue
            for precision in precisions if t == "train" else ["fp32"]:
                cases += [
                    dict(peer=p, size=s, task=t, precision=precision, threads=threads, profile=profile)
                    for p in peers
                    if t == "train" or p not in OPTIONAL_PEERS
                ]
    if "pipeline" in tasks:
        cases.append(
            dict(
                peer="ours",
                size=sizes[0] if args.quick else "small",
                task="pipeline",
                precision="fp32",
                threads=threads,
                profile=profile,
            )
        )
    if args.in_process:
        groups = [cases]
    elif args.quick:  # one subprocess per peer (and one for the pipeline): imports dominate a smoke test
        groups = [[c for c in cases if c["peer"] == p and c["task"] != "pipeline"] for p in peers]
        groups = [g for g in groups if g] + [[c] for c in cases if c["task"] == "pipeline"]
    else:
        groups = [[c] for c in cases]
        # Generation is cheap but its speed varies from process to process (about +-15% here, stable inside
        # one): each generation case runs in `--gen-processes` processes, peers alternating, and the median
        # process counts.
        extra = [[c] for _ in range(args.gen_processes - 1) for c in cases if c["task"] in ("greedy", "beam4")]
        groups += extra

    results = []
    started = time.perf_counter()
    for group in groups:
        label = ", ".join(f"{c['peer']}/{c['size']}/{c['task']}/{c['precision']}" for c in group)
        print(f"running {label} ...", file=sys.stderr, flush=True)
        if args.in_process:
            found = [run_pipeline(c) if c["task"] == "pipeline" else run_case(c) for c in group]
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            for r in found:
                r.update(peak_rss_mib=peak_mib, rss_after_imports_mib=None, cases_in_process=len(group))
        else:
            found = run_group(group, args.timeout)
        results += found
    results = merge_processes(results)
    # The rates are measured before and after the cases and the higher kept: a busy machine only lowers them.
    for precision in peak:
        peak[precision] = max(peak[precision], matmul_gflops(threads, n=n, precision=precision))
    summary = summarise(results, peak)
    _, lengths_source = pair_lengths(limit=1)
    report = dict(
        meta=dict(
            command=" ".join(["python benchmarks/bench_model.py"] + list(sys.argv[1:] if argv is None else argv)),
            profile=profile,
            threads=threads,
            sizes={s: SIZES[s] for s in sizes},
            matmul_gflops=peak["fp32"],
            matmul_gflops_bf16=peak.get("bf16"),
            precisions=precisions,
            bf16_skipped=bf16_skipped,
            autocast=dict(device_type=DEVICE, dtype="bfloat16", around="forward and loss"),
            train_batch=TRAIN_BATCH,
            generation=dict(inputs=GEN_BATCH, new_tokens=NEW_TOKENS),
            lengths=lengths_source,
            torch=torch.__version__,
            python=platform.python_version(),
            machine=platform.machine(),
            processor=platform.processor(),
            cpu_count=os.cpu_count(),
            seconds=time.perf_counter() - started,
        ),
        results=results,
        **summary,
    )
    print(table(results, summary, peak, bf16_skipped))
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
