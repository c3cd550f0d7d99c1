"""The paper's claims about the model, checked on a tiny config (vocab 99, d_model 16, 2+2 layers, 4 heads).

Masks (section 3.2.3), attention probabilities (equation 1), backends, caching, save/load, weight tying
(section 3.4), label smoothing (section 5.4), embeddings and positions (sections 3.4, 3.5), the base
model's size (Table 3) and the errors bad input gets.
"""

import math
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

import modeling  # noqa: F401  (registers the Auto classes)
import modeling.modeling_transformer as mt
from configuration import TransformerConfig
from modeling import TransformerForConditionalGeneration, TransformerModel
from conftest import ROOT as CONFTEST_ROOT

ROOT = Path(CONFTEST_ROOT)  # the repository
PAD, BOS, EOS = 0, 1, 2
ATOL = 1e-5


def make_model(**overrides):
    torch.manual_seed(0)
    return TransformerForConditionalGeneration(tiny_config(**overrides)).eval()


def random_ids(batch, length, vocab=99, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=g)


def padded_batch():
    """Two sources of lengths 7 and 4 (right-padded), two targets of lengths 6 and 3."""
    src = random_ids(2, 7, seed=1)
    src_mask = torch.ones_like(src)
    src_mask[1, 4:] = 0
    src[1, 4:] = PAD
    tgt = random_ids(2, 6, seed=2)
    tgt[:, 0] = BOS
    tgt_mask = torch.ones_like(tgt)
    tgt_mask[1, 3:] = 0
    tgt[1, 3:] = PAD
    return src, src_mask, tgt, tgt_mask


def set_attn(model, implementation):
    model.config._attn_implementation = implementation
    assert model.model.decoder.layers[0].encoder_attn.config._attn_implementation == implementation
    return model


@pytest.fixture
def count_eager(monkeypatch):
    """Counts calls of the eager attention function, to prove which backend really ran."""
    calls = []
    original = mt.eager_attention_forward

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(mt, "eager_attention_forward", counting)
    return calls


# --------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("with_decoder_mask", [False, True])
def test_causal_mask_later_tokens_change_no_earlier_logit(implementation, with_decoder_mask):
    model = set_attn(make_model(), implementation)
    src = random_ids(2, 5, seed=3)
    tgt = random_ids(2, 8, seed=4)
    # An all-ones decoder mask takes the "no tensor, is_causal" path; one padded row builds an explicit mask.
    dec_mask = None
    if with_decoder_mask:
        dec_mask = torch.ones_like(tgt)
        dec_mask[0, -1] = 0
    with torch.no_grad():
        base = model(input_ids=src, decoder_input_ids=tgt, decoder_attention_mask=dec_mask).logits
        for t in range(tgt.shape[1] - 1):
            changed = tgt.clone()
            shift = random_ids(2, tgt.shape[1] - t - 1, vocab=98, seed=100 + t) - 2  # in 1..95
            changed[:, t + 1 :] = (tgt[:, t + 1 :] - 3 + shift) % 96 + 3  # every later id differs, stays in 3..98
            assert (changed[:, t + 1 :] != tgt[:, t + 1 :]).all()
            logits = model(input_ids=src, decoder_input_ids=changed, decoder_attention_mask=dec_mask).logits
            torch.testing.assert_close(logits[:, : t + 1], base[:, : t + 1], atol=ATOL, rtol=0)
            # ... and the model is not trivially ignoring the decoder input: the changed position moves.
            assert (logits[:, t + 1] - base[:, t + 1]).abs().max() > 1e-3


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_mask_ids_under_padding_change_nothing(implementation, side):
    model = set_attn(make_model(), implementation)
    src = random_ids(2, 7, seed=5)
    tgt = random_ids(2, 6, seed=6)
    src_mask = torch.ones_like(src)
    tgt_mask = torch.ones_like(tgt)
    if side == "right":
        src_mask[1, 4:] = 0
        tgt_mask[1, 4:] = 0
    else:
        src_mask[1, :3] = 0
        tgt_mask[1, :2] = 0  # left padding is the case where the decoder's own padding mask matters
    with torch.no_grad():
        base = model(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask)
        other_src = torch.where(src_mask.bool(), src, random_ids(2, 7, seed=7))
        other_tgt = torch.where(tgt_mask.bool(), tgt, random_ids(2, 6, seed=8))
        assert not torch.equal(other_src, src) and not torch.equal(other_tgt, tgt)
        out = model(
            input_ids=other_src, attention_mask=src_mask, decoder_input_ids=other_tgt, decoder_attention_mask=tgt_mask
        )
    real_src, real_tgt = src_mask.bool(), tgt_mask.bool()
    torch.testing.assert_close(
        out.encoder_last_hidden_state[real_src], base.encoder_last_hidden_state[real_src], atol=ATOL, rtol=0
    )
    torch.testing.assert_close(out.logits[real_tgt], base.logits[real_tgt], atol=ATOL, rtol=0)

    # Without the masks the same change is visible: the test above can fail.
    with torch.no_grad():
        unmasked_a = model(input_ids=src, decoder_input_ids=tgt).logits
        unmasked_b = model(input_ids=other_src, decoder_input_ids=other_tgt).logits
    assert (unmasked_a[real_tgt] - unmasked_b[real_tgt]).abs().max() > 1e-3


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_padded_batch_matches_each_row_alone(implementation):
    model = set_attn(make_model(), implementation)
    src, src_mask, tgt, tgt_mask = padded_batch()
    with torch.no_grad():
        batch = model(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask)
        for row in range(2):
            s, t = int(src_mask[row].sum()), int(tgt_mask[row].sum())
            alone = model(input_ids=src[row : row + 1, :s], decoder_input_ids=tgt[row : row + 1, :t])
            torch.testing.assert_close(batch.logits[row, :t], alone.logits[0], atol=ATOL, rtol=0)
            torch.testing.assert_close(
                batch.encoder_last_hidden_state[row, :s], alone.encoder_last_hidden_state[0], atol=ATOL, rtol=0
            )


