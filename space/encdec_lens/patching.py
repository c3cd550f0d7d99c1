"""Activation patching: which heads and layers carry the difference between two source sentences.

Two sources of the same token length, a clean one and a corrupted one (e.g. "A man is riding a bike." and
"A woman is riding a bike."), and one translation (by default the model's translation of the clean source),
scored teacher-forced: m = log p(translation | source). The clean run is cached once; then, in the corrupted
run, one activation at a time is replaced by its clean value, and

    restored = (m_patched - m_corrupted) / (m_clean - m_corrupted)

says how much of the clean score that activation alone brings back: 0 = nothing, 1 = all of it (values outside
[0, 1] happen: a patch can overshoot or make things worse).

Patched: every head of the three families (its slice of the `z` site, all positions, the other heads left
corrupted) and every layer's residual stream (`{stack}.layers.{l}.resid_post`, all positions). The two ends:
nothing patched is 0 by definition, and patching the whole encoder output (`encoder.output`) is exactly 1,
since the decoder then sees exactly the clean run's inputs. Patching any encoder layer's full residual stream
is 1 too: everything after it depends on the source only through it.

All patches run in one batched forward pass, one batch row per patch, each row with its own hooks: a preset of
`interventions.run_interventions`, with every intervention a `patch` from the cached clean run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .heads import STACKS, all_heads, head_label, layer_label, stack_layers
from .hooks import HookedModel, attention_site, site_name
from .inputs import Result, decode, device_of, logprobs_of, make_example, source_ids, source_text, tokens_of
from .interventions import patch, run_interventions

ENCODER_OUTPUT = site_name("encoder", "output")


@dataclass
class ActivationPatching(Result):
    """How much of the clean score each patch restores, with the two sources and the translation scored."""

    clean: str
    corrupted: str
    translation: str
    translation_ids: list[int]
    clean_tokens: list[str]
    corrupted_tokens: list[str]
    translation_tokens: list[str]
    clean_logprob: float  # m_clean = log p(translation | clean source)
    corrupted_logprob: float  # m_corrupted = log p(translation | corrupted source)
    heads: list  # [{"name": "cross L1 H2", "family", "layer", "head", "restored", "logprob"}], order of all_heads
    layers: list  # [{"name": "encoder L1" / "decoder L2", "site", "restored", "logprob"}], encoder layers first
    nothing_patched: float  # 0 by definition
    encoder_output_patched: float  # 1: the decoder sees exactly the clean run's inputs
    seconds: float  # time spent on the patched runs (one batched pass)


def _same_length(tokenizer, clean_ids: list[int], corrupted_ids: list[int]) -> None:
    """Refuse sources of different token lengths: their activations have no position-by-position counterpart."""
    if len(clean_ids) != len(corrupted_ids):
        raise ValueError(
            f"the clean and corrupted sources must have the same number of tokens to patch one into the other, "
            f"but the clean one has {len(clean_ids)} {tokens_of(tokenizer, clean_ids)} and the corrupted one "
            f"{len(corrupted_ids)} {tokens_of(tokenizer, corrupted_ids)}. Pick two sentences that differ in one "
            "word of the same token length (e.g. 'man' -> 'woman' if both are one token)."
        )


def _patched(model) -> tuple[list, list, list]:
    """What is patched, each alone: (site, head or None) per patch, with the whole encoder output first, then
    every head, then every layer's residual stream; and the entries that name the heads' and the layers' patches."""
    heads = all_heads(model)
    layers = [(stack, l) for stack in STACKS for l in range(len(stack_layers(model, stack)))]
    head_entries = [{"name": head_label(*h), "family": h[0], "layer": h[1], "head": h[2]} for h in heads]
    layer_entries = [{"name": layer_label(stack, l), "site": site_name(stack, "resid_post", l)} for stack, l in layers]
    patches = (
        [(ENCODER_OUTPUT, None)]
        + [(attention_site(f, l, "z"), h) for f, l, h in heads]
        + [(entry["site"], None) for entry in layer_entries]
    )
    return patches, head_entries, layer_entries


