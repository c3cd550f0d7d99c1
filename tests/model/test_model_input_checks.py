"""Bad input to the model's entry points gets a ValueError that names what the caller passed.

Mismatched encoder and decoder batches (the beams of generate() are the model's own business), empty
batches and sequences, and token ids that are not integers; generate() keeps working, with every cache
tensor of beam search holding one row per beam.
"""

import pytest
import torch
from conftest import tiny_config

import modeling  # noqa: F401  (registers the Auto classes)
from modeling import TransformerForConditionalGeneration, TransformerModel


def make_model(cls=TransformerForConditionalGeneration):
    torch.manual_seed(0)
    return cls(tiny_config()).eval()


def ids(batch, length, seed=1):
    return torch.randint(3, 99, (batch, length), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ batch sizes


@pytest.mark.parametrize("cls", [TransformerForConditionalGeneration, TransformerModel])
@pytest.mark.parametrize("source, target", [(2, 4), (3, 2), (4, 2), (1, 3)])
def test_encoder_and_decoder_batches_must_match(cls, source, target):
    """Batch 2 against 4 used to run, pairing decoder rows 0-1 with source 0; 3 against 2 divided by zero."""
    model = make_model(cls)
    with pytest.raises(
        ValueError, match=rf"`input_ids` has batch size {source} but `decoder_input_ids` has batch size {target}; "
    ):
        model(input_ids=ids(source, 5), decoder_input_ids=ids(target, 3))


def test_labels_batch_must_match_the_source():
    with pytest.raises(ValueError, match=r"`input_ids` has batch size 2 but `labels` has batch size 4; "):
        make_model()(input_ids=ids(2, 5), labels=ids(4, 3))


def test_batch_mismatch_names_encoder_outputs_and_embeddings():
    model = make_model()
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(input_ids=ids(2, 5))
    message = r"`encoder_outputs` has batch size 2 but `decoder_input_ids` has batch size 4"
    with pytest.raises(ValueError, match=message):
        model(encoder_outputs=encoder_outputs, decoder_input_ids=ids(4, 3))
    with pytest.raises(ValueError, match=message):  # a plain tuple, as older callers pass it
        model(encoder_outputs=tuple(encoder_outputs.values()), decoder_input_ids=ids(4, 3))
    embed = model.get_input_embeddings()
    with pytest.raises(
        ValueError, match=r"`inputs_embeds` has batch size 3 but `decoder_inputs_embeds` has batch size 2"
    ):
        model(inputs_embeds=embed(ids(3, 5)), decoder_inputs_embeds=embed(ids(2, 3)))


def test_decoder_called_alone_checks_the_encoder_states_batch():
    model = make_model()
    with torch.no_grad():
        states = model.get_encoder()(input_ids=ids(2, 5)).last_hidden_state
    with pytest.raises(
        ValueError, match=r"`encoder_hidden_states` has batch size 2 but `decoder_input_ids` has batch size 4"
    ):
        model.get_decoder()(input_ids=ids(4, 3), encoder_hidden_states=states, use_cache=False)


def test_matching_batches_and_int32_ids_still_run():
    model = make_model()
    with torch.no_grad():
        reference = model(input_ids=ids(3, 5), decoder_input_ids=ids(3, 4, seed=2)).logits
        int32 = model(input_ids=ids(3, 5).int(), decoder_input_ids=ids(3, 4, seed=2).int()).logits
    assert reference.shape == (3, 4, 99)
    torch.testing.assert_close(int32, reference, atol=0, rtol=0)


@pytest.mark.parametrize("num_beams", [2, 4])
@pytest.mark.parametrize("repeated_rows", [False, True])
def test_beam_search_cache_has_one_row_per_beam_in_both_families(num_beams, repeated_rows):
    """The cache contract of generate(): self- and cross-attention caches both hold batch x beams rows, also for a
    batch whose neighbouring sentences happen to be equal; the output is the uncached search's."""
    model = make_model()
    src = ids(3, 6)
    if repeated_rows:
        src = torch.cat([src[:1], src[:1], src[1:]])  # rows 0 and 1 equal
    with torch.no_grad():
        out = model.generate(
            input_ids=src,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            return_dict_in_generate=True,
        )
        uncached = model.generate(
            input_ids=src,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            use_cache=False,
        )
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    rows = len(src) * num_beams
    for layer in range(len(model.get_decoder().layers)):
        assert cache.cross_attention_cache.layers[layer].keys.shape[0] == rows
        assert cache.cross_attention_cache.layers[layer].values.shape[0] == rows
        assert cache.self_attention_cache.layers[layer].keys.shape[0] == rows
    assert torch.equal(out.sequences, uncached)


# ---------------------------------------------------------------------------------- empty input, dtypes


@pytest.mark.parametrize("shape", [(0, 5), (1, 0)])
def test_empty_source_raises(shape):
    model = make_model()
    message = rf"`input_ids` has shape \({shape[0]}, {shape[1]}\): an empty batch or an empty sequence"
    with pytest.raises(ValueError, match=message):
        model(input_ids=torch.zeros(shape, dtype=torch.long), decoder_input_ids=ids(shape[0], 3))
    with pytest.raises(ValueError, match=message):
        model.generate(input_ids=torch.zeros(shape, dtype=torch.long), max_new_tokens=2)


def test_empty_target_raises():
    model = make_model()
    empty = torch.zeros(1, 0, dtype=torch.long)
    with pytest.raises(ValueError, match=r"`decoder_input_ids` has shape \(1, 0\): an empty batch or an empty"):
        model(input_ids=ids(1, 5), decoder_input_ids=empty)
    with pytest.raises(ValueError, match=r"`labels` has shape \(1, 0\): an empty batch or an empty sequence"):
        model(input_ids=ids(1, 5), labels=empty)
    with pytest.raises(ValueError, match=r"`input_ids` has shape \(0, 5\): an empty batch"):
        model(input_ids=torch.zeros(0, 5, dtype=torch.long), decoder_input_ids=torch.zeros(0, 3, dtype=torch.long))


def test_empty_embeddings_raise():
    model = make_model()
    with pytest.raises(ValueError, match=r"`inputs_embeds` has shape \(1, 0, 16\): an empty batch or an empty"):
        model(inputs_embeds=torch.zeros(1, 0, 16), decoder_input_ids=ids(1, 3))
    with pytest.raises(
        ValueError, match=r"`decoder_inputs_embeds` has shape \(1, 0, 16\): an empty batch or an empty sequence"
    ):
        model(input_ids=ids(1, 5), decoder_inputs_embeds=torch.zeros(1, 0, 16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int16, torch.bool])
def test_token_ids_must_be_integers(dtype):
    model = make_model()
    good = ids(2, 4)
    message = rf"must hold integer token ids \(torch.long\), got dtype {dtype}"
    with pytest.raises(ValueError, match=r"`input_ids` " + message):
        model(input_ids=good.to(dtype), decoder_input_ids=good)
    with pytest.raises(ValueError, match=r"`decoder_input_ids` " + message):
        model(input_ids=good, decoder_input_ids=good.to(dtype))
    with pytest.raises(ValueError, match=r"`labels` " + message):
        model(input_ids=good, labels=good.to(dtype))


def test_token_ids_as_a_python_list_are_refused_saying_how_to_make_a_tensor():
    model = make_model()
    with pytest.raises(
        ValueError,
        match=r"`input_ids` must be a torch.Tensor of token ids, got list: use "
        r"tokenizer\(..., return_tensors='pt'\) or torch.tensor\(ids\)",
    ):
        model(input_ids=[[5, 6, 7]], decoder_input_ids=ids(1, 2))
    with pytest.raises(ValueError, match=r"`decoder_input_ids` must be a torch.Tensor of token ids, got list"):
        model(input_ids=ids(1, 3), decoder_input_ids=[[5, 6]])


@pytest.mark.parametrize("value", [2.0, -1.0, float("nan"), 0.5])
def test_mask_values_other_than_0_and_1_are_refused(value):
    """A mask value of 2 or -1 would scale the attention scores and NaN would make every logit NaN."""
    model = make_model()
    src, tgt = ids(2, 5), ids(2, 4, seed=2)
    bad = torch.ones(2, 5)
    bad[1, 3] = value
    shown = "nan" if value != value else repr(value)
    with pytest.raises(
        ValueError, match=rf"`attention_mask` must hold 1 for real tokens and 0 for padding, got {shown}"
    ):
        model(input_ids=src, attention_mask=bad, decoder_input_ids=tgt)
    bad_target = torch.ones(2, 4)
    bad_target[0, 2] = value
    with pytest.raises(
        ValueError,
        match=rf"`decoder_attention_mask` must hold 1 for real tokens and 0 for padding, "
        rf"got {shown}",
    ):
        model(input_ids=src, decoder_input_ids=tgt, decoder_attention_mask=bad_target)
    with torch.no_grad():  # integer and boolean masks of 0/1 are what tokenizers return
        model(input_ids=src, attention_mask=torch.ones(2, 5, dtype=torch.long), decoder_input_ids=tgt)
        model(input_ids=src, attention_mask=torch.ones(2, 5, dtype=torch.bool), decoder_input_ids=tgt)
