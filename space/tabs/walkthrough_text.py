"""The words of the "Inside one head" walkthrough: a title and one or two plain sentences for each step.

`encdec_lens.walkthrough.walkthrough` computes the numbers; `explain` turns its result into titled steps
(`Explanation`), which the tab draws and its API endpoint sends (`Explanation.to_dict`). Titles count layers
and heads from 1, as the Space's pickers do; the numbers keep 0-based indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from encdec_lens import walkthrough as wt
from encdec_lens.heads import FAMILIES

# How the step texts name each head family inside a sentence ("The vector entering ...", the API's
# `kind_label`); the pickers use `heads.FAMILY_TITLES`.
FAMILY_PHRASES = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention (masked)",
    "cross": "encoder-decoder (cross) attention",
}
assert tuple(FAMILY_PHRASES) == FAMILIES

# The API's answer: these fields of the walkthrough, in this order ("steps" with their titles and texts).
API_FIELDS = (
    "sentence",
    "translation",
    "kind",
    "kind_label",
    "layer",
    "head",
    "position",
    "token",
    "query_tokens",
    "key_tokens",
    "source_tokens",
    "decoder_tokens",
    "target_tokens",
    "sizes",
    "steps",
    "checks",
)


@dataclass
class TitledStep:
    id: str
    title: str
    text: str  # one or two plain sentences
    data: dict  # the step's numbers, as the walkthrough gives them


@dataclass
class Explanation:
    """A walkthrough's numbers (`result`) with the words of every step."""

    result: wt.Walkthrough
    kind_label: str
    steps: list  # [TitledStep], in the walkthrough's order

    def step(self, step_id: str) -> TitledStep:
        return wt.find_step(self.steps, step_id)

    def to_dict(self, full_table: bool = True) -> dict:
        """The API's JSON: `API_FIELDS` of the result, each step as {"id", "title", "text", "data"}
        (`full_table` as in `Walkthrough.to_dict`)."""
        numbers = self.result.to_dict(full_table=full_table)
        numbers["kind_label"] = self.kind_label
        numbers["steps"] = [
            {"id": s.id, "title": s.title, "text": s.text, "data": step["data"]}
            for s, step in zip(self.steps, numbers["steps"])
        ]
        return {name: numbers[name] for name in API_FIELDS}


def _fmt(values: Sequence[float], n: int = 4) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in list(values)[:n]) + ", ...]"


def _n_layers(r: wt.Walkthrough) -> int:
    return r.sizes["encoder_layers" if r.kind == "encoder" else "decoder_layers"]


# --- one function per step: (result, the step's data) -> (title, text) ------------------------------------
def embedding_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    s = r.sizes
    return "1. Embedding + positional encoding", (
        f"The token {r.token!r} (id {d['token_id']}) is looked up in a table of {s['vocab']} learned vectors of "
        f"d_model = {s['d_model']} numbers and multiplied by sqrt(d_model) = {d['scale']:.2f}. Attention by itself "
        f"has no sense of word order, so a positional encoding for position {d['position']} is added; the sum "
        "enters the first layer."
    )


def positional_table_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    if r.sizes["position_embedding_type"] == "learned":
        text = (
            "This model learned one position vector per position (Table 3, row E). Each row of the "
            "picture is one position, each column one of the d_model dimensions."
        )
    elif r.sizes.get("sinusoidal_layout") == "concatenated":
        text = (
            "PE(pos, i) = sin(pos / 10000^(2i/d_model)) in the first d_model/2 dimensions and the matching "
            "cosines in the last d_model/2 (Marian's layout of section 3.5's sinusoids): every dimension is a "
            "wave of its own wavelength, so every position gets a distinct pattern and nearby positions get "
            "similar ones. Each row is one position."
        )
    else:
        text = (
            "PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)): "
            "every dimension is a wave of its own wavelength, so every position gets a distinct pattern "
            "and nearby positions get similar ones (section 3.5). Each row is one position."
        )
    return "The positional encoding table", text


def layer_input_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    layer, pre_ln = r.layer, d["pre_ln"]
    if layer == 0 and r.kind != "cross":
        origin = "In layer 1 this is exactly the sum from step 1."
    elif r.kind == "cross":
        origin = (
            f"Cross-attention comes after the masked self-attention block of decoder layer {layer + 1}, so it "
            "reads the stream after that block (input + self-attention output"
            + (")." if pre_ln else ", layer-normed).")
        )
    else:
        origin = (
            f"In layer {layer + 1} the token's vector is the output of layer {layer}: it has already mixed in "
            "information from the other tokens."
        )
    ln_text = (
        " This model is pre-LN: each sub-layer reads LayerNorm(x), not x itself."
        if pre_ln
        else " This model is post-LN (the paper): the sub-layer reads x directly."
    )
    return f"2. The vector entering {FAMILY_PHRASES[r.kind]}, layer {layer + 1}", origin + ln_text


def qkv_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    d_model, d_k = r.sizes["d_model"], r.sizes["d_k"]
    if r.kind == "cross":
        kv_where = (
            "keys and values come from the encoder's output for the source sentence, queries from the "
            "target word being written"
        )
    else:
        where = "source sentence" if r.kind == "encoder" else "target sentence (the decoder's input)"
        kv_where = "queries, keys and values all come from the same " + where
    return f"3. Query, key and value of head {r.head + 1}", (
        f"The head multiplies the vector by three learned matrices W^Q, W^K, W^V ({d_model} x {d_k} for one head) to "
        f"get a query (what {r.token!r} is looking for), a key (what each token offers) and a value (what each token "
        f"passes on), each of d_k = {d_k} numbers. Here {kv_where}."
    )


