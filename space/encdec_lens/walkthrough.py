"""Inside one attention head: the paper's steps for one token, with the loaded model's real numbers.

For a sentence, its translation (the model's own, or a given target), a token position, a layer and a head,
`walkthrough` returns the NUMBERS of the steps of the illustrated explanations of the Transformer (the
words that explain them are the Space's, in `tabs/walkthrough_text.py`):

1. the token's embedding, times sqrt(d_model), plus the positional encoding (and the sinusoid table);
2. the vector entering the chosen layer and, for pre-LN models, its layer-normed version;
3. the token's query, key and value for the head (q = x W^Q, k = x W^K, v = x W^V);
4. raw scores q . k against every position, scaled scores (/ sqrt(d_k)), softmax weights (future positions
   masked in the decoder), the weighted value vectors and their sum z;
5. all heads concatenated and projected by W^O, with this model's shapes; the residual add and layer norm;
6. the rest of the layer (cross-attention, feed-forward), and the final linear + softmax: the top
   next-token candidates.

`kind` is a head family of `heads.FAMILIES`: "encoder" (encoder self-attention), "decoder" (masked decoder
self-attention) or "cross" (encoder-decoder attention: queries from the target, keys and values from the
encoder output). `layer` and `head` are 0-based indices (as in the arrays of the Space's attention API).
Every model value comes from one teacher-forced forward pass, read at `hooks.HookedModel` sites: the stream
entering the layer, what every sub-layer writes, the heads' outputs, the attention pattern, the stack
outputs. The head's arithmetic is then redone step by step with the layer's own weights, and `checks`
reports how far each step is from the model's own values.

Imports only torch: works on any loaded `TransformerForConditionalGeneration` and its tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from .heads import FAMILIES, attention_module, core_model, family_record, stack_layers
from .hooks import HookedModel, attention_site, site_name
from .inputs import Example, decode, device_of, make_example, source_ids, source_text, tokens_of

DEFAULT_SENTENCE = "The animal didn't cross the street because it was too tired."
DEFAULT_TOKEN = "it"
WORD_START = ("▁", "Ġ")  # SentencePiece / byte-level BPE markers of a word's first piece
STEP_IDS = (
    "embedding",
    "positional_table",
    "layer_input",
    "qkv",
    "scores",
    "scaled_scores",
    "softmax",
    "weighted_values",
    "multi_head",
    "residual_layer_norm",
    "rest_of_layer",
    "output",
)


# --------------------------------------------------------------------------------------------- tokens


def _clean(token: str) -> str:
    for marker in WORD_START:
        token = token.replace(marker, "")
    return token.strip().lower()


def find_token_position(tokens: Sequence[str], text: str, occurrence: int = 0) -> int:
    """Position of a token in a token list by its text ("it" finds "▁it"), case-insensitive.

    Tries, in order: a token whose text is `text`; a word made of several subword pieces that spells `text`
    (its first piece); a token containing `text`. `occurrence` picks the n-th match (0 = first).
    Raises ValueError when nothing matches.
    """
    want = _clean(text)
    if not want:
        raise ValueError("the token text is empty.")
    exact = [i for i, tok in enumerate(tokens) if _clean(tok) == want]
    if len(exact) > occurrence:
        return exact[occurrence]
    words, start, spelled = [], None, ""
    for i, tok in enumerate(list(tokens) + [WORD_START[0]]):
        if i == len(tokens) or tok.startswith(WORD_START) or (tok.startswith("<") and tok.endswith(">")):
            if start is not None and spelled:
                words.append((start, spelled))
            start, spelled = i, ""
        spelled += _clean(tok)
    matches = [s for s, w in words if w == want]
    if len(matches) > occurrence:
        return matches[occurrence]
    partial = [i for i, tok in enumerate(tokens) if want in _clean(tok)]
    if len(partial) > occurrence:
        return partial[occurrence]
    raise ValueError(f"token {text!r} not found in {list(tokens)}.")


def source_tokens(tokenizer, sentence: str) -> list[str]:
    """The encoder's tokens for a sentence (as the walkthrough numbers its positions)."""
    return tokens_of(tokenizer, source_ids(None, tokenizer, sentence))


def _vec(t: torch.Tensor, n: int, full: bool = False) -> dict:
    """A vector as {"first": its first n entries, "norm", "dim"} (and all "values" when `full`)."""
    t = t.detach().float().flatten()
    out = {"first": t[:n].tolist(), "norm": float(t.norm()), "dim": int(t.numel())}
    if full:
        out["values"] = t.tolist()
    return out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------------------------- result


