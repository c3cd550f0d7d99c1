"""The logit lens and the residual stream: what the decoder would predict after each layer, and how much
each sub-layer writes into the stream (both read from hook sites, in one forward pass each).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from .ablation import ablate_heads
from .heads import STACKS, stack_layers
from .hooks import HookedModel, site_name
from .inputs import Example, TranslationResult, device_of, make_example, tokens_of


@torch.inference_mode()
def logit_lens_probs(model, example: Example, heads: Iterable = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder layers, T, vocab) probabilities read from the residual stream after each decoder layer, and
    the model's real output distribution (T, vocab).

    For pre-LN models the decoder's final layer norm is applied first (as the model does before its output
    projection); for post-LN models the stream after each layer is already normalised.
    """
    model.eval()
    hooked = HookedModel(model)
    decoder = model.get_decoder()
    input_ids, decoder_input_ids, _ = example.tensors(device_of(model))
    names = [site_name("decoder", "resid_post", i) for i in range(len(decoder.layers))]
    with ablate_heads(model, heads):
        out, cache = hooked.run_with_cache(
            names, input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False
        )
    lens = []
    for name in names:
        hidden = cache[name]
        if decoder.layer_norm is not None:
            hidden = decoder.layer_norm(hidden)
        lens.append(model.lm_head(hidden)[0].float().softmax(-1))
    return torch.stack(lens), out.logits[0].float().softmax(-1)


@dataclass
class LogitLens(TranslationResult):
    input_tokens: list[str]  # what the decoder reads at each position: <start> y_1 .. y_{n-1}
    target_tokens: list[str]  # what it should predict at each position: y_1 .. y_n
    layers: list  # per decoder layer: {"layer", "positions": [{"position", "input", "target", "top": [{"token",
    #   "id", "prob"}], "target_prob", "target_rank"}]}
    final: list  # the model's real output, same form as one layer's "positions"
    normalize_before: bool


def _lens_positions(tokenizer, probs: torch.Tensor, example: Example, top_k: int) -> list[dict]:
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    labels = torch.tensor(example.labels, device=probs.device)
    target_probs = probs.gather(-1, labels[:, None]).squeeze(-1)
    target_ranks = (probs > target_probs[:, None]).sum(-1) + 1
    inputs = tokens_of(tokenizer, example.decoder_input_ids)
    targets = tokens_of(tokenizer, example.labels)
    out = []
    for t in range(probs.shape[0]):
        ids = top.indices[t].tolist()
        out.append(
            {
                "position": t,
                "input": inputs[t],
                "target": targets[t],
                "top": [
                    {"token": tok, "id": i, "prob": p}
                    for tok, i, p in zip(tokens_of(tokenizer, ids), ids, top.values[t].tolist())
                ],
                "target_prob": float(target_probs[t]),
                "target_rank": int(target_ranks[t]),
            }
        )
    return out


def logit_lens(
    model, tokenizer, source, translation=None, top_k: int = 5, heads: Iterable = (), **generate_kwargs
) -> LogitLens:
    """What the output projection would predict from the residual stream after each decoder layer.

    At the last layer this is exactly the model's output distribution (`final`).
    """
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    lens, final = logit_lens_probs(model, example, heads)
    return LogitLens(
        **TranslationResult.header(tokenizer, source, example),
        input_tokens=tokens_of(tokenizer, example.decoder_input_ids),
        target_tokens=tokens_of(tokenizer, example.labels),
        layers=[
            {"layer": i, "positions": _lens_positions(tokenizer, probs, example, top_k)} for i, probs in enumerate(lens)
        ],
        final=_lens_positions(tokenizer, final, example, top_k),
        normalize_before=bool(model.config.normalize_before),
    )


# --------------------------------------------------------------------------------------------- residual stream

# The sites of what each sub-layer writes (and of the stream entering and leaving the layer), by their keys in
# `sublayer_writes`.
_WRITES = {
    "encoder": {"input": "resid_pre", "self_attn": "self_attn.out", "ffn": "ffn.out", "output": "resid_post"},
    "decoder": {
        "input": "resid_pre",
        "self_attn": "self_attn.out",
        "cross_attn": "encoder_attn.out",
        "ffn": "ffn.out",
        "output": "resid_post",
    },
}


@torch.inference_mode()
def sublayer_writes(model, example: Example, heads: Iterable = ()) -> dict:
    """Tensors of the residual stream: {"encoder"|"decoder": [ {"input", "self_attn", ["cross_attn"], "ffn",
    "output"} per layer ]}, each (L, d_model) for the single example.

    "self_attn", "cross_attn" and "ffn" are what the sub-layer adds to the residual stream: its output
    before the residual add (after dropout, which is off in eval mode). "input"/"output": the stream entering
    and leaving the layer.
    """
    model.eval()
    input_ids, decoder_input_ids, _ = example.tensors(device_of(model))
    sites = {
        stack: [
            {key: site_name(stack, what, i) for key, what in _WRITES[stack].items()}
            for i in range(len(stack_layers(model, stack)))
        ]
        for stack in STACKS
    }
    with ablate_heads(model, heads):
        _, cache = HookedModel(model).run_with_cache(
            [name for layers in sites.values() for layer in layers for name in layer.values()],
            input_ids=input_ids,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        )
    return {
        stack: [{key: cache[name][0] for key, name in layer.items()} for layer in layers]
        for stack, layers in sites.items()
    }


@dataclass
class ResidualStream(TranslationResult):
    input_tokens: list[str]  # decoder positions: <start> y_1 .. y_{n-1}
    encoder: list  # per layer: {"layer", "input_norm", "self_attn", "ffn", "output_norm"}: lists over positions
    decoder: list  # per layer: {"layer", "input_norm", "self_attn", "cross_attn", "ffn", "output_norm"}
    normalize_before: bool


def residual_stream(
    model, tokenizer, source, translation=None, heads: Iterable = (), **generate_kwargs
) -> ResidualStream:
    """Per position, the L2 norm of what each sub-layer writes into the residual stream, and of the stream."""
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    writes = sublayer_writes(model, example, heads)

    def norms(t):
        return t.float().norm(dim=-1).tolist()

    def side(entries):
        return [
            {
                "layer": i,
                "input_norm": norms(e["input"]),
                **{k: norms(v) for k, v in e.items() if k not in ("input", "output")},
                "output_norm": norms(e["output"]),
            }
            for i, e in enumerate(entries)
        ]

    return ResidualStream(
        **TranslationResult.header(tokenizer, source, example),
        input_tokens=tokens_of(tokenizer, example.decoder_input_ids),
        encoder=side(writes["encoder"]),
        decoder=side(writes["decoder"]),
        normalize_before=bool(model.config.normalize_before),
    )
