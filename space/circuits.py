"""Transformer circuits for the Space: head ablation, head importance, logit lens and the residual stream.

The circuits view of a transformer treats the residual stream as a channel that every sub-layer reads from
and writes to, and attention heads as routers that move information between positions. This module lets a
learner test that on the loaded model, without changing the model's code:

- `ablate_heads` switches heads off (their slice of the concatenated head outputs, the input of `out_proj`,
  is set to zero) with forward pre-hooks; `run_ablation` re-translates with the heads off and reports the
  change in log-probability of the original translation.
- `head_importance` switches every head off alone, in one batched pass (one ablated head per batch row,
  with a per-row head mask), and returns the drop of the translation's log-probability as layer x head grids.
- `logit_lens` applies the output projection to the residual stream after every decoder layer.
- `residual_stream` measures, per position, the size of what each sub-layer writes into the residual stream.

Heads are named `(family, layer, head)` with family "encoder" (encoder self-attention), "decoder" (masked
decoder self-attention) or "cross" (encoder-decoder attention), layers and heads counted from 0.
Every result is a dataclass with `to_dict()` returning plain JSON-serialisable Python values.

Imports only torch: works on any loaded `TransformerForConditionalGeneration` and its tokenizer.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import torch

FAMILIES = ("encoder", "decoder", "cross")
FAMILY_LABELS = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention (masked)",
    "cross": "encoder-decoder (cross) attention",
}

Head = tuple  # (family: str, layer: int, head: int)


# --------------------------------------------------------------------------------------------- model access


def _core(model):
    """The `TransformerModel` inside a `TransformerForConditionalGeneration` (or the model itself)."""
    return getattr(model, "model", model)


def _layers(model, family: str):
    core = _core(model)
    if family == "encoder":
        return core.encoder.layers
    if family in ("decoder", "cross"):
        return core.decoder.layers
    raise ValueError(f"unknown head family {family!r}: use one of {FAMILIES}.")


def attention_module(model, family: str, layer: int):
    """The attention module of one family and layer (it has q_proj, k_proj, v_proj, out_proj, num_heads)."""
    layers = _layers(model, family)
    if not 0 <= int(layer) < len(layers):
        raise ValueError(f"{family} layer {layer} does not exist: the model has {len(layers)} (0..{len(layers) - 1}).")
    block = layers[int(layer)]
    return block.encoder_attn if family == "cross" else block.self_attn


def grid_shape(model, family: str) -> tuple[int, int]:
    """(layers, heads) of one family."""
    layers = _layers(model, family)
    return len(layers), attention_module(model, family, 0).num_heads


def all_heads(model, families: Sequence[str] = FAMILIES) -> list[tuple[str, int, int]]:
    """Every head, in the deterministic order family (encoder, decoder, cross), layer, head."""
    heads = []
    for family in FAMILIES:
        if family in families:
            n_layers, n_heads = grid_shape(model, family)
            heads += [(family, layer, head) for layer in range(n_layers) for head in range(n_heads)]
    return heads


def parse_head(spec) -> tuple[str, int, int]:
    """A head from ("cross", 1, 2), ["cross", 1, 2], {"family": "cross", "layer": 1, "head": 2} or "cross:1:2"."""
    if isinstance(spec, str):
        parts = spec.replace(".", ":").replace("/", ":").split(":")
    elif isinstance(spec, dict):
        parts = [spec.get("family"), spec.get("layer"), spec.get("head")]
    else:
        parts = list(spec)
    if len(parts) != 3:
        raise ValueError(f"a head is (family, layer, head), e.g. ('cross', 0, 1); got {spec!r}.")
    family = str(parts[0]).strip().lower()
    if family not in FAMILIES:
        raise ValueError(f"unknown head family {parts[0]!r} in {spec!r}: use one of {FAMILIES}.")
    try:
        return family, int(parts[1]), int(parts[2])
    except (TypeError, ValueError):
        raise ValueError(f"layer and head must be integers, got {spec!r}.") from None


def normalize_heads(model, heads: Iterable) -> list[tuple[str, int, int]]:
    """Parse, check against the model and sort (deterministic order, duplicates removed)."""
    order = {h: i for i, h in enumerate(all_heads(model))}
    parsed = set()
    for spec in heads or ():
        family, layer, head = parse_head(spec)
        n_layers, n_heads = grid_shape(model, family)
        if not 0 <= layer < n_layers:
            raise ValueError(f"{family} layer {layer} does not exist: the model has {n_layers} (0..{n_layers - 1}).")
        if not 0 <= head < n_heads:
            raise ValueError(f"{family} head {head} does not exist: each layer has {n_heads} (0..{n_heads - 1}).")
        parsed.add((family, layer, head))
    return sorted(parsed, key=order.__getitem__)


# --------------------------------------------------------------------------------------------- ablation hooks


def _mask_hook(num_heads: int, mask: torch.Tensor):
    """Forward pre-hook for `out_proj`: multiply each head's slice of Concat(head_1..head_h) by its mask.

    `mask` is (h,) for every batch row alike (works with beam search, whatever the batch), or (B, h) for one
    mask per batch row (batched head importance).
    """

    def hook(module, args):
        x = args[0]  # (B, T, d_model) = concatenated heads
        shape = x.shape
        heads = x.reshape(*shape[:-1], num_heads, shape[-1] // num_heads)  # (B, T, h, d_k)
        m = mask.to(device=x.device, dtype=x.dtype)
        if m.dim() == 1:
            heads = heads * m[:, None]
        else:
            if m.shape[0] != shape[0]:
                raise RuntimeError(f"per-row head mask has {m.shape[0]} rows but the batch has {shape[0]}.")
            heads = heads * m.view(m.shape[0], *([1] * (x.dim() - 2)), num_heads, 1)
        return (heads.reshape(shape),) + tuple(args[1:])

    return hook


@contextmanager
def head_masks(model, masks: dict):
    """Apply head masks {(family, layer): tensor (h,) or (B, h)} of 1 (keep) / 0 (off) inside the block."""
    handles = []
    try:
        for (family, layer), mask in masks.items():
            attn = attention_module(model, family, layer)
            handles.append(attn.out_proj.register_forward_pre_hook(_mask_hook(attn.num_heads, mask)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def ablate_heads(model, heads: Iterable = ()):
    """Switch heads off inside the `with` block: `with ablate_heads(model, [("cross", 0, 1)]): model(...)`.

    A head is switched off by zeroing its d_k outputs before the output projection W^O (zero ablation), so
    the rest of the model runs unchanged. With no heads, no hook is installed: exactly the normal model.
    Yields the normalised list of heads.
    """
    heads = normalize_heads(model, heads)
    masks: dict = {}
    for family, layer, head in heads:
        attn = attention_module(model, family, layer)
        mask = masks.setdefault((family, layer), torch.ones(attn.num_heads, device=attn.out_proj.weight.device))
        mask[head] = 0.0
    with head_masks(model, masks):
        yield heads


# --------------------------------------------------------------------------------------------- inputs


def _device(model):
    return next(model.parameters()).device


def _tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    ids = [int(i) for i in ids]
    if tokenizer is None:
        return [str(i) for i in ids]
    return list(tokenizer.convert_ids_to_tokens(ids))


def _source_ids(model, tokenizer, source) -> list[int]:
    if isinstance(source, str):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to encode a text; pass token ids instead.")
        max_len = getattr(tokenizer, "model_max_length", None)
        max_len = max_len if isinstance(max_len, int) and max_len < 100_000 else None
        ids = tokenizer(source, truncation=max_len is not None, max_length=max_len)["input_ids"]
    else:
        ids = [int(i) for i in (source.tolist() if torch.is_tensor(source) else source)]
    if not ids:
        raise ValueError("the source sentence is empty.")
    return ids


def _strip_generated(model, ids: Sequence[int]) -> list[int]:
    """Generated ids -> target labels: drop the decoder start token, stop after the first </s>, no padding."""
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


def _labels_from_ids(model, ids) -> list[int]:
    """Target ids as given by a caller -> labels y_1 .. y_n </s>.

    Accepts the labels themselves or the decoder's reading `<start> y_1 .. y_n` (as the Space's translation
    keeps them): a leading decoder start token is dropped and a missing final </s> is added (also to a
    generated translation cut at max_length), so the score is always that of the complete translation.
    """
    cfg = model.config
    ids = [int(i) for i in (ids.tolist() if torch.is_tensor(ids) else ids)]
    if ids and ids[0] == cfg.decoder_start_token_id:
        ids = ids[1:]
    if cfg.eos_token_id is not None and (not ids or ids[-1] != cfg.eos_token_id):
        ids.append(int(cfg.eos_token_id))
    return ids


@dataclass
class Example:
    """One source sentence and one target, as the teacher-forced model sees them (all lists of ids)."""

    input_ids: list[int]  # source, ending with </s>
    labels: list[int]  # target y_1 .. y_n, normally ending with </s>
    decoder_input_ids: list[int]  # <start> y_1 .. y_{n-1}: position t predicts labels[t]

    def tensors(self, device=None):
        return (
            torch.tensor([self.input_ids], device=device),
            torch.tensor([self.decoder_input_ids], device=device),
            torch.tensor([self.labels], device=device),
        )


@torch.inference_mode()
def generate_ids(model, input_ids: Sequence[int], heads: Iterable = (), **generate_kwargs) -> list[int]:
    """Translate source ids (with the model's generation config, or `generate_kwargs`), heads optionally off."""
    model.eval()
    ids = torch.tensor([list(input_ids)], device=_device(model))
    with ablate_heads(model, heads):
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **generate_kwargs)
    return _strip_generated(model, out[0].tolist())


