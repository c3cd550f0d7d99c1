"""The original Transformer (Vaswani et al., 2017, "Attention Is All You Need") as a Hugging Face model.

Read top to bottom: positional encodings (section 3.5), scaled dot-product and multi-head attention
(section 3.2, equation 1), the position-wise feed-forward network (section 3.3, equation 2), encoder and
decoder layers and stacks (section 3.1), then the `PreTrainedModel` classes.

Shapes: B = batch, T = target (query) length, S = source (key) length, h = heads, d_k = d_model / h.

What is there for speed alone, computing the same values faster on CPU, is in the sibling `fast_paths.py`:
the dropout mask (`fast_dropout`), when the plain attention beats the fused kernels, and the projection and
loss fused into one autograd step (`LogitsAndSmoothedLoss`).

This file imports only torch, transformers and its siblings `configuration_transformer.py` and
`fast_paths.py` (relatively), so every `save_pretrained` folder carries the three flat as remote code
(`trust_remote_code=True`).
"""

import math
import os
import shutil
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_transformer import TransformerConfig
from .fast_paths import (
    LogitsAndSmoothedLoss,
    can_fuse_logits_and_loss,
    eager_attention_is_faster,
    fast_dropout,
)


def sinusoidal_table(num_positions: int, d_model: int, layout: str = "interleaved") -> torch.Tensor:
    """Section 3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same).

    `layout="concatenated"` holds the same sines and cosines in Marian's order (also tensor2tensor's): the
    sine of every frequency i first, then the cosines, PE(pos, i) = sin(pos / 10000^(2i/d_model)) and
    PE(pos, ceil(d_model / 2) + i) = cos(same). That table is computed in float64 and rounded once, as Marian
    computes it, so that a model converted from Marian sees its positions to the last bit.
    """
    if layout == "concatenated":
        position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)  # (P, 1)
        angle = position / torch.pow(
            10000.0, torch.arange(0, d_model, 2, dtype=torch.float64) / d_model
        )  # (P, ceil(d/2))
        return torch.cat([torch.sin(angle), torch.cos(angle[:, : d_model // 2])], dim=1).float()  # (P, d_model)
    position = torch.arange(num_positions, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    inv_freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(num_positions, d_model)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: d_model // 2])
    return table  # (P, d_model)


class TransformerSinusoidalPositionalEmbedding(nn.Module):
    """Fixed sinusoidal positional encodings (section 3.5), extended on demand past the precomputed length.

    The table is a non-persistent buffer: it is not saved, and `_init_weights` recomputes it after
    `from_pretrained` (which otherwise leaves such buffers uninitialised).
    """

    def __init__(self, num_positions: int, d_model: int, layout: str = "interleaved"):
        super().__init__()
        self.d_model = d_model
        self.layout = layout
        self.register_buffer("weight", sinusoidal_table(num_positions, d_model, layout), persistent=False)

    def create_weight(self) -> torch.Tensor:
        return sinusoidal_table(self.weight.shape[0], self.d_model, self.layout)

    def forward(self, seq_len: int, past_length: int | torch.Tensor = 0) -> torch.Tensor:
        if isinstance(past_length, torch.Tensor):  # a static cache's fill level: read the table, no Python int
            return self.weight[past_length + torch.arange(seq_len, device=self.weight.device)]  # (T, d_model)
        end = past_length + seq_len
        if end > self.weight.shape[0]:  # longer than precomputed: the formula extends to any length
            table = sinusoidal_table(end, self.d_model, self.layout).to(self.weight.device, self.weight.dtype)
            return table[past_length:end]
        return self.weight[past_length:end]  # (T, d_model)


class TransformerScaledWordEmbedding(nn.Embedding):
    """Token embeddings multiplied by sqrt(d_model) (section 3.4: "we multiply those weights by sqrt(d_model)").

    The scale lives in the module, so `model.get_input_embeddings()(ids)` is what the stacks add the positions
    to, and `model(inputs_embeds=...)` of it equals `model(input_ids=ids)`.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None, embed_scale: float = 1.0):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        self.embed_scale = embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.embed_scale  # (B, L, d_model)


class TransformerLearnedPositionalEmbedding(nn.Embedding):
    """Learned positional embeddings (Table 3, row E): one vector per position up to a fixed maximum."""

    def forward(self, seq_len: int, past_length: int | torch.Tensor = 0) -> torch.Tensor:
        if isinstance(past_length, torch.Tensor):  # a static cache's fill level (its size was checked up front)
            return super().forward(past_length + torch.arange(seq_len, device=self.weight.device))  # (T, d_model)
        end = past_length + seq_len
        if end > self.num_embeddings:
            raise ValueError(
                f"Sequence of {end} positions is longer than max_position_embeddings={self.num_embeddings}, "
                "the most this model has learned positions for. Truncate the input (tokenizer(..., "
                "truncation=True, max_length=...)) or use position_embedding_type='sinusoidal'."
            )
        positions = torch.arange(past_length, end, device=self.weight.device)
        return super().forward(positions)  # (T, d_model)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    is_causal: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, equation 1: softmax(Q K^T / sqrt(d_k)) V.

    `attention_mask` is additive (0 where allowed, a very negative number where not), broadcastable to
    (B, h, T, S). With no mask and `is_causal`, position t attends to positions <= t (section 3.2.3).
    Returns the output as (B, T, h, d_k) and the attention probabilities as (B, h, T, S).
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, h, T, S)
    if attention_mask is not None:
        scores = scores + attention_mask
    elif is_causal and query.shape[2] > 1:
        future = torch.ones(query.shape[2], key.shape[2], dtype=torch.bool, device=query.device).triu(1)
        scores = scores.masked_fill(future, torch.finfo(scores.dtype).min)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = fast_dropout(weights, dropout, module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T, h, d_k)
    return output, weights


class TransformerAttention(nn.Module):
    """Multi-head attention, section 3.2.2: MultiHead(Q, K, V) = Concat(head_1..head_h) W^O.

    Used three ways (section 3.2.3): encoder self-attention, masked decoder self-attention, and
    encoder-decoder ("cross") attention whose keys and values come from the encoder output.
    """

    def __init__(
        self, config: TransformerConfig, num_heads: int, is_causal: bool = False, layer_idx: int | None = None
    ):
        super().__init__()
        self.config = config
        self.embed_dim = config.d_model
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads  # d_k = d_v = d_model / h
        self.scaling = self.head_dim**-0.5  # 1 / sqrt(d_k)
        self.attention_dropout = config.attention_dropout  # on the weights; the layers' `dropout` is the residual one
        # Read by the sdpa backend when no mask is passed: encoder and cross attention must not be causal.
        self.is_causal = is_causal
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^Q for all heads at once
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^K
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^V
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^O

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, L, d_k)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        is_cross_attention = key_value_states is not None
        batch, tgt_len = hidden_states.shape[:2]

        layer_cache = None
        if cache is not None:
            if isinstance(cache, EncoderDecoderCache):
                layer_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
            else:
                layer_cache = cache
        if is_cross_attention and layer_cache is not None and cache.is_updated.get(self.layer_idx):
            # The encoder output does not change while decoding: its keys/values were computed at step 1.
            key = layer_cache.layers[self.layer_idx].keys
            value = layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross_attention else hidden_states
            key = self._split_heads(self.k_proj(source))  # (B, h, S, d_k)
            value = self._split_heads(self.v_proj(source))  # (B, h, S, d_v)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if is_cross_attention:
                    cache.is_updated[self.layer_idx] = True

        query = self._split_heads(self.q_proj(hidden_states))  # (B, h, T, d_k)

        # Equation 1, by the configured backend (sdpa by default). The fused backends return no weights: when
        # they are asked for, the plain `eager_attention_forward` runs, as it does where it is the faster one.
        if (
            output_attentions
            or self.config._attn_implementation == "eager"
            or eager_attention_is_faster(query, self.training)
        ):
            attention_interface: Callable = eager_attention_forward
        else:
            attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                self.config._attn_implementation, eager_attention_forward
            )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            is_causal=self.is_causal and attention_mask is None and query.shape[2] > 1,
        )
        output = output.reshape(batch, tgt_len, self.embed_dim)  # Concat(head_1..head_h): (B, T, d_model)
        return self.out_proj(output), (weights if output_attentions else None)


class TransformerFeedForward(nn.Module):
    """Position-wise feed-forward network, equation 2: FFN(x) = max(0, x W_1 + b_1) W_2 + b_2."""

    def __init__(self, config: TransformerConfig, ffn_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation_fn(self.fc1(x))  # (B, L, d_ff)
        x = fast_dropout(x, self.activation_dropout, self.training)
        return self.fc2(x)  # (B, L, d_model)


class TransformerResidualLayer(GradientCheckpointingLayer):
    """A layer of either stack: its sub-layers, each wrapped by `residual_block` (section 3.1)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.normalize_before = config.normalize_before
        self.dropout = config.dropout  # P_drop, on each sub-layer's output before the residual add (section 5.4)

    def residual_block(self, norm: nn.LayerNorm, sublayer: nn.Module, hidden_states: torch.Tensor, **kwargs):
        """One sub-layer with its residual connection and layer normalisation (section 3.1), `norm` its LayerNorm.

        Post-LN (the paper): x = LayerNorm(x + Dropout(Sublayer(x))).
        Pre-LN (`config.normalize_before`): x = x + Dropout(Sublayer(LayerNorm(x))), and each stack ends in a
        LayerNorm of its own.

        `kwargs` go to the sub-layer. Returns the new (B, L, d_model) hidden states and, for an attention
        sub-layer, its attention weights (None for the feed-forward network or when not asked for).
        """
        residual = hidden_states
        if self.normalize_before:
            hidden_states = norm(hidden_states)
        output = sublayer(hidden_states, **kwargs)
        output, weights = output if isinstance(output, tuple) else (output, None)
        hidden_states = residual + fast_dropout(output, self.dropout, self.training)
        if not self.normalize_before:
            hidden_states = norm(hidden_states)
        return hidden_states, weights


class TransformerEncoderLayer(TransformerResidualLayer):
    """Section 3.1: self-attention then the feed-forward network, each a residual block (`residual_block`)."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.self_attn = TransformerAttention(config, config.encoder_attention_heads, is_causal=False)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = TransformerFeedForward(config, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        hidden_states, attn_weights = self.residual_block(
            self.self_attn_layer_norm,
            self.self_attn,
            hidden_states,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
        )
        hidden_states, _ = self.residual_block(self.final_layer_norm, self.ffn, hidden_states)
        return hidden_states, attn_weights


class TransformerDecoderLayer(TransformerResidualLayer):
    """Section 3.1: masked self-attention, encoder-decoder attention, then the feed-forward network, each a
    residual block (`residual_block`)."""

    def __init__(self, config: TransformerConfig, layer_idx: int):
        super().__init__(config)
        self.self_attn = TransformerAttention(
            config, config.decoder_attention_heads, is_causal=True, layer_idx=layer_idx
        )
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.encoder_attn = TransformerAttention(
            config, config.decoder_attention_heads, is_causal=False, layer_idx=layer_idx
        )
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = TransformerFeedForward(config, config.decoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache=None,
        output_attentions=False,
        use_cache=True,
    ):
        hidden_states, self_weights = self.residual_block(
            self.self_attn_layer_norm,
            self.self_attn,
            hidden_states,
            attention_mask=attention_mask,
            cache=cache,
            output_attentions=output_attentions,
        )
        cross_weights = None
        if encoder_hidden_states is not None:  # without an encoder the decoder is a causal language model
            hidden_states, cross_weights = self.residual_block(
                self.encoder_attn_layer_norm,
                self.encoder_attn,
                hidden_states,
                key_value_states=encoder_hidden_states,
                attention_mask=encoder_attention_mask,
                cache=cache,
                output_attentions=output_attentions,
            )
        hidden_states, _ = self.residual_block(self.final_layer_norm, self.ffn, hidden_states)
        return hidden_states, self_weights, cross_weights


def _padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, S) 1/0 mask -> additive (B, 1, 1, S) mask, or None when nothing is padded (lets sdpa use flash).
    Under torch.compile / export the mask is always built: whether it is all ones is a fact about the data."""
    if attention_mask is None or (not torch.compiler.is_compiling() and bool(attention_mask.all())):
        return None
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _check_ids(ids: torch.Tensor, name: str) -> None:
    """Token ids are a (batch, length) tensor of integers with at least one sentence of at least one token."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(
            f"`{name}` must be a torch.Tensor of token ids, got {type(ids).__name__}: use "
            "tokenizer(..., return_tensors='pt') or torch.tensor(ids)."
        )
    if ids.dim() != 2:
        raise ValueError(f"`{name}` must be (batch, length), got shape {tuple(ids.shape)}.")
    if ids.dtype not in (torch.long, torch.int):
        raise ValueError(f"`{name}` must hold integer token ids (torch.long), got dtype {ids.dtype}.")
    _check_not_empty(ids, name)


def _check_not_empty(x: torch.Tensor, name: str) -> None:
    if 0 in x.shape[:2]:
        raise ValueError(
            f"`{name}` has shape {tuple(x.shape)}: an empty batch or an empty sequence. Pass at least one "
            "sentence of at least one token."
        )


def _check_embeds(embeds: torch.Tensor, d_model: int, name: str) -> None:
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3 or embeds.shape[-1] != d_model:
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise ValueError(
            f"`{name}` must be a (batch, length, d_model={d_model}) tensor, got {shape}; it is what "
            "model.get_input_embeddings()(ids) returns."
        )
    _check_not_empty(embeds, name)


def _check_same_batch(source_name: str, source: torch.Tensor | None, target_name: str, target: torch.Tensor) -> None:
    """One source sentence per target sequence; generate() itself repeats each source once per beam."""
    if (
        not (isinstance(source, torch.Tensor) and isinstance(target, torch.Tensor))
        or min(source.dim(), target.dim()) < 2
    ):
        return  # missing or malformed: the stacks say so
    if source.shape[0] != target.shape[0]:
        raise ValueError(
            f"`{source_name}` has batch size {source.shape[0]} but `{target_name}` has batch size "
            f"{target.shape[0]}; they must match, one source sentence for each target sequence."
        )


def _check_static_cache_fits(key_length: int, positions: nn.Module) -> None:
    """A static cache's slots are positions the decoder must be able to encode: at most the positions table."""
    table = positions.weight.shape[0]
    if key_length > table:
        raise ValueError(
            f"The static cache holds {key_length} positions but the decoder encodes at most {table} "
            f"(max_position_embeddings): use a smaller max_length / max_cache_len, or the default dynamic cache."
        )


def _check_input_ids(input_ids: torch.Tensor, vocab_size: int, name: str) -> None:
    _check_ids(input_ids, name)
    if torch.compiler.is_compiling():  # the value check reads the data: eager calls only, tracing skips it
        return
    if int(input_ids.max()) >= vocab_size or int(input_ids.min()) < 0:
        bad = input_ids[(input_ids >= vocab_size) | (input_ids < 0)][0].item()
        raise ValueError(
            f"`{name}` contains id {bad}, outside the vocabulary [0, {vocab_size}). The tokenizer and the model "
            "disagree: use the tokenizer saved with this model, or resize_token_embeddings(len(tokenizer))."
        )


def _check_mask(mask: torch.Tensor | None, ids_shape: torch.Size, name: str, ids_name: str) -> None:
    if mask is not None and tuple(mask.shape) != tuple(ids_shape):
        raise ValueError(
            f"`{name}` has shape {tuple(mask.shape)} but `{ids_name}` has shape {tuple(ids_shape)}; they must match "
            "(1 for real tokens, 0 for padding). Pass the mask the tokenizer returned with these ids."
        )
    _check_mask_values(mask, name)


def _check_mask_values(mask: torch.Tensor | None, name: str) -> None:
    """A padding mask holds 1 (a real token) or 0 (padding) only: any other value (2, -1, NaN) would scale or
    poison the attention scores. Eager calls only: the check reads the data."""
    if mask is None or mask.dtype == torch.bool or torch.compiler.is_compiling():
        return
    odd = (mask != 0) & (mask != 1)
    if bool(odd.any()):
        raise ValueError(
            f"`{name}` must hold 1 for real tokens and 0 for padding, got {mask[odd][0].item()!r}. "
            "Pass the mask the tokenizer returned."
        )


PIPELINE_FILE = "pipeline_translation.py"  # the `pipeline("translation", ...)` every saved folder ships


def _pipeline_source(config: TransformerConfig) -> str | None:
    """Where the pipeline file is: beside this code (the project, or a remote-code copy that fetched it), or in
    the folder or Hub cache the model was loaded from."""
    candidates = [os.path.join(os.path.dirname(os.path.abspath(__file__)), PIPELINE_FILE)]
    origin = str(getattr(config, "_name_or_path", "") or "")
    if origin:
        candidates.append(os.path.join(origin, PIPELINE_FILE))
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(origin, PIPELINE_FILE)
            if not isinstance(cached, str) and not os.path.isdir(origin):
                from huggingface_hub import hf_hub_download

                cached = hf_hub_download(origin, PIPELINE_FILE)  # a Hub model whose pipeline was never fetched
            if isinstance(cached, str):
                candidates.append(cached)
        except Exception:  # not a Hub id, or offline
            pass
    return next((path for path in candidates if os.path.isfile(path)), None)


def _check_loaded_weights(model: nn.Module, missing: list[str], source) -> None:
    if missing:
        shown = ", ".join(sorted(missing)[:3]) + (", ..." if len(missing) > 3 else "")
        raise ValueError(
            f"{source}: the weights do not fit config.json: {len(missing)} weights it describes are not in the "
            f"checkpoint ({shown}). Fix config.json to match the weights, or pass strict=False to load anyway "
            "(the missing ones start at random)."
        )
    not_finite = next((name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)
    if not_finite:
        raise ValueError(
            f"{source}: the weights are not finite (NaN or inf, first in {not_finite}): the "
            "checkpoint is broken, e.g. saved from a run that diverged. Pass strict=False to load it anyway."
        )


class TransformerPreTrainedModel(PreTrainedModel):
    config_class = TransformerConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    # A decoding step on a static cache is one graph (torch.compile(fullgraph=True), torch.export): the input
    # checks that read the data run eagerly only, and the mask covers the cache's fixed slots.
    _can_compile_fullgraph = True
    _no_split_modules = ["TransformerEncoderLayer", "TransformerDecoderLayer"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus the custom pipeline file config.json declares
        (`custom_pipelines`), so that a loaded and re-saved model stays a complete Hub folder."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if "translation" not in (getattr(self.config, "custom_pipelines", None) or {}):
            return
        target = os.path.join(save_directory, PIPELINE_FILE)
        source = _pipeline_source(self.config)
        if source is None:
            raise FileNotFoundError(
                f"config.json declares the translation pipeline but {PIPELINE_FILE} was not "
                f"found beside the model's code or in {self.config._name_or_path}: copy it into "
                f"{save_directory} (or drop `custom_pipelines` from the config)."
            )
        if os.path.abspath(source) != os.path.abspath(target):
            shutil.copyfile(source, target)

    @classmethod
    def from_pretrained(cls, *args, strict: bool = True, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing weights that do not fit the config.

        A checkpoint that lacks weights its config.json describes (say 6 encoder layers against weights of 4)
        or holds NaN/inf would load with a warning and translate garbage. `strict=False` loads it anyway (the
        missing weights start at random, as when a model is grown to be fine-tuned); with
        `output_loading_info=True` the caller gets the library's report (missing, unexpected, mismatched keys)
        to act on, and nothing is refused.
        """
        wants_report = kwargs.get("output_loading_info", False)
        model, report = super().from_pretrained(*args, **{**kwargs, "output_loading_info": True})
        if wants_report:
            return model, report
        if strict:
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            _check_loaded_weights(model, report["missing_keys"], source)
        return model

    def _resize_token_embeddings(self, new_num_tokens, pad_to_multiple_of=None, mean_resizing=True):
        """The base method resizes the input (encoder) embedding and the output layer; with untied embeddings
        the decoder has a matrix of its own, resized here too so that all three keep `config.vocab_size` rows."""
        new_embeddings = super()._resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        base = getattr(self, self.base_model_prefix, self)
        if isinstance(base, TransformerModel) and not self.config.tie_word_embeddings:
            old = base.decoder.embed_tokens
            resized = self._get_resized_embeddings(old, new_embeddings.weight.shape[0], mean_resizing=mean_resizing)
            resized.requires_grad_(old.weight.requires_grad)
            base.decoder.embed_tokens = resized
        return new_embeddings

    def _init_weights(self, module):
        """Xavier-uniform linear layers, N(0, d_model^-0.5) embeddings, exact sinusoid tables.

        The paper does not state its initialisation; this is tensor2tensor's / fairseq's choice for it.
        """
        std = self.config.init_std or self.config.d_model**-0.5
        if isinstance(module, TransformerSinusoidalPositionalEmbedding):
            init.copy_(module.weight, module.create_weight())
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)


def _make_token_embedding(config: TransformerConfig) -> TransformerScaledWordEmbedding:
    scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
    return TransformerScaledWordEmbedding(config.vocab_size, config.d_model, config.pad_token_id, scale)


class _EmbedScale:
    """`stack.embed_scale`: the scale its token embedding applies (1 for an embedding set from outside)."""

    def __get__(self, stack, owner=None):
        return self if stack is None else getattr(stack.embed_tokens, "embed_scale", 1.0)


def _make_positions(config: TransformerConfig) -> nn.Module:
    if config.position_embedding_type == "learned":
        return TransformerLearnedPositionalEmbedding(config.max_position_embeddings, config.d_model)
    return TransformerSinusoidalPositionalEmbedding(
        config.max_position_embeddings, config.d_model, config.sinusoidal_layout
    )


class TransformerEncoder(TransformerPreTrainedModel):
    """The encoder stack (section 3.1): embeddings * sqrt(d_model) + positions, dropout, N layers."""

    embed_scale = _EmbedScale()

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.embed_tokens = _make_token_embedding(config)
        self.embed_positions = _make_positions(config)
        self.layers = nn.ModuleList([TransformerEncoderLayer(config) for _ in range(config.encoder_layers)])
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.normalize_before else None
        self.gradient_checkpointing = False
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds` to the encoder.")
        if input_ids is not None:
            _check_input_ids(input_ids, self.config.vocab_size, "input_ids")
            inputs_embeds = self.embed_tokens(input_ids)  # section 3.4: scaled by sqrt(d_model)
        else:
            _check_embeds(inputs_embeds, self.config.d_model, "inputs_embeds")
        _check_mask(attention_mask, inputs_embeds.shape[:2], "attention_mask", "input_ids")
        hidden_states = inputs_embeds + self.embed_positions(inputs_embeds.shape[1]).to(inputs_embeds.dtype)
        hidden_states = fast_dropout(hidden_states, self.config.dropout, self.training)  # section 5.4
        mask = _padding_mask(attention_mask, hidden_states.dtype)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden_states, weights = layer(hidden_states, attention_mask=mask, output_attentions=output_attentions)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_attentions += (weights,)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
            if output_hidden_states:
                all_hidden_states = all_hidden_states[:-1] + (hidden_states,)
        return BaseModelOutput(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, attentions=all_attentions
        )


class TransformerDecoder(TransformerPreTrainedModel):
    """The decoder stack (section 3.1): masked self-attention so position t sees only positions <= t."""

    embed_scale = _EmbedScale()

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.embed_tokens = _make_token_embedding(config)
        self.embed_positions = _make_positions(config)
        self.layers = nn.ModuleList([TransformerDecoderLayer(config, i) for i in range(config.decoder_layers)])
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.normalize_before else None
        self.gradient_checkpointing = False
        self.post_init()

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @can_return_tuple
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        cache=None,
        inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        output_attentions = output_attentions if output_attentions is not None else self.config.output_attentions
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `decoder_input_ids` or `decoder_inputs_embeds` to the decoder.")
        name = "decoder_input_ids" if input_ids is not None else "decoder_inputs_embeds"
        if input_ids is not None:
            _check_input_ids(input_ids, self.config.vocab_size, name)
            inputs_embeds = self.embed_tokens(input_ids)
        else:
            _check_embeds(inputs_embeds, self.config.d_model, name)
        _check_same_batch("encoder_hidden_states", encoder_hidden_states, name, inputs_embeds)
        batch, tgt_len = inputs_embeds.shape[:2]

        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        if cache is not None and not isinstance(cache, EncoderDecoderCache):
            raise ValueError(f"`cache` (past_key_values) must be an EncoderDecoderCache, got {type(cache).__name__}.")
        # A static cache (generate(cache_implementation="static"), torch.export) has a fixed number of key slots,
        # filled up to a tensor count: its keys are always masked, the unfilled slots by causality.
        static = cache is not None and cache.is_compileable
        past_length = cache.get_seq_length() if cache is not None else 0
        if static and isinstance(past_length, torch.Tensor):
            past_length = past_length.clone()  # the layers advance the cache's own counter in place
        key_length = cache.get_mask_sizes(tgt_len, 0)[0] if static else past_length + tgt_len
        if static and not torch.compiler.is_compiling():
            _check_static_cache_fits(key_length, self.embed_positions)

        # Decoder self-attention mask: causal, plus padding when a decoder mask with zeros is given. Without
        # padding and without a cached prefix, no tensor is built and the backend applies causality itself.
        self_mask = None
        if attention_mask is not None:
            _check_mask_values(attention_mask, "decoder_attention_mask")
            if attention_mask.shape[0] != batch or attention_mask.shape[1] not in (tgt_len, past_length + tgt_len):
                raise ValueError(
                    f"`decoder_attention_mask` has shape {tuple(attention_mask.shape)} but the decoder input is "
                    f"{(batch, tgt_len)} (with {int(past_length)} cached positions); they must match."
                )
            if attention_mask.shape[1] == tgt_len and past_length:
                attention_mask = torch.cat([attention_mask.new_ones(batch, int(past_length)), attention_mask], dim=1)
            if static:  # slots past the filled ones: causality masks them, the padding mask leaves them open
                attention_mask = F.pad(attention_mask, (0, key_length - attention_mask.shape[1]), value=1)
        padded = attention_mask is not None and (torch.compiler.is_compiling() or not bool(attention_mask.all()))
        if padded or static or (past_length and tgt_len > 1):
            dtype = inputs_embeds.dtype
            q_pos = (past_length + torch.arange(tgt_len, device=inputs_embeds.device))[:, None]
            k_pos = torch.arange(key_length, device=inputs_embeds.device)[None, :]
            allowed = (k_pos <= q_pos)[None, None]  # (1, 1, T, past + T), or (1, 1, T, cache slots) when static
            if attention_mask is not None:
                allowed = allowed & attention_mask[:, None, None, :].bool()
            self_mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
                ~allowed, torch.finfo(dtype).min
            )
        if encoder_attention_mask is not None and encoder_hidden_states is not None:
            _check_mask(encoder_attention_mask, encoder_hidden_states.shape[:2], "attention_mask", "input_ids")
        cross_mask = _padding_mask(encoder_attention_mask, inputs_embeds.dtype)

        hidden_states = inputs_embeds + self.embed_positions(tgt_len, past_length).to(inputs_embeds.dtype)
        hidden_states = fast_dropout(hidden_states, self.config.dropout, self.training)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_self_attns = () if output_attentions else None
        all_cross_attns = () if output_attentions and encoder_hidden_states is not None else None
        for layer in self.layers:
            # Tensors that may need gradients go positionally: reentrant gradient checkpointing sees only those.
            hidden_states, self_weights, cross_weights = layer(
                hidden_states,
                self_mask,
                encoder_hidden_states,
                cross_mask,
                cache=cache if use_cache else None,
                output_attentions=output_attentions,
                use_cache=use_cache,
            )
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            if output_attentions:
                all_self_attns += (self_weights,)
            if all_cross_attns is not None:
                all_cross_attns += (cross_weights,)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
            if output_hidden_states:
                all_hidden_states = all_hidden_states[:-1] + (hidden_states,)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            cache=cache if use_cache else None,
            hidden_states=all_hidden_states,
            attentions=all_self_attns,
            cross_attentions=all_cross_attns,
        )


def _source(input_ids, inputs_embeds, encoder_outputs) -> tuple[str, torch.Tensor | None]:
    """The encoder-side argument the caller passed, with its name for error messages."""
    if encoder_outputs is not None:
        return "encoder_outputs", encoder_outputs[0]
    if input_ids is not None:
        return "input_ids", input_ids
    return "inputs_embeds", inputs_embeds


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher forcing: the decoder reads <start> y_1 .. y_{n-1} to predict y_1 .. y_n (-100 becomes pad)."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# The Args and Returns the two forwards share, composed into their docstrings (`_with_docstring_fragments`),
# as transformers composes the common arguments of its models' forwards.
_ENCODER_DECODER_INPUTS_DOC = r"""
input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`):
    Source token ids. Pass this, `inputs_embeds` or `encoder_outputs`.
attention_mask (`torch.LongTensor` of shape `(batch_size, source_length)`, *optional*):
    1 for real source tokens, 0 for padding: masks the keys of the encoder self-attention and of the
    decoder's encoder-decoder attention.
decoder_input_ids (`torch.LongTensor` of shape `(batch_size, target_length)`):
    The decoder's input. Teacher forcing: the target shifted right, starting with
    `config.decoder_start_token_id` (`shift_tokens_right`). When decoding with a `cache`, only the
    new tokens.
decoder_attention_mask (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
    1 for real target tokens, 0 for padding (or `(batch_size, past_length + target_length)` with a
    cache). The causal mask (section 3.2.3) is always applied.
encoder_outputs (`BaseModelOutput` or `tuple`, *optional*):
    A precomputed encoder output whose first element, `last_hidden_state`, is
    `(batch_size, source_length, d_model)`; the encoder is then not run (generate() passes it).
cache (`EncoderDecoderCache`, *optional*):
    Keys and values of the earlier decoding steps (self-attention) and of the encoder output
    (encoder-decoder attention). Also accepted under its former name `past_key_values`.
inputs_embeds (`torch.FloatTensor` of shape `(batch_size, source_length, d_model)`, *optional*):
    Instead of `input_ids`: the token embeddings, as `model.get_input_embeddings()(input_ids)` returns
    them (scaled by sqrt(d_model), section 3.4); the positional encodings are added to them.
decoder_inputs_embeds (`torch.FloatTensor` of shape `(batch_size, target_length, d_model)`, *optional*):
    Instead of `decoder_input_ids`, likewise.
"""
_OUTPUT_FLAGS_DOC = r"""
use_cache (`bool`, *optional*):
    Return the cache for the next decoding step (default `config.use_cache`).
output_attentions (`bool`, *optional*):
    Return every layer's attention weights, each `(batch_size, heads, query_length, key_length)`.
output_hidden_states (`bool`, *optional*):
    Return the hidden states after the embeddings and after every layer, each
    `(batch_size, length, d_model)`.
return_dict (`bool`, *optional*):
    `False` returns a tuple instead of the output class.
"""
_SEQ2SEQ_OUTPUTS_DOC = r"""
cache (with `use_cache`): the `EncoderDecoderCache` to pass to the next decoding step.
decoder_hidden_states, decoder_attentions (with `output_hidden_states`, `output_attentions`).
cross_attentions (with `output_attentions`): the encoder-decoder attention weights, each
    `(batch_size, heads, target_length, source_length)`.
encoder_last_hidden_state: the encoder's output, `(batch_size, source_length, d_model)`.
encoder_hidden_states, encoder_attentions (with `output_hidden_states`, `output_attentions`).
"""


def _with_docstring_fragments(**fragments: str) -> Callable:
    """Replaces each line `{name}` of the decorated function's docstring by the fragment `name`, indented as that
    line is."""

    def decorate(function: Callable) -> Callable:
        lines = []
        for line in function.__doc__.split("\n"):
            name = line.strip()[1:-1]
            if line.strip() == "{" + name + "}" and name in fragments:
                indent = line[: len(line) - len(line.lstrip())]
                lines += [indent + text if text else text for text in fragments[name].strip("\n").split("\n")]
            else:
                lines.append(line)
        function.__doc__ = "\n".join(lines)
        return function

    return decorate


def _seq2seq_forward(forward: Callable) -> Callable:
    """What both public forwards are wrapped in: the shared Args and Returns in their docstrings, `cache` also
    accepted as `past_key_values`, and a tuple instead of the output class with `return_dict=False`."""
    forward = _with_docstring_fragments(
        encoder_decoder_inputs=_ENCODER_DECODER_INPUTS_DOC,
        output_flags=_OUTPUT_FLAGS_DOC,
        seq2seq_outputs=_SEQ2SEQ_OUTPUTS_DOC,
    )(forward)
    return deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")(can_return_tuple(forward))


class TransformerModel(TransformerPreTrainedModel):
    """Encoder and decoder without the output projection; returns `Seq2SeqModelOutput`."""

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        if config.tie_word_embeddings:
            # Section 3.4: one embedding matrix for source and target (a joint vocabulary), tied by the library
            # (`tie_weights`), which also reports it when a checkpoint lacks it.
            self.shared = _make_token_embedding(config)
            self._tied_weights_keys = {
                "encoder.embed_tokens.weight": "shared.weight",
                "decoder.embed_tokens.weight": "shared.weight",
            }
        else:
            self.shared = None
            self._tied_weights_keys = None
        self.encoder = TransformerEncoder(config)
        self.decoder = TransformerDecoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value):
        if self.config.tie_word_embeddings:
            self.shared = value
            self.decoder.embed_tokens = value
        self.encoder.embed_tokens = value  # untied: the decoder keeps its own

    def get_encoder(self, modality=None):
        return self.encoder

    def get_decoder(self, modality=None):
        return self.decoder

    @_seq2seq_forward
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        r"""The encoder and decoder stacks (section 3.1), without the pre-softmax linear layer.

        Args:
            {encoder_decoder_inputs}
            {output_flags}

        Returns:
            [`Seq2SeqModelOutput`] (a tuple with `return_dict=False`):
                last_hidden_state: the decoder's output, `(batch_size, target_length, d_model)`.
                {seq2seq_outputs}

        Example:

        ```python
        >>> from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        >>> tokenizer = AutoTokenizer.from_pretrained("space/model")
        >>> translator = AutoModelForSeq2SeqLM.from_pretrained("space/model", trust_remote_code=True).eval()
        >>> model = translator.model  # the TransformerModel inside
        >>> inputs = tokenizer("A man is riding a bike.", return_tensors="pt")
        >>> labels = tokenizer(text_target="Ein Mann fährt Fahrrad.", return_tensors="pt").input_ids
        >>> decoder_input_ids = translator.prepare_decoder_input_ids_from_labels(labels)  # shifted right
        >>> outputs = model(**inputs, decoder_input_ids=decoder_input_ids)
        >>> list(outputs.last_hidden_state.shape)  # (batch_size, target_length, d_model)
        [1, 5, 128]
        ```
        """
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "The decoder needs `decoder_input_ids` (or `labels`, from which they are made by shifting right)."
            )
        if decoder_input_ids is not None:
            target = "decoder_input_ids", decoder_input_ids
        else:
            target = "decoder_inputs_embeds", decoder_inputs_embeds
        _check_same_batch(*_source(input_ids, inputs_embeds, encoder_outputs), *target)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


class TransformerForConditionalGeneration(TransformerPreTrainedModel, GenerationMixin):
    """The full translation model: `TransformerModel` plus the pre-softmax linear layer (section 3.4),
    tied to the shared embedding, and a label-smoothed cross-entropy loss (section 5.4).

    With `config.add_final_logits_bias` that layer has a bias, Marian's `final_logits_bias`: logits = h W^T + b.
    """

    # Trainer passes no `num_items_in_batch`: the loss is a mean over the batch's real target tokens.
    accepts_loss_kwargs = False
    # `fast_paths.LogitsAndSmoothedLoss` for an eager training step: the same values, a cheaper backward, but
    # the loss then has no autograd path through the returned logits (the library's contract), so it is an
    # explicit opt-in, `model.fused_loss = True`, which the training CLI takes when it does not compile.
    fused_loss = False

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        self.model = TransformerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=config.add_final_logits_bias)
        if config.tie_word_embeddings:
            self._tied_weights_keys = {
                "lm_head.weight": "model.shared.weight",
                "model.encoder.embed_tokens.weight": "model.shared.weight",
                "model.decoder.embed_tokens.weight": "model.shared.weight",
            }
        else:
            self._tied_weights_keys = None
        # Never saved (they are `model.shared.weight`): the Trainer, resuming, then ties them instead of warning
        # that the checkpoint lacks them.
        self._keys_to_ignore_on_save = list(self._tied_weights_keys) if self._tied_weights_keys else None
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_encoder(self, modality=None):
        return self.model.encoder

    def get_decoder(self, modality=None):
        return self.model.decoder

    def create_masks_for_generate(self, attention_mask=None, **kwargs):
        """With a static cache generate() would build a 4D decoder mask; the decoder builds its own from the
        cache (causal over the filled slots, plus padding), so the 2D `decoder_attention_mask` passes as it is."""
        return attention_mask

    def _reorder_cache(self, cache: Cache, beam_idx: torch.Tensor) -> Cache:
        """Beam search: after each step the cache follows the beams that were kept (`beam_idx`, rows of the
        flattened batch x beams). Only the self-attention keys/values need it: every cache tensor has
        batch x beams rows, but the cross-attention rows of the beams of one sentence are the same (its
        encoder output) and beams never move between sentences, so reordering them would copy equal rows."""
        if isinstance(cache, EncoderDecoderCache):
            cache.self_attention_cache.reorder_cache(beam_idx)
        else:
            cache.reorder_cache(beam_idx)
        return cache

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Used by `DataCollatorForSeq2Seq` to build teacher-forcing decoder inputs from padded labels."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def loss_from_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Label-smoothed cross-entropy (section 5.4) averaged over target tokens; -100 marks ignored positions.

        A batch with no real target token gives a zero loss (with a gradient path), never NaN or inf.
        """
        if labels.shape != logits.shape[:2]:
            raise ValueError(f"`labels` has shape {tuple(labels.shape)}, expected {tuple(logits.shape[:2])}.")
        summed = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            ignore_index=-100,
            label_smoothing=self.config.label_smoothing,
            reduction="sum",
        )
        return summed / (labels != -100).sum().clamp(min=1)  # the mean over real tokens, with no branch on the data

    @_seq2seq_forward
    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        cache=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        r"""Translation: `TransformerModel`, the pre-softmax linear layer (section 3.4) and, given `labels`, the
        label-smoothed cross-entropy (section 5.4).

        Args:
            {encoder_decoder_inputs}
            labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*):
                Target token ids for the loss; -100 marks positions it ignores. Without `decoder_input_ids` (and
                `decoder_inputs_embeds`) the decoder reads `labels` shifted right. No cache is used with labels.
            {output_flags}

        Returns:
            [`Seq2SeqLMOutput`] (a tuple with `return_dict=False`):
                loss (with `labels`): the label-smoothed cross-entropy, a mean over the real target tokens.
                logits: the scores before the softmax, `(batch_size, target_length, vocab_size)`.
                {seq2seq_outputs}

        Example:

        ```python
        >>> from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        >>> tokenizer = AutoTokenizer.from_pretrained("space/model")
        >>> model = AutoModelForSeq2SeqLM.from_pretrained("space/model", trust_remote_code=True).eval()
        >>> inputs = tokenizer("A man is riding a bike.", return_tensors="pt")

        >>> # Training: the loss of a reference translation.
        >>> labels = tokenizer(text_target="Ein Mann fährt Fahrrad.", return_tensors="pt").input_ids
        >>> outputs = model(**inputs, labels=labels)
        >>> list(outputs.logits.shape)  # (batch_size, target_length, vocab_size)
        [1, 5, 10000]

        >>> # Translation: beam search (section 6.1) with the settings of generation_config.json.
        >>> tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True)
        ['Ein Mann fährt auf einem Fahrrad.']
        ```
        """
        if labels is not None:
            _check_ids(labels, "labels")
            _check_same_batch(*_source(input_ids, inputs_embeds, encoder_outputs), "labels", labels)
            bad = (labels != -100) & ((labels < 0) | (labels >= self.config.vocab_size))
            if not torch.compiler.is_compiling() and bool(bad.any()):
                raise ValueError(
                    f"`labels` contains id {labels[bad][0].item()}, outside the vocabulary [0, "
                    f"{self.config.vocab_size}); use -100 for positions the loss should ignore."
                )
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            use_cache = False
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state  # (B, T, d_model)
        fused = self.fused_loss and labels is not None
        if fused and can_fuse_logits_and_loss(self.lm_head, hidden, labels, self.training):
            # the same logits and loss as below, with a cheaper backward (fast_paths.LogitsAndSmoothedLoss)
            logits, loss = LogitsAndSmoothedLoss.apply(hidden, self.lm_head.weight, labels, self.config.label_smoothing)
        else:
            logits = self.lm_head(hidden)  # section 3.4, the pre-softmax linear layer: (B, T, vocab)
            loss = self.loss_from_logits(logits, labels) if labels is not None else None
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


__all__ = [
    "TransformerPreTrainedModel",
    "TransformerModel",
    "TransformerForConditionalGeneration",
    "TransformerConfig",
]
