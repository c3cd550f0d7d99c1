"""The attention maps of one translation, from one teacher-forced forward pass (imports no gradio).

`generate()` hands out attention per decoding step and per beam; a viewer needs one matrix per layer
and head over whole sentences. So, once the translation is final, the model reads the source and the
translation again in a single forward pass with `output_attentions=True` (teacher forcing), and the
token labels are taken from the very ids of that pass: labels and matrices always agree.

The contract follows bertviz's encoder-decoder view: three families, per layer one `(heads, q, k)`
array, and explicit token lists for each side.

    family    queries (rows)   keys (columns)
    encoder   source tokens    source tokens    encoder self-attention
    decoder   target tokens    target tokens    masked decoder self-attention (causal)
    cross     target tokens    source tokens    encoder-decoder attention

Target tokens are what the decoder *reads*: the start token `<s>` then the translation, without the
final `</s>`. Row t is the step that reads target token t and predicts token t + 1
(`AttentionData.predicted_tokens[t]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .heads import FAMILIES, FAMILY_SIDES, check_family, family_record, grid_shape
from .hooks import HookedModel


@dataclass(frozen=True)
class AttentionData:
    """Token lists and per-layer `(heads, q, k)` attention probabilities of one sentence pair.

    Construction checks every matrix against the token lists and says what disagrees.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    encoder: list[np.ndarray]  # per encoder layer: (h, S, S)
    decoder: list[np.ndarray]  # per decoder layer: (h, T, T)
    cross: list[np.ndarray]  # per decoder layer: (h, T, S)
    source_ids: list[int] = field(default_factory=list)
    target_ids: list[int] = field(default_factory=list)
    predicted_tokens: list[str] = field(default_factory=list)  # row t of decoder/cross predicts this token

    def __post_init__(self):
        n_src, n_tgt = len(self.source_tokens), len(self.target_tokens)
        for family in FAMILIES:
            layers = getattr(self, family)
            if not layers:
                raise ValueError(f"AttentionData: no {family} attention layers were given.")
            q_side, k_side = FAMILY_SIDES[family]
            want_q = n_src if q_side == "source" else n_tgt
            want_k = n_src if k_side == "source" else n_tgt
            for i, matrix in enumerate(layers):
                if not isinstance(matrix, np.ndarray) or matrix.ndim != 3:
                    raise ValueError(
                        f"AttentionData: {family} layer {i} must be a (heads, q, k) numpy array, got "
                        f"{getattr(matrix, 'shape', type(matrix).__name__)}."
                    )
                if matrix.shape[1:] != (want_q, want_k):
                    raise ValueError(
                        f"AttentionData: {family} layer {i} has shape {matrix.shape} but there are {want_q} "
                        f"{q_side} tokens (rows) and {want_k} {k_side} tokens (columns): expected "
                        f"(heads, {want_q}, {want_k}). Build the token lists from the ids of the forward pass."
                    )
        for name, ids, tokens in (
            ("source", self.source_ids, self.source_tokens),
            ("target", self.target_ids, self.target_tokens),
        ):
            if ids and len(ids) != len(tokens):
                raise ValueError(f"AttentionData: {len(ids)} {name} ids but {len(tokens)} {name} tokens.")
        if self.predicted_tokens and len(self.predicted_tokens) != n_tgt:
            raise ValueError(f"AttentionData: {len(self.predicted_tokens)} predicted tokens but {n_tgt} target tokens.")

    # --- reading ---------------------------------------------------------------------------------
    def layers(self, family: str) -> list[np.ndarray]:
        check_family(family)
        return getattr(self, family)

    def num_layers(self, family: str) -> int:
        return len(self.layers(family))

    def num_heads(self, family: str) -> int:
        return int(self.layers(family)[0].shape[0])

    def query_tokens(self, family: str) -> list[str]:
        return self.source_tokens if family_record(family).queries == "source" else self.target_tokens

    def key_tokens(self, family: str) -> list[str]:
        return self.source_tokens if family_record(family).keys == "source" else self.target_tokens

    def matrix(self, family: str, layer: int, head: int | None = None) -> np.ndarray:
        """One `(q, k)` matrix: a head (0-based), or the mean over heads when `head` is None."""
        layers = self.layers(family)
        if not 0 <= layer < len(layers):
            raise IndexError(f"{family} has layers 0..{len(layers) - 1}, asked for layer {layer}.")
        stack = layers[layer]
        if head is None:
            return stack.mean(axis=0)
        if not 0 <= head < stack.shape[0]:
            raise IndexError(f"{family} layer {layer} has heads 0..{stack.shape[0] - 1}, asked for head {head}.")
        return stack[head]

    def strongest_links(
        self, family: str, query: int, head: int | None = None, k: int = 3
    ) -> list[list[tuple[int, str, float]]]:
        """For one query token: per layer, the `k` keys it attends to most, as (key index, token, weight).

        Decoder self-attention is causal: a key after the query (a future token, weight 0) is never listed."""
        queries = self.query_tokens(family)
        if not 0 <= query < len(queries):
            raise IndexError(f"{family} has query tokens 0..{len(queries) - 1}, asked for {query}.")
        keys, causal = self.key_tokens(family), family_record(family).causal
        result = []
        for layer in range(self.num_layers(family)):
            row = self.matrix(family, layer, head)[query]
            order = [j for j in np.argsort(-row, kind="stable") if not causal or j <= query][:k]
            result.append([(int(j), keys[j], float(row[j])) for j in order])
        return result

    def to_dict(self, decimals: int = 4) -> dict:
        """JSON-ready: token lists, and per family a nested list [layer][head][query][key]."""
        out = {
            "source_tokens": list(self.source_tokens),
            "target_tokens": list(self.target_tokens),
            "predicted_tokens": list(self.predicted_tokens),
            "source_ids": [int(i) for i in self.source_ids],
            "target_ids": [int(i) for i in self.target_ids],
        }
        for family in FAMILIES:
            out[family] = [np.round(m.astype(np.float64), decimals).tolist() for m in self.layers(family)]
        out["shapes"] = {
            family: [self.num_layers(family), self.num_heads(family), *self.layers(family)[0].shape[1:]]
            for family in FAMILIES
        }
        out["layout"] = {
            family: {"rows": FAMILY_SIDES[family][0] + "_tokens", "columns": FAMILY_SIDES[family][1] + "_tokens"}
            for family in FAMILIES
        }
        return out


