"""Automatic circuit discovery on the encoder-decoder: edge attribution patching (EAP, Syed et al. 2023) and its
integrated-gradients variant (EAP-IG, after Hanna et al. 2024), with real edge-level interventions to check them.

1. The graph
------------
Nodes, per model (`EdgeGraph`):

    enc emb, dec emb            the input embedding of each stack: E(x) * sqrt(d) + PE (the stream entering layer 1)
    enc/dec-self/cross L H      every attention head (`head_label`), its output o_h = z_h W^O_h  (T, d)
    enc L FFN, dec L FFN        every feed-forward block, its output FFN(x) = W_2 relu(W_1 x + b_1) + b_2
    logits                      the sink

z_h is head h's slice of Concat(head_1..head_h) (the hook site `z`), W^O_h the matching columns of the
out-projection. The out-projection bias b^O is no node's: it is a constant of its attention block, added to the
stream with the heads' outputs. (The mix below is an affine combination with weights (1 - m, m), so a constant
inside a node's output passes through it unchanged: putting b^O into the heads, or b_2 outside the FFN, would give
the same graph. We keep b_2 in the FFN node, since the FFN is one node.)

A node's *inputs* ("readers"): an encoder head and an FFN read the stream of their own stack at their sub-layer;
a decoder self-attention head too; a cross-attention head has two inputs, "q" (the decoder stream at its
sub-layer) and "kv" (the encoder output); the logits read the decoder output. An edge u -> (v, input) joins every
node u that writes into the stream that input reads: for a reader at sub-layer k of a stack, the stack's
embedding and every node of the sub-layers before k; for "kv", the encoder's embedding and every encoder node.
Decoder nodes depend on the source only through the "kv" edges (and through their decoder-side upstream nodes).

2. Private streams (exact for post-LN)
--------------------------------------
Post-LN, x_{k+1} = LN_k(x_k + S_k(x_k)), is not a sum of node outputs, so the residual stream is defined per input.
Each input v has its own private stream, rebuilt from the upstream nodes' outputs by the model's own arithmetic.
For an edge e = u -> v with mask m_e in [0, 1], the value of u that v sees is

    a_{u,v} = o'_u + m_e (o_u - o'_u)

with o_u the output of u in this (masked) forward pass and o'_u its output in the corrupted run (cached). Then,
walking the sub-layers k = 0 .. k_v - 1 that come before v, starting from x = a_{emb,v}:

    post-LN:   x <- LN_k(x + Σ_{u in sub-layer k} a_{u,v} + c_k)           (LN statistics recomputed on x)
    pre-LN:    x <- x + Σ_{u in sub-layer k} a_{u,v} + c_k

with c_k = b^O for an attention sub-layer and 0 for an FFN one. The input v reads x_v = x (post-LN) or
x_v = LN_v(x) (pre-LN: the LayerNorm v's sub-layer applies first; for "kv" and the logits, the stack's final
LayerNorm). Each node then computes its output from its private input(s) with the model's weights: head h of
attention block A, o_h = softmax((x_q W^Q_h + b^Q_h)(x_kv W^K_h + b^K_h)^T / sqrt(d_k)) (x_kv W^V_h + b^V_h) W^O_h
(causal for decoder self-attention; x_kv = x_q but for cross heads), an FFN node o = FFN(x_v), the logits
lm_head(x_logits). Sources are single sentences without padding.

The two ends are exact (tests check both to 1e-5, post-LN and pre-LN): with every mask 1 every a_{u,v} = o_u, each
private stream is the clean run's stream and the logits are the clean run's; with every mask 0 every a_{u,v} =
o'_u, so by induction over the nodes every o_u = o'_u and the logits are the corrupted run's.

3. Metric and scores
--------------------
The metric M is teacher-forced on one decoder input (by default the model's translation of the clean source):
either log p(translation | source), or the logit difference logit[target] - logit[contrast] at one decoder
position. The clean and corrupted sources have the same number of tokens (or see section 6: mean ablation).

    EAP        s_e = dM/dm_e at m = 1           (= (o_u - o'_u) . dM/da_{u,v}: one backward pass for every edge)
    EAP-IG     s_e = (1/n) Σ_{j=1..n} dM/dm_e at m = (j/n) 1     (the n steps in the batch; times the span 1)

s_e is a first-order estimate of M(clean) - M(edge e alone corrupted). EAP-IG here integrates the gradient along
the straight path of the masks from the empty graph to the full one, all edges together (integrated gradients on
the masks); Hanna et al.'s EAP-IG proper interpolates the input embeddings instead.

4. Circuits
-----------
A circuit of k edges is either (`circuit=`)

    "top"        the k edges of largest |s_e|, wherever they are;
    "connected"  grown greedily from the logits backwards: start with the logits as the only reached node, and
                 k times keep the edge of largest |s_e| among those whose downstream node is reached, then mark
                 its upstream node reached. Every kept edge lies on a path of kept edges to the logits.

Both are prefixes of one order of all the edges (`EdgeScores.order(circuit)`; every node of the graph reaches the
logits, so the connected order holds every edge too), and the k-th circuit is its first k edges. A top-k edge
whose downstream node feeds nothing kept changes no logit; one whose upstream node reads nothing of the clean
source (no kept path from the encoder embedding: the decoder embedding is the same in both runs) carries the
corrupted value o'_u, so it changes nothing either. `on_paths` says which kept edges lie on a path to the logits
and which on a path from the source.

Its faithfulness is measured by a real edge-level intervention, the graph forward with mask 1 on the circuit's
edges and 0 elsewhere:

    faithfulness(k) = (M(circuit_k) - M(corrupted)) / (M(clean) - M(corrupted))

so the full graph is 1 and the empty graph 0. `faithfulness_curve` runs one batch row per k.

5. Over a set of pairs
----------------------
`mean_edge_attribution` scores the edges on each of many tasks (clean and corrupted sources, each with its own
translation, target, contrast and position; one backward pass per task) and averages the scores, s_e = mean over
the pairs of s_e(pair), in the metric's units. Its circuits are ranked by those means, and
`faithfulness_curve` on it runs every circuit on every pair and normalises the means:

    faithfulness(k) = (mean M(circuit_k) - mean M(corrupted)) / (mean M(clean) - mean M(corrupted))

(`per_pair` keeps each pair's own normalised value too; a pair with M(clean) close to M(corrupted) makes its own
value large, the mean-normalised one does not).

6. Mean ablation
----------------
Without a corrupted source (`make_task(..., corrupted=None, references=R)`), each node's "corrupted" value o'_u is
its mean output over a set R of reference sources r_1 .. r_n (any token lengths, e.g. the first validation
sentences), each run through the model with the decoder teacher-forced on the task's own decoder input
y = <start> y_1 .. y_{T-1}:

    decoder side (dec emb, dec-self and cross heads, dec FFNs):   o'_u[t] = (1/n) Σ_i o_u(r_i, y)[t]     t = 1..T
    encoder side (enc emb, enc heads, enc FFNs):                   o'_u[s] = (1/N) Σ_i Σ_{s'=1..|r_i|} o_u(r_i)[s']

with N = Σ_i |r_i| the number of reference tokens: the encoder nodes get one d-vector each, the mean over the
references and their positions (their lengths differ, and the clean source's position s has no counterpart in
them), repeated at every position s = 1..S of the clean source; the decoder nodes keep one vector per decoder
position, since every run reads the same T decoder tokens. (The decoder embedding reads only y, so its mean is its
clean output, as with a corrupted source.) The references run as one right-padded batch, the padding masked in
attention and left out of the encoder means. The private streams of section 2 are unchanged, with these o'_u:
every mask 1 is still exactly the clean run, and every mask 0 is the mean-ablated graph, every node reading only
the means, which defines M(corrupted) here, since there is no corrupted run (it is not the model on any one
input). Scores, circuits and faithfulness (sections 3 to 5) are as before, against that empty graph.
"""

