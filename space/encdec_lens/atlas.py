"""A head atlas: what every attention head does over a whole data set, and what pruning heads costs.

Two classic studies of heads in translation Transformers, measured on a loaded model:

* Voita, Talbot, Moiseev, Sennrich and Titov (ACL 2019), "Analyzing Multi-Head Self-Attention: Specialized
  Heads Do the Heavy Lifting, the Rest Can Be Pruned": heads with roles. `head_roles` measures, for every
  head over sentence pairs teacher-forced on their reference translations, the share of query positions
  that behave in a role, and labels the head when the share passes a threshold (module constants below):

      positional   the maximum attention weight falls on one fixed relative offset (Voita: >= 90% of cases)
      rare-word    the maximum attention weight falls on the sentence's rarest key token (training-set counts)
      sink         most attention weight goes to `<s>`, `</s>` or punctuation keys
      diagonal     cross-attention only: the attended source position follows the target position

  Syntactic heads (Voita's dependency relations) are not measured: that needs a parser.

* Michel, Levy and Neubig (NeurIPS 2019), "Are Sixteen Heads Really Better than One?": heads pruned in
  order of importance (least important first), BLEU after each step (`pruning_curves`).

`head_atlas` puts both together into one JSON-ready dict. Imports torch and numpy only; BLEU comes from a
callback, so the library needs no metric package.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from .ablation import ablate_heads
from .heads import FAMILIES, all_heads, family_record, grid_shape, head_label
from .hooks import HookedModel, attention_site
from .inputs import device_of

# --- thresholds ---------------------------------------------------------------------------------------------
# Voita et al. 2019, section 4.1: a head is positional when "at least 90% of the time its maximum attention
# weight is assigned to a specific relative position".
POSITIONAL_THRESHOLD = 0.90
# Voita et al. give no number for rare-word heads (their figure shows the head attending to the least frequent
# token far more often than any other head does). Ours: the argmax falls on the rarest key token in at least
# half of the query positions; `rare_word_chance` in the shares says what a uniform argmax would give.
RARE_WORD_THRESHOLD = 0.5
# A sink head puts at least half of its attention weight, on average over queries, on `<s>`, `</s>` or
# punctuation keys (Clark et al. 2019 saw BERT's heads park attention on [SEP] and punctuation).
SINK_THRESHOLD = 0.5
# Cross-attention: a query "follows the diagonal" when its argmax source position, as a share of the source
# length, is within DIAGONAL_TOLERANCE of its target position as a share of the target length; the head is
# labelled diagonal when at least DIAGONAL_THRESHOLD of its queries do.
DIAGONAL_TOLERANCE = 0.1
DIAGONAL_THRESHOLD = 0.5

THRESHOLDS = {
    "positional": POSITIONAL_THRESHOLD,
    "rare-word": RARE_WORD_THRESHOLD,
    "sink": SINK_THRESHOLD,
    "diagonal": DIAGONAL_THRESHOLD,
    "diagonal_tolerance": DIAGONAL_TOLERANCE,
}
ROLES = ("positional", "rare-word", "sink", "diagonal")


# --- token sets --------------------------------------------------------------------------------------------


def count_tokens(tokenizer, texts: Iterable[str], batch_size: int = 1000) -> Counter:
    """Training-set frequency of every token id: {id: count} over `texts` tokenised with the model's tokenizer."""
    counts: Counter = Counter()
    texts = list(texts)
    for start in range(0, len(texts), batch_size):
        for ids in tokenizer(texts[start : start + batch_size])["input_ids"]:
            counts.update(ids)
    return counts


def _is_punctuation(token: str) -> bool:
    text = token.replace("▁", "").replace("Ġ", "").strip()
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def sink_token_ids(model, tokenizer) -> set[int]:
    """`<s>` (the decoder's start), `</s>` and every vocabulary entry made of punctuation only."""
    ids = {
        int(i)
        for i in (
            model.config.eos_token_id,
            model.config.decoder_start_token_id,
            getattr(model.config, "bos_token_id", None),
        )
        if i is not None
    }
    if tokenizer is not None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        ids |= {i for i, token in enumerate(vocab) if token is not None and _is_punctuation(token)}
    return ids


def special_token_ids(model, tokenizer) -> set[int]:
    """Ids that never count as the rarest token of a sentence (pad, start, end and the tokenizer's specials)."""
    cfg = model.config
    ids = {
        int(i)
        for i in (cfg.pad_token_id, cfg.eos_token_id, cfg.decoder_start_token_id, getattr(cfg, "bos_token_id", None))
        if i is not None
    }
    if tokenizer is not None:
        ids |= {int(i) for i in tokenizer.all_special_ids}
    return ids


