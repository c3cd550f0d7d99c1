"""The Annotated Transformer's first experiment: a small model learns to copy random symbols.

Symbols are drawn from 3..V-1 (0 = pad, 1 = <s>, 2 = </s>); the target is the source followed by </s>. The
loss must fall close to zero and greedy decoding must reproduce unseen inputs exactly.
"""

import torch
from conftest import tiny_config

from modeling import TransformerForConditionalGeneration

V, LENGTH, PAD, BOS, EOS = 11, 10, 0, 1, 2


def copy_batch(batch, generator):
    src = torch.randint(3, V, (batch, LENGTH), generator=generator)
    labels = torch.cat([src, torch.full((batch, 1), EOS)], dim=1)
    return src, labels


def test_learns_copy_task():
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=V,
        d_model=64,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        dropout=0.0,
        label_smoothing=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    model = TransformerForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    steps = 400
    # Warm-up as in section 5.3, then a linear decay to zero so the last steps settle.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * (1 - s / steps))
    generator = torch.Generator().manual_seed(0)
    model.train()
    losses = []
    for _ in range(steps):
        src, labels = copy_batch(32, generator)
        loss = model(input_ids=src, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"copy task: loss {first:.3f} -> {last:.4f} over {len(losses)} steps")
    assert first > 1.5  # about ln(8) at the start: 8 symbols
    assert last < 0.02

    model.eval()
    src, labels = copy_batch(128, torch.Generator().manual_seed(1234))  # unseen inputs
    with torch.no_grad():
        out = model.generate(input_ids=src, max_new_tokens=LENGTH + 1, do_sample=False, num_beams=1)
    assert out.shape == (128, LENGTH + 2)
    assert (out[:, 0] == BOS).all()
    assert torch.equal(out[:, 1:], labels), f"{(out[:, 1:] != labels).any(1).sum()} of 128 not copied"