from __future__ import annotations

import heapq
import json
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .heads import STACKS, attention_module, core_model, family_record, head_label, layer_label, stack_layers
from .hooks import HookedModel, attention_site, site_name
from .inputs import device_of, make_example, source_ids, tokens_of

METHODS = ("eap", "eap-ig")
CIRCUITS = ("top", "connected")
STACK_TAGS = {"encoder": "enc", "decoder": "dec"}


# --- the graph -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    name: str  # "enc emb", "enc L1 H2", "cross L2 H1", "dec L1 FFN", "logits"
    kind: str  # "embed", "head", "ffn", "logits"
    stack: str  # "encoder" or "decoder"
    family: str | None = None  # heads only: "encoder", "decoder", "cross"
    layer: int | None = None
    head: int | None = None


@dataclass
class _Block:
    """One sub-layer of a stack, in the model's order: its nodes, the constant it adds, its post-LN norm."""

    nodes: list  # node indices
    const: torch.Tensor | None  # b^O (attention) or None (FFN: b_2 is in the node)
    norm: torch.nn.Module  # the LayerNorm after the residual sum (applied by the walk in post-LN only)


@dataclass
class _Group:
    """Inputs that read the same point of one stack: the k first sub-layers done, then `norm` (pre-LN)."""

    kind: str  # "self" (heads of one layer), "q" (cross heads of one layer), "kv" (all cross heads), "ffn", "logits"
    stack: str
    k: int  # how many sub-layers of `stack` come before this point
    layer: int | None
    readers: list  # node indices, one input each
    upstream: list  # node indices
    norm: torch.nn.Module | None  # pre-LN: the LayerNorm applied to the stream before reading it
    start: int = 0  # its edges are edges[start:start + len(upstream) * len(readers)], upstream-major


