"""encdec_lens.walkthrough: the numbers of one attention head, step by step, from the model's own pass."""

import json

import pytest
import torch

from encdec_lens import walkthrough as wt
from conftest import tiny_config

SOURCE = [5, 17, 33, 8, 61, 20, 2]
TARGET = [9, 40, 12, 77, 2]
DECODER_INPUT = [1] + TARGET[:-1]


def make_model(**overrides):
    from modeling import TransformerForConditionalGeneration

    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(tiny_config(**overrides)).eval()
    with torch.no_grad():  # non-zero biases and layer-norm gains, so every term of every step matters
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module", params=[False, True], ids=["post_ln", "pre_ln"])
def model(request):
    return make_model(normalize_before=request.param)


def reference(model, kind, layer):
    """The model's own attention weights, the input of the attention's out_proj, and its output probabilities."""
    core = model.model
    attn = (
        core.encoder.layers[layer].self_attn
        if kind == "encoder"
        else (core.decoder.layers[layer].encoder_attn if kind == "cross" else core.decoder.layers[layer].self_attn)
    )
    captured = {}
    handle = attn.out_proj.register_forward_pre_hook(lambda module, args: captured.__setitem__("concat", args[0]))
    try:
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor([SOURCE]),
                decoder_input_ids=torch.tensor([DECODER_INPUT]),
                output_attentions=True,
                use_cache=False,
            )
    finally:
        handle.remove()
    weights = {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions, "cross": out.cross_attentions}
    return weights[kind][layer][0], captured["concat"][0], out.logits[0].softmax(-1)


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_steps_equal_the_model(model, kind, layer):
    head, position = 2, 3
    result = wt.walkthrough(model, None, SOURCE, TARGET, kind=kind, layer=layer, head=head, position=position)
    weights, concat, probs = reference(model, kind, layer)
    d_k = model.config.d_model // model.config.encoder_attention_heads

    softmax = result.step("softmax").data
    mine = torch.tensor(softmax["weights"])
    torch.testing.assert_close(mine, weights[head, position], rtol=0, atol=1e-5)
    assert mine.sum().item() == pytest.approx(1.0, abs=1e-6)
    if kind == "decoder":  # causal: positions after the query are masked and get no weight
        assert softmax["masked"] == [j > position for j in range(len(DECODER_INPUT))]
        assert all(w == 0.0 for w, m in zip(softmax["weights"], softmax["masked"]) if m)
    else:
        assert not any(softmax["masked"]) and len(mine) == len(SOURCE)

    z = torch.tensor(result.step("weighted_values").data["z"]["values"])
    torch.testing.assert_close(z, concat[position, head * d_k : (head + 1) * d_k], rtol=0, atol=1e-5)

    # The scores are q . k, scaled by 1/sqrt(d_k); softmax of the scaled scores gives the weights.
    raw = torch.tensor(result.step("scores").data["raw_scores"])
    scaled = torch.tensor(result.step("scaled_scores").data["scaled_scores"])
    torch.testing.assert_close(scaled, raw / d_k**0.5, rtol=1e-5, atol=1e-6)
    masked = torch.tensor(softmax["masked"])
    torch.testing.assert_close(scaled.masked_fill(masked, float("-inf")).softmax(-1), mine, rtol=0, atol=1e-6)

    out = result.step("output").data
    out_pos = 0 if kind == "encoder" else position
    assert out["position"] == out_pos
    top = probs[out_pos].topk(5)
    assert [t["id"] for t in out["top"]] == top.indices.tolist()
    assert [t["prob"] for t in out["top"]] == pytest.approx(top.values.tolist(), abs=1e-6)
    torch.testing.assert_close(result.tensors["probs"], probs[out_pos], rtol=0, atol=1e-6)
    assert out["next_token_prob"] == pytest.approx(probs[out_pos, TARGET[out_pos]].item(), abs=1e-6)

    assert max(result.checks.values()) < 1e-5, result.checks
    assert [s.id for s in result.steps] == [
        "embedding",
        "positional_table",
        "layer_input",
        "qkv",
        "scores",
        "scaled_scores",
        "softmax",
        "weighted_values",
        "multi_head",
        "residual_layer_norm",
        "rest_of_layer",
        "output",
    ]
    json.dumps(result.to_dict())
    assert "tensors" not in result.to_dict()


