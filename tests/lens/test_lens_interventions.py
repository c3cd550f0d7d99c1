"""space/encdec_lens/interventions.py, and the site builder and family records it is used with.

Every check compares an intervention with the same change made another way: the plain model, `ablate_heads`,
a run on the other source. Tiny models with non-zero biases and layer-norm gains, post-LN and pre-LN.
"""

import pytest
import torch

from conftest import perturbed_model
from encdec_lens import heads as head_names
from encdec_lens.ablation import ablate_heads
from encdec_lens.hooks import HookedModel, attention_site, site_name
from encdec_lens.inputs import logprobs_of
from encdec_lens.interventions import Intervention, patch, run_interventions

CLEAN = [5, 17, 33, 8, 61, 2]
CORRUPTED = [5, 17, 44, 8, 61, 2]
TARGET = [9, 40, 12, 77, 2]


@pytest.fixture(params=[False, True], ids=["post_ln", "pre_ln"])
def model(request):
    return perturbed_model(0.3, normalize_before=request.param)


def inputs(model, source):
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id] + TARGET[:-1]])
    return dict(input_ids=torch.tensor([source]), decoder_input_ids=decoder_input_ids, use_cache=False)


def score(logits):
    return logprobs_of(logits, torch.tensor([TARGET]).expand(logits.shape[0], -1)).sum(-1)


def plain_score(model, source):
    with torch.no_grad():
        return float(score(model(**inputs(model, source)).logits)[0])


def test_site_names_are_the_hooked_models_sites(model):
    names = set(HookedModel(model).hook_names)
    assert site_name("decoder", "resid_post", 1) == "decoder.layers.1.resid_post" in names
    assert site_name("encoder", "output") == "encoder.output" in names
    for family in head_names.FAMILIES:
        assert {attention_site(family, 0, what) for what in ("pattern", "z", "out")} <= names
    with pytest.raises(ValueError, match="unknown stack 'cross'"):
        site_name("cross", "resid_pre", 0)


def test_the_family_tables_are_read_from_the_records():
    records = head_names.FAMILY_RECORDS
    assert head_names.FAMILIES == ("encoder", "decoder", "cross")
    assert head_names.FAMILY_SIDES == {name: (f.queries, f.keys) for name, f in records.items()}
    assert [f.name for f in head_names.stack_families("decoder")] == ["decoder", "cross"]
    assert [name for name, f in records.items() if f.causal] == ["decoder"]
    assert head_names.family_record("cross").layer_norm == "encoder_attn_layer_norm"


@torch.no_grad()
def test_rows_without_interventions_are_the_plain_model_and_rows_are_independent(model):
    clean = HookedModel(model).run_with_cache(["encoder.output"], **inputs(model, CLEAN))[1]
    rows = [[], [patch(clean, "encoder.output")], []]
    m = run_interventions(model, rows, score, **inputs(model, CORRUPTED)).tolist()
    assert m[0] == m[2]  # the patch of row 1 reaches no other row
    assert m[0] == pytest.approx(plain_score(model, CORRUPTED), abs=1e-5)
    assert m[1] == pytest.approx(plain_score(model, CLEAN), abs=1e-5)  # the decoder reads the clean encoder output


@torch.no_grad()
def test_zeros_on_one_head_are_ablate_heads(model):
    site = attention_site("cross", 1, "z")
    n = len(TARGET)
    rows = [[Intervention(site, torch.zeros(n, 4), head=2)], [Intervention(site, torch.zeros(n, 4, 4))]]
    m = run_interventions(model, rows, score, **inputs(model, CLEAN)).tolist()
    with ablate_heads(model, [("cross", 1, 2)]):
        one = plain_score(model, CLEAN)
    with ablate_heads(model, [("cross", 1, h) for h in range(4)]):
        every = plain_score(model, CLEAN)
    assert m == pytest.approx([one, every], abs=1e-5)
    assert abs(one - plain_score(model, CLEAN)) > 1e-4  # the head matters: the check is not vacuous