class EdgeGraph:
    """The nodes and edges of a model's computational graph (module docstring, section 1)."""

    def __init__(self, model):
        core = core_model(model)
        self.pre_ln = bool(core.config.normalize_before)
        self.nodes: list[Node] = []
        self.blocks = {"encoder": [], "decoder": []}
        self.groups: list[_Group] = []
        self.embed = {stack: self._add(Node(f"{STACK_TAGS[stack]} emb", "embed", stack)) for stack in self.blocks}
        self._build_encoder(model)
        cross = [
            self._add(Node(head_label("cross", l, h), "head", "decoder", "cross", l, h))
            for l in range(len(stack_layers(model, "decoder")))
            for h in range(core.decoder.layers[l].encoder_attn.num_heads)
        ]
        self._group("kv", "encoder", len(self.blocks["encoder"]), None, cross, core.encoder.layer_norm)
        self._build_decoder(model, cross)
        self.logits = self._add(Node("logits", "logits", "decoder"))
        self._group("logits", "decoder", len(self.blocks["decoder"]), None, [self.logits], core.decoder.layer_norm)
        self.edges: list[tuple[int, int, str]] = []  # (upstream node, downstream node, input "in" / "q" / "kv")
        for group in self.groups:
            group.start = len(self.edges)
            port = {"q": "q", "kv": "kv"}.get(group.kind, "in")
            self.edges += [(u, r, port) for u in group.upstream for r in group.readers]

    def _add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _group(self, kind, stack, k, layer, readers, norm):
        upstream = [self.embed[stack]] + [u for block in self.blocks[stack][:k] for u in block.nodes]
        self.groups.append(_Group(kind, stack, k, layer, readers, upstream, norm if self.pre_ln else None))

    def _heads(self, family, layer, attn):
        stack = family_record(family).stack
        return [
            self._add(Node(head_label(family, layer, h), "head", stack, family, layer, h))
            for h in range(attn.num_heads)
        ]

    def _ffn(self, stack, layer):
        return self._add(Node(f"{layer_label(STACK_TAGS[stack], layer)} FFN", "ffn", stack, None, layer))

    def _build_encoder(self, model):
        blocks = self.blocks["encoder"]
        for l, layer in enumerate(stack_layers(model, "encoder")):
            heads = self._heads("encoder", l, layer.self_attn)
            self._group("self", "encoder", len(blocks), l, heads, layer.self_attn_layer_norm)
            blocks.append(_Block(heads, layer.self_attn.out_proj.bias, layer.self_attn_layer_norm))
            ffn = self._ffn("encoder", l)
            self._group("ffn", "encoder", len(blocks), l, [ffn], layer.final_layer_norm)
            blocks.append(_Block([ffn], None, layer.final_layer_norm))

    def _build_decoder(self, model, cross):
        blocks = self.blocks["decoder"]
        for l, layer in enumerate(stack_layers(model, "decoder")):
            heads = self._heads("decoder", l, layer.self_attn)
            self._group("self", "decoder", len(blocks), l, heads, layer.self_attn_layer_norm)
            blocks.append(_Block(heads, layer.self_attn.out_proj.bias, layer.self_attn_layer_norm))
            mine = [i for i in cross if self.nodes[i].layer == l]
            self._group("q", "decoder", len(blocks), l, mine, layer.encoder_attn_layer_norm)
            blocks.append(_Block(mine, layer.encoder_attn.out_proj.bias, layer.encoder_attn_layer_norm))
            ffn = self._ffn("decoder", l)
            self._group("ffn", "decoder", len(blocks), l, [ffn], layer.final_layer_norm)
            blocks.append(_Block([ffn], None, layer.final_layer_norm))

    def __len__(self) -> int:
        return len(self.edges)

    def edge_label(self, index: int) -> str:
        """ "enc L1 H2 -> cross L3 H1 (kv)"; the input is named only for cross heads."""
        up, down, port = self.edges[index]
        suffix = f" ({port})" if port != "in" else ""
        return f"{self.nodes[up].name} -> {self.nodes[down].name}{suffix}"

    @property
    def labels(self) -> list[str]:
        return [self.edge_label(i) for i in range(len(self.edges))]