def test_embedding_step_and_sizes():
    model = make_model()
    result = wt.walkthrough(model, None, SOURCE, TARGET, kind="encoder", position=2, n_first=4, table_positions=10)
    emb = result.step("embedding").data
    scale = model.config.d_model**0.5
    assert emb["scale"] == pytest.approx(scale)
    e = model.model.shared.weight[SOURCE[2]]
    assert emb["embedding"]["first"] == pytest.approx(e[:4].tolist(), abs=1e-6)
    assert emb["sum"]["first"] == pytest.approx(
        [a * scale + b for a, b in zip(emb["embedding"]["first"], emb["positional_encoding"]["first"])], abs=1e-5
    )
    # position 2 of the sinusoid: PE(2, 0) = sin(2), PE(2, 1) = cos(2)
    pe_2 = [torch.tensor(2.0).sin().item(), torch.tensor(2.0).cos().item()]
    assert emb["positional_encoding"]["first"][:2] == pytest.approx(pe_2, abs=1e-6)
    table = result.step("positional_table").data
    assert table["positions"] == 10 and len(table["table"]) == 10 and len(table["table"][0]) == 16
    shapes = result.step("multi_head").data["shapes"]
    assert shapes["concat"] == [len(SOURCE), 16] and shapes["W_O"] == [16, 16]
    assert result.sizes["d_k"] == 4 and result.sizes["heads"] == 4


def test_to_dict_without_the_table_keeps_its_row():
    model = make_model()
    result = wt.walkthrough(model, None, SOURCE, TARGET, kind="encoder", position=2)
    full, compact = result.to_dict(), result.to_dict(full_table=False)
    assert result.to_dict(full_table=True) == full and "table" in result.step("positional_table").data  # unchanged
    table = next(s for s in full["steps"] if s["id"] == "positional_table")["data"]
    small = next(s for s in compact["steps"] if s["id"] == "positional_table")["data"]
    assert table["positions"] == 50 and table["highlight"] == 2
    assert small == {"positions": 50, "d_model": 16, "highlight": 2, "row": table["table"][2]}
    assert small["row"][:8] == pytest.approx(result.step("embedding").data["positional_encoding"]["first"], abs=1e-4)
    others = [s for s in compact["steps"] if s["id"] != "positional_table"]
    assert others == [s for s in full["steps"] if s["id"] != "positional_table"]
    assert {k: v for k, v in compact.items() if k != "steps"} == {k: v for k, v in full.items() if k != "steps"}
    # What the table weighed: 50 rows of d_model numbers; the compact step is one row.
    assert len(json.dumps(full)) - len(json.dumps(compact)) > 49 * 16 * 6
    assert len(json.dumps(small)) < 12 * 16 + 100


def test_learned_positions():
    model = make_model(position_embedding_type="learned")
    result = wt.walkthrough(model, None, SOURCE, TARGET, kind="cross", layer=1, head=0, position=1)
    weights, concat, _ = reference(model, "cross", 1)
    torch.testing.assert_close(result.tensors["weights"], weights[0, 1], rtol=0, atol=1e-5)
    assert result.step("positional_table").data["positions"] == 50
    assert max(result.checks.values()) < 1e-5


def test_translation_as_the_decoder_reading():
    model = make_model()
    result = wt.walkthrough(model, None, SOURCE, DECODER_INPUT, kind="decoder", layer=1, head=1)
    assert result.decoder_tokens == [str(i) for i in DECODER_INPUT]
    assert result.target_tokens == [str(i) for i in TARGET]
    assert result.position == len(DECODER_INPUT) // 2 and result.query_tokens == result.key_tokens


def test_bad_arguments():
    model = make_model()
    for kwargs in ({"kind": "self"}, {"layer": 2}, {"head": 4}, {"position": 99}, {"token": "nothing"}):
        with pytest.raises(ValueError):
            wt.walkthrough(model, None, SOURCE, TARGET, **kwargs)


def test_find_token_position():
    tokens = [
        "▁The",
        "▁animal",
        "▁did",
        "n",
        "'",
        "t",
        "▁cross",
        "▁the",
        "▁street",
        "▁be",
        "cause",
        "▁it",
        "▁was",
        "▁it",
        ".",
    ]
    assert wt.find_token_position(tokens, "it") == 11
    assert wt.find_token_position(tokens, "It", occurrence=1) == 13
    assert wt.find_token_position(tokens, "because") == 9  # a word of two pieces: its first piece
    assert wt.find_token_position(tokens, "the") == 0
    assert wt.find_token_position(tokens, "stree") == 8  # part of a token
    with pytest.raises(ValueError):
        wt.find_token_position(tokens, "dog")


def test_default_example_on_a_saved_model(tiny_model_dir):
    from transformers import AutoTokenizer

    from modeling import TransformerForConditionalGeneration

    model = TransformerForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens = wt.source_tokens(tokenizer, wt.DEFAULT_SENTENCE)
    result = wt.walkthrough(model, tokenizer, max_length=10)
    assert result.sentence == wt.DEFAULT_SENTENCE and result.kind == "encoder"
    assert result.position == wt.find_token_position(tokens, "it") and result.token.replace("▁", "") == "it"
    assert result.query_tokens == tokens and tokens[-1] == "</s>"
    other = wt.walkthrough(model, tokenizer, kind="cross", layer=1, head=1, translation="Das Tier ist müde.")
    assert other.decoder_tokens[0] == "<s>" and other.target_tokens[-1] == "</s>"
    assert other.key_tokens == tokens
    assert max(other.checks.values()) < 1e-5
    json.dumps(result.to_dict())
    json.dumps(other.to_dict())
