"""encdec_lens: head ablation, head importance, logit lens, residual stream, on the named hook sites."""

import json

import pytest
import torch
import torch.nn.functional as F

from encdec_lens import ablation as ablation_lib
from encdec_lens import inputs
from encdec_lens import lens as lens_lib
from encdec_lens import heads as head_names
from conftest import perturbed_model

SOURCE = [5, 17, 33, 8, 61, 2]
OTHER_SOURCE = [44, 9, 70, 2]
TARGET = [9, 40, 12, 77, 2]


def make_model(**overrides):
    return perturbed_model(0.1, **overrides)


@pytest.fixture(params=[False, True], ids=["post_ln", "pre_ln"])
def model(request):
    return make_model(normalize_before=request.param)


def ablated_token_logprobs(model, example, heads):
    with ablation_lib.ablate_heads(model, heads):
        return inputs.token_logprobs(model, example)


def forward_logits(model, source=SOURCE, target=TARGET):
    example = inputs.make_example(model, None, source, target)
    input_ids, decoder_input_ids, labels = example.tensors()
    with torch.no_grad():
        return model(input_ids=input_ids, decoder_input_ids=decoder_input_ids, use_cache=False).logits, labels


def test_no_heads_is_the_normal_forward_pass(model):
    plain, labels = forward_logits(model)
    with ablation_lib.ablate_heads(model, []) as heads:
        assert heads == []
        ablated, _ = forward_logits(model)
    assert torch.equal(plain, ablated)
    example = inputs.make_example(model, None, SOURCE, TARGET)
    expected = F.log_softmax(plain, -1).gather(-1, labels[..., None]).squeeze(-1)[0]
    assert inputs.token_logprobs(model, example) == pytest.approx(expected.tolist(), abs=1e-6)
    # all-ones masks too leave the model exactly as it is
    masks = {("encoder", 0): torch.ones(4), ("cross", 1): torch.ones(4)}
    with ablation_lib.head_masks(model, masks):
        kept, _ = forward_logits(model)
    assert torch.equal(plain, kept)


def test_ablation_changes_the_output_and_the_hooks_go_away(model):
    plain, _ = forward_logits(model)
    with ablation_lib.ablate_heads(model, [("decoder", 1, 2), "encoder:0:3"]) as heads:
        assert heads == [("encoder", 0, 3), ("decoder", 1, 2)]
        ablated, _ = forward_logits(model)
    assert not torch.allclose(plain, ablated)
    after, _ = forward_logits(model)
    assert torch.equal(plain, after)


def test_all_cross_heads_off_makes_the_decoder_independent_of_the_source(model):
    with_source, _ = forward_logits(model, SOURCE)
    with_other, _ = forward_logits(model, OTHER_SOURCE)
    assert not torch.allclose(with_source, with_other, atol=1e-4)
    cross = [h for h in head_names.all_heads(model) if h[0] == "cross"]
    with ablation_lib.ablate_heads(model, cross):
        a, _ = forward_logits(model, SOURCE)
        b, _ = forward_logits(model, OTHER_SOURCE)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_logit_lens_last_layer_is_the_real_output(model):
    example = inputs.make_example(model, None, SOURCE, TARGET)
    lens, final = lens_lib.logit_lens_probs(model, example)
    assert lens.shape == (2, len(TARGET), 99)
    logits, _ = forward_logits(model)
    torch.testing.assert_close(final, logits[0].softmax(-1), rtol=0, atol=1e-6)
    torch.testing.assert_close(lens[-1], final, rtol=0, atol=1e-6)
    assert not torch.allclose(lens[0], final, atol=1e-3)

    result = lens_lib.logit_lens(model, None, SOURCE, TARGET, top_k=3).to_dict()
    json.dumps(result)
    assert [layer["layer"] for layer in result["layers"]] == [0, 1]
    last, real = result["layers"][-1]["positions"], result["final"]
    for t, (mine, ref) in enumerate(zip(last, real)):
        assert [x["id"] for x in mine["top"]] == [x["id"] for x in ref["top"]]
        assert mine["target_prob"] == pytest.approx(float(final[t, TARGET[t]]), abs=1e-6)
        assert mine["target"] == str(TARGET[t])
        assert 1 <= mine["target_rank"] <= 99