# --- one sentence, one attention array: what each query does ----------------------------------------------


def query_stats(
    pattern: np.ndarray,
    family: str,
    query_ids: Sequence[int],
    key_ids: Sequence[int],
    token_counts,
    special_ids: set,
    sink_ids: set,
) -> dict:
    """Per head and query position, from one sentence's attention probabilities `pattern` (h, T_q, T_k).

    Returns arrays of shape (h, n) over the counted queries:
        offset      argmax key position - query position (self-attention only)
        rarest      1.0 when the argmax key is the rarest key token (by `token_counts`), NaN where no key
                    token can be rare (only specials visible) and everywhere when `token_counts` is None
        rare_chance 1 / number of visible keys, where `rarest` is defined (what a uniform argmax would give)
        sink        attention weight on the keys in `sink_ids`
        sink_chance share of the visible keys that are in `sink_ids`
        src, tgt    cross-attention only: argmax source position / (S - 1) and query position / (T - 1)

    Decoder self-attention is causal: its first query sees one key only and is not counted.
    """
    pattern = np.asarray(pattern, dtype=np.float64)
    if pattern.ndim != 3 or pattern.shape[1:] != (len(query_ids), len(key_ids)):
        raise ValueError(
            f"query_stats: pattern of shape {pattern.shape} does not fit {len(query_ids)} queries and "
            f"{len(key_ids)} keys; expected (heads, {len(query_ids)}, {len(key_ids)})."
        )
    n_q, n_k = pattern.shape[1:]
    causal = family_record(family).causal
    queries = np.arange(1 if causal else 0, n_q)
    argmax = pattern[:, queries].argmax(-1)  # (h, n)
    visible = [q + 1 if causal else n_k for q in queries]  # keys a query can see

    rarest = np.full(argmax.shape, np.nan)
    rare_chance = np.full(len(queries), np.nan)
    counts = np.array(
        [np.inf if int(k) in special_ids else (token_counts or {}).get(int(k), 0) for k in key_ids], dtype=np.float64
    )  # specials are never "rare"
    for j, n_vis in enumerate(visible if token_counts is not None else ()):
        least = counts[:n_vis].min()
        if np.isfinite(least):
            rarest[:, j] = counts[argmax[:, j]] == least
            rare_chance[j] = np.sum(counts[:n_vis] == least) / n_vis

    is_sink = np.array([int(k) in sink_ids for k in key_ids], dtype=np.float64)
    stats = {
        "rarest": rarest,
        "rare_chance": np.broadcast_to(rare_chance, argmax.shape),
        "sink": pattern[:, queries] @ is_sink,
        "sink_chance": np.broadcast_to([is_sink[:n].mean() for n in visible], argmax.shape),
    }
    if family == "cross":
        stats["src"] = argmax / max(n_k - 1, 1)
        stats["tgt"] = np.broadcast_to(queries / max(n_q - 1, 1), argmax.shape)
    else:
        stats["offset"] = argmax - queries
    return stats


# --- shares and roles over many queries ---------------------------------------------------------------------


def positional_share(offsets: np.ndarray) -> tuple[int, float]:
    """(the most frequent relative offset of the argmax key, the share of queries at it) (Voita et al. 2019)."""
    offsets = np.asarray(offsets).ravel()
    if offsets.size == 0:
        return 0, 0.0
    values, counts = np.unique(offsets, return_counts=True)
    best = int(np.argmax(counts))
    return int(values[best]), float(counts[best] / offsets.size)


def _mean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def diagonal_shares(src: np.ndarray, tgt: np.ndarray, tolerance: float = DIAGONAL_TOLERANCE) -> dict:
    """How far cross-attention's argmax source position follows the target position (both as shares of their
    sentence's length): the share within `tolerance`, the mean distance and the Pearson correlation."""
    src, tgt = np.asarray(src, dtype=np.float64).ravel(), np.asarray(tgt, dtype=np.float64).ravel()
    if src.size == 0:
        return {"diagonal": 0.0, "diagonal_distance": float("nan"), "diagonal_correlation": float("nan")}
    distance = np.abs(src - tgt)
    correlation = float(np.corrcoef(src, tgt)[0, 1]) if src.std() > 0 and tgt.std() > 0 else 0.0
    return {
        "diagonal": float(np.mean(distance <= tolerance + 1e-12)),
        "diagonal_distance": float(distance.mean()),
        "diagonal_correlation": correlation,
    }


