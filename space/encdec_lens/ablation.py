"""Switching heads off, and how much each head matters: zero ablation and gradient importance.

A head is switched off by zeroing its d_k outputs before the output projection W^O (its slice of
Concat(head_1..head_h), the `z` hook site), so the rest of the model runs unchanged.

- `ablate_heads`: heads off inside a `with` block, for any call (forward, `generate`, beam search).
- `run_ablation`: re-translate with heads off and score the original translation with and without them.
- `head_importance`: every head off alone, in one batched pass (one ablated head per batch row).
- `gradient_importance` (Michel et al. 2019, section 4.1): a gate ξ_h = 1 multiplies each head's output;
  I_h = E_x |∂L(x)/∂ξ_h| with L the translation's negative log-likelihood, all heads in one backward pass.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from .heads import (
    FAMILIES,
    FAMILY_TITLES,
    all_heads,
    attention_module,
    check_family,
    core_model,
    grid_shape,
    head_label,
    normalize_heads,
)
from .hooks import HookedModel
from .inputs import (
    Example,
    Result,
    TranslationResult,
    completed,
    decode,
    device_of,
    generate_ids,
    logprobs_of,
    make_example,
    source_ids,
    source_text,
    token_logprobs,
    tokens_of,
)


def _scale_heads(mask: torch.Tensor):
    """A `z` hook multiplying each head's output by `mask`: (h,) for every row alike, or (B, h) per row."""

    def hook(z, name):  # z: (B, T, h, d_k)
        m = mask.to(dtype=z.dtype)
        if m.dim() == 2 and m.shape[0] != z.shape[0]:
            raise RuntimeError(f"per-row head mask has {m.shape[0]} rows but the batch at {name} has {z.shape[0]}.")
        return z * (m[:, None] if m.dim() == 1 else m[:, None, :, None])

    return hook


@contextmanager
def head_masks(model, masks: dict):
    """Multiply heads' outputs by masks {(family, layer): tensor (h,) or (B, h)} inside the block."""
    hooked = HookedModel(model)
    fwd_hooks = [
        (hooked.attention_site(family, layer, "z"), _scale_heads(mask)) for (family, layer), mask in masks.items()
    ]
    with hooked.hooks(fwd_hooks):
        yield


@contextmanager
def ablate_heads(model, heads: Iterable = ()):
    """Switch heads off inside the `with` block: `with ablate_heads(model, [("cross", 0, 1)]): model(...)`.

    With no heads, no hook is active: exactly the normal model. Yields the normalised list of heads.
    """
    heads = normalize_heads(model, heads)
    masks: dict = {}
    for family, layer, head in heads:
        attn = attention_module(model, family, layer)
        mask = masks.setdefault((family, layer), torch.ones(attn.num_heads, device=attn.out_proj.weight.device))
        mask[head] = 0.0
    with head_masks(model, masks):
        yield heads


def translate(model, tokenizer, source, heads: Iterable = (), **generate_kwargs) -> str:
    """The model's translation of `source` with `heads` switched off."""
    with ablate_heads(model, heads):
        ids = generate_ids(model, source_ids(model, tokenizer, source), **generate_kwargs)
    return decode(tokenizer, completed(model, ids))


def translation_logprob(model, tokenizer, source, target, heads: Iterable = ()) -> float:
    """Sum of the teacher-forced log-probabilities of the target's tokens (natural log), heads optionally off."""
    with ablate_heads(model, heads):
        return float(sum(token_logprobs(model, make_example(model, tokenizer, source, target))))


@dataclass
class AblationResult(Result):
    """Heads switched off, and what that does to one translation and its score. (Its own header, not a
    `TranslationResult`'s: it has no source tokens, and `heads` comes second in its JSON.)"""

    source: str
    heads: list  # [[family, layer, head], ...] switched off
    translation: str  # the original translation (or the given target)
    translation_ids: list[int]  # its token ids (pass them back as `translation` to score exactly these tokens)
    translation_tokens: list[str]
    ablated_translation: str  # the model's new translation with the heads off
    ablated_tokens: list[str]
    logprob: float  # log p(translation | source), all heads on
    ablated_logprob: float  # the same translation's log-prob with the heads off
    delta: float  # ablated_logprob - logprob (negative: the heads helped this translation)
    token_logprobs: list[float]
    ablated_token_logprobs: list[float]
    changed: bool  # did the translation change?