def hand_importance(model):
    """One head at a time, unbatched, through the ordinary forward pass."""
    example = inputs.make_example(model, None, SOURCE, TARGET)
    base = sum(inputs.token_logprobs(model, example))
    return {h: base - sum(ablated_token_logprobs(model, example, [h])) for h in head_names.all_heads(model)}


def test_head_importance_matches_single_head_ablations_and_is_deterministic(model):
    hand = hand_importance(model)
    result = ablation_lib.head_importance(model, None, SOURCE, TARGET)
    again = ablation_lib.head_importance(model, None, SOURCE, TARGET)
    key = [(r["family"], r["layer"], r["head"]) for r in result.ranking]
    assert key == [(r["family"], r["layer"], r["head"]) for r in again.ranking]
    assert result.grids == again.grids
    assert sorted(key) == sorted(hand) and len(key) == 3 * 2 * 4
    for family, grid in result.grids.items():
        assert (grid["layers"], grid["heads"]) == (2, 4)
        for layer in range(2):
            for head in range(4):
                assert grid["drop"][layer][head] == pytest.approx(hand[(family, layer, head)], abs=1e-4)
                assert grid["ablated_logprob"][layer][head] == pytest.approx(
                    result.logprob - hand[(family, layer, head)], abs=1e-4
                )
    drops = [r["drop"] for r in result.ranking]
    assert drops == sorted(drops, reverse=True)
    assert [r["rank"] for r in result.ranking] == list(range(1, 25))
    for a, b in zip(key, key[1:]):  # the ranking agrees with the hand-made one (up to float noise)
        assert hand[a] >= hand[b] - 1e-4
    assert result.logprob == pytest.approx(ablation_lib.translation_logprob(model, None, SOURCE, TARGET), abs=1e-5)
    assert max(abs(d) for d in drops) > 1e-3  # the heads matter at all
    json.dumps(result.to_dict())


def test_batched_importance_equals_one_at_a_time(model):
    batched = ablation_lib.head_importance(model, None, SOURCE, TARGET)
    single = ablation_lib.head_importance(model, None, SOURCE, TARGET, batch_size=1)
    uneven = ablation_lib.head_importance(model, None, SOURCE, TARGET, batch_size=5)
    for other in (single, uneven):
        assert other.logprob == pytest.approx(batched.logprob, abs=1e-5)
        for family in head_names.FAMILIES:
            for row_a, row_b in zip(batched.grids[family]["drop"], other.grids[family]["drop"]):
                assert row_a == pytest.approx(row_b, abs=1e-5)


def test_head_importance_for_some_families_only():
    model = make_model()
    result = ablation_lib.head_importance(model, None, SOURCE, TARGET, families=("cross",))
    assert list(result.grids) == ["cross"] and len(result.ranking) == 8
    full = ablation_lib.head_importance(model, None, SOURCE, TARGET)
    torch.testing.assert_close(
        torch.tensor(result.grids["cross"]["drop"]), torch.tensor(full.grids["cross"]["drop"]), rtol=0, atol=1e-5
    )


def test_run_ablation_reports_the_change():
    model = make_model()
    heads = [["cross", 0, 1], ["cross", 1, 1]]
    result = ablation_lib.run_ablation(model, None, SOURCE, heads, translation=TARGET, max_length=8)
    assert result.heads == [["cross", 0, 1], ["cross", 1, 1]]
    assert result.logprob == pytest.approx(ablation_lib.translation_logprob(model, None, SOURCE, TARGET), abs=1e-6)
    assert result.ablated_logprob == pytest.approx(
        ablation_lib.translation_logprob(model, None, SOURCE, TARGET, heads), abs=1e-6
    )
    assert result.delta == pytest.approx(result.ablated_logprob - result.logprob)
    assert result.translation_tokens == [str(i) for i in TARGET]
    assert result.ablated_translation == ablation_lib.translate(model, None, SOURCE, heads, max_length=8)
    json.dumps(result.to_dict())

    nothing = ablation_lib.run_ablation(model, None, SOURCE, [], max_length=8)
    assert nothing.delta == 0.0 and not nothing.changed
    assert nothing.ablated_translation == nothing.translation