@dataclass
class Step:
    id: str  # one of STEP_IDS
    data: dict = field(default_factory=dict)  # the step's numbers (plain JSON values)


def find_step(steps: Sequence, step_id: str):
    """The step of `steps` (anything with an `id`) whose id is `step_id`; KeyError if there is none."""
    for s in steps:
        if s.id == step_id:
            return s
    raise KeyError(step_id)


@dataclass
class Walkthrough:
    sentence: str
    translation: str
    kind: str  # a head family: "encoder", "decoder" or "cross"
    layer: int
    head: int
    position: int  # query position (in query_tokens)
    token: str
    query_tokens: list[str]  # source tokens (encoder) or decoder input tokens <start> y_1 .. (decoder, cross)
    key_tokens: list[str]  # what the query attends over: source tokens for encoder and cross attention
    source_tokens: list[str]
    decoder_tokens: list[str]  # decoder input tokens: position t predicts target_tokens[t]
    target_tokens: list[str]
    sizes: dict  # d_model, heads, d_k, d_ff, vocab, layers, normalize_before, embed_scale, positions
    steps: list  # [Step]: id, data
    checks: dict  # max |difference| between the step-by-step numbers and the model's own
    tied_embeddings: bool = False  # the final linear layer is the embedding matrix (section 3.4); not in the API
    tensors: dict = field(default_factory=dict, repr=False)  # full tensors for tests; not in to_dict()

    def step(self, step_id: str) -> Step:
        return find_step(self.steps, step_id)

    def to_dict(self, full_table: bool = True) -> dict:
        """Plain JSON-serialisable values (no `tensors`).

        full_table=False leaves the positional-encoding table out (50 x d_model numbers: about 100 KB of JSON
        for d_model 256, nearly all of the answer): the "positional_table" step then holds only `positions`,
        `d_model`, `highlight` and `row`, the highlighted position's full encoding (the table's row `highlight`).
        """
        out = asdict(self)
        out.pop("tensors", None)
        if not full_table:
            for step in out["steps"]:
                if step["id"] == "positional_table":
                    data = step["data"]
                    data["row"] = data.pop("table")[data["highlight"]]
        return out


# --------------------------------------------------------------------------------------------- the pass


def _attention(model, kind: str, layer: int, head: int):
    """The chosen attention module, after checking the kind, layer and head (with the API's messages)."""
    if kind not in FAMILIES:
        raise ValueError(f"unknown attention kind {kind!r}: use one of {FAMILIES}.")
    stack = family_record(kind).stack
    n_layers = len(stack_layers(model, stack))
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} does not exist: the {stack} has {n_layers} (0..{n_layers - 1}).")
    attn = attention_module(model, kind, layer)
    if not 0 <= head < attn.num_heads:
        raise ValueError(f"head {head} does not exist: each layer has {attn.num_heads} (0..{attn.num_heads - 1}).")
    return attn


def _query_position(query_tokens: list[str], kind: str, position: int | None, token: str | None) -> int:
    """The query position: `position`, else `token`'s, else "it" (encoder) or the middle (decoder side)."""
    if position is None:
        if token is not None:
            position = find_token_position(query_tokens, token)
        elif kind == "encoder":
            try:
                position = find_token_position(query_tokens, DEFAULT_TOKEN)
            except ValueError:
                position = 0
        else:
            position = len(query_tokens) // 2
    if not 0 <= position < len(query_tokens):
        raise ValueError(f"position {position} is outside the {len(query_tokens)} tokens {query_tokens}.")
    return position


def _site_names(kind: str, layer: int) -> dict:
    """The hook sites the walkthrough reads, by its own short names."""
    stack = family_record(kind).stack
    names = {
        "positions": site_name(stack, "embed_positions"),
        "first_input": site_name(stack, "resid_pre", 0),
        "layer_input": site_name(stack, "resid_pre", layer),
        "pattern": attention_site(kind, layer, "pattern"),
        "z": attention_site(kind, layer, "z"),
        "attention_output": attention_site(kind, layer, "out"),
        "ffn": site_name(stack, "ffn.out", layer),
        "layer_output": site_name(stack, "resid_post", layer),
        "encoder_output": site_name("encoder", "output"),
        "decoder_output": site_name("decoder", "output"),
    }
    if kind != "encoder":
        names["cross_attn"] = attention_site("cross", layer, "out")
    if kind == "cross":  # the stream after the self-attention block, which the cross-attention block reads
        names["block_input"] = site_name(stack, "resid_after_self_attn", layer)
    return names