def make_example(model, tokenizer, source, target=None, **generate_kwargs) -> Example:
    """Source text or ids, and a target: text, ids, or None (the model's own translation, generated here).

    Target ids may be the labels y_1 .. y_n </s> or the decoder's reading <start> y_1 .. y_n: a leading
    start token is dropped and a missing </s> added.
    """
    input_ids = _source_ids(model, tokenizer, source)
    if target is None:
        labels = _labels_from_ids(model, generate_ids(model, input_ids, **generate_kwargs))
    elif isinstance(target, str):
        if tokenizer is None:
            raise ValueError("a tokenizer is needed to encode a text; pass token ids instead.")
        labels = tokenizer(text_target=target)["input_ids"]
    else:
        labels = _labels_from_ids(model, target)
    if not labels:
        raise ValueError("the target is empty.")
    decoder_input_ids = [int(model.config.decoder_start_token_id)] + labels[:-1]
    return Example(input_ids, labels, decoder_input_ids)


def _decode(tokenizer, ids: Sequence[int]) -> str:
    if tokenizer is None:
        return " ".join(str(i) for i in ids)
    return tokenizer.decode(list(ids), skip_special_tokens=True).strip()


def _token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) labels -> (B, T) log p(label)."""
    return logits.float().log_softmax(-1).gather(-1, labels[..., None]).squeeze(-1)


# --------------------------------------------------------------------------------------------- ablation


@torch.inference_mode()
def token_logprobs(model, example: Example, heads: Iterable = ()) -> list[float]:
    """Teacher-forced log p(y_t | y_<t, x) of every target token, with `heads` switched off."""
    model.eval()
    input_ids, decoder_input_ids, labels = example.tensors(_device(model))
    with ablate_heads(model, heads):
        logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False).logits
    return _token_logprobs(logits, labels)[0].tolist()


def translation_logprob(model, tokenizer, source, target, heads: Iterable = ()) -> float:
    """Sum of the teacher-forced log-probabilities of the target's tokens (natural log), heads optionally off."""
    return float(sum(token_logprobs(model, make_example(model, tokenizer, source, target), heads)))