def shares_of(stats: dict, family: str) -> dict:
    """The shares of one head from its pooled `query_stats` arrays (1-D, one entry per query)."""
    shares = {"queries": int(np.asarray(stats["sink"]).size)}
    if family == "cross":
        shares.update(diagonal_shares(stats["src"], stats["tgt"]))
    else:
        offset, share = positional_share(stats["offset"])
        shares.update(positional=share, positional_offset=offset)
    shares.update(
        rare_word=_mean(stats["rarest"]),
        rare_word_chance=_mean(stats["rare_chance"]),
        sink=_mean(stats["sink"]),
        sink_chance=_mean(stats["sink_chance"]),
    )
    return shares


def roles_of(shares: dict) -> list[str]:
    """The role labels a head's shares pass (thresholds: the module constants)."""
    roles = []
    if shares.get("positional", 0.0) >= POSITIONAL_THRESHOLD:
        roles.append("positional")
    if shares.get("rare_word", 0.0) >= RARE_WORD_THRESHOLD:  # NaN compares False
        roles.append("rare-word")
    if shares.get("sink", 0.0) >= SINK_THRESHOLD:
        roles.append("sink")
    if shares.get("diagonal", 0.0) >= DIAGONAL_THRESHOLD:
        roles.append("diagonal")
    return roles


def roles_from_patterns(
    family: str,
    patterns: Sequence[np.ndarray],
    query_ids: Sequence[Sequence[int]],
    key_ids: Sequence[Sequence[int]],
    token_counts=None,
    special_ids: set = frozenset(),
    sink_ids: set = frozenset(),
) -> list[dict]:
    """Shares and roles of every head of one layer from its attention arrays over many sentences.

    `patterns[i]` is sentence i's (h, T_q, T_k) array, `query_ids[i]` and `key_ids[i]` its row and column
    token ids; without `token_counts` the rare-word share is not measured (NaN). Returns one `{"roles",
    "shares"}` per head.
    """
    if not patterns:
        raise ValueError("roles need at least one sentence's attention.")
    pooled: dict = {}
    for pattern, q_ids, k_ids in zip(patterns, query_ids, key_ids, strict=True):
        for key, value in query_stats(pattern, family, q_ids, k_ids, token_counts, special_ids, sink_ids).items():
            pooled.setdefault(key, []).append(value)
    n_heads = np.asarray(patterns[0]).shape[0]
    out = []
    for h in range(n_heads):
        shares = shares_of({key: np.concatenate([v[h] for v in values]) for key, values in pooled.items()}, family)
        out.append({"roles": roles_of(shares), "shares": shares})
    return out


# --- over a data set, teacher-forced --------------------------------------------------------------------------


def _pattern_sites(model) -> dict:
    """{(family, layer): pattern site name} for every attention layer."""
    return {
        (family, layer): attention_site(family, layer, "pattern")
        for family in FAMILIES
        for layer in range(grid_shape(model, family)[0])
    }


def _encode_pairs(model, tokenizer, pairs: Sequence[tuple[str, str]]):
    """[(source ids, labels, decoder input ids)] of (source text, reference) pairs."""
    start = int(model.config.decoder_start_token_id)
    sources = tokenizer([s for s, _ in pairs], truncation=True)["input_ids"]
    targets = tokenizer(text_target=[t for _, t in pairs], truncation=True)["input_ids"]
    return [(list(s), list(t), [start] + list(t[:-1])) for s, t in zip(sources, targets)]


def _padded_batch(model, encoded, device):
    pad = int(model.config.pad_token_id)
    width_s = max(len(s) for s, _, _ in encoded)
    width_t = max(len(d) for _, _, d in encoded)
    input_ids = torch.full((len(encoded), width_s), pad, device=device)
    attention_mask = torch.zeros_like(input_ids)
    decoder_input_ids = torch.full((len(encoded), width_t), pad, device=device)
    decoder_attention_mask = torch.zeros_like(decoder_input_ids)
    for i, (s, _, d) in enumerate(encoded):
        input_ids[i, : len(s)] = torch.tensor(s)
        attention_mask[i, : len(s)] = 1
        decoder_input_ids[i, : len(d)] = torch.tensor(d)
        decoder_attention_mask[i, : len(d)] = 1
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        decoder_attention_mask=decoder_attention_mask,
    )


