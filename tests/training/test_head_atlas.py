"""encdec_lens.atlas and `python -m training.head_atlas`: head roles (Voita et al. 2019) on planted attention
arrays and on a tiny model, pruning curves (Michel et al. 2019), and the command's files and errors."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_config
from encdec_lens import ablate_heads, all_heads, atlas, head_label

PAIRS = [
    ("A man is riding a bike.", "Ein Mann fährt Fahrrad."),
    ("Two dogs play in the snow.", "Zwei Hunde spielen im Schnee."),
    ("A woman in a red dress is singing on a stage.", "Eine Frau in einem roten Kleid singt auf einer Bühne."),
    ("Children.", "Kinder."),
    ("A group of people stand outside a large building.", "Eine Gruppe Menschen steht vor einem großen Gebäude."),
    ("The boy jumps.", "Der Junge springt."),
]


# --- planted attention arrays ----------------------------------------------------------------------------------


def planted(keys_of_queries, n_keys, peak=0.6):
    """One head's (T_q, T_k) attention: query q puts `peak` on key keys_of_queries[q], the rest spread evenly."""
    rows = np.full((len(keys_of_queries), n_keys), (1 - peak) / (n_keys - 1))
    rows[np.arange(len(keys_of_queries)), keys_of_queries] = peak
    return rows


def previous_token_head(n_tokens, n_previous):
    """Queries 1..n_previous attend to the previous token; query 0 to key 5 and the rest to key 0 (all other
    offsets distinct, so no other offset competes)."""
    keys = [5] + [q - 1 for q in range(1, n_previous + 1)] + [0] * (n_tokens - 1 - n_previous)
    return planted(keys, n_tokens)


def test_previous_token_head_is_positional_at_91_percent_not_at_89():
    ids = list(range(10, 110))  # 100 tokens, 100 queries
    pattern = np.stack([previous_token_head(100, 91), previous_token_head(100, 89)])
    at_91, at_89 = atlas.roles_from_patterns("encoder", [pattern], [ids], [ids])
    assert at_91["shares"]["positional"] == pytest.approx(0.91) and at_91["shares"]["positional_offset"] == -1
    assert "positional" in at_91["roles"]
    assert at_89["shares"]["positional"] == pytest.approx(0.89) and at_89["shares"]["positional_offset"] == -1
    assert "positional" not in at_89["roles"]
    assert atlas.POSITIONAL_THRESHOLD == 0.90


def test_positional_share_pools_sentences():
    ids_a, ids_b = list(range(10, 20)), list(range(30, 40))
    # 9 of 10 queries on the previous token in each sentence -> 18 / 20 = 0.90 pooled, just positional
    a = planted([3] + [q - 1 for q in range(1, 10)], 10)[None]
    b = planted([1] + [q - 1 for q in range(1, 10)], 10)[None]
    b[0, 0] = planted([0], 10)[0]  # query 0 can't see a previous token: it attends to itself
    (head,) = atlas.roles_from_patterns("encoder", [a, b], [ids_a, ids_b], [ids_a, ids_b])
    assert head["shares"]["positional"] == pytest.approx(18 / 20) and head["shares"]["queries"] == 20
    assert head["roles"] == ["positional"]


def test_decoder_first_query_is_not_counted():
    ids = [1, 11, 12, 13]  # <s> y1 y2 y3
    causal = np.tril(np.ones((4, 4)))
    pattern = (causal / causal.sum(-1, keepdims=True))[None]
    (head,) = atlas.roles_from_patterns("decoder", [pattern], [ids], [ids], sink_ids={1})
    assert head["shares"]["queries"] == 3
    assert head["shares"]["sink"] == pytest.approx(np.mean([1 / 2, 1 / 3, 1 / 4]))


def test_rare_word_and_sink_heads():
    ids = [7, 8, 9, 3, 2]  # 9 is the rarest word, 3 is ".", 2 is </s>
    counts = {7: 500, 8: 40, 9: 2, 3: 5000, 2: 1}  # </s> is special: never the rarest, however its count
    special, sinks = {2}, {2, 3}
    rare = planted([2] * 5, 5, peak=0.9)
    sink = np.full((5, 5), 0.05)
    sink[:, 3:] = 0.4  # 0.8 of each query's weight on "." and </s>
    rows = atlas.roles_from_patterns("encoder", [np.stack([rare, sink])], [ids], [ids], counts, special, sinks)
    assert rows[0]["shares"]["rare_word"] == 1.0 and rows[0]["roles"] == ["rare-word"]
    assert rows[1]["shares"]["sink"] == pytest.approx(0.8) and "sink" in rows[1]["roles"]
    assert rows[1]["shares"]["sink_chance"] == pytest.approx(0.4)