@dataclass
class _Pass:
    """One walkthrough's choice and what the model computed for it (activations without the batch axis)."""

    model: torch.nn.Module
    kind: str
    layer: int
    head: int
    pos: int
    example: Example
    attn: torch.nn.Module  # the chosen attention module
    acts: dict  # short name (`_site_names`) -> activation
    logits: torch.Tensor  # (decoder positions, vocab)
    query_tokens: list
    key_tokens: list
    n_first: int
    checks: dict = field(default_factory=dict)

    @property
    def stack(self):
        return getattr(core_model(self.model), family_record(self.kind).stack)

    @property
    def block(self):
        return self.stack.layers[self.layer]

    @property
    def norm(self) -> torch.nn.Module:
        """The LayerNorm of the chosen attention's sub-layer."""
        return getattr(self.block, family_record(self.kind).layer_norm)

    @property
    def pre_ln(self) -> bool:
        return bool(self.model.config.normalize_before)

    @property
    def head_slice(self) -> slice:
        return slice(self.head * self.attn.head_dim, (self.head + 1) * self.attn.head_dim)

    @property
    def query_ids(self) -> list:
        return self.example.input_ids if self.kind == "encoder" else self.example.decoder_input_ids

    def vec(self, t: torch.Tensor, full: bool = False) -> dict:
        return _vec(t, self.n_first, full)


def _run(model, example: Example, kind: str, layer: int) -> tuple[dict, torch.Tensor]:
    """One teacher-forced forward pass; the activations at the walkthrough's sites, and the logits."""
    names = _site_names(kind, layer)
    input_ids, decoder_input_ids, _ = example.tensors(device_of(model))
    out, cache = HookedModel(model).run_with_cache(
        list(dict.fromkeys(names.values())), input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False
    )
    acts = {short: cache[name][0] for short, name in names.items() if short != "positions"}
    positions = cache[names["positions"]]
    acts["positions"] = positions[0] if positions.dim() == 3 else positions  # (1, T, d) or (T, d)
    return acts, out.logits[0]


# --------------------------------------------------------------------------------------------- the steps


def embedding_step(p: _Pass) -> Step:
    """1. The token's embedding, times sqrt(d_model), plus its positional encoding: the first layer's input."""
    token_id = int(p.query_ids[p.pos])
    scale = float(p.stack.embed_scale)
    emb = p.stack.embed_tokens.weight[token_id]
    pe = p.acts["positions"][p.pos].to(emb.dtype)
    x0 = emb * scale + pe
    p.checks["embedding_sum"] = _max_diff(x0, p.acts["first_input"][p.pos])
    return Step(
        "embedding",
        {
            "token": p.query_tokens[p.pos],
            "token_id": token_id,
            "position": p.pos,
            "embedding": p.vec(emb),
            "scale": scale,
            "scaled_embedding": p.vec(emb * scale),
            "positional_encoding": p.vec(pe),
            "sum": p.vec(x0),
            "position_embedding_type": p.model.config.position_embedding_type,
        },
    )


def positional_table_step(p: _Pass, table_positions: int) -> Step:
    """1b. The positional encodings of the first `table_positions` positions (at least the query's length)."""
    n_table = max(int(table_positions), len(p.query_ids))
    if p.model.config.position_embedding_type == "learned":
        n_table = min(n_table, p.stack.embed_positions.num_embeddings)
    table = p.stack.embed_positions(n_table).float()
    return Step(
        "positional_table",
        {
            "positions": n_table,
            "d_model": p.attn.embed_dim,
            "table": [[round(v, 4) for v in row] for row in table.tolist()],
            "highlight": p.pos,
        },
    )


def layer_input_step(p: _Pass) -> tuple[Step, torch.Tensor, torch.Tensor]:
    """2. The stream entering the attention block, and what the attention reads (its LayerNorm if pre-LN).
    Returns the step and both, for every position."""
    block_input = p.acts["block_input" if p.kind == "cross" else "layer_input"]
    attn_input = p.norm(block_input) if p.pre_ln else block_input
    step = Step(
        "layer_input",
        {"residual": p.vec(block_input[p.pos]), "attention_input": p.vec(attn_input[p.pos]), "pre_ln": p.pre_ln},
    )
    return step, block_input, attn_input