# ------------------------------------------------------------------------------------------ attention


def assert_probabilities(weights, masked):
    """`weights` (B, h, T, S); `masked` a bool tensor broadcastable to it, True where attention is forbidden."""
    assert torch.isfinite(weights).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-6, rtol=0)
    masked = masked.expand_as(weights)
    assert masked.any() and (weights[masked] == 0).all(), "masked columns must get exactly zero probability"
    assert (weights[~masked] > 0).all()


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_attention_weights_are_probabilities(implementation):
    model = set_attn(make_model(), implementation)
    src, src_mask, tgt, tgt_mask = padded_batch()
    with torch.no_grad():
        out = model(
            input_ids=src,
            attention_mask=src_mask,
            decoder_input_ids=tgt,
            decoder_attention_mask=tgt_mask,
            output_attentions=True,
        )
    cfg = model.config
    B, S, T, h = src.shape[0], src.shape[1], tgt.shape[1], cfg.encoder_attention_heads
    src_pad = ~src_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)[None, None]  # (1, 1, T, T)
    tgt_pad = ~tgt_mask.bool()[:, None, None, :]
    for name, attentions, shape, masked in (
        ("encoder", out.encoder_attentions, (B, h, S, S), src_pad),
        ("decoder", out.decoder_attentions, (B, h, T, T), future | tgt_pad),
        ("cross", out.cross_attentions, (B, h, T, S), src_pad),
    ):
        assert len(attentions) == 2, name
        for weights in attentions:
            assert isinstance(weights, torch.Tensor), f"{name} attention is {weights!r} under {implementation}"
            assert weights.shape == shape, name
            assert_probabilities(weights, masked)


def test_unpadded_decoder_attention_masks_the_future():
    """No mask tensor at all (the sdpa/is_causal path): the returned weights must still be causal."""
    model = make_model()
    src, tgt = random_ids(1, 5), random_ids(1, 6, seed=2)
    with torch.no_grad():
        out = model(input_ids=src, decoder_input_ids=tgt, output_attentions=True)
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)[None, None]
    for weights in out.decoder_attentions:
        assert_probabilities(weights, future)
    for weights in out.encoder_attentions + out.cross_attentions:  # nothing masked: all positive, rows sum to 1
        assert (weights > 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-6, rtol=0)