def test_cross_diagonal_share_and_correlation():
    src, tgt = list(range(20, 31)), list(range(40, 46))  # 11 source keys, 6 target queries
    diagonal = planted([2 * t for t in range(6)], 11)  # source position / 10 == target position / 5
    reverse = planted([10 - 2 * t for t in range(6)], 11)
    rows = atlas.roles_from_patterns("cross", [np.stack([diagonal, reverse])], [tgt], [src])
    assert rows[0]["shares"]["diagonal"] == 1.0 and rows[0]["shares"]["diagonal_correlation"] == pytest.approx(1.0)
    assert rows[0]["roles"] == ["diagonal"] and "positional" not in rows[0]["shares"]
    assert rows[1]["shares"]["diagonal_correlation"] == pytest.approx(-1.0) and "diagonal" not in rows[1]["roles"]


def test_pattern_that_does_not_fit_its_tokens_is_refused():
    with pytest.raises(ValueError, match=r"expected \(heads, 3, 3\)"):
        atlas.roles_from_patterns("encoder", [np.ones((2, 3, 4))], [[1, 2, 3]], [[1, 2, 3]])


# --- a tiny model ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(multi30k_tokenizer):
    from modeling import TransformerForConditionalGeneration

    tok = multi30k_tokenizer
    torch.manual_seed(0)
    cfg = tiny_config(
        vocab_size=len(tok),
        d_model=32,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id,
        max_position_embeddings=128,
    )
    model = TransformerForConditionalGeneration(cfg).eval()
    model.generation_config.max_length = 12
    return model, tok


def test_head_roles_on_a_tiny_model_do_not_depend_on_padding(tiny):
    model, tok = tiny
    counts = atlas.count_tokens(tok, [t for pair in PAIRS for t in pair])
    batched = atlas.head_roles(model, tok, PAIRS, counts, batch_size=6)
    alone = atlas.head_roles(model, tok, PAIRS, counts, batch_size=1)
    assert [r["name"] for r in batched] == [head_label(*h) for h in all_heads(model)]
    assert len(batched) == 3 * 2 * 4
    n_source = sum(len(tok(s)["input_ids"]) for s, _ in PAIRS)
    n_target = sum(len(tok(text_target=t)["input_ids"]) for _, t in PAIRS)
    for a, b in zip(batched, alone):
        queries = {"encoder": n_source, "decoder": n_target - len(PAIRS), "cross": n_target}[a["family"]]
        assert a["shares"]["queries"] == queries
        assert set(a["roles"]) <= set(atlas.ROLES)
        for key, value in a["shares"].items():
            assert value == pytest.approx(b["shares"][key], abs=1e-6), (a["name"], key)


def bleu(hypotheses, references):
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score


def test_pruning_no_head_reproduces_the_unpruned_bleu_exactly(tiny):
    from training.translate_utils import translate_batch

    model, tok = tiny
    sources, references = [s for s, _ in PAIRS], [t for _, t in PAIRS]
    importance = {h: float(i % 5) for i, h in enumerate(all_heads(model))}
    curves = atlas.pruning_curves(model, tok, sources, references, importance, bleu, batch_size=4)
    plain = translate_batch(model, tok, sources, batch_size=4, num_beams=1, do_sample=False)
    assert set(curves) == {"encoder", "decoder", "cross", "all"}
    for group, points in curves.items():
        assert points[0]["fraction"] == 0 and points[0]["pruned"] == []
        assert points[0]["bleu"] == bleu(plain, references)
        assert points[-1]["fraction"] == 1.0
        n = points[-1]["heads_pruned"]
        assert n == (24 if group == "all" else 8)
        steps = np.diff([p["heads_pruned"] for p in points])
        assert steps.min() >= 1 and steps.max() <= max(1, n // 10)
        for a, b in zip(points, points[1:]):  # cumulative, least important first
            assert b["pruned"][: len(a["pruned"])] == a["pruned"]
    order = atlas.pruning_order(importance, all_heads(model, ("cross",)))
    assert [importance[h] for h in order] == sorted(importance[h] for h in order)


def test_pruning_every_cross_attention_head_cuts_the_source_off(tiny):
    model, tok = tiny
    sources = ["A man is riding a bike.", "Two dogs play in the snow near a frozen lake."]
    cross = all_heads(model, ("cross",))
    with ablate_heads(model, cross):
        ids = [model.generate(**tok(s, return_tensors="pt"), num_beams=1, do_sample=False)[0].tolist() for s in sources]
    assert ids[0] == ids[1]
    assert len(set(atlas.translate_greedy(model, tok, sources))) == 2  # with them, the two translations differ
    assert len(set(atlas.translate_greedy(model, tok, sources, cross))) == 1
    curves = atlas.pruning_curves(
        model, tok, sources, sources, {h: 0.0 for h in all_heads(model)}, bleu, groups=("cross",)
    )
    assert curves["cross"][-1]["pruned"] == [head_label(*h) for h in cross]


def test_pruning_steps_are_at_most_a_tenth():
    assert atlas.pruning_counts(16) == list(range(17))
    assert atlas.pruning_counts(48) == list(range(0, 49, 4))
    assert atlas.pruning_counts(5) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="at least one head"):
        atlas.pruning_counts(0)


