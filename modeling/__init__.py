"""`from modeling import TransformerModel, TransformerForConditionalGeneration`.

Importing this package registers the config and models with the Auto classes (in this process) and for
remote code (`save_pretrained` writes `auto_map` and copies the flat source files: `modeling_transformer.py`
and the siblings it imports relatively, `configuration_transformer.py` and `fast_paths.py`).

Layout: the configuration lives in `configuration/`. A saved model folder must be flat (transformers copies
a remote module's relative imports beside it, and cannot load them from sub-folders), so
`modeling_transformer.py` imports its config relatively, from `modeling/configuration_transformer.py`, a
symlink to the one real file. Here that module name is bound to the already-imported
`configuration.configuration_transformer`, so there is one `TransformerConfig` class, not two.
"""

import sys

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

import configuration.configuration_transformer as _configuration_module

sys.modules.setdefault(f"{__name__}.configuration_transformer", _configuration_module)

from .modeling_transformer import (  # noqa: E402
    TransformerForConditionalGeneration,
    TransformerModel,
    TransformerPreTrainedModel,
)

TransformerConfig = _configuration_module.TransformerConfig

AutoConfig.register(TransformerConfig.model_type, TransformerConfig, exist_ok=True)
AutoModel.register(TransformerConfig, TransformerModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(TransformerConfig, TransformerForConditionalGeneration, exist_ok=True)

TransformerConfig.register_for_auto_class()
TransformerModel.register_for_auto_class("AutoModel")
TransformerForConditionalGeneration.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = ["TransformerConfig", "TransformerModel", "TransformerForConditionalGeneration", "TransformerPreTrainedModel"]
