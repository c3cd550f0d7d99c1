"""space/encdec_lens/patching.py: activation patching from a clean source into a corrupted one."""

import json

import pytest
import torch

from conftest import perturbed_model
from encdec_lens.heads import all_heads, head_label
from encdec_lens.patching import activation_patching

CLEAN = [5, 17, 33, 8, 61, 2]
CORRUPTED = [5, 17, 44, 8, 61, 2]  # one token changed
TARGET = [9, 40, 12, 77, 2]


def make_model(**overrides):
    return perturbed_model(0.3, **overrides)


@pytest.fixture(params=[False, True], ids=["post_ln", "pre_ln"])
def model(request):
    return make_model(normalize_before=request.param)


def logprob(model, source, target=TARGET):
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id] + target[:-1]])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([source]), decoder_input_ids=decoder_input_ids, use_cache=False).logits
    return float(logits.log_softmax(-1)[0].gather(-1, torch.tensor(target)[:, None]).sum())


def restored(entries):
    return {e["name"]: e["restored"] for e in entries}


def test_the_ends_are_exact(model):
    result = activation_patching(model, None, CLEAN, CORRUPTED, TARGET)
    assert result.clean_logprob == pytest.approx(logprob(model, CLEAN), abs=1e-5)
    assert result.corrupted_logprob == pytest.approx(logprob(model, CORRUPTED), abs=1e-5)
    assert abs(result.clean_logprob - result.corrupted_logprob) > 1e-3  # a real difference to restore
    assert result.nothing_patched == 0.0
    assert result.encoder_output_patched == 1.0  # both ends from the same batched pass: exact


def test_every_encoder_layers_residual_stream_restores_everything(model):
    """Everything after an encoder layer sees the source only through its residual stream; the last decoder
    layer's stream is the decoder's output (pre-LN: the final LayerNorm's input)."""
    layers = restored(activation_patching(model, None, CLEAN, CORRUPTED, TARGET).layers)
    assert list(layers) == ["encoder L1", "encoder L2", "decoder L1", "decoder L2"]
    for name in ("encoder L1", "encoder L2", "decoder L2"):
        assert layers[name] == pytest.approx(1.0, abs=1e-5), name
    assert layers["decoder L1"] != pytest.approx(1.0, abs=1e-3)  # the cross-attention of L2 still reads the corruption


def test_head_names_are_complete_and_first_decoder_self_attention_sees_no_source(model):
    result = activation_patching(model, None, CLEAN, CORRUPTED, TARGET)
    heads = restored(result.heads)
    assert list(heads) == [head_label(*h) for h in all_heads(model)]
    assert len(heads) == 3 * 2 * 4 and "enc L1 H1" in heads and "dec-self L2 H4" in heads and "cross L2 H4" in heads
    for h in range(1, 5):  # decoder layer 1's self-attention reads only the target: patching it changes nothing
        assert heads[f"dec-self L1 H{h}"] == 0.0
    json.dumps(result.to_dict())


def test_planted_single_path_from_the_source(model):
    """With W^O zeroed for every cross-attention head but one, the source reaches the output only through that
    head: patching it restores everything, every other cross head nothing."""
    keep = ("cross", 1, 2)
    with torch.no_grad():
        for l, layer in enumerate(model.model.decoder.layers):
            for h in range(4):
                if ("cross", l, h) != keep:
                    layer.encoder_attn.out_proj.weight[:, h * 4 : (h + 1) * 4] = 0.0
    heads = restored(activation_patching(model, None, CLEAN, CORRUPTED, TARGET).heads)
    assert heads[head_label(*keep)] == pytest.approx(1.0, abs=1e-5)
    for name, value in heads.items():
        if name.startswith("cross") and name != head_label(*keep):
            assert value == 0.0, name
    assert any(abs(v) > 1e-3 for name, v in heads.items() if name.startswith("enc "))


def test_sources_of_different_token_lengths_are_refused(multi30k_tokenizer, text_model):
    tok, model = multi30k_tokenizer, text_model
    clean, corrupted = "A man is riding a bike.", "A little girl is riding a bike."
    n_clean, n_corrupted = len(tok(clean)["input_ids"]), len(tok(corrupted)["input_ids"])
    assert n_clean != n_corrupted
    with pytest.raises(
        ValueError,
        match=rf"same number of tokens.*clean one has {n_clean} \[.*\] and the "
        rf"corrupted one {n_corrupted} \[.*\]\. Pick two sentences that differ in one "
        "word of the same token length",
    ):
        activation_patching(model, tok, clean, corrupted)
    with pytest.raises(ValueError, match="clean one has 6 .* corrupted one 5"):
        activation_patching(model, None, CLEAN, CLEAN[1:], TARGET)


def test_equal_sources_leave_nothing_to_restore(model):
    with pytest.raises(ValueError, match="same log-probability given both sources.*nothing to restore"):
        activation_patching(model, None, CLEAN, list(CLEAN), TARGET)


def test_text_sources_and_the_models_own_translation(multi30k_tokenizer, text_model):
    tok, model = multi30k_tokenizer, text_model
    result = activation_patching(model, tok, "A man is riding a bike.", "A dog is riding a bike.")
    assert result.clean == "A man is riding a bike." and result.corrupted == "A dog is riding a bike."
    assert result.clean_tokens != result.corrupted_tokens and len(result.clean_tokens) == len(result.corrupted_tokens)
    assert result.translation_tokens[-1] == tok.eos_token
    assert result.encoder_output_patched == pytest.approx(1.0, abs=1e-5)