def translate(model, tokenizer, source, heads: Iterable = (), **generate_kwargs) -> str:
    """The model's translation of `source` with `heads` switched off."""
    ids = generate_ids(model, _source_ids(model, tokenizer, source), heads, **generate_kwargs)
    return _decode(tokenizer, _labels_from_ids(model, ids))


@dataclass
class AblationResult:
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

    def to_dict(self) -> dict:
        return asdict(self)


def run_ablation(
    model, tokenizer, source, heads: Iterable = (), translation=None, **generate_kwargs
) -> AblationResult:
    """Switch `heads` off, re-translate, and score the original translation with and without them.

    `translation` is the translation to score (text or ids); None translates `source` first.
    """
    heads = normalize_heads(model, heads)
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    base = token_logprobs(model, example)
    ablated = token_logprobs(model, example, heads)
    new_ids = generate_ids(model, example.input_ids, heads, **generate_kwargs)
    source_text = source if isinstance(source, str) else _decode(tokenizer, example.input_ids)
    return AblationResult(
        source=source_text,
        heads=[list(h) for h in heads],
        translation=_decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        translation_tokens=_tokens(tokenizer, example.labels),
        ablated_translation=_decode(tokenizer, _labels_from_ids(model, new_ids)),
        ablated_tokens=_tokens(tokenizer, new_ids),
        logprob=float(sum(base)),
        ablated_logprob=float(sum(ablated)),
        delta=float(sum(ablated) - sum(base)),
        token_logprobs=base,
        ablated_token_logprobs=ablated,
        changed=_labels_from_ids(model, new_ids) != example.labels,
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


@dataclass
class HeadImportance:
    source: str
    translation: str
    translation_ids: list[int]
    source_tokens: list[str]
    translation_tokens: list[str]
    logprob: float  # the translation's log-prob with every head on
    grids: dict  # family -> {"label", "layers", "heads", "drop": [[...] per layer], "ablated_logprob": [[...]]}
    ranking: list  # [{"family", "layer", "head", "drop", "ablated_logprob", "rank"}], most important first
    seconds: float  # time spent on the ablations

    def to_dict(self) -> dict:
        return asdict(self)


@torch.inference_mode()
def head_importance(
    model,
    tokenizer,
    source,
    translation=None,
    families: Sequence[str] = FAMILIES,
    batch_size: int = 64,
    **generate_kwargs,
) -> HeadImportance:
    """For every head: how much the translation's log-prob drops when that head alone is switched off.

    drop = log p(translation) - log p(translation | head off); large positive drop = important head.
    Batched: the encoder runs once per encoder head (plus once unablated) in one batch, then the decoder runs
    one batch row per head (plus the unablated row), each row with its own head mask; `batch_size` bounds
    the rows per forward pass. Ranking: by drop, ties in the order family, layer, head.
    """
    model.eval()
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"unknown head family {family!r}: use one of {FAMILIES}.")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    device = _device(model)
    input_ids, decoder_input_ids, labels = example.tensors(device)
    heads = all_heads(model, families)
    core = _core(model)
    start = time.perf_counter()

    # 1. Encoder: row 0 unablated, then one row per encoder head.
    enc_rows = [None] + [h for h in heads if h[0] == "encoder"]
    enc_states = []
    for i in range(0, len(enc_rows), batch_size):
        chunk = enc_rows[i : i + batch_size]
        with head_masks(model, _row_masks(model, chunk, ("encoder",))):
            enc_states.append(core.encoder(input_ids=input_ids.expand(len(chunk), -1)).last_hidden_state)
    enc_states = torch.cat(enc_states)
    enc_row = {row: i for i, row in enumerate(enc_rows)}

    # 2. Decoder, teacher-forced: row 0 unablated, then one row per head; encoder-head rows read their
    # ablated encoder output, the others the unablated one.
    rows = [None] + heads
    logprobs = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        enc = enc_states[[enc_row.get(row, 0) for row in chunk]]
        with head_masks(model, _row_masks(model, chunk, ("decoder", "cross"))):
            hidden = core.decoder(
                input_ids=decoder_input_ids.expand(len(chunk), -1), encoder_hidden_states=enc, use_cache=False
            ).last_hidden_state
        logits = model.lm_head(hidden)
        logprobs.append(_token_logprobs(logits, labels.expand(len(chunk), -1)).sum(-1))
    logprobs = torch.cat(logprobs).tolist()
    seconds = time.perf_counter() - start

    base = logprobs[0]
    grids = {}
    for family in FAMILIES:
        if family in families:
            n_layers, n_heads = grid_shape(model, family)
            grids[family] = {
                "label": FAMILY_LABELS[family],
                "layers": n_layers,
                "heads": n_heads,
                "drop": [[0.0] * n_heads for _ in range(n_layers)],
                "ablated_logprob": [[0.0] * n_heads for _ in range(n_layers)],
            }
    entries = []
    for order, (head, value) in enumerate(zip(heads, logprobs[1:])):
        family, layer, h = head
        drop = base - value
        grids[family]["drop"][layer][h] = drop
        grids[family]["ablated_logprob"][layer][h] = value
        entries.append((order, {"family": family, "layer": layer, "head": h, "drop": drop, "ablated_logprob": value}))
    entries.sort(key=lambda e: (-e[1]["drop"], e[0]))
    ranking = [dict(entry, rank=rank + 1) for rank, (_, entry) in enumerate(entries)]
    source_text = source if isinstance(source, str) else _decode(tokenizer, example.input_ids)
    return HeadImportance(
        source=source_text,
        translation=_decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        source_tokens=_tokens(tokenizer, example.input_ids),
        translation_tokens=_tokens(tokenizer, example.labels),
        logprob=base,
        grids=grids,
        ranking=ranking,
        seconds=seconds,
    )