def _restored(m_clean: float, m_corrupted: float):
    """The function value -> (value - m_corrupted) / (m_clean - m_corrupted), once there is something to restore."""
    if abs(m_clean - m_corrupted) < 1e-6:
        raise ValueError(
            f"the translation has the same log-probability given both sources ({m_clean:.6g} and {m_corrupted:.6g}): "
            "there is nothing to restore. Pick a corrupted source that changes the translation's score (e.g. the "
            "clean sentence with one word replaced)."
        )

    def restored(value: float) -> float:
        return (value - m_corrupted) / (m_clean - m_corrupted) + 0.0  # + 0.0: no -0.0 in the JSON

    return restored


@torch.inference_mode()
def activation_patching(model, tokenizer, clean, corrupted, translation=None, **generate_kwargs) -> ActivationPatching:
    """Patch each head (`z`, one head's slice) and each layer's residual stream (`resid_post`) from the run on
    `clean` into the run on `corrupted`, and report how much of log p(translation | clean) each restores.

    `clean` and `corrupted`: texts or ids of the same token length. `translation`: text or ids; None is the
    model's translation of `clean` (with `generate_kwargs`).
    """
    model.eval()
    clean_ids, corrupted_ids = source_ids(model, tokenizer, clean), source_ids(model, tokenizer, corrupted)
    _same_length(tokenizer, clean_ids, corrupted_ids)
    example = make_example(model, tokenizer, clean_ids, translation, **generate_kwargs)
    device = device_of(model)
    decoder_input_ids = torch.tensor([example.decoder_input_ids], device=device)
    labels = torch.tensor([example.labels], device=device)
    patches, head_entries, layer_entries = _patched(model)

    def score(logits):  # (B, T, V) -> (B,) log p(translation)
        return logprobs_of(logits, labels.expand(logits.shape[0], -1)).sum(-1)

    _, clean_cache = HookedModel(model).run_with_cache(  # the clean run, cached once
        sorted({site for site, _ in patches}),
        input_ids=torch.tensor([clean_ids], device=device),
        decoder_input_ids=decoder_input_ids,
        use_cache=False,
    )
    start = time.perf_counter()
    rows = [[]] + [[patch(clean_cache, site, head)] for site, head in patches]  # row 0: nothing patched
    m = run_interventions(
        model,
        rows,
        score,
        input_ids=torch.tensor([corrupted_ids], device=device),
        decoder_input_ids=decoder_input_ids,
        use_cache=False,
    ).tolist()
    seconds = time.perf_counter() - start

    # Both ends come from the same batched pass: row 0 is the corrupted run, and row 1 (the whole encoder output
    # patched) is the clean run, since the decoder then reads exactly the clean run's inputs. So the ends are
    # exactly 0 and 1, free of the rounding differences between a batch of one and a batch of many.
    m_corrupted, m_clean = m[0], m[1]
    restored = _restored(m_clean, m_corrupted)
    head_values, layer_values = m[2 : 2 + len(head_entries)], m[2 + len(head_entries) :]
    return ActivationPatching(
        clean=source_text(tokenizer, clean, example),
        corrupted=corrupted if isinstance(corrupted, str) else decode(tokenizer, corrupted_ids),
        translation=decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        clean_tokens=tokens_of(tokenizer, clean_ids),
        corrupted_tokens=tokens_of(tokenizer, corrupted_ids),
        translation_tokens=tokens_of(tokenizer, example.labels),
        clean_logprob=m_clean,
        corrupted_logprob=m_corrupted,
        heads=[{**entry, "restored": restored(v), "logprob": v} for entry, v in zip(head_entries, head_values)],
        layers=[{**entry, "restored": restored(v), "logprob": v} for entry, v in zip(layer_entries, layer_values)],
        nothing_patched=0.0,
        encoder_output_patched=restored(m[1]),
        seconds=seconds,
    )