def run_ablation(model, tokenizer, source, heads: Iterable = (), translation=None, **generate_kwargs) -> AblationResult:
    """Switch `heads` off, re-translate, and score the original translation with and without them.

    `translation` is the translation to score (text or ids); None translates `source` first.
    """
    heads = normalize_heads(model, heads)
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    base = token_logprobs(model, example)
    with ablate_heads(model, heads):
        ablated = token_logprobs(model, example)
        new_ids = generate_ids(model, example.input_ids, **generate_kwargs)
    new_labels = completed(model, new_ids)
    return AblationResult(
        source=source_text(tokenizer, source, example),
        heads=[list(h) for h in heads],
        translation=decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        translation_tokens=tokens_of(tokenizer, example.labels),
        ablated_translation=decode(tokenizer, new_labels),
        ablated_tokens=tokens_of(tokenizer, new_ids),
        logprob=float(sum(base)),
        ablated_logprob=float(sum(ablated)),
        delta=float(sum(ablated) - sum(base)),
        token_logprobs=base,
        ablated_token_logprobs=ablated,
        changed=new_labels != example.labels,
    )


# --------------------------------------------------------------------------------------------- importance


def _row_masks(model, rows: Sequence, families: Sequence[str]) -> dict:
    """Per-row head masks for the batch `rows` (None = nothing off, or one head), only where a head is off."""
    masks: dict = {}
    for i, row in enumerate(rows):
        if row is None or row[0] not in families:
            continue
        family, layer, head = row
        attn = attention_module(model, family, layer)
        mask = masks.get((family, layer))
        if mask is None:
            mask = masks[(family, layer)] = torch.ones(len(rows), attn.num_heads, device=attn.out_proj.weight.device)
        mask[i, head] = 0.0
    return masks