def scores_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    return "4. Score against every token (q . k)", (
        f"The score of {r.token!r} against each token is the dot product of its query with that token's key: a "
        "large score means the token is relevant to this one."
    )


def scaled_scores_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    return f"5. Divide by sqrt(d_k) = {d['sqrt_d_k']:.2f}", (
        "Dot products of long vectors can be large, which would push the softmax into regions with tiny gradients; "
        f"dividing by sqrt(d_k) = sqrt({r.sizes['d_k']}) keeps them moderate (section 3.2.1)."
    )


def softmax_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    text = "Softmax turns the scores into positive weights that add up to 1: how much attention goes to each token."
    if r.kind == "decoder":
        text += (
            f" The decoder must not look at words it has not written yet: the {sum(d['masked'])} future "
            "positions are masked (set to -infinity before the softmax), so their weight is 0."
        )
    top = d["argmax"]
    return "6. Softmax", text + f" Here {r.token!r} attends most to {d['tokens'][top]!r} ({d['weights'][top]:.1%})."


def weighted_values_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    z = d["z"]
    return "7. Weighted values and their sum z", (
        "Each token's value vector is multiplied by its weight, so tokens with small weights are almost drowned "
        f"out; summing them gives z, this head's output for {r.token!r}: {_fmt(z['values'])} (norm {z['norm']:.3f})."
    )


def multi_head_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    n_heads, d_k, d_model = r.sizes["heads"], r.sizes["d_k"], r.sizes["d_model"]
    return f"8. {n_heads} heads in parallel, concatenated, projected by W^O", (
        f"All {n_heads} heads of this layer do steps 3-7 at once, each with its own W^Q, W^K, W^V. Their outputs "
        f"({n_heads} x {d_k} numbers) are concatenated into one vector of {d_model} and multiplied by W^O "
        f"({d_model} x {d_model}), which mixes what the heads found into the attention output."
    )


def residual_layer_norm_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    text = (
        "The attention output is added to the vector that entered the block (a residual connection), "
        "so the layer only learns a change to it. "
    )
    if d["pre_ln"]:
        text += (
            "In this pre-LN model the layer norm was applied to the block's input (step 2), so the sum itself goes on."
        )
    else:
        text += (
            "Then layer normalisation rescales the sum to mean 0 and variance 1 (times a learned gain, plus a "
            "learned bias)."
        )
    return "9. Residual add and layer norm", text


def rest_of_layer_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    d_model, d_ff = r.sizes["d_model"], r.sizes["d_ff"]
    ffn_text = (
        f"the position-wise feed-forward network, max(0, x W_1 + b_1) W_2 + b_2 ({d_model} -> {d_ff} -> "
        f"{d_model}), again inside a residual connection with a layer norm."
    )
    if r.kind == "decoder":
        text = (
            "Next the token goes through encoder-decoder attention (queries from here, keys and values from "
            "the encoder's output) and then " + ffn_text
        )
    else:
        text = "Next the token goes through " + ffn_text
    if r.layer + 1 < _n_layers(r):
        text += f" The layer's output is the input of layer {r.layer + 2}."
    elif r.kind == "encoder":
        text += (
            " This is the encoder's last layer: its output for every source token gives the keys and values "
            "of every decoder layer's cross-attention."
        )
    else:
        text += " This is the decoder's last layer: its output goes to the final linear layer."
    return "10. The rest of the layer", text


def output_text(r: wt.Walkthrough, d: dict) -> tuple[str, str]:
    s = r.sizes
    text = (
        "At the top of the decoder a final linear layer "
        + ("(after a last layer norm) " if s["normalize_before"] else "")
        + f"turns the {s['d_model']}-number vector into one score per vocabulary token ({s['vocab']}; "
        + ("tied to the embedding matrix, section 3.4" if r.tied_embeddings else "its own matrix")
        + "), and softmax turns the scores into the probabilities of the next token."
    )
    if r.kind == "encoder":
        text += " Shown for the decoder's first position: the probabilities of the first word of the translation."
    return "11. Final linear + softmax: the next token", text


TEXTS: dict[str, Callable[[wt.Walkthrough, dict], tuple[str, str]]] = {
    "embedding": embedding_text,
    "positional_table": positional_table_text,
    "layer_input": layer_input_text,
    "qkv": qkv_text,
    "scores": scores_text,
    "scaled_scores": scaled_scores_text,
    "softmax": softmax_text,
    "weighted_values": weighted_values_text,
    "multi_head": multi_head_text,
    "residual_layer_norm": residual_layer_norm_text,
    "rest_of_layer": rest_of_layer_text,
    "output": output_text,
}
assert tuple(TEXTS) == wt.STEP_IDS


def explain(result: wt.Walkthrough) -> Explanation:
    """The walkthrough's steps with their titles and texts."""
    steps = [TitledStep(s.id, *TEXTS[s.id](result, s.data), s.data) for s in result.steps]
    return Explanation(result, FAMILY_PHRASES[result.kind], steps)


__all__ = ["API_FIELDS", "FAMILY_PHRASES", "Explanation", "TEXTS", "TitledStep", "explain"]