def test_output_attentions_same_under_sdpa_and_eager():
    src, src_mask, tgt, tgt_mask = padded_batch()
    outs = {}
    for implementation in ("sdpa", "eager"):
        model = set_attn(make_model(), implementation)
        with torch.no_grad():
            outs[implementation] = model(
                input_ids=src,
                attention_mask=src_mask,
                decoder_input_ids=tgt,
                decoder_attention_mask=tgt_mask,
                output_attentions=True,
            )
    for field in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        for a, b in zip(getattr(outs["sdpa"], field), getattr(outs["eager"], field)):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_generate_returns_attentions(implementation, num_beams):
    model = set_attn(make_model(), implementation)
    src, src_mask, _, _ = padded_batch()
    with torch.no_grad():
        out = model.generate(
            input_ids=src,
            attention_mask=src_mask,
            max_new_tokens=4,
            min_new_tokens=4,
            num_beams=num_beams,
            do_sample=False,
            output_attentions=True,
            return_dict_in_generate=True,
        )
    rows, h = src.shape[0] * num_beams, model.config.decoder_attention_heads
    assert len(out.encoder_attentions) == 2
    for weights in out.encoder_attentions:  # the encoder runs once, before the rows are copied per beam
        assert isinstance(weights, torch.Tensor) and weights.shape == (src.shape[0], h, 7, 7)
        assert_probabilities(weights, ~src_mask.bool()[:, None, None, :])
    assert len(out.decoder_attentions) == len(out.cross_attentions) == 4  # one entry per generated token
    src_pad = ~src_mask.bool().repeat_interleave(num_beams, 0)[:, None, None, :]
    for step, (self_step, cross_step) in enumerate(zip(out.decoder_attentions, out.cross_attentions)):
        assert len(self_step) == len(cross_step) == 2
        for weights in self_step:  # with the cache, one query row over all decoded positions so far
            assert isinstance(weights, torch.Tensor) and weights.shape == (rows, h, 1, step + 1)
            torch.testing.assert_close(weights.sum(-1), torch.ones(rows, h, 1), atol=1e-6, rtol=0)
        for weights in cross_step:
            assert isinstance(weights, torch.Tensor) and weights.shape == (rows, h, 1, 7)
            assert_probabilities(weights, src_pad)


def test_eager_and_sdpa_logits_agree_and_backend_is_really_switched(count_eager):
    src, src_mask, tgt, tgt_mask = padded_batch()
    logits = {}
    for implementation in ("sdpa", "eager"):
        model = set_attn(make_model(), implementation)
        count_eager.clear()
        for masks in ((src_mask, tgt_mask), (None, None)):  # padded (explicit masks) and unpadded (is_causal) paths
            with torch.no_grad():
                out = model(
                    input_ids=src, attention_mask=masks[0], decoder_input_ids=tgt, decoder_attention_mask=masks[1]
                )
            logits[implementation, masks[0] is None] = out.logits
        n_calls = len(count_eager)
        assert n_calls == (12 if implementation == "eager" else 0), (implementation, n_calls)  # 2 runs x 6 attentions
    torch.testing.assert_close(logits["sdpa", False], logits["eager", False], atol=ATOL, rtol=0)
    torch.testing.assert_close(logits["sdpa", True], logits["eager", True], atol=ATOL, rtol=0)


