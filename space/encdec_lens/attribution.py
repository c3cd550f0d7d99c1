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

from dataclasses import asdict, dataclass

import torch

from .heads import head_label
from .hooks import HookedModel
from .inputs import decode, device_of, make_example, source_text, tokens_of

BIASES = "biases"


@dataclass
class LogitAttribution:
    source: str
    translation: str
    translation_ids: list[int]
    source_tokens: list[str]
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

    def to_dict(self) -> dict:
        return asdict(self)


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


@torch.inference_mode()
def logit_attribution(model, tokenizer, source, translation=None, position: int = -1,
                      **generate_kwargs) -> LogitAttribution:
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
        raise ValueError(f"position {position} does not exist: the translation has {n} target positions "
                         f"(0..{n - 1}, or -1 for the last).")
    t = position % n
    token_id = int(example.labels[t])

    hooked = HookedModel(model)
    decoder = model.get_decoder()
    layers = decoder.layers
    pre_ln = decoder.layer_norm is not None
    names = ["decoder.embed_positions"]
    for l in range(len(layers)):
        p = f"decoder.layers.{l}"
        names += [f"{p}.resid_pre", f"{p}.self_attn.z", f"{p}.self_attn.out", f"{p}.resid_after_self_attn",
                  f"{p}.encoder_attn.z", f"{p}.encoder_attn.out", f"{p}.resid_after_encoder_attn", f"{p}.ffn.out",
                  f"{p}.resid_post"]
    input_ids, decoder_input_ids, _ = example.tensors(device_of(model))
    out, cache = hooked.run_with_cache(names, input_ids=input_ids, decoder_input_ids=decoder_input_ids,
                                       use_cache=False)
    logits = out.logits[0, t].float()

    def at(name):  # the activation at this position: (d_model,) or, for z, (h, d_k)
        return cache[name][0, t]

    d_model = model.config.d_model
    stream = _Stream(d_model, logits.device)
    positions = cache["decoder.embed_positions"]
    positional = positions[0, t] if positions.dim() == 3 else positions[t]  # (1 or B, T, d) or (T, d)
    # resid_pre of layer 0 is embed_tokens(y) * embed_scale + PE (dropout is off in eval mode)
    stream.add("token embedding", at("decoder.layers.0.resid_pre").double() - positional.double())
    stream.add("positional encoding", positional)
    for l, layer in enumerate(layers):
        p = f"decoder.layers.{l}"
        _heads(stream, layer.self_attn, at(f"{p}.self_attn.z"), "decoder", l)
        if not pre_ln:  # post-LN: x = LayerNorm(x + Sublayer(x)), its input y rebuilt from the cached pieces
            stream.layer_norm(layer.self_attn_layer_norm, at(f"{p}.resid_pre") + at(f"{p}.self_attn.out"))
        _heads(stream, layer.encoder_attn, at(f"{p}.encoder_attn.z"), "cross", l)
        if not pre_ln:
            stream.layer_norm(layer.encoder_attn_layer_norm,
                              at(f"{p}.resid_after_self_attn") + at(f"{p}.encoder_attn.out"))
        stream.add(f"ffn L{l + 1}", at(f"{p}.ffn.out"))
        if not pre_ln:
            stream.layer_norm(layer.final_layer_norm, at(f"{p}.resid_after_encoder_attn") + at(f"{p}.ffn.out"))
    if pre_ln:
        stream.layer_norm(decoder.layer_norm, at(f"decoder.layers.{len(layers) - 1}.resid_post"))

    lm_head = model.get_output_embeddings()
    values = stream.matrix() @ lm_head.weight[token_id].double()
    if getattr(lm_head, "bias", None) is not None:
        values[0] = values[0] + lm_head.bias[token_id].double()
    # model order: embeddings, then each layer's heads and ffn, biases last
    components = [{"name": name, "value": float(v)} for name, v in zip(stream.names[1:], values[1:].tolist())]
    components.append({"name": BIASES, "value": float(values[0])})
    return LogitAttribution(
        source=source_text(tokenizer, source, example),
        translation=decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        source_tokens=tokens_of(tokenizer, example.input_ids),
        translation_tokens=tokens_of(tokenizer, example.labels),
        input_tokens=tokens_of(tokenizer, example.decoder_input_ids),
        position=t,
        token=tokens_of(tokenizer, [token_id])[0],
        token_id=token_id,
        logit=float(logits[token_id]),
        logprob=float(logits.log_softmax(-1)[token_id]),
        components=components,
        total=float(values.sum()),
        normalize_before=pre_ln,
    )