@torch.inference_mode()
def head_roles(model, tokenizer, pairs: Sequence[tuple[str, str]], token_counts, batch_size: int = 64) -> list[dict]:
    """Voita et al. (2019)'s head roles over sentence pairs (source text, reference translation).

    Each batch is one teacher-forced forward pass on the references with every `*.pattern` site cached
    (`HookedModel.run_with_cache`); padded rows and columns are cut off before anything is counted.
    `token_counts` ({token id: count}, e.g. `count_tokens` over the training set's both sides) decides which
    token of a sentence is the rarest. Returns one record per head, in `all_heads` order:
    `{"name", "family", "layer", "head", "roles": [...], "shares": {...}}` (see `query_stats`, `shares_of`).
    """
    if not pairs:
        raise ValueError("head roles need at least one sentence pair.")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    model.eval()
    sites = _pattern_sites(model)
    special, sinks = special_token_ids(model, tokenizer), sink_token_ids(model, tokenizer)
    encoded = _encode_pairs(model, tokenizer, pairs)
    collected = {key: ([], [], []) for key in sites}  # patterns, query ids, key ids
    hooked = HookedModel(model)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # less padding
    for start in range(0, len(order), batch_size):
        chunk = [encoded[i] for i in order[start : start + batch_size]]
        inputs = _padded_batch(model, chunk, device_of(model))
        _, cache = hooked.run_with_cache(list(sites.values()), use_cache=False, **inputs)
        for (family, layer), name in sites.items():
            patterns = cache[name].float().cpu().numpy()
            record = family_record(family)  # which ids its rows and columns are: the source or the decoder's input
            for row, (src, _, dec) in enumerate(chunk):
                ids = {"source": src, "target": dec}
                q_ids, k_ids = ids[record.queries], ids[record.keys]
                patterns_, queries, keys = collected[(family, layer)]
                patterns_.append(patterns[row, :, : len(q_ids), : len(k_ids)])
                queries.append(q_ids)
                keys.append(k_ids)
    records = []
    for (family, layer), (patterns, queries, keys) in collected.items():
        per_head = roles_from_patterns(family, patterns, queries, keys, token_counts, special, sinks)
        for head, result in enumerate(per_head):
            records.append(
                {"name": head_label(family, layer, head), "family": family, "layer": layer, "head": head, **result}
            )
    return records


# --- pruning (Michel et al. 2019) -----------------------------------------------------------------------------