def test_from_pretrained_attn_implementation(tmp_path):
    make_model().save_pretrained(tmp_path)
    src, src_mask, tgt, tgt_mask = padded_batch()
    logits = {}
    for implementation in ("sdpa", "eager"):
        model = TransformerForConditionalGeneration.from_pretrained(tmp_path, attn_implementation=implementation).eval()
        assert model.model.encoder.layers[0].self_attn.config._attn_implementation == implementation
        with torch.no_grad():
            logits[implementation] = model(
                input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask
            ).logits
    torch.testing.assert_close(logits["sdpa"], logits["eager"], atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------------- generation / cache


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cached_and_uncached_generation_identical(implementation, num_beams):
    model = set_attn(make_model(), implementation)
    src, src_mask, _, _ = padded_batch()
    kwargs = dict(
        input_ids=src,
        attention_mask=src_mask,
        max_new_tokens=10,
        num_beams=num_beams,
        do_sample=False,
        num_return_sequences=num_beams,
        output_scores=True,
        return_dict_in_generate=True,
    )
    with torch.no_grad():
        cached = model.generate(**kwargs, use_cache=True)
        uncached = model.generate(**kwargs, use_cache=False)
    assert cached.sequences.shape[1] > 3
    assert torch.equal(cached.sequences, uncached.sequences)
    for a, b in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_cached_forward_matches_full_forward():
    """Feeding the decoder one token at a time through the cache gives the full pass's logits."""
    model = make_model()
    src, src_mask, tgt, _ = padded_batch()
    with torch.no_grad():
        full = model(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, use_cache=False).logits
        cache, steps = None, []
        enc = model.get_encoder()(input_ids=src, attention_mask=src_mask)
        for t in range(tgt.shape[1]):
            out = model(
                encoder_outputs=enc,
                attention_mask=src_mask,
                decoder_input_ids=tgt[:, t : t + 1],
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            steps.append(out.logits)
        assert cache.get_seq_length() == tgt.shape[1]
        # A prefix of 3 from the cache, then 3 tokens at once (the explicit causal mask with an offset).
        prefix = model(encoder_outputs=enc, attention_mask=src_mask, decoder_input_ids=tgt[:, :3], use_cache=True)
        rest = model(
            encoder_outputs=enc,
            attention_mask=src_mask,
            decoder_input_ids=tgt[:, 3:],
            cache=prefix.cache,
            use_cache=True,
        )
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=ATOL, rtol=0)
    torch.testing.assert_close(torch.cat([prefix.logits, rest.logits], 1), full, atol=ATOL, rtol=0)


def test_sampling_is_seeded():
    model = make_model()
    src, src_mask, _, _ = padded_batch()
    kwargs = dict(input_ids=src, attention_mask=src_mask, max_new_tokens=12, do_sample=True, top_k=0, temperature=2.0)
    with torch.no_grad():
        torch.manual_seed(123)
        a = model.generate(**kwargs)
        torch.manual_seed(123)
        b = model.generate(**kwargs)
        others = []
        for seed in range(5):
            torch.manual_seed(1000 + seed)
            others.append(model.generate(**kwargs))
    assert torch.equal(a, b)
    assert (a[:, 0] == model.config.decoder_start_token_id).all()
    assert int(a.min()) >= 0 and int(a.max()) < model.config.vocab_size
    assert any(o.shape != a.shape or not torch.equal(o, a) for o in others), "different seeds, same samples"


# ------------------------------------------------------------------------------------- save / load / auto


@pytest.mark.parametrize(
    "overrides",
    [{}, {"position_embedding_type": "learned"}, {"normalize_before": True}, {"tie_word_embeddings": False}],
    ids=["paper", "learned_positions", "pre_ln", "untied"],
)
def test_save_load_round_trip_identical_logits(tmp_path, overrides):
    model = make_model(**overrides)
    src, src_mask, tgt, tgt_mask = padded_batch()
    kwargs = dict(input_ids=src, attention_mask=src_mask, decoder_input_ids=tgt, decoder_attention_mask=tgt_mask)
    with torch.no_grad():
        before = model(**kwargs).logits
    model.save_pretrained(tmp_path)
    loaded = TransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.to_diff_dict() == model.config.to_diff_dict()
    with torch.no_grad():
        after = loaded(**kwargs).logits
    assert torch.equal(before, after)
    if overrides.get("position_embedding_type") != "learned":
        # The sinusoid table is a non-persistent buffer: it must be recomputed, not left uninitialised.
        for stack in (loaded.model.encoder, loaded.model.decoder):
            assert isinstance(stack.embed_positions, mt.TransformerSinusoidalPositionalEmbedding)
            assert torch.equal(stack.embed_positions.weight, mt.sinusoidal_table(64, 16))
    state = loaded.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(state[name], tensor), name


def test_auto_classes_resolve_to_ours(tmp_path, config):
    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

    assert type(AutoConfig.for_model("transformer", vocab_size=99, d_model=16)) is TransformerConfig
    assert type(AutoModel.from_config(config)) is TransformerModel
    assert type(AutoModelForSeq2SeqLM.from_config(config)) is TransformerForConditionalGeneration

    model = make_model()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is TransformerConfig
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert type(loaded) is TransformerForConditionalGeneration
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is TransformerModel
    assert torch.equal(base.shared.weight, model.model.shared.weight)


# ------------------------------------------------------------------------------------------ weight tying


def test_tied_weights_are_one_tensor():
    model = make_model()
    shared = model.model.shared.weight
    for weight in (
        model.lm_head.weight,
        model.model.encoder.embed_tokens.weight,
        model.model.decoder.embed_tokens.weight,
    ):
        assert weight is shared
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    with torch.no_grad():
        shared[5].fill_(3.0)
    assert (model.lm_head.weight[5] == 3.0).all() and (model.model.decoder.embed_tokens.weight[5] == 3.0).all()
    # The embedding is counted once: 99 x 16 shared + everything else.
    n_unique = sum(p.numel() for p in model.parameters())
    untied = make_model(tie_word_embeddings=False)
    assert sum(p.numel() for p in untied.parameters()) == n_unique + 2 * 99 * 16
    # One gradient reaches the one tensor from all three uses.
    src, tgt = random_ids(1, 4), random_ids(1, 4, seed=2)
    model(input_ids=src, decoder_input_ids=tgt, labels=tgt).loss.backward()
    assert model.lm_head.weight.grad is model.model.shared.weight.grad


def test_tied_base_model():
    base = TransformerModel(tiny_config())
    assert base.encoder.embed_tokens.weight is base.shared.weight is base.decoder.embed_tokens.weight


def test_untied_weights_are_separate():
    model = make_model(tie_word_embeddings=False)
    weights = (model.lm_head.weight, model.model.encoder.embed_tokens.weight, model.model.decoder.embed_tokens.weight)
    assert model.model.shared is None
    assert len({w.data_ptr() for w in weights}) == 3
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    with torch.no_grad():
        weights[1][5].fill_(3.0)
    assert not (weights[0][5] == 3.0).all() and not (weights[2][5] == 3.0).all()


def test_tied_weights_survive_save_load(tmp_path):
    make_model().save_pretrained(tmp_path)
    loaded = TransformerForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.lm_head.weight is loaded.model.shared.weight is loaded.model.encoder.embed_tokens.weight
    assert loaded.model.decoder.embed_tokens.weight is loaded.model.shared.weight


@pytest.mark.parametrize("tie", [True, False])
def test_resize_token_embeddings(tie, tmp_path):
    model = make_model(tie_word_embeddings=tie)
    old_enc = model.model.encoder.embed_tokens.weight[:99].clone()
    model.resize_token_embeddings(120)
    assert model.config.vocab_size == 120
    assert model.lm_head.weight.shape == (120, 16)
    assert model.model.encoder.embed_tokens.weight.shape == (120, 16)
    assert model.model.decoder.embed_tokens.weight.shape == (120, 16)
    assert torch.equal(model.model.encoder.embed_tokens.weight[:99], old_enc)
    if tie:
        assert model.lm_head.weight is model.model.shared.weight is model.model.encoder.embed_tokens.weight
        assert model.model.decoder.embed_tokens.weight is model.model.shared.weight
    else:
        assert model.lm_head.weight.data_ptr() != model.model.encoder.embed_tokens.weight.data_ptr()
    src = torch.tensor([[3, 110, 119]])
    with torch.no_grad():
        logits = model(input_ids=src, decoder_input_ids=src).logits
    assert logits.shape == (1, 3, 120)
    model.save_pretrained(tmp_path)
    loaded = TransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert loaded.config.vocab_size == 120
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=src, decoder_input_ids=src).logits, logits)


