"""The model inside Hugging Face's training loop: `Seq2SeqTrainer` with `DataCollatorForSeq2Seq` on real
Multi30k pairs and a real BPE tokenizer, generation-based evaluation, and gradient checkpointing."""

import pytest
import torch
from conftest import tiny_config

from modeling import TransformerForConditionalGeneration


def tokenizer_model(tok, **overrides):
    torch.manual_seed(0)
    values = dict(
        vocab_size=len(tok),
        d_model=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.bos_token_id,
        max_position_embeddings=128,
    )
    values.update(overrides)
    return TransformerForConditionalGeneration(tiny_config(**values))


@pytest.fixture(scope="module")
def pairs(data_dir):
    from training.data import load_corpus

    corpus = load_corpus(data_dir, "train", "en", "de")
    return corpus.source[:64], corpus.target[:64]


def test_collator_builds_shifted_decoder_inputs(multi30k_tokenizer, pairs):
    from transformers import DataCollatorForSeq2Seq

    tok = multi30k_tokenizer
    model = tokenizer_model(tok)
    enc = tok(pairs[0][:4], text_target=pairs[1][:4], truncation=True, max_length=32)
    features = [{k: enc[k][i] for k in ("input_ids", "attention_mask", "labels")} for i in range(4)]
    batch = DataCollatorForSeq2Seq(tok, model=model)(features)
    labels, dec = batch["labels"], batch["decoder_input_ids"]
    lengths = [len(f["labels"]) for f in features]
    assert len(set(lengths)) > 1, "want pairs of different lengths, so that labels are padded"
    for row, n in enumerate(lengths):
        assert labels[row, :n].tolist() == features[row]["labels"]
        assert labels[row, n - 1] == tok.eos_token_id
        assert (labels[row, n:] == -100).all()
        assert dec[row, 0] == tok.bos_token_id
        assert dec[row, 1:n].tolist() == features[row]["labels"][:-1]
        if n < dec.shape[1]:  # the last label (</s>) is shifted in, then padding
            assert dec[row, n] == tok.eos_token_id
            assert (dec[row, n + 1 :] == tok.pad_token_id).all()
    assert torch.equal(dec, model.prepare_decoder_input_ids_from_labels(labels))
    # The loss with the collated decoder inputs equals the loss the model builds from the labels alone.
    model.eval()
    with torch.no_grad():
        from_batch = model(**batch).loss
        from_labels = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    assert torch.isfinite(from_batch) and from_batch.item() == pytest.approx(from_labels.item(), abs=1e-6)


def test_seq2seq_trainer_learns_and_evaluates_with_generate(multi30k_tokenizer, pairs, tmp_path):
    import datasets
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    tok = multi30k_tokenizer
    model = tokenizer_model(tok)
    enc = tok(pairs[0], text_target=pairs[1], truncation=True, max_length=32)
    dataset = datasets.Dataset.from_dict(dict(enc))
    seen = {}

    def compute_metrics(prediction):
        ids = prediction.predictions
        ids = torch.as_tensor(ids).masked_fill(torch.as_tensor(ids) == -100, tok.pad_token_id)
        seen["ids"] = ids
        seen["texts"] = tok.batch_decode(ids, skip_special_tokens=True)
        return {"mean_length": float((ids != tok.pad_token_id).sum(1).float().mean())}

    args = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        max_steps=40,
        learning_rate=3e-3,
        warmup_steps=5,
        adam_beta2=0.98,
        logging_steps=5,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
        predict_with_generate=True,
        generation_max_length=20,
        generation_num_beams=2,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=dataset.select(range(16)),
        data_collator=DataCollatorForSeq2Seq(tok, model=model),
        processing_class=tok,
        compute_metrics=compute_metrics,
    )
    before = trainer.evaluate()
    result = trainer.train()
    after = trainer.evaluate()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(
        f"trainer: train loss {losses[0]:.2f} -> {losses[-1]:.2f}; eval loss {before['eval_loss']:.2f} -> "
        f"{after['eval_loss']:.2f}; sample: {seen['texts'][0]!r}"
    )
    assert result.global_step == 40 and len(losses) == 8
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 1.0
    assert after["eval_loss"] < before["eval_loss"] - 1.0
    # predict_with_generate: the metrics saw generated ids, at most generation_max_length long.
    assert "eval_mean_length" in after and after["eval_mean_length"] > 0
    ids = seen["ids"]
    assert ids.shape[0] == 16 and 1 < ids.shape[1] <= 20
    assert ids.min() >= 0 and ids.max() < len(tok)
    assert (ids[:, 0] == tok.bos_token_id).all()
    assert any(text.strip() for text in seen["texts"])


@pytest.mark.filterwarnings("ignore:`(gradient_checkpointing_enable|is_gradient_checkpointing)` is deprecated")
@pytest.mark.parametrize("enable", ["gradient_checkpointing_enable", "activation_checkpointing_enable"])
@pytest.mark.parametrize("normalize_before", [False, True])
def test_gradient_checkpointing_gives_same_gradients(normalize_before, enable):
    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(tiny_config(dropout=0.1, normalize_before=normalize_before)).train()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, 99, (3, 9), generator=g)
    labels = torch.randint(3, 99, (3, 7), generator=g)
    mask = torch.ones_like(src)
    mask[2, 5:] = 0
    calls = []
    model.model.encoder.layers[0].ffn.register_forward_hook(lambda *a: calls.append(1))

    def gradients():
        model.zero_grad()
        calls.clear()
        torch.manual_seed(1)  # the same dropout masks in both runs
        loss = model(input_ids=src, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    loss_plain, grads_plain, calls_plain = gradients()
    getattr(model, enable)()  # 5.24 renamed it activation_checkpointing_enable; the old name still works
    assert model.is_gradient_checkpointing
    loss_ckpt, grads_ckpt, calls_ckpt = gradients()
    assert (calls_plain, calls_ckpt) == (1, 2), "with checkpointing the layer is run again in the backward pass"
    assert torch.equal(loss_plain, loss_ckpt)
    assert grads_plain.keys() == grads_ckpt.keys() and len(grads_plain) == len(list(model.parameters()))
    for name in grads_plain:
        torch.testing.assert_close(grads_ckpt[name], grads_plain[name], atol=1e-6, rtol=1e-5, msg=name)
    # Dropout is really on: another seed gives another loss, so the equality above is not trivial.
    torch.manual_seed(2)
    assert model(input_ids=src, attention_mask=mask, labels=labels).loss.item() != loss_plain.item()
