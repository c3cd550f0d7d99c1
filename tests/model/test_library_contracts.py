"""The contracts transformers' own model tests hold its models to, checked on ours the way they apply to Marian.

Each test states one contract: the decoder alone is a causal language model (with and without cache),
`inputs_embeds` is interchangeable with `input_ids`, missing weights are reported at load, `return_dict=False`
gives tuples, both gradient-checkpointing modes train, the loss is differentiable through the logits returned
beside it, the deprecated `past_key_values=` warns, and a static cache decodes the same as the dynamic one,
in eager mode, under `torch.compile(fullgraph=True)` and as a `torch.export` program.
"""

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file, save_file

import modeling  # noqa: F401  (registers the Auto classes)
from modeling import TransformerForConditionalGeneration, TransformerModel
from transformers import AutoModelForSeq2SeqLM, EncoderDecoderCache, StaticCache


def make_model(cls=TransformerForConditionalGeneration, **overrides):
    torch.manual_seed(0)
    return cls(tiny_config(**overrides)).eval()


def ids(batch, length, seed=1):
    return torch.randint(3, 99, (batch, length), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ the decoder alone


@pytest.mark.parametrize("normalize_before", [False, True])
def test_decoder_alone_is_causal_without_cache(normalize_before):
    """Without encoder states the decoder skips encoder-decoder attention: position t depends on tokens <= t only."""
    decoder = make_model(normalize_before=normalize_before).get_decoder()
    tokens = ids(2, 6)
    changed = tokens.clone()
    changed[:, 3:] = ids(2, 3, seed=7)
    with torch.no_grad():
        out = decoder(input_ids=tokens, use_cache=False, output_attentions=True)
        later_changed = decoder(input_ids=changed, use_cache=False, output_attentions=True).last_hidden_state
    torch.testing.assert_close(later_changed[:, :3], out.last_hidden_state[:, :3], atol=0, rtol=0)
    assert not torch.allclose(later_changed[:, 3:], out.last_hidden_state[:, 3:])
    assert out.cross_attentions is None
    for weights in out.attentions:  # (B, h, T, T): nothing above the diagonal
        assert float(weights.triu(diagonal=1).abs().max()) == 0.0


def test_decoder_layer_alone_is_causal():
    layer = make_model().get_decoder().layers[0]
    hidden = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(0))
    changed = hidden.clone()
    changed[:, 4] += 1.0
    with torch.no_grad():
        first, _, cross = layer(hidden)
        second, _, _ = layer(changed)
    assert cross is None
    torch.testing.assert_close(second[:, :4], first[:, :4], atol=0, rtol=0)


def test_decoder_alone_with_cache_matches_without_and_caches_each_token_once():
    decoder = make_model().get_decoder()
    tokens = ids(2, 5)
    with torch.no_grad():
        full = decoder(input_ids=tokens, use_cache=False).last_hidden_state
        cache, steps = None, []
        for t in range(tokens.shape[1]):
            out = decoder(input_ids=tokens[:, t : t + 1], cache=cache, use_cache=True)
            cache = out.cache
            steps.append(out.last_hidden_state)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.get_seq_length() == 5  # one entry per token, none for the skipped cross block
    assert cache.self_attention_cache.layers[0].keys.shape[2] == 5
    assert cache.cross_attention_cache.get_seq_length() == 0


# ------------------------------------------------------------------------------------ inputs_embeds, tuples


def test_inputs_embeds_equal_input_ids():
    model = make_model()
    src, tgt = ids(2, 6), ids(2, 4, seed=2)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        by_ids = model(input_ids=src, decoder_input_ids=tgt).logits
        by_embeds = model(inputs_embeds=embed(src), decoder_inputs_embeds=embed(tgt)).logits
        encoder = model.get_encoder()
        enc_ids = encoder(input_ids=src).last_hidden_state
        enc_embeds = encoder(inputs_embeds=embed(src)).last_hidden_state
    torch.testing.assert_close(by_embeds, by_ids, atol=0, rtol=0)
    torch.testing.assert_close(enc_embeds, enc_ids, atol=0, rtol=0)


