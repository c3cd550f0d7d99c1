"""Configuration of the original Transformer (Vaswani et al., 2017, "Attention Is All You Need").

Field names follow BART/Marian in transformers so that Hugging Face users feel at home; the defaults are
the paper's *base* model (Table 3, row "base"): d_model = 512, N = 6 encoder and 6 decoder layers, h = 8
heads, d_ff = 2048, P_drop = 0.1, ReLU, shared source/target/output embeddings scaled by sqrt(d_model),
sinusoidal positions (section 3.5), post-layer-norm residual blocks (section 3.1) and label smoothing
eps_ls = 0.1 (section 5.4).

This file imports only `transformers`, so a saved model folder can carry it as remote code.
"""

import math

from transformers import PretrainedConfig

ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu", "swish", "tanh")
POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned")
SINUSOIDAL_LAYOUTS = ("interleaved", "concatenated")
# The architecture's sizes (each a positive integer), its dropout probabilities and its special token ids, by
# setting name: what the checks below read, and what a conversion from or to Marian takes as it is.
SIZE_SETTINGS = (
    "vocab_size",
    "d_model",
    "encoder_layers",
    "decoder_layers",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
)
DROPOUT_SETTINGS = ("dropout", "attention_dropout", "activation_dropout")
SPECIAL_TOKEN_SETTINGS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


