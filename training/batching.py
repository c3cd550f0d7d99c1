"""Batches by size in tokens (fairseq's `--max-tokens`), the batching of the paper (section 5.1).

"Sentence pairs were batched together by approximate sequence length. Each training batch contained a set of
sentence pairs containing approximately 25000 source tokens and 25000 target tokens." A fixed number of pairs
per batch gives short sentences small batches and long ones large padded batches; a token budget keeps the
work per step (and the gradient's noise) about constant.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


def token_batches(lengths: list[int], max_tokens: int, seed: int) -> list[list[int]]:
    """Group pair indices into batches whose padded size, pairs x longest side, is at most `max_tokens`.

    `lengths[i]` is the longer side of pair i in tokens. Pairs are sorted by length (ties in a seeded random
    order) and cut greedily, so each batch holds pairs of nearly the same length and little padding.
    """
    if max_tokens < max(lengths, default=0):
        raise ValueError(
            f"max_tokens ({max_tokens}) is smaller than the longest pair ({max(lengths)} tokens): "
            "raise max_tokens or lower max_length"
        )
    g = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(lengths), generator=g).tolist()
    order = sorted(shuffled, key=lambda i: lengths[i])  # stable: equal lengths keep the random order
    batches, batch, longest = [], [], 0
    for i in order:
        # (len(batch) + 1) pairs padded to the new longest side
        if batch and (len(batch) + 1) * max(longest, lengths[i]) > max_tokens:
            batches.append(batch)
            batch, longest = [], 0
        batch.append(i)
        longest = max(longest, lengths[i])
    if batch:
        batches.append(batch)
    return batches


class TokenBatchSampler(Sampler):
    """A batch sampler over `token_batches`: the batches are fixed, their order is shuffled every epoch
    (seeded by `seed + epoch`, so a resumed run sees the same order). The Trainer calls `set_epoch`."""

    def __init__(self, lengths: list[int], max_tokens: int, seed: int):
        self.batches = token_batches(lengths, max_tokens, seed)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        for b in torch.randperm(len(self.batches), generator=g).tolist():
            yield self.batches[b]