@pytest.mark.parametrize("cls", [TransformerForConditionalGeneration, TransformerModel])
def test_return_dict_false_gives_the_same_values_as_a_tuple(cls):
    model = make_model(cls)
    src, tgt = ids(2, 6), ids(2, 4, seed=2)
    kwargs = dict(input_ids=src, decoder_input_ids=tgt, output_hidden_states=True, output_attentions=True)
    if cls is TransformerForConditionalGeneration:
        kwargs["labels"] = tgt
    with torch.no_grad():
        as_dict = model(**kwargs)
        as_tuple = model(**kwargs, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
    for got, expected in zip(as_tuple, as_dict.to_tuple()):
        if isinstance(expected, torch.Tensor):
            torch.testing.assert_close(got, expected, atol=0, rtol=0)

    encoder, decoder = model.get_encoder(), model.get_decoder()
    with torch.no_grad():
        enc = encoder(input_ids=src, output_attentions=True, return_dict=False)
        dec = decoder(
            input_ids=tgt, encoder_hidden_states=enc[0], output_attentions=True, return_dict=False, use_cache=False
        )
    assert isinstance(enc, tuple) and isinstance(dec, tuple)
    torch.testing.assert_close(enc[0], as_dict.encoder_last_hidden_state, atol=0, rtol=0)
    decoder_states = as_dict.last_hidden_state if cls is TransformerModel else as_dict.decoder_hidden_states[-1]
    torch.testing.assert_close(dec[0], decoder_states, atol=0, rtol=0)


# ----------------------------------------------------------------------------------------- loading


def test_missing_embeddings_are_reported_at_load(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = [k for k in weights if "embed_tokens" in k or "shared" in k or "lm_head" in k]
    assert dropped, sorted(weights)
    save_file(
        {k: v for k, v in weights.items() if k not in dropped},
        tmp_path / "model.safetensors",
        metadata={"format": "pt"},
    )
    _, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    missing = set(info["missing_keys"])
    assert missing, info
    assert all("embed_tokens" in k or "shared" in k or "lm_head" in k for k in missing), missing


def test_complete_checkpoint_loads_without_missing_or_unexpected_keys(tmp_path):
    make_model().save_pretrained(tmp_path)
    _, info = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info


# ------------------------------------------------------------------------------------------- training


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_trains_in_both_modes(use_reentrant):
    """Checkpointed gradients equal the plain ones (dropout off), in both of torch's checkpointing modes."""
    src, tgt = ids(2, 6), ids(2, 5, seed=2)
    plain = make_model(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0).train()
    plain(input_ids=src, labels=tgt).loss.backward()
    checkpointed = make_model(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0).train()
    checkpointed.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert checkpointed.is_activation_checkpointing
    checkpointed(input_ids=src, labels=tgt).loss.backward()
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        assert q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)


def test_loss_is_differentiable_through_the_returned_logits():
    """The library's check that labels are shifted once: d loss / d logits[t] is nonzero exactly where
    labels[t] counts, and the loss is the cross-entropy of those very logits."""
    model = make_model(label_smoothing=0.0).train()
    src, labels = ids(2, 6), ids(2, 5, seed=2)
    labels[1, 3:] = -100
    out = model(input_ids=src, labels=labels)
    (grad,) = torch.autograd.grad(out.loss, out.logits)
    counted = grad.abs().sum(-1) > 0
    assert torch.equal(counted, labels != -100)
    expected = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 99), labels.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)


def test_past_key_values_is_deprecated_in_favour_of_cache():
    model = make_model()
    src, tgt = ids(1, 6), ids(1, 1, seed=2)
    with torch.no_grad():
        first = model(input_ids=src, decoder_input_ids=tgt, use_cache=True)
        with pytest.warns(FutureWarning, match=r"`past_key_values` is deprecated.*`cache`"):
            second = model(input_ids=src, decoder_input_ids=tgt, past_key_values=first.cache, use_cache=True)
    assert second.cache.get_seq_length() == 2


# ------------------------------------------------------------------------ static cache, compile, export