# -------------------------------------------------------------------------------------------------- loss


def hand_label_smoothed_ce(logits, labels, eps):
    """Section 5.4 as in torch: target distribution (1 - eps) one-hot + eps / V uniform, mean over real tokens."""
    total, count = 0.0, 0
    V = logits.shape[-1]
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1]):
            y = int(labels[b, t])
            if y == -100:
                continue
            logp = torch.log_softmax(logits[b, t].double(), -1)
            q = torch.full((V,), eps / V, dtype=torch.float64)
            q[y] += 1.0 - eps
            total += float(-(q * logp).sum())
            count += 1
    return total / count


@pytest.mark.parametrize("eps", [0.1, 0.0, 0.3])
def test_label_smoothed_loss_matches_hand_computation(eps):
    model = make_model(label_smoothing=eps)
    src, src_mask, _, _ = padded_batch()
    labels = random_ids(2, 5, seed=9)
    labels[1, 3:] = -100
    with torch.no_grad():
        out = model(input_ids=src, attention_mask=src_mask, labels=labels)
    expected = hand_label_smoothed_ce(out.logits, labels, eps)
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    # The decoder inputs are the labels shifted right, starting from the start token, -100 -> pad.
    shifted = model.prepare_decoder_input_ids_from_labels(labels)
    assert shifted[:, 0].tolist() == [BOS, BOS]
    assert torch.equal(shifted[0, 1:], labels[0, :-1])
    assert shifted[1, 4].item() == PAD
    with torch.no_grad():
        explicit = model(input_ids=src, attention_mask=src_mask, decoder_input_ids=shifted).logits
    torch.testing.assert_close(explicit, out.logits, atol=ATOL, rtol=0)


def test_default_label_smoothing_is_the_papers():
    assert TransformerConfig().label_smoothing == 0.1


def test_all_ignored_labels_give_finite_zero_loss():
    model = make_model()
    src = random_ids(2, 5)
    labels = torch.full((2, 4), -100)
    out = model(input_ids=src, labels=labels)
    assert torch.isfinite(out.loss) and out.loss.item() == 0.0
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() and (g == 0).all() for g in grads)


