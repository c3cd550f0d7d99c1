"""Batched translation with a model and its tokenizer (used by evaluation, the CLI and training)."""

from __future__ import annotations

import torch


@torch.inference_mode()
def translate_batch(model, tokenizer, sentences: list[str], batch_size: int = 64, **generate_kwargs) -> list[str]:
    """Translate in length-sorted batches (less padding), returning outputs in the input order."""
    model.eval()
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    outputs: list[str | None] = [None] * len(sentences)
    max_len = getattr(tokenizer, "model_max_length", 256)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [sentences[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=max_len
        )
        enc = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        generated = model.generate(**enc, **generate_kwargs)
        for i, text in zip(idx, tokenizer.batch_decode(generated, skip_special_tokens=True)):
            outputs[i] = text.strip()
    return outputs