def test_missing_importance_is_named(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="no importance for 8 head"):
        atlas.pruning_curves(model, tok, ["a"], ["b"], {}, bleu, groups=("cross",))


def test_normalize_per_layer_is_michels_l2():
    raw = {("cross", 0): torch.tensor([3.0, 4.0]), ("encoder", 1): torch.tensor([0.0, 0.0])}
    normalized = atlas.normalize_per_layer(raw)
    assert normalized[("cross", 0, 0)] == pytest.approx(0.6) and normalized[("cross", 0, 1)] == pytest.approx(0.8)
    assert normalized[("encoder", 1, 0)] == 0.0


# --- the command ----------------------------------------------------------------------------------------------


@pytest.fixture
def small_data(tmp_path):
    import gzip

    folder = tmp_path / "data"
    folder.mkdir()
    for split, pairs in (("train", PAIRS * 3), ("val", PAIRS)):
        for lang, side in (("en", 0), ("de", 1)):
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as fh:
                fh.write("\n".join(p[side] for p in pairs) + "\n")
    return str(folder)


def test_command_writes_the_atlas_and_figures(tiny_model_dir, small_data, tmp_path):
    from training import head_atlas

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    assert head_atlas.main([str(folder), "--data", small_data, "--max-sentences", "4", "--batch-size", "3"]) == 0
    result = json.loads((folder / "head_atlas.json").read_text())
    for key in (
        "model",
        "split",
        "sentences",
        "decoding",
        "metric",
        "importance",
        "roles",
        "thresholds",
        "pruning",
        "heads",
        "seconds",
    ):
        assert key in result, key
    assert result["split"] == "val" and result["sentences"] == 4 and result["decoding"].startswith("greedy")
    assert set(result["pruning"]) == {"encoder", "decoder", "cross", "all"}
    for points in result["pruning"].values():
        assert points[0]["fraction"] == 0 and points[-1]["fraction"] == 1
        assert all({"fraction", "heads_pruned", "bleu", "pruned"} <= set(p) for p in points)
    assert len(result["heads"]) == 24
    head = result["heads"][0]
    assert head["name"] == "enc L1 H1"
    assert {
        "family",
        "layer",
        "head",
        "importance",
        "importance_raw",
        "importance_rank",
        "pruning_order",
        "roles",
        "shares",
    } <= set(head)
    assert sorted(h["pruning_order"]["all"] for h in result["heads"]) == list(range(1, 25))
    assert sorted(h["importance_rank"] for h in result["heads"]) == list(range(1, 25))
    for name in ("head_atlas_pruning.png", "head_atlas_roles.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_errors(tmp_path, small_data, tiny_model_dir):
    from training import head_atlas

    with pytest.raises(SystemExit, match="model folder .*does not exist"):
        head_atlas.main([str(tmp_path / "nowhere"), "--data", small_data])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="not a model folder \\(no config.json"):
        head_atlas.main([str(tmp_path / "empty"), "--data", small_data])
    with pytest.raises(SystemExit, match="data folder .*does not exist"):
        head_atlas.main([tiny_model_dir, "--data", str(tmp_path / "no-data")])
    with pytest.raises(SystemExit, match="No file for split 'test'"):
        head_atlas.main([tiny_model_dir, "--data", small_data, "--split", "test"])
    with pytest.raises(SystemExit):
        head_atlas.main([tiny_model_dir, "--max-sentences", "-1"])
    assert not os.path.exists(os.path.join(tiny_model_dir, "head_atlas.json"))