def test_residual_stream_writes_add_up(model):
    example = inputs.make_example(model, None, SOURCE, TARGET)
    writes = lens_lib.sublayer_writes(model, example)
    core = model.model
    for i, w in enumerate(writes["encoder"]):
        layer = core.encoder.layers[i]
        if model.config.normalize_before:
            expected = w["input"] + w["self_attn"] + w["ffn"]
        else:
            expected = layer.final_layer_norm(layer.self_attn_layer_norm(w["input"] + w["self_attn"]) + w["ffn"])
        torch.testing.assert_close(w["output"], expected, rtol=0, atol=1e-5)
    for i, w in enumerate(writes["decoder"]):
        layer = core.decoder.layers[i]
        if model.config.normalize_before:
            expected = w["input"] + w["self_attn"] + w["cross_attn"] + w["ffn"]
        else:
            h = layer.self_attn_layer_norm(w["input"] + w["self_attn"])
            h = layer.encoder_attn_layer_norm(h + w["cross_attn"])
            expected = layer.final_layer_norm(h + w["ffn"])
        torch.testing.assert_close(w["output"], expected, rtol=0, atol=1e-5)

    result = lens_lib.residual_stream(model, None, SOURCE, TARGET).to_dict()
    json.dumps(result)
    assert len(result["encoder"]) == 2 and len(result["decoder"]) == 2
    enc0, dec1 = result["encoder"][0], result["decoder"][1]
    assert set(enc0) == {"layer", "input_norm", "self_attn", "ffn", "output_norm"}
    assert set(dec1) == {"layer", "input_norm", "self_attn", "cross_attn", "ffn", "output_norm"}
    assert len(enc0["self_attn"]) == len(SOURCE) and len(dec1["cross_attn"]) == len(TARGET)
    assert enc0["ffn"] == pytest.approx(writes["encoder"][0]["ffn"].norm(dim=-1).tolist())


def test_targets_given_as_the_decoder_reading_are_scored_as_complete_translations():
    model = make_model()
    labels = inputs.make_example(model, None, SOURCE, TARGET)
    assert labels.decoder_input_ids == [1] + TARGET[:-1] and labels.labels == TARGET
    # The Space keeps a translation as <start> y_1 .. y_n (no </s>): the same example.
    assert inputs.make_example(model, None, SOURCE, [1] + TARGET[:-1]) == labels
    assert inputs.make_example(model, None, SOURCE, torch.tensor(TARGET[:-1])) == labels


def test_head_names_are_checked():
    model = make_model()
    assert head_names.parse_head({"family": "Cross", "layer": "1", "head": 0}) == ("cross", 1, 0)
    assert head_names.normalize_heads(model, ["cross.1.0", ("encoder", 0, 0), ["cross", 1, 0]]) == [
        ("encoder", 0, 0),
        ("cross", 1, 0),
    ]
    for bad in (["self", 0, 0], ["encoder", 2, 0], ["decoder", 0, 4], ["cross", 0], "cross:a:1"):
        with pytest.raises(ValueError):
            head_names.normalize_heads(model, [bad])


def test_on_a_saved_model_with_its_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    from modeling import TransformerForConditionalGeneration

    model = TransformerForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    sentence = "A man in a blue shirt is standing on a ladder cleaning windows."
    kw = dict(max_length=12)
    imp = ablation_lib.head_importance(model, tokenizer, sentence, **kw).to_dict()
    assert imp["source_tokens"][-1] == "</s>" and imp["source"] == sentence
    ablation = ablation_lib.run_ablation(
        model, tokenizer, sentence, [("cross", 0, 0)], translation=imp["translation_ids"], **kw
    )
    assert ablation.translation == imp["translation"] and ablation.translation_ids == imp["translation_ids"]
    assert ablation.logprob == pytest.approx(imp["logprob"], abs=1e-4)
    assert ablation.ablated_logprob == pytest.approx(imp["grids"]["cross"]["ablated_logprob"][0][0], abs=1e-4)
    lens = lens_lib.logit_lens(model, tokenizer, sentence, "Ein Mann steht auf einer Leiter.").to_dict()
    assert lens["input_tokens"][0] == "<s>" and lens["target_tokens"][-1] == "</s>"
    stream = lens_lib.residual_stream(model, tokenizer, sentence, "Ein Mann.").to_dict()
    for result in (imp, ablation.to_dict(), lens, stream):
        json.dumps(result)
