"""The learning-rate schedule: eq. 3 of section 5.3 (linear warm-up, then inverse square root of the step),
the same numbers transformers' own `inverse_sqrt` scheduler gives, and the optional linear cool-down to zero
over the last `cooldown_steps` that leaves everything before it untouched."""

import functools
import math

import pytest
import torch

from training.train import learning_rate_factor


def paper_eq3(step, d_model, warmup):
    return d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


@pytest.mark.parametrize("warmup", [8, 1000, 4000])
def test_is_eq3_scaled_to_a_peak_of_one(warmup):
    peak = paper_eq3(warmup, 256, warmup)
    for step in (1, warmup // 2, warmup - 1, warmup, warmup + 1, 3 * warmup, 18000, 100000):
        got = learning_rate_factor(step, warmup_steps=warmup, max_steps=200000)
        assert got == pytest.approx(paper_eq3(step, 256, warmup) / peak, rel=1e-12)
    assert learning_rate_factor(warmup, warmup_steps=warmup, max_steps=200000) == 1.0
    assert learning_rate_factor(0, warmup_steps=warmup, max_steps=200000) == 0.0


@pytest.mark.parametrize("warmup", [8, 1000])
def test_matches_transformers_inverse_sqrt_scheduler(warmup):
    from transformers import get_inverse_sqrt_schedule

    def lrs(make):
        opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = make(opt)
        out = []
        for _ in range(3 * warmup):
            out.append(sched.get_last_lr()[0])
            opt.step()
            sched.step()
        return out

    ours = lrs(
        lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, functools.partial(learning_rate_factor, warmup_steps=warmup, max_steps=10 * warmup)
        )
    )
    theirs = lrs(lambda opt: get_inverse_sqrt_schedule(opt, num_warmup_steps=warmup))
    assert ours == pytest.approx(theirs, rel=1e-12, abs=0)


def test_cooldown_is_linear_to_zero_and_changes_nothing_before_it():
    kw = dict(warmup_steps=1000, max_steps=24000)
    start = 18000
    for step in range(0, start, 250):
        assert learning_rate_factor(step, **kw, cooldown_steps=6000) == learning_rate_factor(step, **kw)
    at_start = math.sqrt(1000 / start)
    assert learning_rate_factor(start, **kw, cooldown_steps=6000) == pytest.approx(at_start)
    assert learning_rate_factor(21000, **kw, cooldown_steps=6000) == pytest.approx(at_start / 2)
    assert learning_rate_factor(24000, **kw, cooldown_steps=6000) == 0.0
    assert learning_rate_factor(24500, **kw, cooldown_steps=6000) == 0.0  # never negative past the end
    steps = range(start, 24001, 100)
    values = [learning_rate_factor(s, **kw, cooldown_steps=6000) for s in steps]
    assert all(a > b for a, b in zip(values, values[1:]))
    diffs = {round(a - b, 12) for a, b in zip(values, values[1:])}
    assert len(diffs) == 1  # equal steps down: a straight line