@pytest.mark.parametrize("num_beams", [1, 3])
def test_static_cache_generates_what_the_dynamic_cache_does(num_beams):
    model = make_model()
    src = ids(3, 7)
    mask = torch.ones_like(src)
    mask[0, 5:] = 0
    kwargs = dict(attention_mask=mask, num_beams=num_beams, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    with torch.no_grad():
        dynamic = model.generate(src, **kwargs)
        static = model.generate(src, cache_implementation="static", **kwargs)
    assert torch.equal(static, dynamic)


def test_static_cache_longer_than_the_positions_is_refused():
    model = make_model(position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match=r"static cache holds 40 positions but the decoder encodes at most 16"):
        model.generate(ids(1, 5), cache_implementation="static", max_new_tokens=40, min_new_tokens=40)


def greedy_steps(step, model, src, steps):
    """Feed the decoder one token at a time through `step` (eager, compiled or exported), greedily; return the
    per-step logits and the tokens fed."""
    encoder_states = model.get_encoder()(input_ids=src).last_hidden_state
    fed = [torch.full((src.shape[0], 1), model.config.decoder_start_token_id)]
    logits = []
    for position in range(steps):
        logits.append(step(fed[-1], encoder_states, position))
        fed.append(logits[-1][:, -1].argmax(-1, keepdim=True))
    return torch.cat(logits, dim=1), torch.cat(fed[:-1], dim=1)


def test_compiled_decoding_step_is_one_graph_and_matches_eager():
    model = make_model()
    src = ids(2, 7)
    compiled = torch.compile(model.forward, fullgraph=True, backend="eager")  # fullgraph: a graph break raises
    cache = EncoderDecoderCache(
        StaticCache(config=model.config, max_cache_len=12), StaticCache(config=model.config, max_cache_len=src.shape[1])
    )

    def step(token, encoder_states, position):
        return compiled(encoder_outputs=(encoder_states,), decoder_input_ids=token, cache=cache, use_cache=True).logits

    with torch.no_grad():
        logits, fed = greedy_steps(step, model, src, steps=6)
        eager = model(input_ids=src, decoder_input_ids=fed).logits
    torch.testing.assert_close(logits, eager, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("normalize_before", [False, True])
def test_torch_export_of_encoder_and_decoder_step_gives_the_eager_logits(normalize_before):
    """transformers' ExecuTorch modules: the encoder with a dynamic source length, one decoder step with a static
    cache; the exported programs reproduce the eager model on a source of another length than the example."""
    from transformers.integrations.executorch import Seq2SeqLMExportableModule

    model = make_model(normalize_before=normalize_before)
    exportable = Seq2SeqLMExportableModule(model, batch_size=1, max_hidden_seq_length=32, max_cache_length=12)
    exportable.export(encoder_input_ids=ids(1, 7))
    encoder, decoder = exportable.exported_encoder.module(), exportable.exported_decoder.module()
    src = ids(1, 11, seed=3)

    with torch.no_grad():
        torch.testing.assert_close(
            encoder(src), model.get_encoder()(input_ids=src).last_hidden_state, atol=1e-5, rtol=1e-5
        )
        logits, fed = greedy_steps(
            lambda token, states, i: decoder(token, encoder(src), torch.tensor([i])), model, src, steps=8
        )
        eager = model(input_ids=src, decoder_input_ids=fed).logits
    torch.testing.assert_close(logits, eager, atol=1e-5, rtol=1e-5)


def test_attention_implementation_switches_after_loading_and_unsupported_ones_are_refused():
    model = make_model()
    src, tgt = ids(2, 6), ids(2, 4, seed=2)
    with torch.no_grad():
        sdpa = model(input_ids=src, decoder_input_ids=tgt).logits
        model.set_attn_implementation("eager")
        eager = model(input_ids=src, decoder_input_ids=tgt).logits
    assert {m.config._attn_implementation for m in model.modules() if hasattr(m, "q_proj")} == {"eager"}
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"does not support an attention implementation through torch's flex"):
        model.set_attn_implementation("flex_attention")
    with pytest.raises(ValueError, match=r"does not support Flash Attention 2"):
        model.set_attn_implementation("flash_attention_2")


def test_a_config_the_weights_do_not_fit_is_refused_unless_asked(tmp_path):
    """config.json saying 3 encoder layers against weights of 2 would load with a warning and translate garbage;
    it is refused by name, `strict=False` loads it (the missing layer at random) and `output_loading_info` reports."""
    import json

    make_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["encoder_layers"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"the weights do not fit config.json: 16 weights it describes are not in the "
        r"checkpoint \(model.encoder.layers.2.ffn.fc1.bias, .*\)\. Fix "
        r"config.json to match the weights, or pass strict=False",
    ):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert len(AutoModelForSeq2SeqLM.from_pretrained(tmp_path, strict=False).get_encoder().layers) == 3
    _, report = AutoModelForSeq2SeqLM.from_pretrained(tmp_path, output_loading_info=True)
    assert len(report["missing_keys"]) == 16


def test_weights_that_are_not_finite_are_refused_at_load(tmp_path):
    model = make_model()
    with torch.no_grad():
        model.model.encoder.layers[1].ffn.fc2.bias[3] = float("inf")
    model.save_pretrained(tmp_path)
    with pytest.raises(
        ValueError,
        match=r"the weights are not finite \(NaN or inf, first in "
        r"model.encoder.layers.1.ffn.fc2.bias\): the checkpoint is broken",
    ):
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert not torch.isfinite(
        AutoModelForSeq2SeqLM.from_pretrained(tmp_path, strict=False).model.encoder.layers[1].ffn.fc2.bias
    ).all()
