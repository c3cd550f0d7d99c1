"""Direct logit attribution: the logit of one target token split into what each part of the decoder wrote.

The decoder's residual stream at a position is a sum: the token embedding, the positional encoding, and what
every sub-layer added (each attention head's z_h W^O_h, each feed-forward block's output, and constant biases).
A LayerNorm is not linear, but with its scale frozen at the value of this forward pass (σ = sqrt(var(y) + eps)
of its actual input y) it is an affine map, y -> γ ⊙ (y - mean(y)) / σ + β, which distributes over the sum:
every component c becomes γ ⊙ (c - mean(c)) / σ and β goes to the biases. So the stream stays an exact sum
of components all the way to the output projection, and projecting each component on the target token's row
of `lm_head` splits the logit exactly: the components add up to the model's own logit (up to float rounding).

- Post-LN (the paper): every sub-layer's LayerNorm rescales the whole stream.
- Pre-LN: the sub-layers' LayerNorms sit inside the sub-layers (their effect is part of what each head or
  feed-forward block writes); only the decoder's final `layer_norm` rescales the stream.

Encoder heads (and the encoder's feed-forward blocks) are not components: they reach the decoder only through
the keys and values of cross-attention, i.e. through what the cross-attention heads write, and are counted in
those heads' contributions. Likewise a decoder head's effect on later layers' attention (through their queries,
keys and values) counts for those later heads: this is the *direct* effect of each component, not its total.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .heads import head_label, layer_label, stack_families
from .hooks import HookedModel, site_name
from .inputs import TranslationResult, device_of, make_example, tokens_of

BIASES = "biases"


@dataclass
class LogitAttribution(TranslationResult):
    translation_tokens: list[str]  # the labels y_1 .. y_n
    input_tokens: list[str]  # what the decoder reads: <start> y_1 .. y_{n-1}
    position: int  # the decoder position (from 0); it predicts translation_tokens[position]
    token: str  # the target token at that position
    token_id: int
    logit: float  # the model's own logit of `token` at `position`
    logprob: float  # the model's log p(token | ...) at that position
    components: list  # [{"name", "value"}] in model order; they add up to `logit`
    total: float  # the sum of the components (equal to `logit` up to float rounding)
    normalize_before: bool


class _Stream:
    """The residual stream at one position as named components (float64 rows that add up to the stream)."""

    def __init__(self, d_model: int, device):
        self.names: list[str] = [BIASES]
        self.rows: list[torch.Tensor] = [torch.zeros(d_model, dtype=torch.float64, device=device)]

    def add(self, name: str, vector: torch.Tensor) -> None:
        if name == BIASES:
            self.rows[0] = self.rows[0] + vector.double()
        else:
            self.names.append(name)
            self.rows.append(vector.double())

    def layer_norm(self, norm: torch.nn.LayerNorm, y: torch.Tensor) -> None:
        """Apply `norm` with the scale of its actual input `y` (d_model,): linear on every component, β to biases."""
        y = y.double()
        sigma = torch.sqrt(y.var(unbiased=False) + norm.eps)
        gamma = norm.weight.double() if norm.weight is not None else 1.0
        matrix = torch.stack(self.rows)
        matrix = gamma * (matrix - matrix.mean(-1, keepdim=True)) / sigma
        self.rows = list(matrix)
        if norm.bias is not None:
            self.rows[0] = self.rows[0] + norm.bias.double()

    def matrix(self) -> torch.Tensor:
        return torch.stack(self.rows)


def _heads(stream: _Stream, attn, z: torch.Tensor, family: str, layer: int) -> None:
    """Add one attention sub-layer's heads: z (h, d_k) at the position -> z_h @ W^O[:, h-slice]^T each."""
    w = attn.out_proj.weight.double()  # (d_model, d_model): out = concat @ w^T + b
    d_k = z.shape[-1]
    for h in range(z.shape[0]):
        stream.add(head_label(family, layer, h), w[:, h * d_k : (h + 1) * d_k] @ z[h].double())
    if attn.out_proj.bias is not None:
        stream.add(BIASES, attn.out_proj.bias)


# The decoder sites a layer's components are read from.
_LAYER_SITES = (
    "resid_pre",
    "self_attn.z",
    "self_attn.out",
    "resid_after_self_attn",
    "encoder_attn.z",
    "encoder_attn.out",
    "resid_after_encoder_attn",
    "ffn.out",
    "resid_post",
)