# ------------------------------------------------------------------------------- embeddings and positions


def test_sinusoidal_table_matches_the_formula():
    d, P = 16, 64
    expected = torch.zeros(P, d, dtype=torch.float64)
    for pos in range(P):
        for i in range(d // 2):
            angle = pos / 10000 ** (2 * i / d)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    torch.testing.assert_close(mt.sinusoidal_table(P, d).double(), expected, atol=1e-5, rtol=0)
    model = make_model()
    torch.testing.assert_close(model.model.encoder.embed_positions.weight.double(), expected, atol=1e-5, rtol=0)
    # Longer than the precomputed table: the formula extends (here positions 60..69 of a 64-row table).
    extended = model.model.encoder.embed_positions(10, past_length=60)
    long_expected = torch.tensor(
        [
            [
                math.sin(p / 10000 ** (2 * (j // 2) / d)) if j % 2 == 0 else math.cos(p / 10000 ** (2 * (j // 2) / d))
                for j in range(d)
            ]
            for p in range(60, 70)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(extended.double(), long_expected, atol=1e-5, rtol=0)
    with torch.no_grad():  # and a sinusoidal model takes inputs longer than max_position_embeddings
        assert model(input_ids=random_ids(1, 70), decoder_input_ids=random_ids(1, 70)).logits.shape == (1, 70, 99)


@pytest.mark.parametrize("scale", [True, False])
def test_embeddings_scaled_by_sqrt_d_model_plus_positions(scale):
    model = make_model(scale_embedding=scale, d_model=64, encoder_ffn_dim=64, decoder_ffn_dim=64)
    src, tgt = random_ids(2, 5), random_ids(2, 4, seed=2)
    with torch.no_grad():
        out = model(input_ids=src, decoder_input_ids=tgt, output_hidden_states=True)
    factor = 8.0 if scale else 1.0  # sqrt(64)
    table = mt.sinusoidal_table(64, 64)
    emb = model.model.shared.weight
    torch.testing.assert_close(out.encoder_hidden_states[0], emb[src] * factor + table[:5], atol=ATOL, rtol=0)
    torch.testing.assert_close(out.decoder_hidden_states[0], emb[tgt] * factor + table[:4], atol=ATOL, rtol=0)
    assert model.model.encoder.embed_scale == model.model.decoder.embed_scale == factor


def test_embedding_init_std_and_pad_row():
    model = make_model(d_model=64, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=2000)
    weight = model.model.shared.weight
    assert (weight[PAD] == 0).all()
    assert weight[3:].std().item() == pytest.approx(64**-0.5, rel=0.05)


def test_pre_ln_has_final_layer_norms_and_differs_from_post_ln():
    post, pre = make_model(), make_model(normalize_before=True)
    assert post.model.encoder.layer_norm is None and post.model.decoder.layer_norm is None
    assert isinstance(pre.model.encoder.layer_norm, torch.nn.LayerNorm)
    assert isinstance(pre.model.decoder.layer_norm, torch.nn.LayerNorm)
    src = random_ids(1, 5)
    with torch.no_grad():
        post_out = post(input_ids=src, decoder_input_ids=src, output_hidden_states=True)
        pre_out = pre(input_ids=src, decoder_input_ids=src, output_hidden_states=True)
    # Post-LN: every layer output is layer-normalised (zero mean per position); pre-LN's inner ones are not.
    assert post_out.encoder_hidden_states[1].mean(-1).abs().max() < 1e-5
    assert pre_out.encoder_hidden_states[1].mean(-1).abs().max() > 1e-3
    assert pre_out.encoder_last_hidden_state.mean(-1).abs().max() < 1e-5  # the final LayerNorm


# -------------------------------------------------------------------------------------------- base size


def test_base_model_parameter_count_close_to_table_3():
    """Table 3 reports 65M parameters for the base model. With a 37,000-token shared vocabulary we get
    63,082,496: embeddings 37,000 x 512 = 18,944,000 counted once (source, target and pre-softmax share
    one matrix), 6 encoder layers x 3,152,384 (4 projections with biases, FFN 512-2048-512 with biases, 2
    LayerNorms) and 6 decoder layers x 4,204,032 (8 projections, FFN, 3 LayerNorms). The paper does not
    say how it counts; the 2M gap fits a slightly larger real vocabulary (about 41,000 tokens would give
    65M) or counting without sharing one of the matrices."""
    config = TransformerConfig(vocab_size=37000)
    assert (config.d_model, config.encoder_layers, config.encoder_attention_heads, config.encoder_ffn_dim) == (
        512,
        6,
        8,
        2048,
    )
    with torch.device("meta"):
        model = TransformerForConditionalGeneration(config)
    n = sum(p.numel() for p in model.parameters())  # parameters() yields the shared matrix once
    d, ff, V = 512, 2048, 37000
    attention = 4 * (d * d + d)
    ffn = d * ff + ff + ff * d + d
    expected = V * d + 6 * (attention + ffn + 2 * 2 * d) + 6 * (2 * attention + ffn + 3 * 2 * d)
    print(f"base model parameters: {n:,} (Table 3: 65M)")
    assert n == expected == 63_082_496
    assert 60e6 <= n <= 66e6


# --------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(d_model=18), r"`d_model` \(18\) must be divisible by `encoder_attention_heads` \(4\)"),
        (dict(decoder_attention_heads=3), r"`d_model` \(16\) must be divisible by `decoder_attention_heads` \(3\)"),
        (dict(d_model=0), r"`d_model` must be a positive integer, got 0"),
        (dict(encoder_layers=-1), r"`encoder_layers` must be a positive integer, got -1"),
        (dict(decoder_ffn_dim=0), r"`decoder_ffn_dim` must be a positive integer, got 0"),
        (dict(vocab_size=2.5), r"`vocab_size` must be a positive integer, got 2.5"),
        (dict(encoder_attention_heads=True), r"`encoder_attention_heads` must be a positive integer, got True"),
        (dict(max_position_embeddings=0), r"`max_position_embeddings` must be a positive integer, got 0"),
        (dict(activation_function="relu6"), r"unknown `activation_function` 'relu6'"),
        (dict(position_embedding_type="rotary"), r"unknown `position_embedding_type` 'rotary'"),
        (dict(dropout=1.0), r"`dropout` must be a probability in \[0, 1\), got 1.0"),
        (dict(dropout=-0.1), r"`dropout` must be a probability in \[0, 1\), got -0.1"),
        (dict(attention_dropout=1.5), r"`attention_dropout` must be a probability in \[0, 1\), got 1.5"),
        (dict(activation_dropout=-1), r"`activation_dropout` must be a probability in \[0, 1\), got -1"),
        (dict(label_smoothing=1.0), r"`label_smoothing` must be in \[0, 1\), got 1.0"),
        (dict(init_std=0), r"`init_std` must be a positive finite number or None, got 0"),
        (dict(init_std=math.inf), r"`init_std` must be a positive finite number or None, got inf"),
        (dict(init_std=math.nan), r"`init_std` must be a positive finite number or None, got nan"),
        (dict(init_std=True), r"`init_std` must be a positive finite number or None, got True"),
        (dict(layer_norm_eps=-1), r"`layer_norm_eps` must be a positive finite number .*, got -1"),
        (dict(layer_norm_eps=0), r"`layer_norm_eps` must be a positive finite number .*, got 0"),
        (dict(layer_norm_eps=math.inf), r"`layer_norm_eps` must be a positive finite number .*, got inf"),
        (dict(layer_norm_eps="1e-5"), r"`layer_norm_eps` must be a positive finite number .*, got '1e-5'"),
        (dict(normalize_before="false"), r"`normalize_before` must be True or False, got 'false'"),
        (dict(scale_embedding="false"), r"`scale_embedding` must be True or False, got 'false'"),
        (dict(tie_word_embeddings="false"), r"`tie_word_embeddings` must be True or False, got 'false'"),
        (dict(use_cache=1), r"`use_cache` must be True or False, got 1"),
        (dict(is_encoder_decoder=None), r"`is_encoder_decoder` must be True or False, got None"),
        (dict(output_attentions="yes"), r"`output_attentions` must be True or False, got 'yes'"),
        (dict(output_hidden_states=0), r"`output_hidden_states` must be True or False, got 0"),
        (dict(return_dict="true"), r"`return_dict` must be True or False, got 'true'"),
        (dict(label_smoothing=False), r"`label_smoothing` must be in \[0, 1\), got False"),
        (dict(pad_token_id=99), r"`pad_token_id` = 99 is outside the vocabulary"),
        (dict(bos_token_id=-1), r"`bos_token_id` = -1 is outside the vocabulary"),
        (dict(eos_token_id=[2, 150]), r"`eos_token_id` = 150 is outside the vocabulary"),
        (dict(decoder_start_token_id=500), r"`decoder_start_token_id` = 500 is outside the vocabulary"),
        (dict(pad_token_id=None), r"`pad_token_id` is required"),
        (
            dict(bos_token_id=None),
            r"`decoder_start_token_id` is required .* it defaults to `bos_token_id`, which is "
            r"None here: set either\.",
        ),
    ],
)
def test_bad_config_raises_value_error_naming_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_good_edge_configs_are_accepted():
    tiny_config(dropout=0.0, activation_function="gelu", position_embedding_type="learned", eos_token_id=[2, 3])
    assert tiny_config(bos_token_id=5).decoder_start_token_id == 5
    flags = ("normalize_before", "scale_embedding", "tie_word_embeddings", "use_cache", "output_attentions")
    for value in (True, False):
        config = tiny_config(**dict.fromkeys(flags, value), layer_norm_eps=1e-12, init_std=0.02)
        assert all(getattr(config, name) is value for name in flags)
    assert tiny_config(layer_norm_eps=1, init_std=1).layer_norm_eps == 1


def test_shipped_and_saved_configs_still_load(tmp_path):
    """The shipped config.json, and a saved one with keyword overrides as from_pretrained passes them."""
    shipped = TransformerConfig.from_pretrained(ROOT / "space" / "model")
    assert shipped.normalize_before is False and shipped.layer_norm_eps == 1e-5 and shipped.init_std is None
    tiny_config(normalize_before=True, init_std=0.05).save_pretrained(tmp_path)
    loaded = TransformerConfig.from_pretrained(tmp_path, output_attentions=True, use_cache=False)
    assert (loaded.normalize_before, loaded.init_std) == (True, 0.05)
    assert (loaded.output_attentions, loaded.use_cache) == (True, False)


@pytest.mark.parametrize("bad", [99, 1000, -1])
def test_out_of_vocabulary_ids_raise(bad):
    model = make_model()
    good = random_ids(1, 4)
    wrong = good.clone()
    wrong[0, 2] = bad
    with pytest.raises(ValueError, match=rf"`input_ids` contains id {bad}, outside the vocabulary \[0, 99\)"):
        model(input_ids=wrong, decoder_input_ids=good)
    with pytest.raises(ValueError, match=rf"`decoder_input_ids` contains id {bad}, outside the vocabulary \[0, 99\)"):
        model(input_ids=good, decoder_input_ids=wrong)
    with pytest.raises(ValueError, match=rf"`labels` contains id {bad}, outside the vocabulary \[0, 99\)"):
        model(input_ids=good, labels=wrong)
    with pytest.raises(ValueError, match=rf"`input_ids` contains id {bad}"):
        model.generate(input_ids=wrong, max_new_tokens=2)


def test_too_long_for_learned_positions_raises():
    model = make_model(position_embedding_type="learned", max_position_embeddings=8)
    with torch.no_grad():
        model(input_ids=random_ids(1, 8), decoder_input_ids=random_ids(1, 8))  # exactly the maximum is fine
    with pytest.raises(ValueError, match=r"Sequence of 9 positions is longer than max_position_embeddings=8"):
        model(input_ids=random_ids(1, 9), decoder_input_ids=random_ids(1, 3))
    with pytest.raises(ValueError, match=r"Sequence of 9 positions is longer than max_position_embeddings=8"):
        model(input_ids=random_ids(1, 3), decoder_input_ids=random_ids(1, 9))


def test_mismatched_masks_raise():
    model = make_model()
    src, tgt = random_ids(2, 5), random_ids(2, 4, seed=2)
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(2, 4\) but `input_ids` has shape \(2, 5\)"):
        model(input_ids=src, attention_mask=torch.ones(2, 4, dtype=torch.long), decoder_input_ids=tgt)
    with pytest.raises(ValueError, match=r"`attention_mask` has shape \(1, 5\)"):
        model(input_ids=src, attention_mask=torch.ones(1, 5, dtype=torch.long), decoder_input_ids=tgt)
    with pytest.raises(ValueError, match=r"`decoder_attention_mask` has shape \(2, 7\)"):
        model(input_ids=src, decoder_input_ids=tgt, decoder_attention_mask=torch.ones(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`input_ids` must be \(batch, length\), got shape \(5,\)"):
        model(input_ids=src[0], decoder_input_ids=tgt)
    with pytest.raises(ValueError, match=r"needs `decoder_input_ids`"):
        model(input_ids=src)