def decoder_ids_from_generated(generated: list[int], eos_token_id: int | None, pad_token_id: int | None) -> list[int]:
    """The ids the decoder reads for a finished translation: `<start> y_1 .. y_n`, stopping before `</s>`.

    `generated` is one row of `generate()` output: it starts with the decoder start token and may end with
    `</s>` and padding.
    """
    ids = [int(i) for i in generated]
    if not ids:
        raise ValueError("The generated sequence is empty; it should at least hold the decoder start token.")
    kept = ids[:1]
    for token in ids[1:]:
        if token == eos_token_id or token == pad_token_id:
            break
        kept.append(token)
    return kept


def _as_single_row(ids, name: str):
    import torch

    tensor = ids if isinstance(ids, torch.Tensor) else torch.tensor(ids, dtype=torch.long)
    if tensor.dim() == 1:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 2 or tensor.shape[0] != 1:
        raise ValueError(
            f"Attention data is built for one sentence at a time (batch size 1): `{name}` has shape "
            f"{tuple(tensor.shape)}. Loop over the sentences and call this once per sentence pair."
        )
    if tensor.shape[1] == 0:
        raise ValueError(f"`{name}` is empty: there is nothing to attend over.")
    return tensor.long()


def build_attention_data(
    model, tokenizer, input_ids, decoder_input_ids, eos_token_id: int | None = None
) -> AttentionData:
    """Run one teacher-forced forward pass and collect every attention map of every layer and head.

    `input_ids`: the source ids as the encoder read them (with `</s>`), shape (S,) or (1, S).
    `decoder_input_ids`: `<start> y_1 .. y_n`, shape (T,) or (1, T) (see `decoder_ids_from_generated`).
    Batches larger than one are refused: the viewer contract is one sentence pair.
    """
    import torch

    src = _as_single_row(input_ids, "input_ids")
    tgt = _as_single_row(decoder_input_ids, "decoder_input_ids")
    device = next(model.parameters()).device
    hooked = HookedModel(model)
    sites = {
        family: [hooked.attention_site(family, layer, "pattern") for layer in range(grid_shape(model, family)[0])]
        for family in FAMILIES
    }
    with torch.inference_mode():
        _, cache = hooked.run_with_cache(
            names=[name for names in sites.values() for name in names],
            input_ids=src.to(device),
            attention_mask=torch.ones_like(src, device=device),
            decoder_input_ids=tgt.to(device),
            use_cache=False,
        )
    families = {family: [cache.get(name) for name in names] for family, names in sites.items()}
    for family, layers in families.items():
        if not layers or any(a is None for a in layers):
            raise RuntimeError(
                f"The model returned no {family} attention weights for output_attentions=True; load it with "
                "attn_implementation='eager' or use a model whose attention returns its weights."
            )
    arrays = {
        family: [a[0].detach().to(torch.float32).cpu().numpy() for a in layers]  # (h, q, k) each
        for family, layers in families.items()
    }
    src_ids = src[0].tolist()
    tgt_ids = tgt[0].tolist()
    if eos_token_id is None:
        eos_token_id = getattr(model.config, "eos_token_id", None)
    predicted_ids = tgt_ids[1:] + ([eos_token_id] if eos_token_id is not None else [])
    predicted = tokenizer.convert_ids_to_tokens(predicted_ids)[: len(tgt_ids)]
    if len(predicted) < len(tgt_ids):
        predicted = predicted + [""] * (len(tgt_ids) - len(predicted))
    return AttentionData(
        source_tokens=tokenizer.convert_ids_to_tokens(src_ids),
        target_tokens=tokenizer.convert_ids_to_tokens(tgt_ids),
        encoder=arrays["encoder"],
        decoder=arrays["decoder"],
        cross=arrays["cross"],
        source_ids=src_ids,
        target_ids=tgt_ids,
        predicted_tokens=predicted,
    )


__all__ = ["AttentionData", "build_attention_data", "decoder_ids_from_generated"]