def qkv_step(p: _Pass, attn_input: torch.Tensor) -> tuple[Step, torch.Tensor, torch.Tensor, torch.Tensor]:
    """3. Queries, keys and values of every head (Q, K, V: (positions, d_model)); the step shows the chosen
    head's q, and its k and v at the query position (none in cross-attention: keys belong to the source)."""
    kv_input = p.acts["encoder_output"] if p.kind == "cross" else attn_input
    Q, K, V = p.attn.q_proj(attn_input), p.attn.k_proj(kv_input), p.attn.v_proj(kv_input)
    hs, d_model, d_k = p.head_slice, p.attn.embed_dim, p.attn.head_dim
    k_all, v_all = K[:, hs], V[:, hs]
    own = p.kind != "cross"
    step = Step(
        "qkv",
        {
            "query": p.vec(Q[p.pos, hs]),
            "key": p.vec(k_all[p.pos]) if own else None,
            "value": p.vec(v_all[p.pos]) if own else None,
            "key_norms": k_all.float().norm(dim=-1).tolist(),
            "value_norms": v_all.float().norm(dim=-1).tolist(),
            "shapes": {
                "W_Q": [d_model, d_model],
                "W_Q_head": [d_model, d_k],
                "q": [d_k],
                "K": [K.shape[0], d_k],
                "V": [V.shape[0], d_k],
            },
        },
    )
    return step, Q, K, V


def _mask(p: _Pass, n_keys: int) -> list[bool]:
    """The positions the query may not see: the decoder's future positions."""
    causal = family_record(p.kind).causal
    return [causal and j > p.pos for j in range(n_keys)]


def _softmax(scores: torch.Tensor, masked: Sequence[bool]) -> torch.Tensor:
    mask = torch.tensor(list(masked), device=scores.device)
    return F.softmax(scores.masked_fill(mask, float("-inf")), dim=-1, dtype=torch.float32).to(scores.dtype)


def score_steps(p: _Pass, Q: torch.Tensor, K: torch.Tensor) -> tuple[list[Step], torch.Tensor]:
    """4-6. The head's raw scores q . k, scaled by 1/sqrt(d_k), and their softmax; returns the weights."""
    hs, d_k = p.head_slice, p.attn.head_dim
    raw = K[:, hs] @ Q[p.pos, hs]  # (keys,)
    scaled = raw * p.attn.scaling
    masked = _mask(p, K.shape[0])
    weights = _softmax(scaled, masked)
    p.checks["weights"] = _max_diff(weights, p.acts["pattern"][p.head, p.pos])
    tokens = p.key_tokens
    return [
        Step("scores", {"tokens": tokens, "raw_scores": raw.tolist(), "masked": masked}),
        Step(
            "scaled_scores",
            {"tokens": tokens, "scaled_scores": scaled.tolist(), "sqrt_d_k": math.sqrt(d_k), "masked": masked},
        ),
        Step(
            "softmax",
            {"tokens": tokens, "weights": weights.tolist(), "masked": masked, "argmax": int(weights.argmax())},
        ),
    ], weights


def weighted_values_step(p: _Pass, V: torch.Tensor, weights: torch.Tensor) -> tuple[Step, torch.Tensor]:
    """7. Every value vector times its weight, and their sum z: the head's output for the token."""
    v_all = V[:, p.head_slice]
    weighted = weights[:, None] * v_all  # (keys, d_k)
    z = weighted.sum(0)
    p.checks["z"] = _max_diff(z, p.acts["z"][p.pos, p.head])
    masked = _mask(p, V.shape[0])
    rows = [
        {
            "token": p.key_tokens[j],
            "weight": float(weights[j]),
            "masked": masked[j],
            "value": p.vec(v_all[j]),
            "weighted": p.vec(weighted[j]),
        }
        for j in range(V.shape[0])
    ]
    return Step("weighted_values", {"tokens": p.key_tokens, "rows": rows, "z": p.vec(z, full=True)}), z


