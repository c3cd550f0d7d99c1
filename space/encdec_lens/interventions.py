"""Interventions: run the model with some hook sites set to given values and read what a metric says.

An `Intervention` sets one site's activation (or, on a `z` site, one head's slice of it) to a value: a value
cached from another run is activation patching (`patch`), zeros are zero ablation, a mean over a data set is
mean ablation. `run_interventions` runs the model once on one input, one batch row per set of interventions,
each row with only its own (an empty set is the model as it is), and returns the metric of every row:

    metric = run_interventions(model, [[], [patch(clean, "encoder.output")]], score, input_ids=..., ...)

Rows of one pass share everything but their interventions, so differences between rows are the interventions'
alone, free of the rounding differences between passes of other batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .hooks import ActivationCache, HookedModel


@dataclass(frozen=True)
class Intervention:
    """Set the activation at `site` (one batch row of it) to `value`; with `head`, on a `z` site (T, h, d_k),
    only that head's slice (T, d_k)."""

    site: str
    value: torch.Tensor  # the activation of one row without its batch axis, or of one head: (T, d_k)
    head: int | None = None


def patch(cache: ActivationCache, site: str, head: int | None = None) -> Intervention:
    """The value `site` (or one head's slice of it) had in a cached run of batch size 1."""
    value = cache[site][0]
    return Intervention(site, value if head is None else value[:, head], head)


def _write_rows(changes: list[tuple[int, Intervention]]):
    """A hook function writing each intervention's value into its batch row."""

    def hook(value, name):
        value = value.clone()
        for row, change in changes:
            if change.head is None:
                value[row] = change.value
            else:
                value[row, :, change.head] = change.value
        return value

    return hook


def _repeated(model_inputs: dict, rows: int) -> dict:
    """Model inputs of batch size 1 repeated to `rows` rows (views, no copies); other arguments as they are."""
    return {
        key: value.expand(rows, *value.shape[1:]) if torch.is_tensor(value) and value.dim() > 0 else value
        for key, value in model_inputs.items()
    }


def run_interventions(
    model, rows: Sequence[Sequence[Intervention]], metric: Callable[[torch.Tensor], torch.Tensor], **model_inputs
) -> torch.Tensor:
    """`metric(logits)` (one value per row, (N,)) of one forward pass on `model_inputs` (tensors of batch size 1,
    repeated once per row), row i with the interventions `rows[i]`."""
    by_site: dict = {}
    for row, changes in enumerate(rows):
        for change in changes:
            by_site.setdefault(change.site, []).append((row, change))
    hooked = HookedModel(model)
    fwd_hooks = [(site, _write_rows(changes)) for site, changes in by_site.items()]
    output = hooked.run_with_hooks(fwd_hooks, **_repeated(model_inputs, len(rows)))
    return metric(output.logits)
