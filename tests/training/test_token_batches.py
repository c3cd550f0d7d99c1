"""Batches by size in tokens (`--max-tokens`, fairseq's batching; section 5.1 of the paper)."""

import random

import pytest

from training.batching import TokenBatchSampler, token_batches


@pytest.fixture
def lengths():
    rng = random.Random(0)
    return [rng.randint(3, 40) for _ in range(3000)]


def test_every_pair_once_and_within_the_budget(lengths):
    batches = token_batches(lengths, 800, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) * max(lengths[i] for i in b) <= 800
    # Greedy cutting: adding the next pair (in length order) would have broken the budget.
    for b, nxt in zip(batches, batches[1:]):
        assert (len(b) + 1) * max(lengths[i] for i in b + nxt[:1]) > 800


def test_batches_hold_pairs_of_similar_length(lengths):
    batches = token_batches(lengths, 800, seed=1)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded < 1.03 * sum(lengths)  # sorted by length: under 3% of a batch is padding
    short, long = batches[0], batches[-1]
    assert len(short) > 5 * len(long)  # short sentences: many pairs; long ones: few


def test_composition_is_fixed_and_order_shuffled_per_epoch(lengths):
    sampler = TokenBatchSampler(lengths, 800, seed=5)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler)
    assert list(sampler) == epoch0  # the same epoch, the same order (a resumed run sees it again)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0
    assert sorted(map(tuple, epoch1)) == sorted(map(tuple, epoch0))
    assert [tuple(b) for b in TokenBatchSampler(lengths, 800, seed=5)] == [tuple(b) for b in epoch0]
    assert TokenBatchSampler(lengths, 800, seed=6).batches != sampler.batches  # ties broken by the seed


def test_a_pair_longer_than_the_budget_is_refused():
    with pytest.raises(
        ValueError,
        match=r"max_tokens \(30\) is smaller than the longest pair \(31 tokens\): raise "
        r"max_tokens or lower max_length",
    ):
        token_batches([5, 31, 7], 30, seed=0)


def test_cli_refuses_max_tokens_below_max_length():
    from training.train import parse_args

    with pytest.raises(SystemExit, match=r"max_tokens \(100\) must be 0 or at least max_length \(128\)"):
        parse_args(["--max-tokens", "100"])
    with pytest.raises(SystemExit, match=r"max_tokens must be an integer >= 0, got -5"):
        parse_args(["--max-tokens", "-5"])
    assert parse_args(["--max-tokens", "128"])[0].max_tokens == 128