# --------------------------------------------------------------------------------------------- logit lens


@contextmanager
def _capture(modules: dict, pre: bool = False):
    """Record the output (or with `pre`, the first positional input) of each module {name: module}."""
    store: dict = {}
    handles = []

    def make(name):
        if pre:
            return lambda module, args: store.__setitem__(name, args[0])
        return lambda module, args, output: store.__setitem__(name, output[0] if isinstance(output, tuple) else output)

    try:
        for name, module in modules.items():
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(make(name)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def logit_lens_probs(model, example: Example, heads: Iterable = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder layers, T, vocab) probabilities read from the residual stream after each decoder layer, and
    the model's real output distribution (T, vocab).

    For pre-LN models the decoder's final layer norm is applied first (as the model does before its output
    projection); for post-LN models the stream after each layer is already normalised.
    """
    model.eval()
    core = _core(model)
    input_ids, decoder_input_ids, _ = example.tensors(_device(model))
    layers = core.decoder.layers
    with ablate_heads(model, heads), _capture({i: layer for i, layer in enumerate(layers)}) as store:
        logits = model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False).logits
    lens = []
    for i in range(len(layers)):
        hidden = store[i]
        if core.decoder.layer_norm is not None:
            hidden = core.decoder.layer_norm(hidden)
        lens.append(model.lm_head(hidden)[0].float().softmax(-1))
    return torch.stack(lens), logits[0].float().softmax(-1)


@dataclass
class LogitLens:
    source: str
    translation: str
    translation_ids: list[int]
    source_tokens: list[str]
    input_tokens: list[str]  # what the decoder reads at each position: <start> y_1 .. y_{n-1}
    target_tokens: list[str]  # what it should predict at each position: y_1 .. y_n
    layers: list  # per decoder layer: {"layer", "positions": [{"position", "input", "target", "top": [{"token",
    #   "id", "prob"}], "target_prob", "target_rank"}]}
    final: list  # the model's real output, same form as one layer's "positions"
    normalize_before: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _lens_positions(tokenizer, probs: torch.Tensor, example: Example, top_k: int) -> list[dict]:
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    labels = torch.tensor(example.labels, device=probs.device)
    target_probs = probs.gather(-1, labels[:, None]).squeeze(-1)
    target_ranks = (probs > target_probs[:, None]).sum(-1) + 1
    inputs = _tokens(tokenizer, example.decoder_input_ids)
    targets = _tokens(tokenizer, example.labels)
    out = []
    for t in range(probs.shape[0]):
        ids = top.indices[t].tolist()
        out.append({
            "position": t,
            "input": inputs[t],
            "target": targets[t],
            "top": [
                {"token": tok, "id": i, "prob": p}
                for tok, i, p in zip(_tokens(tokenizer, ids), ids, top.values[t].tolist())
            ],
            "target_prob": float(target_probs[t]),
            "target_rank": int(target_ranks[t]),
        })
    return out


def logit_lens(
    model, tokenizer, source, translation=None, top_k: int = 5, heads: Iterable = (), **generate_kwargs
) -> LogitLens:
    """What the output projection would predict from the residual stream after each decoder layer.

    At the last layer this is exactly the model's output distribution (`final`).
    """
    example = make_example(model, tokenizer, source, translation, **generate_kwargs)
    lens, final = logit_lens_probs(model, example, heads)
    source_text = source if isinstance(source, str) else _decode(tokenizer, example.input_ids)
    return LogitLens(
        source=source_text,
        translation=_decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        source_tokens=_tokens(tokenizer, example.input_ids),
        input_tokens=_tokens(tokenizer, example.decoder_input_ids),
        target_tokens=_tokens(tokenizer, example.labels),
        layers=[
            {"layer": i, "positions": _lens_positions(tokenizer, probs, example, top_k)} for i, probs in enumerate(lens)
        ],
        final=_lens_positions(tokenizer, final, example, top_k),
        normalize_before=bool(model.config.normalize_before),
    )


# --------------------------------------------------------------------------------------------- residual stream


@torch.inference_mode()
def sublayer_writes(model, example: Example, heads: Iterable = ()) -> dict:
    """Tensors of the residual stream: {"encoder"|"decoder": [ {"input", "self_attn", ["cross_attn"], "ffn",
    "output"} per layer ]}, each (L, d_model) for the single example.

    "self_attn", "cross_attn" and "ffn" are what the sub-layer adds to the residual stream: its output
    before the residual add (after dropout, which is off in eval mode). "input"/"output": the stream entering
    and leaving the layer.
    """
    model.eval()
    core = _core(model)
    input_ids, decoder_input_ids, _ = example.tensors(_device(model))
    modules, inputs = {}, {}
    for side, layers in (("encoder", core.encoder.layers), ("decoder", core.decoder.layers)):
        for i, layer in enumerate(layers):
            inputs[(side, i)] = layer
            modules[(side, i, "output")] = layer
            modules[(side, i, "self_attn")] = layer.self_attn
            modules[(side, i, "ffn")] = layer.ffn
            if side == "decoder":
                modules[(side, i, "cross_attn")] = layer.encoder_attn
    with ablate_heads(model, heads), _capture(modules) as out, _capture(inputs, pre=True) as ins:
        model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False)
    result = {}
    for side, layers in (("encoder", core.encoder.layers), ("decoder", core.decoder.layers)):
        names = ("self_attn", "cross_attn", "ffn") if side == "decoder" else ("self_attn", "ffn")
        result[side] = [
            {
                "input": ins[(side, i)][0],
                **{n: out[(side, i, n)][0] for n in names},
                "output": out[(side, i, "output")][0],
            }
            for i in range(len(layers))
        ]
    return result


@dataclass
class ResidualStream:
    source: str
    translation: str
    translation_ids: list[int]
    source_tokens: list[str]  # encoder positions
    input_tokens: list[str]  # decoder positions: <start> y_1 .. y_{n-1}
    encoder: list  # per layer: {"layer", "input_norm", "self_attn", "ffn", "output_norm"}: lists over positions
    decoder: list  # per layer: {"layer", "input_norm", "self_attn", "cross_attn", "ffn", "output_norm"}
    normalize_before: bool

    def to_dict(self) -> dict:
        return asdict(self)


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

    source_text = source if isinstance(source, str) else _decode(tokenizer, example.input_ids)
    return ResidualStream(
        source=source_text,
        translation=_decode(tokenizer, example.labels),
        translation_ids=list(example.labels),
        source_tokens=_tokens(tokenizer, example.input_ids),
        input_tokens=_tokens(tokenizer, example.decoder_input_ids),
        encoder=side(writes["encoder"]),
        decoder=side(writes["decoder"]),
        normalize_before=bool(model.config.normalize_before),
    )


__all__ = [
    "FAMILIES",
    "FAMILY_LABELS",
    "Example",
    "AblationResult",
    "HeadImportance",
    "LogitLens",
    "ResidualStream",
    "attention_module",
    "grid_shape",
    "all_heads",
    "parse_head",
    "normalize_heads",
    "head_masks",
    "ablate_heads",
    "make_example",
    "generate_ids",
    "token_logprobs",
    "translation_logprob",
    "translate",
    "run_ablation",
    "head_importance",
    "logit_lens_probs",
    "logit_lens",
    "sublayer_writes",
    "residual_stream",
]
