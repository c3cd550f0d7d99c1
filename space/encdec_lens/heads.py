"""The three families of attention heads, their names, and where they live in the model (by HF module names).

    family    where                                   queries         keys
    encoder   encoder.layers[l].self_attn             source tokens   source tokens
    decoder   decoder.layers[l].self_attn (masked)    target tokens   target tokens
    cross     decoder.layers[l].encoder_attn          target tokens   source tokens

A head is the tuple `(family, layer, head)`, layers and heads counted from 0. People read and write heads by
their label, counted from 1: "enc L1 H2", "dec-self L3 H1", "cross L2 H4" (`head_label`, `parse_head_label`).
This module is the one place that defines the families: one `Family` record each (`FAMILY_RECORDS`), and
the tables FAMILIES, FAMILY_TITLES, FAMILY_TAGS and FAMILY_SIDES read from them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Family:
    """One family of attention heads: how people name it, where its attention lives, what its pattern's axes are.

    Every table about families (titles, tags, sides, module names) is read from these records.
    """

    name: str  # how the API names it: "encoder", "decoder", "cross"
    tag: str  # how its head labels begin: "enc", "dec-self", "cross"
    title: str  # how pickers and headings name it
    stack: str  # the stack whose layers hold its attention: "encoder" or "decoder"
    attention: str  # that attention module's name in each layer: "self_attn" or "encoder_attn"
    queries: str  # the tokens labelling its pattern's rows: "source" or "target"
    keys: str  # the tokens labelling its columns
    causal: bool  # a query sees no later key (masked decoder self-attention)

    @property
    def layer_norm(self) -> str:
        """The name of its sub-layer's LayerNorm in each layer ("self_attn_layer_norm", ...)."""
        return f"{self.attention}_layer_norm"


FAMILY_RECORDS = MappingProxyType(
    {
        f.name: f
        for f in (
            Family("encoder", "enc", "Encoder self-attention", "encoder", "self_attn", "source", "source", False),
            Family(
                "decoder",
                "dec-self",
                "Decoder self-attention (masked)",
                "decoder",
                "self_attn",
                "target",
                "target",
                True,
            ),
            Family(
                "cross",
                "cross",
                "Cross-attention (decoder → encoder)",
                "decoder",
                "encoder_attn",
                "target",
                "source",
                False,
            ),
        )
    }
)
FAMILIES = tuple(FAMILY_RECORDS)
STACKS = ("encoder", "decoder")
FAMILY_TITLES = {name: f.title for name, f in FAMILY_RECORDS.items()}
FAMILY_TAGS = {name: f.tag for name, f in FAMILY_RECORDS.items()}
FAMILY_SIDES = {name: (f.queries, f.keys) for name, f in FAMILY_RECORDS.items()}  # (rows, columns)

_TAG_FAMILY = {f.tag: name for name, f in FAMILY_RECORDS.items()}
_LABEL = re.compile(rf"^\s*({'|'.join(map(re.escape, _TAG_FAMILY))})\s+L(\d+)\s+H(\d+)\s*$", re.IGNORECASE)

Head = tuple  # (family: str, layer: int, head: int)


def check_family(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown head family {family!r}: use one of {', '.join(FAMILIES)}.")
    return family


def family_record(family: str) -> Family:
    """The record of a family by its name ("cross" -> the cross-attention `Family`)."""
    return FAMILY_RECORDS[check_family(family)]


def stack_families(stack: str) -> tuple[Family, ...]:
    """The families whose attention is in `stack`, in the order of the sub-layers of each of its layers."""
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}: use 'encoder' or 'decoder'.")
    return tuple(f for f in FAMILY_RECORDS.values() if f.stack == stack)


def core_model(model):
    """The `TransformerModel` inside a `TransformerForConditionalGeneration` (or the model itself)."""
    return getattr(model, "model", model)


def stack_layers(model, stack: str):
    """The layers of the "encoder" or the "decoder" stack."""
    if stack not in STACKS:
        raise ValueError(f"unknown stack {stack!r}: use 'encoder' or 'decoder'.")
    return getattr(core_model(model), stack).layers


def attention_module(model, family: str, layer: int):
    """The attention module of one family and layer (it has q_proj, k_proj, v_proj, out_proj, num_heads)."""
    record = family_record(family)
    layers = stack_layers(model, record.stack)
    if not 0 <= int(layer) < len(layers):
        raise ValueError(f"{family} layer {layer} does not exist: the model has {len(layers)} (0..{len(layers) - 1}).")
    return getattr(layers[int(layer)], record.attention)


def grid_shape(model, family: str) -> tuple[int, int]:
    """(layers, heads) of one family."""
    return len(stack_layers(model, family_record(family).stack)), attention_module(model, family, 0).num_heads


def all_heads(model, families: Sequence[str] = FAMILIES) -> list[Head]:
    """Every head, in the deterministic order family (encoder, decoder, cross), layer, head."""
    for family in families:
        check_family(family)
    heads = []
    for family in FAMILIES:
        if family in families:
            n_layers, n_heads = grid_shape(model, family)
            heads += [(family, layer, head) for layer in range(n_layers) for head in range(n_heads)]
    return heads


def parse_head(spec) -> Head:
    """A head from ("cross", 1, 2), ["cross", 1, 2], {"family": "cross", "layer": 1, "head": 2} or "cross:1:2"
    (counted from 0), or from a label "cross L2 H3" (counted from 1)."""
    if isinstance(spec, str) and _LABEL.match(spec):
        return parse_head_label(spec)
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


def normalize_heads(model, heads: Iterable) -> list[Head]:
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


def layer_label(prefix: str, layer: int) -> str:
    """("ffn", 0) -> "ffn L1": a layer as people count it, from 1, after a name of what in it is meant."""
    return f"{prefix} L{layer + 1}"


def head_label(family: str, layer: int, head: int) -> str:
    """("cross", 0, 1) -> "cross L1 H2": how people (the Space, the API, the JSON) name a head."""
    return f"{layer_label(family_record(family).tag, layer)} H{head + 1}"


def parse_head_label(label: str) -> Head:
    """ "cross L1 H2" -> ("cross", 0, 1). Not checked against a model (`normalize_heads` does that)."""
    match = _LABEL.match(str(label))
    if match is None:
        raise ValueError(
            f"{str(label).strip()!r} is not a head label: write the family (enc, dec-self or cross), the layer "
            "and the head, counted from 1, e.g. 'cross L1 H2'."
        )
    return _TAG_FAMILY[match.group(1).lower()], int(match.group(2)) - 1, int(match.group(3)) - 1