def multi_head_step(p: _Pass, Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor) -> tuple[Step, torch.Tensor]:
    """8. Every head's z at the query position, concatenated and projected by W^O; returns the attention
    output (what the block adds to the stream at the query position)."""
    n_heads, d_k, d_model = p.attn.num_heads, p.attn.head_dim, p.attn.embed_dim
    Qh = Q[p.pos].view(n_heads, d_k)  # (h, d_k)
    Kh = K.view(-1, n_heads, d_k).transpose(0, 1)  # (h, keys, d_k)
    Vh = V.view(-1, n_heads, d_k).transpose(0, 1)
    w_all = _softmax((Kh @ Qh[:, :, None]).squeeze(-1) * p.attn.scaling, _mask(p, K.shape[0]))  # (h, keys)
    z_all = (w_all[:, :, None] * Vh).sum(1)  # (h, d_k)
    concat = z_all.reshape(d_model)
    attn_out = p.attn.out_proj(concat)
    p.checks["concat"] = _max_diff(concat, p.acts["z"][p.pos].reshape(d_model))
    p.checks["attention_output"] = _max_diff(attn_out, p.acts["attention_output"][p.pos])
    n_q, n_k = len(p.query_ids), K.shape[0]
    return Step(
        "multi_head",
        {
            "heads": [
                {
                    "head": i,
                    "z": p.vec(z_all[i]),
                    "top_token": p.key_tokens[int(w_all[i].argmax())],
                    "top_weight": float(w_all[i].max()),
                }
                for i in range(n_heads)
            ],
            "concat": p.vec(concat),
            "output": p.vec(attn_out),
            "shapes": {
                "X": [n_q, d_model],
                "Q_per_head": [n_heads, n_q, d_k],
                "K_V_per_head": [n_heads, n_k, d_k],
                "weights": [n_heads, n_q, n_k],
                "Z_per_head": [n_heads, n_q, d_k],
                "concat": [n_q, n_heads * d_k],
                "W_O": [d_model, d_model],
                "output": [n_q, d_model],
            },
        },
    ), attn_out


def residual_step(p: _Pass, block_input: torch.Tensor, attn_out: torch.Tensor) -> Step:
    """9. The residual add, and (post-LN) the layer norm: the attention block's output at the query position."""
    summed = block_input[p.pos] + attn_out
    block_output = summed if p.pre_ln else p.norm(summed)
    return Step(
        "residual_layer_norm",
        {
            "residual": p.vec(block_input[p.pos]),
            "attention_output": p.vec(attn_out),
            "sum": p.vec(summed),
            "output": p.vec(block_output),
            "pre_ln": p.pre_ln,
        },
    )


def rest_of_layer_step(p: _Pass) -> Step:
    """10. What the rest of the layer writes at the query position (the decoder's cross-attention after its
    self-attention, the feed-forward network), and the layer's output."""
    d_model, d_ff = p.attn.embed_dim, p.block.ffn.fc1.out_features
    rest = []
    if p.kind == "decoder":
        rest.append(
            {
                "sublayer": "cross_attn",
                "label": "encoder-decoder attention",
                "shapes": {
                    "queries": [len(p.example.decoder_input_ids), d_model],
                    "keys_values": [len(p.example.input_ids), d_model],
                },
                "write": p.vec(p.acts["cross_attn"][p.pos]),
            }
        )
    rest.append(
        {
            "sublayer": "ffn",
            "label": "feed-forward network",
            "shapes": {"W_1": [d_model, d_ff], "W_2": [d_ff, d_model]},
            "write": p.vec(p.acts["ffn"][p.pos]),
        }
    )
    return Step("rest_of_layer", {"sublayers": rest, "layer_output": p.vec(p.acts["layer_output"][p.pos])})


def output_step(p: _Pass, tokenizer, top_k: int) -> tuple[Step, torch.Tensor, int]:
    """11. The final linear + softmax at the query's decoder position (position 0 for an encoder walkthrough):
    the top next-token candidates. Returns the step, the probabilities and the position."""
    model, example = p.model, p.example
    out_pos = 0 if p.kind == "encoder" else p.pos
    probs = model.lm_head(p.acts["decoder_output"][out_pos]).float().softmax(-1)
    p.checks["probs"] = _max_diff(probs, p.logits[out_pos].float().softmax(-1))
    top = probs.topk(min(top_k, probs.numel()))
    top_ids = top.indices.tolist()
    vocab = int(model.config.vocab_size)
    return (
        Step(
            "output",
            {
                "position": out_pos,
                "input_token": tokens_of(tokenizer, example.decoder_input_ids)[out_pos],
                "top": [
                    {"token": t, "id": i, "prob": q}
                    for t, i, q in zip(tokens_of(tokenizer, top_ids), top_ids, top.values.tolist())
                ],
                "next_token": tokens_of(tokenizer, example.labels)[out_pos],
                "next_token_prob": float(probs[example.labels[out_pos]]),
                "shapes": {"hidden": [p.attn.embed_dim], "W_vocab": [p.attn.embed_dim, vocab], "logits": [vocab]},
            },
        ),
        probs,
        out_pos,
    )