class TransformerConfig(PretrainedConfig):
    r"""
    Configuration for [`TransformerModel`] and [`TransformerForConditionalGeneration`].

    Args:
        vocab_size: size of the joint (shared) source/target vocabulary. The paper used about 37,000 BPE
            tokens for English-German (section 5.1).
        d_model: width of every sub-layer output and of the embeddings (`d_model` in the paper).
        encoder_layers / decoder_layers: number of identical layers `N` in each stack (section 3.1).
        encoder_attention_heads / decoder_attention_heads: number of heads `h` (section 3.2.2);
            `d_k = d_v = d_model / h`.
        encoder_ffn_dim / decoder_ffn_dim: inner width `d_ff` of the position-wise feed-forward
            network (section 3.3).
        dropout: residual dropout `P_drop`, applied to every sub-layer output before the residual add and
            to the sums of embeddings and positional encodings (section 5.4).
        attention_dropout: dropout on attention probabilities (not in the paper, 0.0 by default; keeping
            it at 0 also lets the fused CPU/GPU attention kernels run).
        activation_dropout: dropout after the feed-forward activation (not in the paper, 0.0 by default).
        activation_function: non-linearity of the feed-forward network; the paper uses ReLU (equation 2).
        max_position_embeddings: longest sequence the model accepts with learned positions; with
            sinusoidal positions the table is precomputed up to this length and extended on demand.
        position_embedding_type: `"sinusoidal"` (section 3.5, default) or `"learned"` (the variant of
            Table 3, row E).
        sinusoidal_layout: where the sines and cosines of section 3.5 sit in the d_model dimensions:
            `"interleaved"` (default, the paper's formula: sin in dimension 2i, cos in 2i + 1) or
            `"concatenated"` (Marian's and tensor2tensor's: the d_model / 2 sines first, then the cosines, at
            the same frequencies). Only read with sinusoidal positions.
        normalize_before: `False` (default) is the paper's post-LN, `LayerNorm(x + Sublayer(x))`;
            `True` is pre-LN, `x + Sublayer(LayerNorm(x))`, with a final LayerNorm on each stack.
        scale_embedding: multiply token embeddings by sqrt(d_model) (section 3.4).
        tie_word_embeddings: share one matrix between the source embedding, the target embedding and the
            pre-softmax projection (section 3.4). With `False` all three are independent.
        add_final_logits_bias: add a bias vector to the logits, as Marian's `final_logits_bias` does
            (not in the paper, `False` by default); it is the bias of the pre-softmax linear layer `lm_head`.
        label_smoothing: eps_ls of the loss computed when `labels` are passed (section 5.4).
        init_std: standard deviation of the embedding initialisation; `None` means d_model ** -0.5.
        layer_norm_eps: the epsilon every LayerNorm adds to the variance before its square root (> 0).
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id: special token ids.
        use_cache: return and use key/value caches when decoding.
    """

    model_type = "transformer"
    keys_to_ignore_at_inference = ["past_key_values"]
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "decoder_layers",
    }

    def __init__(
        self,
        vocab_size=37000,
        d_model=512,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        dropout=0.1,
        attention_dropout=0.0,
        activation_dropout=0.0,
        activation_function="relu",
        max_position_embeddings=512,
        position_embedding_type="sinusoidal",
        sinusoidal_layout="interleaved",
        normalize_before=False,
        scale_embedding=True,
        tie_word_embeddings=True,
        add_final_logits_bias=False,
        label_smoothing=0.1,
        init_std=None,
        layer_norm_eps=1e-5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=None,
        use_cache=True,
        is_encoder_decoder=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.encoder_attention_heads = encoder_attention_heads
        self.decoder_attention_heads = decoder_attention_heads
        self.encoder_ffn_dim = encoder_ffn_dim
        self.decoder_ffn_dim = decoder_ffn_dim
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.activation_function = activation_function
        self.max_position_embeddings = max_position_embeddings
        self.position_embedding_type = position_embedding_type
        self.sinusoidal_layout = sinusoidal_layout
        self.normalize_before = normalize_before
        self.scale_embedding = scale_embedding
        self.tie_word_embeddings = tie_word_embeddings
        self.add_final_logits_bias = add_final_logits_bias
        self.label_smoothing = label_smoothing
        self.init_std = init_std
        self.layer_norm_eps = layer_norm_eps
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        # The decoder starts from <s> (bos) unless told otherwise.
        self.decoder_start_token_id = bos_token_id if decoder_start_token_id is None else decoder_start_token_id
        self.use_cache = use_cache
        self.is_encoder_decoder = is_encoder_decoder
        self.is_decoder = False
        self._validate()

    def _validate(self):
        """Refuse impossible settings up front, naming the value and what is allowed."""

        def positive_int(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"TransformerConfig: `{name}` must be a positive integer, got {value!r}.")

        def is_number(value):
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        for name in (
            "normalize_before",
            "scale_embedding",
            "tie_word_embeddings",
            "add_final_logits_bias",
            "use_cache",
            "is_encoder_decoder",
            "output_attentions",
            "output_hidden_states",
            "return_dict",
        ):
            value = getattr(self, name)
            if not isinstance(value, bool):  # "false" would count as true
                raise ValueError(f"TransformerConfig: `{name}` must be True or False, got {value!r}.")

        for name in (*SIZE_SETTINGS, "max_position_embeddings"):
            positive_int(name)
        for side in ("encoder", "decoder"):
            heads = getattr(self, f"{side}_attention_heads")
            if self.d_model % heads:
                raise ValueError(
                    f"TransformerConfig: `d_model` ({self.d_model}) must be divisible by "
                    f"`{side}_attention_heads` ({heads}) so that d_k = d_model / h is an integer "
                    f"(section 3.2.2); try {heads * max(1, round(self.d_model / heads))} or a divisor of {self.d_model}."
                )
        for name in DROPOUT_SETTINGS:
            value = getattr(self, name)
            if not is_number(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"TransformerConfig: `{name}` must be a probability in [0, 1), got {value!r}.")
        if not is_number(self.label_smoothing) or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"TransformerConfig: `label_smoothing` must be in [0, 1), got {self.label_smoothing!r}.")
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"TransformerConfig: unknown `activation_function` {self.activation_function!r}; "
                f"choose one of {', '.join(ACTIVATIONS)}."
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"TransformerConfig: unknown `position_embedding_type` {self.position_embedding_type!r}; "
                f"choose one of {', '.join(POSITION_EMBEDDING_TYPES)}."
            )
        if self.sinusoidal_layout not in SINUSOIDAL_LAYOUTS:
            raise ValueError(
                f"TransformerConfig: unknown `sinusoidal_layout` {self.sinusoidal_layout!r}; "
                f"choose one of {', '.join(SINUSOIDAL_LAYOUTS)}."
            )
        if self.init_std is not None and not (is_number(self.init_std) and self.init_std > 0):
            raise ValueError(
                f"TransformerConfig: `init_std` must be a positive finite number or None, got {self.init_std!r}."
            )
        if not (is_number(self.layer_norm_eps) and self.layer_norm_eps > 0):
            raise ValueError(
                f"TransformerConfig: `layer_norm_eps` must be a positive finite number (LayerNorm divides "
                f"by sqrt(variance + eps)), got {self.layer_norm_eps!r}."
            )
        for name in SPECIAL_TOKEN_SETTINGS:
            ids = getattr(self, name)
            for value in ids if isinstance(ids, (list, tuple)) else [ids]:
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                    raise ValueError(
                        f"TransformerConfig: `{name}` = {value!r} is outside the vocabulary; special token ids "
                        f"must be integers in [0, vocab_size) = [0, {self.vocab_size})."
                    )
        if self.pad_token_id is None:
            raise ValueError("TransformerConfig: `pad_token_id` is required (padding masks and the loss use it).")
        if self.decoder_start_token_id is None:
            raise ValueError(
                "TransformerConfig: `decoder_start_token_id` is required (the decoder's first input, "
                "which the labels are shifted behind); it defaults to `bos_token_id`, which is None "
                "here: set either."
            )


__all__ = ["TransformerConfig"]