# --- the task: two sources and a metric --------------------------------------------------------------------------
@dataclass
class CircuitTask:
    """Clean and corrupted source ids (same length), or clean ids and the references whose mean output ablates each
    node (section 6); the teacher-forced decoder input and the metric."""

    clean_ids: list[int]
    corrupted_ids: list[int] | None  # None: mean ablation over `reference_ids`
    decoder_input_ids: list[int]  # <start> y_1 .. y_{n-1}
    labels: list[int]  # y_1 .. y_n: position t predicts labels[t]
    target: int | None = None  # logit difference metric: logit[target] - logit[contrast] at `position`
    contrast: int | None = None
    position: int | None = None
    reference_ids: list[list[int]] | None = None  # mean ablation: the reference sources (any token lengths)

    @property
    def ablation(self) -> str:
        if self.reference_ids is None:
            return "corrupted source"
        return f"mean over {len(self.reference_ids)} reference sources"

    @property
    def metric_name(self) -> str:
        if self.target is None:
            return "log p(translation | source)"
        return f"logit[{self.target}] - logit[{self.contrast}] at decoder position {self.position}"

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, T, V) logits -> (N,) metric values."""
        logits = logits.float()
        if self.target is None:
            labels = torch.tensor(self.labels, device=logits.device)
            return logits.log_softmax(-1).gather(-1, labels.expand(logits.shape[0], -1)[..., None]).sum((-2, -1))
        at = logits[:, self.position]  # (N, V)
        return at[:, self.target] - at[:, self.contrast]


def token_id(tokenizer, token, what: str = "token") -> int:
    """A target or contrast token -> its id: an id as it is, a word the tokenizer reads as one token ("Mann"),
    or a token of the vocabulary as the tokenizer spells it ("▁Mann")."""
    if isinstance(token, int) or (torch.is_tensor(token) and token.numel() == 1):
        return int(token)
    if tokenizer is None:
        raise ValueError(f"the {what} {token!r} is a text: pass a token id, or a tokenizer.")
    text = str(token).strip()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) == 1:
        return int(ids[0])
    vocab = tokenizer.get_vocab()
    if text in vocab:
        return int(vocab[text])
    raise ValueError(
        f"the {what} {text!r} is {len(ids)} tokens {tokens_of(tokenizer, ids)}; it must be one: a word "
        "the model reads as one token, or a token of its vocabulary as the translations show it."
    )


def make_task(
    model,
    clean,
    corrupted=None,
    translation=None,
    *,
    tokenizer=None,
    target=None,
    contrast=None,
    position: int = -1,
    references: Sequence | None = None,
    **generate_kwargs,
) -> CircuitTask:
    """Sources (texts or ids) and a metric -> `CircuitTask`. With `target` and `contrast` (ids, or one-token texts)
    the metric is their logit difference at decoder `position` (negative: counted from the end), else
    log p(translation | source). `translation`: text or ids; None is the model's translation of `clean`.
    Either a `corrupted` source of the clean one's token length, or (corrupted=None) `references`, sources (texts or
    ids, any token lengths) whose mean node outputs ablate the nodes (mean ablation, section 6)."""
    if corrupted is not None and references is not None:
        raise ValueError("pass either a corrupted source or `references` (mean ablation), not both.")
    if corrupted is None and references is None:
        raise ValueError(
            "no corrupted source: pass one of the clean one's token length, or `references`, sources "
            "whose mean node outputs ablate the nodes (mean ablation)."
        )
    clean_ids = source_ids(model, tokenizer, clean)
    corrupted_ids = reference_ids = None
    if references is not None:
        one = isinstance(references, str) or (torch.is_tensor(references) and references.dim() < 2)
        if one or (len(references) and isinstance(references[0], int)):
            raise ValueError("`references` is a list of sources (texts or ids), not one source.")
        reference_ids = [source_ids(model, tokenizer, r) for r in references]
        if not reference_ids:
            raise ValueError("mean ablation needs at least one reference source; `references` is empty.")
    else:
        corrupted_ids = source_ids(model, tokenizer, corrupted)
    if corrupted_ids is not None and len(clean_ids) != len(corrupted_ids):
        raise ValueError(
            f"the clean and corrupted sources must have the same number of tokens, since each node's clean and "
            f"corrupted outputs are mixed position by position, but the clean one has {len(clean_ids)} "
            f"{tokens_of(tokenizer, clean_ids)} and the corrupted one {len(corrupted_ids)} "
            f"{tokens_of(tokenizer, corrupted_ids)}. Pick a corrupted sentence that differs in words of the same "
            "token length (e.g. 'man' -> 'woman' if both are one token), or use mean ablation (`references`)."
        )
    example = make_example(model, tokenizer, clean_ids, translation, **generate_kwargs)
    task = CircuitTask(clean_ids, corrupted_ids, example.decoder_input_ids, example.labels, reference_ids=reference_ids)
    if (target is None) != (contrast is None):
        raise ValueError("a logit difference needs both `target` and `contrast`; pass neither for log p(translation).")
    if target is not None:
        n = len(task.decoder_input_ids)
        if not -n <= position < n:
            raise ValueError(f"decoder position {position} does not exist: the decoder input has {n} positions.")
        task.target, task.contrast = token_id(tokenizer, target, "target"), token_id(tokenizer, contrast, "contrast")
        task.position = position % n
    return task


# --- the mask-parameterised forward ------------------------------------------------------------------------------
def _head_proj(linear: torch.nn.Linear, x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Head r's slice of `linear` applied to reader r's stream: (N, h, L, d) -> (N, h, L, d_k)."""
    d = linear.in_features
    weight = linear.weight.view(num_heads, -1, d)  # (h, d_k, d)
    bias = linear.bias.view(num_heads, 1, -1)  # (h, 1, d_k)
    return torch.einsum("nrld,red->nrle", x, weight) + bias