def _sizes(p: _Pass) -> dict:
    core, cfg = core_model(p.model), p.model.config
    return {
        "d_model": p.attn.embed_dim,
        "heads": p.attn.num_heads,
        "d_k": p.attn.head_dim,
        "d_ff": p.block.ffn.fc1.out_features,
        "vocab": int(cfg.vocab_size),
        "encoder_layers": len(core.encoder.layers),
        "decoder_layers": len(core.decoder.layers),
        "normalize_before": p.pre_ln,
        "embed_scale": float(p.stack.embed_scale),
        "position_embedding_type": cfg.position_embedding_type,
        "sinusoidal_layout": getattr(cfg, "sinusoidal_layout", "interleaved"),
        "source_length": len(p.example.input_ids),
        "target_length": len(p.example.decoder_input_ids),
    }


# --------------------------------------------------------------------------------------------- walkthrough


@torch.inference_mode()
def walkthrough(
    model,
    tokenizer,
    sentence=DEFAULT_SENTENCE,
    translation=None,
    kind: str = "encoder",
    layer: int = 0,
    head: int = 0,
    position: int | None = None,
    token: str | None = None,
    top_k: int = 5,
    n_first: int = 8,
    table_positions: int = 50,
    **generate_kwargs,
) -> Walkthrough:
    """The numbers of one attention head's steps for one token (see the module's docstring).

    sentence: source text (or ids). translation: target text, ids (labels y_1 .. y_n </s>, or the decoder's
    reading <start> y_1 .. y_n), or None for the model's own translation (`generate_kwargs` go to `generate`).
    kind: "encoder", "decoder" or "cross". position: index in the query tokens (the source for "encoder", the
    decoder input <start> y_1 .. y_n for "decoder"/"cross"); or `token`: its text (default: "it" on the
    encoder side when present, else position 0; the middle position
    on the decoder side). n_first: how many leading entries of each vector to show.
    """
    attn = _attention(model, kind, layer, head)
    model.eval()
    example = make_example(model, tokenizer, sentence, translation, **generate_kwargs)
    src_tokens, dec_tokens = tokens_of(tokenizer, example.input_ids), tokens_of(tokenizer, example.decoder_input_ids)
    query_tokens = src_tokens if kind == "encoder" else dec_tokens
    pos = _query_position(query_tokens, kind, position, token)
    acts, logits = _run(model, example, kind, layer)
    p = _Pass(
        model,
        kind,
        layer,
        head,
        pos,
        example,
        attn,
        acts,
        logits,
        query_tokens,
        dec_tokens if kind == "decoder" else src_tokens,
        n_first,
    )

    steps = [embedding_step(p), positional_table_step(p, table_positions)]
    layer_input, block_input, attn_input = layer_input_step(p)
    qkv, Q, K, V = qkv_step(p, attn_input)
    scores, weights = score_steps(p, Q, K)
    weighted, z = weighted_values_step(p, V, weights)
    multi_head, attn_out = multi_head_step(p, Q, K, V)
    output, probs, out_pos = output_step(p, tokenizer, top_k)
    steps += [
        layer_input,
        qkv,
        *scores,
        weighted,
        multi_head,
        residual_step(p, block_input, attn_out),
        rest_of_layer_step(p),
        output,
    ]
    return Walkthrough(
        sentence=source_text(tokenizer, sentence, example),
        translation=decode(tokenizer, example.labels),
        kind=kind,
        layer=layer,
        head=head,
        position=pos,
        token=query_tokens[pos],
        query_tokens=query_tokens,
        key_tokens=p.key_tokens,
        source_tokens=src_tokens,
        decoder_tokens=dec_tokens,
        target_tokens=tokens_of(tokenizer, example.labels),
        sizes=_sizes(p),
        steps=steps,
        checks=p.checks,
        tied_embeddings=bool(model.config.tie_word_embeddings),
        tensors={"weights": weights, "z": z, "probs": probs, "output_position": out_pos, "attention_output": attn_out},
    )


__all__ = [
    "DEFAULT_SENTENCE",
    "DEFAULT_TOKEN",
    "STEP_IDS",
    "Step",
    "Walkthrough",
    "find_step",
    "find_token_position",
    "source_tokens",
    "walkthrough",
]