def _decoder_stream(model, cache, t: int) -> _Stream:
    """The decoder's residual stream at position `t` as components, through every LayerNorm the stream passes
    (scales frozen at this pass), as the output projection reads it."""
    decoder = model.get_decoder()
    pre_ln = decoder.layer_norm is not None

    def at(what, l):  # the activation at position t: (d_model,) or, for z, (h, d_k)
        return cache[site_name("decoder", what, l)][0, t]

    stream = _Stream(model.config.d_model, cache[site_name("decoder", "resid_pre", 0)].device)
    positions = cache[site_name("decoder", "embed_positions")]
    positional = positions[0, t] if positions.dim() == 3 else positions[t]  # (1 or B, T, d) or (T, d)
    # resid_pre of layer 0 is embed_tokens(y) * embed_scale + PE (dropout is off in eval mode)
    stream.add("token embedding", at("resid_pre", 0).double() - positional.double())
    stream.add("positional encoding", positional)
    for l, layer in enumerate(decoder.layers):
        before = "resid_pre"  # post-LN: x = LayerNorm(x + Sublayer(x)), its input rebuilt from the cached pieces
        for family in stack_families("decoder"):
            attn = family.attention
            _heads(stream, getattr(layer, attn), at(f"{attn}.z", l), family.name, l)
            if not pre_ln:
                stream.layer_norm(getattr(layer, family.layer_norm), at(before, l) + at(f"{attn}.out", l))
            before = f"resid_after_{attn}"
        stream.add(layer_label("ffn", l), at("ffn.out", l))
        if not pre_ln:
            stream.layer_norm(layer.final_layer_norm, at(before, l) + at("ffn.out", l))
    if pre_ln:
        stream.layer_norm(decoder.layer_norm, at("resid_post", len(decoder.layers) - 1))
    return stream


@torch.inference_mode()
def logit_attribution(
    model, tokenizer, source, translation=None, position: int = -1, **generate_kwargs
) -> LogitAttribution:
    """Split the logit of the target token at decoder `position` (it predicts labels[position]; -1 = the last,
    normally </s>) into the contributions of: "token embedding", "positional encoding", every decoder
    self-attention head ("dec-self L1 H1", ...), every cross-attention head ("cross L1 H1", ...), every
    feed-forward block ("ffn L1", ...) and "biases" (the attention output biases, the LayerNorm betas and the
    output layer's bias), from one forward pass (`run_with_cache`).

    `translation`: text or ids to score teacher-forced; None translates `source` first (`generate_kwargs`).
    Encoder heads are not components: they act on the logit only through cross-attention's keys and values,
    so their effect is inside the cross-attention heads' contributions.
    """
    model.eval()
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    n = len(example.labels)
    if not -n <= position < n:
        raise ValueError(
            f"position {position} does not exist: the translation has {n} target positions "
            f"(0..{n - 1}, or -1 for the last)."
        )
    t = position % n
    token_id = int(example.labels[t])

    names = [site_name("decoder", "embed_positions")]
    names += [site_name("decoder", what, l) for l in range(len(model.get_decoder().layers)) for what in _LAYER_SITES]
    input_ids, decoder_input_ids, _ = example.tensors(device_of(model))
    out, cache = HookedModel(model).run_with_cache(
        names, input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False
    )
    logits = out.logits[0, t].float()
    stream = _decoder_stream(model, cache, t)

    lm_head = model.get_output_embeddings()
    values = stream.matrix() @ lm_head.weight[token_id].double()
    if getattr(lm_head, "bias", None) is not None:
        values[0] = values[0] + lm_head.bias[token_id].double()
    # model order: embeddings, then each layer's heads and ffn, biases last
    components = [{"name": name, "value": float(v)} for name, v in zip(stream.names[1:], values[1:].tolist())]
    components.append({"name": BIASES, "value": float(values[0])})
    return LogitAttribution(
        **TranslationResult.header(tokenizer, source, example),
        translation_tokens=tokens_of(tokenizer, example.labels),
        input_tokens=tokens_of(tokenizer, example.decoder_input_ids),
        position=t,
        token=tokens_of(tokenizer, [token_id])[0],
        token_id=token_id,
        logit=float(logits[token_id]),
        logprob=float(logits.log_softmax(-1)[token_id]),
        components=components,
        total=float(values.sum()),
        normalize_before=model.get_decoder().layer_norm is not None,
    )