def _head_outputs(attn, x_q: torch.Tensor, x_kv: torch.Tensor, causal: bool) -> torch.Tensor:
    """Every head of `attn` on its own private input(s): (N, h, T, d), (N, h, S, d) -> o_h (N, h, T, d)."""
    h = attn.num_heads
    q, k, v = (_head_proj(attn.q_proj, x_q, h), _head_proj(attn.k_proj, x_kv, h), _head_proj(attn.v_proj, x_kv, h))
    scores = torch.matmul(q, k.transpose(-1, -2)) * attn.scaling  # (N, h, T, S)
    if causal:
        future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).triu(1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    z = torch.matmul(scores.softmax(-1, dtype=torch.float32).to(q.dtype), v)  # (N, h, T, d_k)
    w_o = attn.out_proj.weight.view(attn.out_proj.out_features, h, -1)  # (d, h, d_k)
    return torch.einsum("nrte,dre->nrtd", z, w_o)


class GraphForward:
    """The model as a function of the edge masks (module docstring, section 2), for one `CircuitTask`.

    `logits(masks)` takes masks (N, E) in the order of `graph.edges` and returns (N, T, V); `metric(masks)` (N,).
    The clean and corrupted runs are made (and their node outputs cached) once, here. Under mean ablation
    (section 6) `corrupted` holds each node's mean output over the references and `corrupted_logits` are the graph's
    logits with every mask 0.
    """

    def __init__(self, model, task: CircuitTask):
        model.eval()
        self.model, self.task, self.graph = model, task, EdgeGraph(model)
        self.core = core_model(model)
        device = device_of(model)
        self.decoder_input = torch.tensor([task.decoder_input_ids], device=device)
        with torch.no_grad():
            self.clean_logits, self.clean_embed = self._run([task.clean_ids])[:2]
            if task.reference_ids is None:
                self.corrupted_logits, _, self.corrupted = self._run([task.corrupted_ids])
            else:
                self.corrupted = self._mean_outputs(task.reference_ids, len(task.clean_ids))
                self.corrupted_logits = self.logits(torch.zeros(1, len(self.graph), device=device))

    def _mean_outputs(self, references: list[list[int]], length: int) -> dict:
        """Mean ablation (section 6): {node: mean output}, (1, T, d) per decoder position for the decoder-side
        nodes, (1, length, d), one vector over references and positions broadcast, for the encoder-side ones. The
        references run in one batch, right-padded, the padding masked (and left out of the encoder means)."""
        width = max(len(r) for r in references)
        pad = self.core.config.pad_token_id or 0
        ids = [r + [pad] * (width - len(r)) for r in references]
        real = torch.tensor(
            [[1] * len(r) + [0] * (width - len(r)) for r in references], device=self.decoder_input.device
        )  # (B, S)
        outputs = self._run(ids, real)[2]  # node -> (B, S or T, d)
        means = {}
        for node, out in outputs.items():
            if self.graph.nodes[node].stack == "encoder":
                w = real[..., None].to(out.dtype)
                means[node] = ((out * w).sum((0, 1)) / w.sum()).expand(1, length, -1)
            elif node == self.graph.embed["decoder"]:
                means[node] = out[:1]  # the same in every row (it reads only y): exactly its clean output
            else:
                means[node] = out.mean(0, keepdim=True)
        return means

    def _run(self, ids: list[list[int]], attention_mask: torch.Tensor | None = None):
        """One model run of a batch of B sources (of one length; `attention_mask` marks padding) on the decoder
        input: (logits (B, T, V), {node: embedding}, {node: output (B, L, d)}) from the hook sites."""
        graph = self.graph
        names = [site_name(s, "resid_pre", 0) for s in STACKS]
        for node in graph.nodes:
            if node.kind == "head" and node.head == 0:
                names.append(attention_site(node.family, node.layer, "z"))
            elif node.kind == "ffn":
                names.append(site_name(node.stack, "ffn.out", node.layer))
        input_ids = torch.tensor(ids, device=self.decoder_input.device)
        out, cache = HookedModel(self.model).run_with_cache(
            names,
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=self.decoder_input.expand(len(ids), -1),
            use_cache=False,
        )
        outputs = {graph.embed[s]: cache[site_name(s, "resid_pre", 0)] for s in STACKS}
        embed = dict(outputs)
        for i, node in enumerate(graph.nodes):
            if node.kind == "head":
                attn = attention_module(self.model, node.family, node.layer)
                z = cache[attention_site(node.family, node.layer, "z")][:, :, node.head]  # (B, L, d_k)
                w_o = attn.out_proj.weight.view(attn.out_proj.out_features, attn.num_heads, -1)[:, node.head]
                outputs[i] = z @ w_o.T  # (B, L, d)
            elif node.kind == "ffn":
                outputs[i] = cache[site_name(node.stack, "ffn.out", node.layer)]
        return out.logits, embed, outputs

    def _streams(self, group: _Group, masks: torch.Tensor, current: dict) -> torch.Tensor:
        """The private input stream of each reader of `group`: (N, R, L, d)."""
        n, U, R = masks.shape[0], len(group.upstream), len(group.readers)
        m = masks[:, group.start : group.start + U * R].view(n, U, R)  # upstream-major, as in graph.edges
        mixed = {}
        for i, u in enumerate(group.upstream):
            corrupted = self.corrupted[u][:, None]  # (1, 1, L, d)
            mixed[u] = corrupted + m[:, i, :, None, None] * (current[u][:, None] - corrupted)  # (N, R, L, d)
        x = mixed[self.graph.embed[group.stack]]
        for block in self.graph.blocks[group.stack][: group.k]:
            x = x + sum(mixed[u] for u in block.nodes)
            if block.const is not None:
                x = x + block.const
            if not self.graph.pre_ln:
                x = block.norm(x)
        return x if group.norm is None else group.norm(x)

    def logits(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks (N, E) in [0, 1] -> logits (N, T, V)."""
        graph = self.graph
        if masks.dim() != 2 or masks.shape[1] != len(graph):
            raise ValueError(f"masks must be (N, {len(graph)}), one per edge; got {tuple(masks.shape)}.")
        n = masks.shape[0]
        current = {i: e.expand(n, -1, -1) for i, e in self.clean_embed.items()}  # node -> (N, L, d)
        kv = {}  # cross head -> its private encoder output (N, S, d)
        logits = None
        for group in graph.groups:
            x = self._streams(group, masks, current)  # (N, R, L, d)
            layers = stack_layers(self.model, group.stack)
            if group.kind == "self":
                attn = layers[group.layer].self_attn
                out = _head_outputs(attn, x, x, causal=group.stack == "decoder")
            elif group.kind == "q":
                attn = layers[group.layer].encoder_attn
                x_kv = torch.stack([kv[r] for r in group.readers], 1)  # (N, h, S, d)
                out = _head_outputs(attn, x, x_kv, causal=False)
            elif group.kind == "kv":
                kv.update({r: x[:, j] for j, r in enumerate(group.readers)})
                continue
            elif group.kind == "ffn":
                out = layers[group.layer].ffn(x)
            else:
                logits = self.model.lm_head(x[:, 0])
                continue
            current.update({r: out[:, j] for j, r in enumerate(group.readers)})
        return logits

    def metric(self, masks: torch.Tensor) -> torch.Tensor:
        return self.task.metric(self.logits(masks))

    def ones(self, n: int = 1) -> torch.Tensor:
        return torch.ones(n, len(self.graph), device=self.decoder_input.device)


# --- scores -------------------------------------------------------------------------------------------------------
def _check_circuit(circuit: str) -> str:
    if circuit not in CIRCUITS:
        raise ValueError(f"unknown circuit {circuit!r}: use one of {', '.join(CIRCUITS)}.")
    return circuit


def connected_order(graph: EdgeGraph, scores: torch.Tensor) -> torch.Tensor:
    """Every edge, in the order the greedy connected circuit takes them (module docstring, section 4): at each step
    the edge of largest |score| whose downstream node is the logits or the upstream node of an edge taken before
    (ties: graph order)."""
    into: dict[int, list[int]] = {}
    for i, (_, down, _) in enumerate(graph.edges):
        into.setdefault(down, []).append(i)
    size = scores.detach().abs().tolist()
    frontier = [(-size[i], i) for i in into.get(graph.logits, [])]
    heapq.heapify(frontier)
    reached, order = {graph.logits}, []
    while frontier:
        _, i = heapq.heappop(frontier)
        order.append(i)
        up = graph.edges[i][0]
        if up not in reached:
            reached.add(up)
            for j in into.get(up, []):
                heapq.heappush(frontier, (-size[j], j))
    if len(order) != len(graph.edges):  # cannot happen for an EdgeGraph: every node writes to a later reader
        raise ValueError(f"{len(graph.edges) - len(order)} edges do not reach the logits.")
    return torch.tensor(order, dtype=torch.long)


def on_paths(graph: EdgeGraph, kept) -> tuple[list[bool], list[bool]]:
    """For the edges `kept` (indices): whether each lies on a path of kept edges to the logits, and whether each
    lies on a path of kept edges from the encoder embedding (the only node whose output differs between the runs
    without any edge kept; under mean ablation too, the decoder embedding's mean being its clean output)."""
    kept = [int(i) for i in kept]
    to_logits, from_source = {graph.logits}, {graph.embed["encoder"]}
    changed = True
    while changed:  # a fixed point; circuits are small, and edges are in topological order, so it ends fast
        changed = False
        for i in kept:
            up, down, _ = graph.edges[i]
            if down in to_logits and up not in to_logits:
                to_logits.add(up)
                changed = True
            if up in from_source and down not in from_source:
                from_source.add(down)
                changed = True
    return ([graph.edges[i][1] in to_logits for i in kept], [graph.edges[i][0] in from_source for i in kept])


class _Ranked:
    """Ranking of `self.scores` over `self.graph.edges`: shared by EdgeScores and MeanEdgeScores."""

    graph: EdgeGraph
    scores: torch.Tensor

    def order(self, circuit: str = "top") -> torch.Tensor:
        """Edge indices in the order circuits take them: "top" by |score|, largest first (ties: graph order);
        "connected" the greedy order from the logits backwards (`connected_order`)."""
        if _check_circuit(circuit) == "connected":
            return connected_order(self.graph, self.scores)
        return torch.sort(self.scores.abs(), descending=True, stable=True).indices

    def top(self, k: int, circuit: str = "top") -> list[tuple[str, float]]:
        """The circuit of k edges: [(label, score)], in the order taken (for "top", largest |score| first)."""
        order = self.order(circuit)[:k]
        return [(self.graph.edge_label(i), float(self.scores[i])) for i in order.tolist()]


@dataclass
class EdgeScores(_Ranked):
    """One score per edge of `graph` (aligned with `graph.edges`), and the task they were computed on."""

    graph: EdgeGraph
    scores: torch.Tensor  # (E,)
    method: str
    steps: int
    task: CircuitTask
    clean_metric: float
    corrupted_metric: float

    def to_dict(self, k: int | None = None) -> dict:
        edges = [{"edge": label, "score": score} for label, score in self.top(len(self.scores) if k is None else k)]
        return {
            "method": self.method,
            "steps": self.steps,
            "metric": self.task.metric_name,
            "ablation": self.task.ablation,
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "num_edges": len(self.scores),
            "edges": edges,
        }

    def to_json(self, k: int | None = None) -> str:
        return json.dumps(self.to_dict(k))


def _alphas(method: str, steps: int) -> list[float]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: use one of {', '.join(METHODS)}.")
    if method == "eap":
        return [1.0]
    if steps < 1:
        raise ValueError(f"EAP-IG needs at least one step, got steps={steps}.")
    return [j / steps for j in range(1, steps + 1)]


def _task_scores(model, task: CircuitTask, alphas: list[float]):
    """(scores (E,), graph, clean metric, corrupted metric) of one task."""
    forward = GraphForward(model, task)
    masks = (torch.tensor(alphas, device=forward.decoder_input.device)[:, None] * forward.ones()).requires_grad_()
    with torch.enable_grad():
        forward.metric(masks).sum().backward()  # rows are independent: each row's gradient is its own
    scores = masks.grad.mean(0).detach()  # (E,), times the mask span 1
    return (
        scores,
        forward.graph,
        float(task.metric(forward.clean_logits)[0]),
        float(task.metric(forward.corrupted_logits)[0]),
    )


def edge_attribution(
    model, clean, corrupted=None, translation=None, *, method: str = "eap", steps: int = 5, **task_args
) -> EdgeScores:
    """Score every edge: EAP (the gradient of the metric w.r.t. the edge masks at the clean run) or EAP-IG (the
    gradient averaged over masks j/steps, j = 1..steps, one batch row each). The other arguments are `make_task`'s
    (a corrupted source, or `references` for mean ablation; `tokenizer`, `target`, `contrast`, `position`,
    generation settings)."""
    alphas = _alphas(method, steps)
    task = make_task(model, clean, corrupted, translation, **task_args)
    scores, graph, clean_metric, corrupted_metric = _task_scores(model, task, alphas)
    return EdgeScores(graph, scores, method, len(alphas), task, clean_metric, corrupted_metric)


@dataclass
class MeanEdgeScores(_Ranked):
    """Edge scores averaged over tasks (module docstring, section 5): `scores` is the mean of `per_pair`."""

    graph: EdgeGraph
    scores: torch.Tensor  # (E,)
    method: str
    steps: int
    tasks: list  # CircuitTask, one per pair
    clean_metrics: list[float]
    corrupted_metrics: list[float]
    per_pair: torch.Tensor  # (P, E)
    seconds: float = 0.0  # the time the scores took, all pairs

    @property
    def clean_metric(self) -> float:
        return sum(self.clean_metrics) / len(self.clean_metrics)

    @property
    def corrupted_metric(self) -> float:
        return sum(self.corrupted_metrics) / len(self.corrupted_metrics)

    def to_dict(self, k: int | None = None) -> dict:
        edges = [{"edge": label, "score": score} for label, score in self.top(len(self.scores) if k is None else k)]
        return {
            "method": self.method,
            "steps": self.steps,
            "pairs": len(self.tasks),
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "num_edges": len(self.scores),
            "edges": edges,
        }


def mean_edge_attribution(
    model, tasks: Sequence[CircuitTask], *, method: str = "eap", steps: int = 5
) -> MeanEdgeScores:
    """Score every edge on each task (as `edge_attribution`, one backward pass per task) and average the scores."""
    alphas = _alphas(method, steps)
    tasks = list(tasks)
    if not tasks:
        raise ValueError("no tasks to score: pass at least one CircuitTask (make_task).")
    start = time.perf_counter()
    rows, clean, corrupted, graph = [], [], [], None
    for task in tasks:
        scores, graph, c, x = _task_scores(model, task, alphas)
        rows.append(scores)
        clean.append(c)
        corrupted.append(x)
    per_pair = torch.stack(rows)
    return MeanEdgeScores(
        graph, per_pair.mean(0), method, len(alphas), tasks, clean, corrupted, per_pair, time.perf_counter() - start
    )


# --- circuits --------------------------------------------------------------------------------------------------
@dataclass
class FaithfulnessCurve:
    ks: list[int]
    faithfulness: list[float]  # (M(circuit_k) - M(corrupted)) / (M(clean) - M(corrupted)), one per k
    clean_metric: float
    corrupted_metric: float
    threshold: float = 0.8
    smallest_k: int | None = field(default=None)  # the smallest k in `ks` reaching `threshold` (None: none does)
    circuit: str = "top"
    pairs: int = 1  # over a set of pairs: the metrics are means, `faithfulness` normalised on them
    per_pair: list | None = None  # over a set of pairs: each pair's own faithfulness, one list per pair
    circuit_metrics: list[float] | None = None  # M(circuit_k) (mean over the pairs), one per k

    def to_dict(self) -> dict:
        return {
            "ks": self.ks,
            "faithfulness": self.faithfulness,
            "clean_metric": self.clean_metric,
            "corrupted_metric": self.corrupted_metric,
            "threshold": self.threshold,
            "smallest_k": self.smallest_k,
            "circuit": self.circuit,
            "pairs": self.pairs,
            "circuit_metrics": self.circuit_metrics,
            "per_pair": self.per_pair,
        }


def circuit_masks(scores, ks: Sequence[int], circuit: str = "top") -> torch.Tensor:
    """One row per k: mask 1 on the circuit's k edges (`circuit`: "top" or "connected"), 0 elsewhere. (len(ks), E)."""
    order = scores.order(circuit)
    masks = torch.zeros(len(ks), len(order))
    for row, k in enumerate(ks):
        if not 0 <= int(k) <= len(order):
            raise ValueError(f"k={k} edges: the graph has {len(order)} (0..{len(order)}).")
        masks[row, order[: int(k)]] = 1.0
    return masks


def _normalised(m: list[float], clean: float, corrupted: float, what: str) -> list[float]:
    if abs(clean - corrupted) < 1e-6:
        raise ValueError(
            f"the metric is the same on both sources{what} ({clean:.6g} and {corrupted:.6g}): there "
            "is nothing to explain. Pick a corrupted source that changes it."
        )
    return [(v - corrupted) / (clean - corrupted) + 0.0 for v in m]  # + 0.0: no -0.0 in the JSON


@torch.no_grad()
def faithfulness_curve(
    model, scores, ks: Sequence[int], threshold: float = 0.8, circuit: str = "top"
) -> FaithfulnessCurve:
    """Faithfulness of the circuit of k edges (`circuit`: "top" or "connected", section 4) for every k in `ks`:
    one batched graph forward per task, one row per k, plus the full and the empty graph (the two ends, from the
    same pass, so that they are exactly 1 and 0). `scores`: EdgeScores (one task) or MeanEdgeScores (the means
    over its tasks are normalised, section 5)."""
    ks = [int(k) for k in ks]
    circuit = _check_circuit(circuit)
    rows = torch.cat(
        [circuit_masks(scores, ks, circuit), torch.ones(1, len(scores.scores)), torch.zeros(1, len(scores.scores))]
    )
    tasks = scores.tasks if isinstance(scores, MeanEdgeScores) else [scores.task]
    values = []  # (P, len(ks) + 2)
    for task in tasks:
        forward = GraphForward(model, task)
        values.append(forward.metric(rows.to(forward.decoder_input.device)).tolist())
    means = [sum(column) / len(column) for column in zip(*values)]
    *m, clean, corrupted = means
    faithful = _normalised(m, clean, corrupted, "" if len(tasks) == 1 else " (means over the pairs)")
    smallest = min((k for k, f in zip(ks, faithful) if f >= threshold), default=None)
    per_pair = None
    if isinstance(scores, MeanEdgeScores):
        per_pair = [
            [(v - row[-1]) / (row[-2] - row[-1]) + 0.0 if abs(row[-2] - row[-1]) >= 1e-6 else None for v in row[:-2]]
            for row in values
        ]
    return FaithfulnessCurve(ks, faithful, clean, corrupted, threshold, smallest, circuit, len(tasks), per_pair, m)
