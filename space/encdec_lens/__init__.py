"""encdec_lens: circuits for an encoder-decoder Transformer (after TransformerLens), on the loaded HF model.

    from encdec_lens import HookedModel
    hooked = HookedModel(model)
    logits, cache = hooked.run_with_cache(names=["decoder.layers.0.encoder_attn.pattern"], input_ids=...,
                                          decoder_input_ids=...)

One hook mechanism (`hooks.HookedModel`: named sites, `run_with_hooks`, `run_with_cache`); every analysis is
built on it: attention maps, head ablation and importance, the logit lens and residual stream, direct logit
attribution, activation patching and the walkthrough's numbers. Imports torch and numpy only.
"""

from .hooks import ActivationCache, HookedModel
from .heads import FAMILIES, FAMILY_TITLES, all_heads, head_label, parse_head, parse_head_label
from .inputs import Example, make_example

__all__ = ["ActivationCache", "HookedModel", "FAMILIES", "FAMILY_TITLES", "all_heads", "head_label", "parse_head",
           "parse_head_label", "Example", "make_example"]
