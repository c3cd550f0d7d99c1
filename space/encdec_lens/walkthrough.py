"""Inside one attention head: the paper's steps for one token, with the loaded model's real numbers.

For a sentence, its translation (the model's own, or a given target), a token position, a layer and a head,
`walkthrough` returns the steps of the illustrated explanations of the Transformer, each with one or two
plain sentences and the numbers the model really computes:

1. the token's embedding, times sqrt(d_model), plus the positional encoding (and the sinusoid table);
2. the vector entering the chosen layer and, for pre-LN models, its layer-normed version;
3. the token's query, key and value for the head (q = x W^Q, k = x W^K, v = x W^V);
4. raw scores q . k against every position, scaled scores (/ sqrt(d_k)), softmax weights (future positions
   masked in the decoder), the weighted value vectors and their sum z;
5. all heads concatenated and projected by W^O, with this model's shapes; the residual add and layer norm;
6. the rest of the layer (cross-attention, feed-forward), and the final linear + softmax: the top
   next-token candidates.

`kind` is "encoder" (encoder self-attention), "decoder" (masked decoder self-attention) or "cross"
(encoder-decoder attention: queries from the target, keys and values from the encoder output).
`layer` and `head` are 0-based indices (as in the arrays of the Space's attention API); the step texts count
layers and heads from 1, as the Space's pickers do.
The numbers come from one teacher-forced forward pass of the real model: hooks record the hidden states
entering the chosen layer and what every sub-layer writes; the head's arithmetic is then redone step by step
with the layer's own weights, and `checks` reports how far each step is from the model's own values.

Imports only torch: works on any loaded `TransformerForConditionalGeneration` and its tokenizer.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

DEFAULT_SENTENCE = "The animal didn't cross the street because it was too tired."
DEFAULT_TOKEN = "it"
KINDS = ("encoder", "decoder", "cross")
KIND_LABELS = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention (masked)",
    "cross": "encoder-decoder (cross) attention",
}
WORD_START = ("▁", "Ġ")  # SentencePiece / byte-level BPE markers of a word's first piece


# --------------------------------------------------------------------------------------------- tokens


def _tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [str(i) for i in ids]
    return list(tokenizer.convert_ids_to_tokens(ids))


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
    return _tokens(tokenizer, _source_ids(tokenizer, sentence))


# --------------------------------------------------------------------------------------------- inputs


def _device(model):
    return next(model.parameters()).device


def _ids(value) -> list[int]:
    return [int(i) for i in (value.tolist() if torch.is_tensor(value) else value)]


def _source_ids(tokenizer, sentence: str) -> list[int]:
    if tokenizer is None:
        raise ValueError("a tokenizer is needed to encode a text; pass token ids instead.")
    max_len = getattr(tokenizer, "model_max_length", None)
    max_len = max_len if isinstance(max_len, int) and max_len < 100_000 else None
    return tokenizer(sentence, truncation=max_len is not None, max_length=max_len)["input_ids"]


def _strip_generated(model, ids: Sequence[int]) -> list[int]:
    cfg = model.config
    ids = [int(i) for i in ids]
    if ids and ids[0] == cfg.decoder_start_token_id:
        ids = ids[1:]
    out = []
    for i in ids:
        if i == cfg.pad_token_id and i != cfg.eos_token_id:
            continue
        out.append(i)
        if i == cfg.eos_token_id:
            break
    return out


def _encode(model, tokenizer, sentence, target, generate_kwargs) -> tuple[list[int], list[int]]:
    """Source ids and target labels (y_1 .. y_n, with </s>), generating the translation when target is None."""
    src = _source_ids(tokenizer, sentence) if isinstance(sentence, str) else _ids(sentence)
    if not src:
        raise ValueError("the sentence is empty.")
    if target is None:
        ids = torch.tensor([src], device=_device(model))
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **generate_kwargs)
        labels = _strip_generated(model, out[0].tolist())
    elif isinstance(target, str):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to encode a text; pass token ids instead.")
        labels = tokenizer(text_target=target)["input_ids"]
    else:  # labels y_1 .. y_n </s>, or the decoder's reading <start> y_1 .. y_n
        labels = _ids(target)
    # Always the complete translation y_1 .. y_n </s> (as circuits.py scores it).
    given_ids = target is not None and not isinstance(target, str)
    if given_ids and labels and labels[0] == model.config.decoder_start_token_id:
        labels = labels[1:]
    eos = model.config.eos_token_id
    if eos is not None and (not labels or labels[-1] != eos):
        labels.append(int(eos))
    if not labels:
        raise ValueError("the target is empty.")
    return src, labels


# --------------------------------------------------------------------------------------------- helpers


def _vec(t: torch.Tensor, n: int, full: bool = False) -> dict:
    """A vector as {"first": its first n entries, "norm", "dim"} (and all "values" when `full`)."""
    t = t.detach().float().flatten()
    out = {"first": t[:n].tolist(), "norm": float(t.norm()), "dim": int(t.numel())}
    if full:
        out["values"] = t.tolist()
    return out


def _fmt(values: Sequence[float], n: int = 4) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in list(values)[:n]) + ", ...]"


@contextmanager
def _hooks(model, kind: str, layer: int):
    """Record, for the chosen layer: its input, what each sub-layer writes, its output; the input of the
    chosen attention's out_proj (the concatenated heads); and the decoder's last layer output.

    Only forward passes run by the calling thread are recorded: in a server, other requests (a translation,
    another walkthrough) may run the same model in other threads while these hooks are registered.
    """
    core = getattr(model, "model", model)
    store: dict = {}
    owner = threading.get_ident()
    handles = []
    side = core.encoder if kind == "encoder" else core.decoder
    block = side.layers[layer]

    def out_hook(name):
        def hook(module, args, output):
            if threading.get_ident() == owner:
                store[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def in_hook(name):
        def hook(module, args):
            if threading.get_ident() == owner:
                store[name] = args[0]

        return hook

    attn = block.encoder_attn if kind == "cross" else block.self_attn
    try:
        handles.append(block.register_forward_pre_hook(in_hook("layer_input")))
        handles.append(block.register_forward_hook(out_hook("layer_output")))
        handles.append(block.self_attn.register_forward_hook(out_hook("self_attn")))
        handles.append(block.ffn.register_forward_hook(out_hook("ffn")))
        if kind != "encoder":
            handles.append(block.encoder_attn.register_forward_hook(out_hook("cross_attn")))
        handles.append(attn.out_proj.register_forward_pre_hook(in_hook("concat")))
        handles.append(core.decoder.layers[-1].register_forward_hook(out_hook("decoder_output")))
        yield store
    finally:
        for handle in handles:
            handle.remove()


# --------------------------------------------------------------------------------------------- result


@dataclass
class Step:
    id: str
    title: str
    text: str  # one or two plain sentences
    data: dict = field(default_factory=dict)


@dataclass
class Walkthrough:
    sentence: str
    translation: str
    kind: str
    kind_label: str
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
    steps: list  # [Step]: id, title, text, data
    checks: dict  # max |difference| between the step-by-step numbers and the model's own
    tensors: dict = field(default_factory=dict, repr=False)  # full tensors for tests; not in to_dict()

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

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
    """The steps of one attention head for one token, with the model's real numbers.

    sentence: source text (or ids). translation: target text, ids (labels y_1 .. y_n </s>, or the decoder's
    reading <start> y_1 .. y_n), or None for the model's own translation (`generate_kwargs` go to `generate`).
    kind: "encoder", "decoder" or "cross". position: index in the query tokens (the source for "encoder", the
    decoder input <start> y_1 .. y_n for "decoder"/"cross"); or `token`: its text (default: "it" on the
    encoder side when present, else position 0; the middle position
    on the decoder side). n_first: how many leading entries of each vector to show.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown attention kind {kind!r}: use one of {KINDS}.")
    model.eval()
    cfg = model.config
    core = getattr(model, "model", model)
    side = core.encoder if kind == "encoder" else core.decoder
    n_layers = len(side.layers)
    if not 0 <= layer < n_layers:
        stack = "encoder" if kind == "encoder" else "decoder"
        raise ValueError(f"layer {layer} does not exist: the {stack} has {n_layers} (0..{n_layers - 1}).")
    block = side.layers[layer]
    attn = block.encoder_attn if kind == "cross" else block.self_attn
    n_heads, d_k, d_model = attn.num_heads, attn.head_dim, attn.embed_dim
    if not 0 <= head < n_heads:
        raise ValueError(f"head {head} does not exist: each layer has {n_heads} (0..{n_heads - 1}).")

    src, labels = _encode(model, tokenizer, sentence, translation, generate_kwargs)
    dec = [int(cfg.decoder_start_token_id)] + labels[:-1]
    src_tokens, dec_tokens, tgt_tokens = _tokens(tokenizer, src), _tokens(tokenizer, dec), _tokens(tokenizer, labels)
    query_ids = src if kind == "encoder" else dec
    query_tokens = src_tokens if kind == "encoder" else dec_tokens
    key_tokens = dec_tokens if kind == "decoder" else src_tokens
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
    pos = position
    tok = query_tokens[pos]

    # One real forward pass, teacher-forced, eager attention so the model returns its attention weights.
    device = _device(model)
    input_ids = torch.tensor([src], device=device)
    decoder_input_ids = torch.tensor([dec], device=device)
    with _hooks(model, kind, layer) as store:
        out = model(
            input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False,
            output_attentions=True, output_hidden_states=True,
        )
    pre_ln = bool(cfg.normalize_before)
    scale = float(side.embed_scale)
    steps: list[Step] = []
    checks: dict = {}
    sizes = {
        "d_model": d_model, "heads": n_heads, "d_k": d_k, "d_ff": block.ffn.fc1.out_features,
        "vocab": int(cfg.vocab_size), "encoder_layers": len(core.encoder.layers),
        "decoder_layers": len(core.decoder.layers), "normalize_before": pre_ln, "embed_scale": scale,
        "position_embedding_type": cfg.position_embedding_type, "source_length": len(src), "target_length": len(dec),
    }
    where = "source sentence" if kind == "encoder" else "target sentence (the decoder's input)"

    # 1. Embedding + positional encoding.
    token_id = int(query_ids[pos])
    emb = side.embed_tokens.weight[token_id]
    pe = side.embed_positions(len(query_ids))[pos].to(emb.dtype)
    x0 = emb * scale + pe
    first_hidden = (out.encoder_hidden_states if kind == "encoder" else out.decoder_hidden_states)[0][0, pos]
    checks["embedding_sum"] = float((x0 - first_hidden).abs().max())
    steps.append(Step(
        "embedding", "1. Embedding + positional encoding",
        f"The token {tok!r} (id {token_id}) is looked up in a table of {cfg.vocab_size} learned vectors of "
        f"d_model = {d_model} numbers and multiplied by sqrt(d_model) = {scale:.2f}. Attention by itself has no "
        f"sense of word order, so a positional encoding for position {pos} is added; the sum enters the first layer.",
        {
            "token": tok, "token_id": token_id, "position": pos, "embedding": _vec(emb, n_first),
            "scale": scale, "scaled_embedding": _vec(emb * scale, n_first),
            "positional_encoding": _vec(pe, n_first), "sum": _vec(x0, n_first),
            "position_embedding_type": cfg.position_embedding_type,
        },
    ))
    n_table = max(int(table_positions), len(query_ids))
    if cfg.position_embedding_type == "learned":
        n_table = min(n_table, side.embed_positions.num_embeddings)
        table_text = ("This model learned one position vector per position (Table 3, row E). Each row of the "
                      "picture is one position, each column one of the d_model dimensions.")
    else:
        table_text = ("PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)): "
                      "every dimension is a wave of its own wavelength, so every position gets a distinct pattern "
                      "and nearby positions get similar ones (section 3.5). Each row is one position.")
    table = side.embed_positions(n_table).float()
    steps.append(Step(
        "positional_table", "The positional encoding table", table_text,
        {"positions": n_table, "d_model": d_model, "table": [[round(v, 4) for v in row] for row in table.tolist()],
         "highlight": pos},
    ))

    # 2. The vector entering the chosen sub-layer, and the attention's input.
    layer_input = store["layer_input"][0]  # (Lq, d_model)
    if kind == "cross":
        # The cross-attention block reads the stream after the self-attention block of the same layer.
        block_input = layer_input + store["self_attn"][0]
        if not pre_ln:
            block_input = block.self_attn_layer_norm(block_input)
        norm = block.encoder_attn_layer_norm
    else:
        block_input = layer_input
        norm = block.self_attn_layer_norm
    attn_input = norm(block_input) if pre_ln else block_input
    if layer == 0 and kind != "cross":
        origin = "In layer 1 this is exactly the sum from step 1."
    elif kind == "cross":
        origin = (f"Cross-attention comes after the masked self-attention block of decoder layer {layer + 1}, so it "
                  "reads the stream after that block (input + self-attention output"
                  + (")." if pre_ln else ", layer-normed)."))
    else:
        origin = (f"In layer {layer + 1} the token's vector is the output of layer {layer}: it has already mixed in "
                  "information from the other tokens.")
    ln_text = (" This model is pre-LN: each sub-layer reads LayerNorm(x), not x itself."
               if pre_ln else " This model is post-LN (the paper): the sub-layer reads x directly.")
    steps.append(Step(
        "layer_input", f"2. The vector entering {KIND_LABELS[kind]}, layer {layer + 1}", origin + ln_text,
        {"residual": _vec(block_input[pos], n_first), "attention_input": _vec(attn_input[pos], n_first),
         "pre_ln": pre_ln},
    ))

    # 3. q, k, v for the head.
    kv_input = out.encoder_last_hidden_state[0] if kind == "cross" else attn_input  # (Lk, d_model)
    Q = attn.q_proj(attn_input)  # (Lq, d_model): all heads
    K = attn.k_proj(kv_input)
    V = attn.v_proj(kv_input)
    hs = slice(head * d_k, (head + 1) * d_k)
    q, k_all, v_all = Q[pos, hs], K[:, hs], V[:, hs]  # (d_k,), (Lk, d_k), (Lk, d_k)
    kv_pos = None if kind == "cross" else pos  # in cross-attention the keys belong to the source tokens
    kv_where = ("keys and values come from the encoder's output for the source sentence, queries from the "
                "target word being written" if kind == "cross" else "queries, keys and values all come from the same "
                + where)
    steps.append(Step(
        "qkv", f"3. Query, key and value of head {head + 1}",
        f"The head multiplies the vector by three learned matrices W^Q, W^K, W^V ({d_model} x {d_k} for one head) to "
        f"get a query (what {tok!r} is looking for), a key (what each token offers) and a value (what each token "
        f"passes on), each of d_k = {d_k} numbers. Here {kv_where}.",
        {
            "query": _vec(q, n_first),
            "key": _vec(k_all[kv_pos], n_first) if kv_pos is not None else None,
            "value": _vec(v_all[kv_pos], n_first) if kv_pos is not None else None,
            "key_norms": k_all.float().norm(dim=-1).tolist(), "value_norms": v_all.float().norm(dim=-1).tolist(),
            "shapes": {"W_Q": [d_model, d_model], "W_Q_head": [d_model, d_k], "q": [d_k],
                       "K": [K.shape[0], d_k], "V": [V.shape[0], d_k]},
        },
    ))

    # 4. Scores, scaling, softmax, weighted values, z.
    raw = k_all @ q  # (Lk,)
    scaled = raw * attn.scaling
    masked = [kind == "decoder" and j > pos for j in range(K.shape[0])]
    mask_t = torch.tensor(masked, device=device)
    weights = F.softmax(scaled.masked_fill(mask_t, float("-inf")), dim=-1, dtype=torch.float32).to(raw.dtype)
    weighted = weights[:, None] * v_all  # (Lk, d_k)
    z = weighted.sum(0)
    top = int(weights.argmax())
    steps.append(Step(
        "scores", "4. Score against every token (q . k)",
        f"The score of {tok!r} against each token is the dot product of its query with that token's key: a large "
        "score means the token is relevant to this one.",
        {"tokens": key_tokens, "raw_scores": raw.tolist(), "masked": masked},
    ))
    steps.append(Step(
        "scaled_scores", f"5. Divide by sqrt(d_k) = {math.sqrt(d_k):.2f}",
        "Dot products of long vectors can be large, which would push the softmax into regions with tiny gradients; "
        f"dividing by sqrt(d_k) = sqrt({d_k}) keeps them moderate (section 3.2.1).",
        {"tokens": key_tokens, "scaled_scores": scaled.tolist(), "sqrt_d_k": math.sqrt(d_k), "masked": masked},
    ))
    softmax_text = ("Softmax turns the scores into positive weights that add up to 1: how much attention goes to "
                    "each token.")
    if kind == "decoder":
        softmax_text += (f" The decoder must not look at words it has not written yet: the {sum(masked)} future "
                         "positions are masked (set to -infinity before the softmax), so their weight is 0.")
    steps.append(Step(
        "softmax", "6. Softmax",
        softmax_text + f" Here {tok!r} attends most to {key_tokens[top]!r} ({float(weights[top]):.1%}).",
        {"tokens": key_tokens, "weights": weights.tolist(), "masked": masked, "argmax": top},
    ))
    steps.append(Step(
        "weighted_values", "7. Weighted values and their sum z",
        "Each token's value vector is multiplied by its weight, so tokens with small weights are almost drowned "
        f"out; summing them gives z, this head's output for {tok!r}: {_fmt(z.tolist())} (norm {float(z.norm()):.3f}).",
        {
            "tokens": key_tokens,
            "rows": [
                {"token": key_tokens[j], "weight": float(weights[j]), "masked": masked[j],
                 "value": _vec(v_all[j], n_first), "weighted": _vec(weighted[j], n_first)}
                for j in range(K.shape[0])
            ],
            "z": _vec(z, n_first, full=True),
        },
    ))

    # 5. All heads, concatenation, W^O, residual, layer norm.
    Qh = Q[pos].view(n_heads, d_k)  # (h, d_k)
    Kh = K.view(-1, n_heads, d_k).transpose(0, 1)  # (h, Lk, d_k)
    Vh = V.view(-1, n_heads, d_k).transpose(0, 1)
    s_all = (Kh @ Qh[:, :, None]).squeeze(-1) * attn.scaling  # (h, Lk)
    w_all = F.softmax(s_all.masked_fill(mask_t, float("-inf")), dim=-1, dtype=torch.float32).to(raw.dtype)
    z_all = (w_all[:, :, None] * Vh).sum(1)  # (h, d_k)
    concat = z_all.reshape(d_model)
    attn_out = attn.out_proj(concat)
    summed = block_input[pos] + attn_out
    block_output = summed if pre_ln else norm(summed)
    model_attn = (out.cross_attentions if kind == "cross" else
                  out.decoder_attentions if kind == "decoder" else out.encoder_attentions)[layer][0]
    model_concat = store["concat"][0, pos]
    model_attn_out = store["cross_attn" if kind == "cross" else "self_attn"][0, pos]
    checks["weights"] = float((weights - model_attn[head, pos]).abs().max())
    checks["z"] = float((z - model_concat[hs]).abs().max())
    checks["concat"] = float((concat - model_concat).abs().max())
    checks["attention_output"] = float((attn_out - model_attn_out).abs().max())
    steps.append(Step(
        "multi_head", f"8. {n_heads} heads in parallel, concatenated, projected by W^O",
        f"All {n_heads} heads of this layer do steps 3-7 at once, each with its own W^Q, W^K, W^V. Their outputs "
        f"({n_heads} x {d_k} numbers) are concatenated into one vector of {d_model} and multiplied by W^O "
        f"({d_model} x {d_model}), which mixes what the heads found into the attention output.",
        {
            "heads": [{"head": i, "z": _vec(z_all[i], n_first), "top_token": key_tokens[int(w_all[i].argmax())],
                       "top_weight": float(w_all[i].max())} for i in range(n_heads)],
            "concat": _vec(concat, n_first), "output": _vec(attn_out, n_first),
            "shapes": {
                "X": [len(query_ids), d_model], "Q_per_head": [n_heads, len(query_ids), d_k],
                "K_V_per_head": [n_heads, K.shape[0], d_k],
                "weights": [n_heads, len(query_ids), K.shape[0]], "Z_per_head": [n_heads, len(query_ids), d_k],
                "concat": [len(query_ids), n_heads * d_k], "W_O": [d_model, d_model],
                "output": [len(query_ids), d_model],
            },
        },
    ))
    if pre_ln:
        residual_text = ("The attention output is added to the vector that entered the block (a residual connection), "
                         "so the layer only learns a change to it. In this pre-LN model the layer norm was applied to "
                         "the block's input (step 2), so the sum itself goes on.")
    else:
        residual_text = ("The attention output is added to the vector that entered the block (a residual connection), "
                         "so the layer only learns a change to it. Then layer normalisation rescales the sum to mean 0 "
                         "and variance 1 (times a learned gain, plus a learned bias).")
    steps.append(Step(
        "residual_layer_norm", "9. Residual add and layer norm", residual_text,
        {"residual": _vec(block_input[pos], n_first), "attention_output": _vec(attn_out, n_first),
         "sum": _vec(summed, n_first), "output": _vec(block_output, n_first), "pre_ln": pre_ln},
    ))

    # 6. The rest of the layer.
    rest = []
    if kind == "decoder":
        rest.append({"sublayer": "cross_attn", "label": "encoder-decoder attention",
                     "shapes": {"queries": [len(dec), d_model], "keys_values": [len(src), d_model]},
                     "write": _vec(store["cross_attn"][0, pos], n_first)})
    d_ff = block.ffn.fc1.out_features
    rest.append({"sublayer": "ffn", "label": "feed-forward network",
                 "shapes": {"W_1": [d_model, d_ff], "W_2": [d_ff, d_model]},
                 "write": _vec(store["ffn"][0, pos], n_first)})
    layer_output = store["layer_output"][0, pos]
    ffn_text = (f"the position-wise feed-forward network, max(0, x W_1 + b_1) W_2 + b_2 ({d_model} -> {d_ff} -> "
                f"{d_model}), again inside a residual connection with a layer norm.")
    if kind == "decoder":
        rest_text = ("Next the token goes through encoder-decoder attention (queries from here, keys and values from "
                     "the encoder's output) and then " + ffn_text)
    else:
        rest_text = "Next the token goes through " + ffn_text
    if layer + 1 < n_layers:
        rest_text += f" The layer's output is the input of layer {layer + 2}."
    elif kind == "encoder":
        rest_text += (" This is the encoder's last layer: its output for every source token gives the keys and values "
                      "of every decoder layer's cross-attention.")
    else:
        rest_text += " This is the decoder's last layer: its output goes to the final linear layer."
    steps.append(Step("rest_of_layer", "10. The rest of the layer", rest_text,
                      {"sublayers": rest, "layer_output": _vec(layer_output, n_first)}))

    # 7. Final linear + softmax (at this decoder position; at position 0 for an encoder walkthrough).
    out_pos = 0 if kind == "encoder" else pos
    final_hidden = store["decoder_output"][0]
    if core.decoder.layer_norm is not None:
        final_hidden = core.decoder.layer_norm(final_hidden)
    logits = model.lm_head(final_hidden[out_pos])
    probs = logits.float().softmax(-1)
    checks["probs"] = float((probs - out.logits[0, out_pos].float().softmax(-1)).abs().max())
    top_p = probs.topk(min(top_k, probs.numel()))
    top_ids = top_p.indices.tolist()
    nxt = labels[out_pos]
    final_text = ("At the top of the decoder a final linear layer " + ("(after a last layer norm) " if pre_ln else "")
                  + f"turns the {d_model}-number vector into one score per vocabulary token ({cfg.vocab_size}; "
                  + ("tied to the embedding matrix, section 3.4" if cfg.tie_word_embeddings else "its own matrix")
                  + "), and softmax turns the scores into the probabilities of the next token.")
    if kind == "encoder":
        final_text += " Shown for the decoder's first position: the probabilities of the first word of the translation."
    steps.append(Step(
        "output", "11. Final linear + softmax: the next token", final_text,
        {
            "position": out_pos, "input_token": dec_tokens[out_pos],
            "top": [
                {"token": t, "id": i, "prob": p}
                for t, i, p in zip(_tokens(tokenizer, top_ids), top_ids, top_p.values.tolist())
            ],
            "next_token": tgt_tokens[out_pos], "next_token_prob": float(probs[nxt]),
            "shapes": {"hidden": [d_model], "W_vocab": [d_model, int(cfg.vocab_size)], "logits": [int(cfg.vocab_size)]},
        },
    ))

    translation_text = (tokenizer.decode(labels, skip_special_tokens=True).strip() if tokenizer is not None
                        else " ".join(map(str, labels)))
    sentence_text = sentence if isinstance(sentence, str) else (
        tokenizer.decode(src, skip_special_tokens=True) if tokenizer is not None else " ".join(map(str, src)))
    return Walkthrough(
        sentence=sentence_text, translation=translation_text, kind=kind, kind_label=KIND_LABELS[kind],
        layer=layer, head=head, position=pos, token=tok, query_tokens=query_tokens, key_tokens=key_tokens,
        source_tokens=src_tokens, decoder_tokens=dec_tokens, target_tokens=tgt_tokens, sizes=sizes,
        steps=steps, checks=checks,
        tensors={"weights": weights, "z": z, "probs": probs, "output_position": out_pos, "attention_output": attn_out},
    )


__all__ = [
    "DEFAULT_SENTENCE",
    "DEFAULT_TOKEN",
    "KINDS",
    "KIND_LABELS",
    "Step",
    "Walkthrough",
    "find_token_position",
    "source_tokens",
    "walkthrough",
]