@torch.inference_mode()
def translate_greedy(
    model, tokenizer, sources: Sequence[str], heads: Iterable = (), batch_size: int = 64, max_length: int | None = None
) -> list[str]:
    """Greedy translations of `sources` with `heads` switched off (zero ablation), in length-sorted batches."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    model.eval()
    sources = list(sources)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    outputs: list = [None] * len(sources)
    generate_kwargs = dict(num_beams=1, do_sample=False)
    if max_length is not None:
        generate_kwargs["max_length"] = max_length
    with ablate_heads(model, heads):
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([sources[i] for i in idx], return_tensors="pt", padding=True, truncation=True)
            enc = {k: v.to(device_of(model)) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            generated = model.generate(**enc, **generate_kwargs)
            for i, text in zip(idx, tokenizer.batch_decode(generated, skip_special_tokens=True)):
                outputs[i] = text.strip()
    return outputs


def _key(head) -> tuple:
    return tuple(head)


def pruning_order(importance: dict, heads: Sequence) -> list:
    """`heads` least important first (ties: in `all_heads` order)."""
    missing = [head_label(*h) for h in heads if _key(h) not in importance]
    if missing:
        raise ValueError(f"no importance for {len(missing)} head(s), e.g. {missing[:3]}: pass one value per head.")
    position = {_key(h): i for i, h in enumerate(heads)}
    return sorted(heads, key=lambda h: (float(importance[_key(h)]), position[_key(h)]))


def pruning_counts(n_heads: int, steps: int = 10) -> list[int]:
    """How many heads are off at each point: 0, k, 2k, ..., n with k = floor(n / steps) (at least 1), so no step
    is more than 1/steps of the group (10% for steps=10)."""
    if n_heads < 1 or steps < 1:
        raise ValueError(f"pruning needs at least one head and one step, got {n_heads} heads and {steps} steps.")
    step = max(1, n_heads // steps)
    counts = list(range(0, n_heads, step))
    return counts + [n_heads]


def pruning_curves(
    model,
    tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    importance: dict,
    bleu_fn: Callable[[list, list], float],
    steps: int = 10,
    batch_size: int = 64,
    max_length: int | None = None,
    groups: Sequence[str] = ("encoder", "decoder", "cross", "all"),
) -> dict:
    """Michel et al. (2019)'s pruning experiment: BLEU as heads are switched off, least important first.

    For each group (each family, and all heads together) the heads are ordered by `importance` ({(family,
    layer, head): value}, smaller = pruned first) and pruned cumulatively in steps of at most 1/`steps` of the
    group (`pruning_counts`), from none to all. Each point translates `sources` greedily (`translate_greedy`)
    and scores them with `bleu_fn(hypotheses, references)`. A set of heads already translated is not
    translated again (0% is the same model in every group).

    Returns {group: [{"fraction", "heads_pruned", "bleu", "pruned": [labels, in pruning order]}, ...]}.
    """
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references.")
    if not sources:
        raise ValueError("pruning needs at least one sentence.")
    scores: dict = {}
    curves = {}
    for group in groups:
        heads = all_heads(model, FAMILIES if group == "all" else (group,))
        order = pruning_order(importance, heads)
        points = []
        for count in pruning_counts(len(order), steps):
            pruned = order[:count]
            key = frozenset(pruned)
            if key not in scores:
                hypotheses = translate_greedy(model, tokenizer, sources, pruned, batch_size, max_length)
                scores[key] = float(bleu_fn(hypotheses, list(references)))
            points.append(
                {
                    "fraction": count / len(order),
                    "heads_pruned": count,
                    "bleu": scores[key],
                    "pruned": [head_label(*h) for h in pruned],
                }
            )
        curves[group] = points
    return curves


# --- the atlas --------------------------------------------------------------------------------------------------


def normalize_per_layer(importance: dict) -> dict:
    """Michel et al. (2019), section 4.1: importance scores divided by their layer's l2 norm.

    `importance` is {(family, layer): values (h,)} (as `gradient_importance` returns) or {(family, layer,
    head): value}; returns {(family, layer, head): value}.
    """
    per_head = _per_head(importance)
    norms: dict = {}
    for (family, layer, _), value in per_head.items():
        norms[(family, layer)] = norms.get((family, layer), 0.0) + value * value
    return {
        head: (value / math.sqrt(norms[head[:2]]) if norms[head[:2]] > 0 else 0.0) for head, value in per_head.items()
    }


def _per_head(importance: dict) -> dict:
    """{(family, layer): values} or {(family, layer, head): value} -> {(family, layer, head): float}."""
    out = {}
    for key, value in importance.items():
        if len(key) == 3:
            out[tuple(key)] = float(value)
        else:
            values = value.tolist() if torch.is_tensor(value) else list(value)
            out.update({(key[0], key[1], h): float(v) for h, v in enumerate(values)})
    return out


def _finite(value):
    """NaN and infinities as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def head_records(model, roles: Sequence[dict], importance: dict, raw_importance: dict | None = None) -> list[dict]:
    """One record per head: name, family, layer, head, importance (and its rank, 1 = most important), where it
    stands in each pruning order (1 = pruned first), roles and shares."""
    heads = all_heads(model)
    importance = _per_head(importance)
    raw = _per_head(raw_importance) if raw_importance is not None else None
    by_importance = sorted(heads, key=lambda h: -importance[h])
    rank = {h: i + 1 for i, h in enumerate(by_importance)}
    role_of = {(r["family"], r["layer"], r["head"]): r for r in roles}
    orders = {}
    for group in ("encoder", "decoder", "cross", "all"):
        group_heads = all_heads(model, FAMILIES if group == "all" else (group,))
        orders[group] = {h: i + 1 for i, h in enumerate(pruning_order(importance, group_heads))}
    records = []
    for head in heads:
        family, layer, h = head
        role = role_of.get(head, {"roles": [], "shares": {}})
        record = {
            "name": head_label(*head),
            "family": family,
            "layer": layer,
            "head": h,
            "importance": importance[head],
            "importance_rank": rank[head],
        }
        if raw is not None:
            record["importance_raw"] = raw[head]
        record["pruning_order"] = {"family": orders[family][head], "all": orders["all"][head]}
        record["roles"] = list(role["roles"])
        record["shares"] = {k: _finite(v) for k, v in role["shares"].items()}
        records.append(record)
    return records


def head_atlas(
    model, roles: Sequence[dict], importance: dict, pruning: dict, /, raw_importance: dict | None = None, **metadata
) -> dict:
    """The atlas as a JSON-ready dict: `metadata` (split, sentences, decoding, metric, ...), the thresholds,
    `pruning` (as `pruning_curves` returns it) and `heads` (`head_records`)."""
    return {
        **metadata,
        "thresholds": dict(THRESHOLDS),
        "pruning": pruning,
        "heads": head_records(model, roles, importance, raw_importance),
    }
