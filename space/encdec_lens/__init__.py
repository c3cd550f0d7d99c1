"""encdec_lens: circuits for an encoder-decoder Transformer (after TransformerLens), on the loaded HF model.

    from encdec_lens import HookedModel
    hooked = HookedModel(model)
    logits, cache = hooked.run_with_cache(names=["decoder.layers.0.encoder_attn.pattern"], input_ids=...,
                                          decoder_input_ids=...)

One hook mechanism (`HookedModel`: named sites, `run_with_hooks`, `run_with_cache`, hooks active only in the
calling context; `site_name` and `attention_site` name the sites); every analysis is built on it:

    interventions run the model with sites set to given values (patched, ablated), one batch row per set
    attention     AttentionData: every attention map of one sentence pair
    ablation      heads off (`ablate_heads`), `run_ablation`, `head_importance` (ablation and gradient)
    lens          the logit lens and the residual stream
    attribution   direct logit attribution of one target token's logit
    patching      activation patching between two source sentences (a preset of `run_interventions`)
    walkthrough   one head's arithmetic for one token, step by step
    circuit_discovery  edges between heads, FFNs and embeddings scored by EAP / EAP-IG; circuits and their
                  faithfulness by real edge-level interventions
    atlas         what every head does over a data set: roles (Voita et al.) and pruning curves (Michel et al.)
    plots         pictures as RGB arrays (needs matplotlib)

Heads are `(family, layer, head)` with family "encoder", "decoder" or "cross", counted from 0; people name
them "enc L1 H2", "dec-self L3 H1", "cross L2 H4" (`head_label`). Each family is one `Family` record
(`FAMILY_RECORDS`: tag, title, stack, attention module, pattern axes). Imports torch only (plots: matplotlib).
"""

from .ablation import ablate_heads, gradient_importance, head_importance, run_ablation
from .attribution import logit_attribution
from .circuit_discovery import (
    EdgeGraph,
    EdgeScores,
    FaithfulnessCurve,
    GraphForward,
    MeanEdgeScores,
    edge_attribution,
    faithfulness_curve,
    make_task,
    mean_edge_attribution,
)
from .heads import FAMILIES, FAMILY_RECORDS, FAMILY_TITLES, Family, all_heads, head_label, parse_head, parse_head_label
from .hooks import ActivationCache, HookedModel, attention_site, site_name
from .inputs import Example, make_example
from .interventions import Intervention, run_interventions
from .lens import logit_lens, residual_stream
from .patching import activation_patching

__all__ = [
    "ActivationCache",
    "HookedModel",
    "site_name",
    "attention_site",
    "FAMILIES",
    "FAMILY_RECORDS",
    "FAMILY_TITLES",
    "Family",
    "all_heads",
    "head_label",
    "parse_head",
    "parse_head_label",
    "Example",
    "make_example",
    "Intervention",
    "run_interventions",
    "ablate_heads",
    "run_ablation",
    "head_importance",
    "gradient_importance",
    "logit_lens",
    "residual_stream",
    "logit_attribution",
    "activation_patching",
    "EdgeGraph",
    "EdgeScores",
    "FaithfulnessCurve",
    "GraphForward",
    "edge_attribution",
    "faithfulness_curve",
    "make_task",
    "MeanEdgeScores",
    "mean_edge_attribution",
]
