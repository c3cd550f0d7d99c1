"""space/encdec_lens/attribution.py: direct logit attribution adds up to the model's own logit."""

import json

import pytest
import torch

from conftest import perturbed_model
from encdec_lens.attribution import logit_attribution
from encdec_lens.heads import head_label

SOURCE = [5, 17, 33, 8, 61, 2]
TARGET = [9, 40, 12, 77, 2]


def make_model(**overrides):
    return perturbed_model(0.3, **overrides)


@pytest.fixture(params=[False, True], ids=["post_ln", "pre_ln"])
def model(request):
    return make_model(normalize_before=request.param, add_final_logits_bias=True)


def own_logits(model, source=SOURCE, target=TARGET):
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id] + target[:-1]])
    with torch.no_grad():
        return model(input_ids=torch.tensor([source]), decoder_input_ids=decoder_input_ids, use_cache=False).logits[0]


def values(result):
    return {c["name"]: c["value"] for c in result.components}


@pytest.mark.parametrize("normalize_before", [False, True], ids=["post_ln", "pre_ln"])
@pytest.mark.parametrize("final_bias", [False, True], ids=["no_logits_bias", "logits_bias"])
def test_components_add_up_to_the_models_logit(normalize_before, final_bias):
    model = make_model(normalize_before=normalize_before, add_final_logits_bias=final_bias)
    logits = own_logits(model)
    for position in [0, 1, 2, 3, 4, -1, -3]:
        result = logit_attribution(model, None, SOURCE, TARGET, position=position)
        t = position % len(TARGET)
        assert result.position == t and result.token_id == TARGET[t] and result.token == str(TARGET[t])
        assert result.logit == pytest.approx(float(logits[t, TARGET[t]]), abs=1e-6)
        total = sum(c["value"] for c in result.components)
        assert abs(total - result.logit) < 1e-4, (position, total, result.logit)
        assert result.total == pytest.approx(total, abs=1e-9)
        assert result.normalize_before is normalize_before


def test_component_names_are_complete_and_in_model_order(model):
    result = logit_attribution(model, None, SOURCE, TARGET)
    expected = ["token embedding", "positional encoding"]
    for layer in range(2):
        expected += [head_label("decoder", layer, h) for h in range(4)]
        expected += [head_label("cross", layer, h) for h in range(4)]
        expected += [f"ffn L{layer + 1}"]
    expected += ["biases"]
    assert [c["name"] for c in result.components] == expected
    assert expected[2] == "dec-self L1 H1" and expected[6] == "cross L1 H1"
    assert not any(name.startswith("enc ") for name in values(result))  # encoder heads act only through cross
    json.dumps(result.to_dict())


def test_zeroed_head_contributes_exactly_nothing(model):
    before = values(logit_attribution(model, None, SOURCE, TARGET, position=2))
    assert before["cross L2 H3"] != 0.0
    with torch.no_grad():
        out_proj = model.model.decoder.layers[1].encoder_attn.out_proj
        out_proj.weight[:, 2 * 4 : 3 * 4] = 0.0  # d_k = 16 / 4: head 3's columns of W^O
    after = logit_attribution(model, None, SOURCE, TARGET, position=2)
    assert values(after)["cross L2 H3"] == 0.0
    assert all(v != 0.0 for name, v in values(after).items() if name != "cross L2 H3")
    assert abs(after.total - after.logit) < 1e-4


def test_permuted_heads_swap_their_contributions_and_nothing_else_moves(model):
    """Swapping two heads of one attention (their rows of W^Q, W^K, W^V and columns of W^O) is the same function:
    their two components must swap and every other component stay the same. Wrong head slicing cannot pass."""
    before = values(logit_attribution(model, None, SOURCE, TARGET, position=3))
    d_k = 4
    a, b = slice(0, d_k), slice(2 * d_k, 3 * d_k)  # heads 1 and 3
    with torch.no_grad():
        attn = model.model.decoder.layers[0].self_attn
        for proj in (attn.q_proj, attn.k_proj, attn.v_proj):
            proj.weight[a], proj.weight[b] = proj.weight[b].clone(), proj.weight[a].clone()
            proj.bias[a], proj.bias[b] = proj.bias[b].clone(), proj.bias[a].clone()
        w = attn.out_proj.weight
        w[:, a], w[:, b] = w[:, b].clone(), w[:, a].clone()
    after = values(logit_attribution(model, None, SOURCE, TARGET, position=3))
    assert after["dec-self L1 H1"] == pytest.approx(before["dec-self L1 H3"], abs=1e-5)
    assert after["dec-self L1 H3"] == pytest.approx(before["dec-self L1 H1"], abs=1e-5)
    assert before["dec-self L1 H1"] != pytest.approx(before["dec-self L1 H3"], abs=1e-3)
    for name in before:
        if name not in ("dec-self L1 H1", "dec-self L1 H3"):
            assert after[name] == pytest.approx(before[name], abs=1e-5), name


def test_logits_bias_goes_to_biases_only():
    model = make_model(add_final_logits_bias=True)
    before = values(logit_attribution(model, None, SOURCE, TARGET, position=1))
    with torch.no_grad():
        model.lm_head.bias[TARGET[1]] += 5.0
    after = values(logit_attribution(model, None, SOURCE, TARGET, position=1))
    assert after["biases"] == pytest.approx(before["biases"] + 5.0, abs=1e-6)
    assert {k: v for k, v in after.items() if k != "biases"} == {k: v for k, v in before.items() if k != "biases"}


def test_a_position_outside_the_translation_is_refused(model):
    with pytest.raises(ValueError, match=r"position 5 does not exist: the translation has 5 target positions"):
        logit_attribution(model, None, SOURCE, TARGET, position=5)


def test_text_in_tokens_out(multi30k_tokenizer, text_model):
    tok, model = multi30k_tokenizer, text_model
    result = logit_attribution(model, tok, "A man is riding a bike.", "Ein Mann fährt Fahrrad.", position=1)
    assert result.source == "A man is riding a bike."
    assert result.token == result.translation_tokens[1] == tok.convert_ids_to_tokens(result.token_id)
    assert result.translation_tokens[-1] == tok.eos_token
    assert abs(result.total - result.logit) < 1e-4
    generated = logit_attribution(model, tok, "A man is riding a bike.")  # the model's own translation
    assert generated.position == len(generated.translation_ids) - 1
    assert abs(generated.total - generated.logit) < 1e-4