def _empty_grids(model, families: Sequence[str], *fields: str) -> dict:
    grids = {}
    for family in FAMILIES:
        if family in families:
            n_layers, n_heads = grid_shape(model, family)
            grids[family] = {
                "label": FAMILY_TITLES[family],
                "layers": n_layers,
                "heads": n_heads,
                **{f: [[0.0] * n_heads for _ in range(n_layers)] for f in fields},
            }
    return grids


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of `values` (largest first), ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_correlation(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long lists (ties get their mean rank)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"rank correlation needs two lists of the same length >= 2, got {len(a)} and {len(b)}.")
    ra, rb = torch.tensor(_ranks(a)), torch.tensor(_ranks(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denominator if denominator else 0.0


@dataclass
class HeadImportance(TranslationResult):
    translation_tokens: list[str]
    logprob: float  # the translation's log-prob with every head on
    grids: dict  # family -> {"label", "layers", "heads", "drop": [[...] per layer], "ablated_logprob", "gradient"}
    ranking: list  # [{"family", "layer", "head", "name", "drop", "ablated_logprob", "gradient", "rank",
    #                "gradient_rank"}], most important (largest drop) first
    rank_correlation: float  # Spearman's rho between the ablation drops and the gradient importances
    seconds: float  # time spent on the ablations


@torch.inference_mode()
def ablation_logprobs(model, example: Example, heads: Sequence, batch_size: int = 64) -> list[float]:
    """log p(translation) with every head of `heads` switched off alone; the first value with none off.

    Batched: the encoder runs once per encoder head (plus once unablated), then the decoder one batch row per
    head (plus the unablated row), each row with its own head mask; `batch_size` bounds the rows per pass.
    """
    model.eval()
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    input_ids, decoder_input_ids, labels = example.tensors(device_of(model))
    core = core_model(model)
    enc_rows = [None] + [h for h in heads if h[0] == "encoder"]
    enc_states = []
    for i in range(0, len(enc_rows), batch_size):
        chunk = enc_rows[i : i + batch_size]
        with head_masks(model, _row_masks(model, chunk, ("encoder",))):
            enc_states.append(core.encoder(input_ids=input_ids.expand(len(chunk), -1)).last_hidden_state)
    enc_states = torch.cat(enc_states)
    enc_row = {row: i for i, row in enumerate(enc_rows)}
    rows = [None] + list(heads)
    logprobs = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        enc = enc_states[[enc_row.get(row, 0) for row in chunk]]
        with head_masks(model, _row_masks(model, chunk, ("decoder", "cross"))):
            hidden = core.decoder(
                input_ids=decoder_input_ids.expand(len(chunk), -1), encoder_hidden_states=enc, use_cache=False
            ).last_hidden_state
        logits = model.lm_head(hidden)
        logprobs.append(logprobs_of(logits, labels.expand(len(chunk), -1)).sum(-1))
    return torch.cat(logprobs).tolist()


def _padded(model, examples: Sequence[Example], device):
    pad = model.config.pad_token_id
    width_s = max(len(e.input_ids) for e in examples)
    width_t = max(len(e.labels) for e in examples)
    input_ids = torch.full((len(examples), width_s), pad, device=device)
    attention_mask = torch.zeros_like(input_ids)
    decoder_input_ids = torch.full((len(examples), width_t), pad, device=device)
    labels = torch.full((len(examples), width_t), -100, device=device)
    for i, e in enumerate(examples):
        input_ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        attention_mask[i, : len(e.input_ids)] = 1
        decoder_input_ids[i, : len(e.labels)] = torch.tensor(e.decoder_input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
    return input_ids, attention_mask, decoder_input_ids, labels


def gradient_importance(
    model, examples: Sequence[Example], families: Sequence[str] = FAMILIES, batch_size: int = 32
) -> dict:
    """Michel et al.'s head importance: {(family, layer): tensor (h,)} of E_x |∂L(x)/∂ξ_h| over `examples`.

    Each batch row gets its own gates (B, h), all 1, so one backward pass of the summed loss gives every
    example's own derivative; L(x) is the negative log-likelihood of the example's target (summed over its
    tokens). Gates at 1 leave the model's output unchanged, bit for bit.
    """
    for family in families:
        check_family(family)
    if not examples:
        raise ValueError("gradient importance needs at least one example.")
    was_training = model.training
    model.eval()
    device = device_of(model)
    totals = {}
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            input_ids, attention_mask, decoder_input_ids, labels = _padded(model, chunk, device)
            gates = {}
            for family in families:
                n_layers, n_heads = grid_shape(model, family)
                for layer in range(n_layers):
                    gates[(family, layer)] = torch.ones(len(chunk), n_heads, device=device, requires_grad=True)
            with torch.enable_grad(), head_masks(model, gates):
                logits = model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    decoder_input_ids=decoder_input_ids,
                    use_cache=False,
                ).logits
                nll = torch.nn.functional.cross_entropy(
                    logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="sum"
                )
                grads = torch.autograd.grad(nll, list(gates.values()))
            for key, grad in zip(gates, grads):
                totals[key] = totals.get(key, 0) + grad.abs().sum(0).detach()
    finally:
        model.train(was_training)
    return {key: value / len(examples) for key, value in totals.items()}


def head_importance(
    model,
    tokenizer,
    source,
    translation=None,
    families: Sequence[str] = FAMILIES,
    batch_size: int = 64,
    **generate_kwargs,
) -> HeadImportance:
    """For every head: how much the translation's log-prob drops when that head alone is switched off
    (drop = log p(translation) - log p(translation | head off); large positive drop = important head), and
    its gradient importance |∂L/∂ξ_h| (Michel et al. 2019), with the rank correlation of the two.

    Ranking: by drop, ties in the order family, layer, head.
    """
    for family in families:
        check_family(family)
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    heads = all_heads(model, families)
    start = time.perf_counter()
    logprobs = ablation_logprobs(model, example, heads, batch_size)
    seconds = time.perf_counter() - start
    gradients = gradient_importance(model, [example], families)

    base = logprobs[0]
    grids = _empty_grids(model, families, "drop", "ablated_logprob", "gradient")
    entries = []
    for order, (head, value) in enumerate(zip(heads, logprobs[1:])):
        family, layer, h = head
        gradient = float(gradients[(family, layer)][h])
        grids[family]["drop"][layer][h] = base - value
        grids[family]["ablated_logprob"][layer][h] = value
        grids[family]["gradient"][layer][h] = gradient
        entries.append(
            (
                order,
                {
                    "family": family,
                    "layer": layer,
                    "head": h,
                    "name": head_label(*head),
                    "drop": base - value,
                    "ablated_logprob": value,
                    "gradient": gradient,
                },
            )
        )
    gradient_ranks = _ranks([e["gradient"] for _, e in entries])
    for (_, entry), rank in zip(entries, gradient_ranks):
        entry["gradient_rank"] = rank
    rho = (
        rank_correlation([e["drop"] for _, e in entries], [e["gradient"] for _, e in entries])
        if len(entries) > 1
        else 1.0
    )
    entries.sort(key=lambda e: (-e[1]["drop"], e[0]))
    return HeadImportance(
        **TranslationResult.header(tokenizer, source, example),
        translation_tokens=tokens_of(tokenizer, example.labels),
        logprob=base,
        grids=grids,
        ranking=[dict(entry, rank=rank + 1) for rank, (_, entry) in enumerate(entries)],
        rank_correlation=rho,
        seconds=seconds,
    )
