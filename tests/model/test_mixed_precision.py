"""bf16 mixed precision: the same loss and gradients as fp32 within bf16's precision, a model that learns,
fp32 weights on disk, and a clear refusal where the hardware has no native bf16.

Autocast runs on any CPU (without AVX512-BF16/AMX the bf16 matmuls are emulated, slowly), so the numerical
tests run everywhere; the Trainer run with `--bf16` needs the hardware the training command requires.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, run_without_project, tiny_config

from modeling import TransformerForConditionalGeneration
from modeling.fast_paths import LogitsAndSmoothedLoss, fast_dropout


def bf16_autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def batch(vocab, generator, rows=6, src_len=9, tgt_len=7):
    input_ids = torch.randint(3, vocab, (rows, src_len), generator=generator)
    labels = torch.randint(3, vocab, (rows, tgt_len), generator=generator)
    labels[0, 4:] = -100  # padding the loss ignores
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=labels)


def loss_and_grads(model, inputs, autocast):
    model.zero_grad()
    if autocast:
        with bf16_autocast():
            loss = model(**inputs).loss
    else:
        loss = model(**inputs).loss
    loss.backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("normalize_before", [False, True])
def test_bf16_loss_and_gradients_close_to_fp32(normalize_before):
    torch.manual_seed(0)
    model = TransformerForConditionalGeneration(tiny_config(d_model=32, dropout=0.0, normalize_before=normalize_before))
    model.train()
    inputs = batch(99, torch.Generator().manual_seed(1))
    loss32, grads32 = loss_and_grads(model, inputs, autocast=False)
    loss16, grads16 = loss_and_grads(model, inputs, autocast=True)
    assert loss16.dtype == torch.float32  # the loss itself is computed in fp32
    assert abs(loss16 - loss32) / loss32 < 0.01, (loss16, loss32)
    assert grads16.keys() == grads32.keys()
    scale = max(g.norm() for g in grads32.values())
    for name, g32 in grads32.items():
        g16 = grads16[name]
        assert g16.dtype == torch.float32, name  # gradients of the fp32 master weights
        if g32.norm() < 1e-5 * scale:  # zero in exact arithmetic (a key bias does not change the softmax)
            assert g16.norm() < 1e-2 * scale, name
            continue
        cosine = F.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
        assert cosine > 0.99, f"{name}: cosine {cosine:.4f}"
        assert (g16.norm() / g32.norm() - 1).abs() < 0.05, name


def reference_loss(hidden, weight, labels, eps):
    logits = F.linear(hidden, weight)
    return logits, F.cross_entropy(
        logits.flatten(0, 1).to(torch.promote_types(logits.dtype, torch.float32)),
        labels.flatten(),
        ignore_index=-100,
        label_smoothing=eps,
    )


@pytest.mark.parametrize("vocab", [50, 30000])  # one chunk of rows; 34 rows per chunk, so several chunks
def test_fused_loss_equals_cross_entropy_in_fp32(vocab):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 30, 16, generator=g, dtype=torch.float64).requires_grad_()
    weight = (torch.randn(vocab, 16, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    labels = torch.randint(0, vocab, (4, 30), generator=g)
    labels[2, 11:] = -100
    logits, loss = LogitsAndSmoothedLoss.apply(hidden, weight, labels, 0.1)
    (logits.sum() * 1e-3 + loss).backward()  # logits used elsewhere too: both gradients add up
    fused = (loss.detach(), hidden.grad.clone(), weight.grad.clone())
    hidden.grad = weight.grad = None
    ref_logits, ref = reference_loss(hidden, weight, labels, 0.1)
    (ref_logits.sum() * 1e-3 + ref).backward()
    torch.testing.assert_close(logits, ref_logits.detach())
    torch.testing.assert_close(fused[0], ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fused[1], hidden.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fused[2], weight.grad, rtol=1e-10, atol=1e-12)


def test_fused_loss_under_autocast_is_fp32_with_bf16_logits():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 20, 32, generator=g).requires_grad_()
    weight = (torch.randn(5000, 32, generator=g) * 0.2).requires_grad_()
    labels = torch.randint(0, 5000, (3, 20), generator=g)
    with bf16_autocast():
        logits, loss = LogitsAndSmoothedLoss.apply(hidden, weight, labels, 0.1)
    loss.backward()
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32
    ref_logits, ref = reference_loss(hidden.detach(), weight.detach(), labels, 0.1)
    assert abs(loss.item() - ref.item()) < 0.02 * ref.item()


def test_fast_dropout_rate_scale_and_seed():
    x = torch.ones(1000, 1000)
    torch.manual_seed(3)
    y = fast_dropout(x, 0.3, training=True)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.003, dropped
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, 32768 / (32768 - round(0.3 * 32768))))
    assert abs(y.mean().item() - 1.0) < 0.005  # expectation unchanged
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.3, training=True), y)  # seeded like every torch RNG
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0, training=True) is x
    assert torch.equal(fast_dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_fast_dropout_gradient_is_the_mask():
    x = torch.randn(50, 40, requires_grad=True)
    torch.manual_seed(0)
    y = fast_dropout(x, 0.25, training=True)
    y.sum().backward()
    scale = 32768 / (32768 - round(0.25 * 32768))
    torch.testing.assert_close(x.grad, (y != 0).float() * scale)


def test_tiny_bf16_model_learns_the_copy_task():
    """The Annotated Transformer's copy task (test_model_copy_task.py) with the forward under bf16 autocast."""
    vocab, length, eos = 11, 8, 2
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=vocab,
        d_model=64,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        dropout=0.0,
        label_smoothing=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=eos,
    )
    model = TransformerForConditionalGeneration(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98), eps=1e-9)
    steps = 300
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * (1 - s / steps))
    generator = torch.Generator().manual_seed(0)

    def copy_batch(n, g):
        src = torch.randint(3, vocab, (n, length), generator=g)
        return src, torch.cat([src, torch.full((n, 1), eos)], dim=1)

    model.train()
    losses = []
    for _ in range(steps):
        src, labels = copy_batch(32, generator)
        with bf16_autocast():
            loss = model(input_ids=src, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert sum(losses[:10]) / 10 > 1.5
    assert sum(losses[-10:]) / 10 < 0.05, losses[-10:]
    model.eval()
    src, labels = copy_batch(64, torch.Generator().manual_seed(99))
    with torch.no_grad():
        out = model.generate(input_ids=src, max_new_tokens=length + 1, do_sample=False, num_beams=1)
    assert torch.equal(out[:, 1:], labels), f"{(out[:, 1:] != labels).any(1).sum()} of 64 not copied"


def test_bf16_refused_without_native_support(monkeypatch):
    from training.train import bf16_unsupported_reason, main

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert "no AVX512-BF16 or AMX" in bf16_unsupported_reason(use_cpu=True)
    with pytest.raises(
        SystemExit,
        match=r"--bf16 refused: this CPU has no AVX512-BF16 or AMX instructions .*drop "
        r"--bf16",
    ):
        main(["--bf16", "--output-dir", os.path.join(ROOT, "runs", "never-created"), "--max-steps", "1"])
    assert not os.path.exists(os.path.join(ROOT, "runs", "never-created"))


# Runs in a child process that cannot import this project (its folder and the editable install's finder are
# taken off the import machinery): the saved folder must load from its own remote code.
LOAD_ELSEWHERE = """
    import torch
    from transformers import AutoModelForSeq2SeqLM
    model = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[2], trust_remote_code=True)
    print(sorted({str(p.dtype) for p in model.parameters()}), type(model).__module__)
"""


def test_bf16_trainer_run_saves_fp32_weights_loadable_without_the_project(tmp_path, data_dir):
    from training.train import bf16_unsupported_reason

    reason = bf16_unsupported_reason(use_cpu=True)
    if reason:
        pytest.skip(f"--bf16 needs native bf16: {reason}")
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "training.train",
        "--data",
        data_dir,
        "--output-dir",
        str(out),
        "--bf16",
        "--max-tokens",
        "600",
        "--max-train-samples",
        "400",
        "--max-length",
        "40",
        "--vocab-size",
        "400",
        "--d-model",
        "32",
        "--ffn-dim",
        "64",
        "--encoder-layers",
        "1",
        "--decoder-layers",
        "1",
        "--attention-heads",
        "2",
        "--max-steps",
        "12",
        "--save-steps",
        "6",
        "--eval-steps",
        "12",
        "--logging-steps",
        "3",
        "--warmup-steps",
        "4",
        "--eval-samples",
        "8",
        "--final-eval-limit",
        "8",
        "--average-last",
        "2",
        "--num-beams",
        "1",
        "--test-splits",
        "--threads",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert json.loads((out / "train_config.json").read_text())["bf16"] is True
    card = (out / "model" / "README.md").read_text()
    assert "in bf16 mixed precision (autocast; fp32 weights)" in card
    assert "batches of up to 600 tokens" in card
    from safetensors import safe_open

    for folder in (out / "model", *sorted((out / "checkpoints").glob("checkpoint-*"))):
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}, folder
    # Token batches: 400 pairs in batches of at most 600 padded tokens take more than 12 steps per epoch of
    # 64-pair batches would (7): the epoch counter in the log says how many batches an epoch held.
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    first = next(r for r in log if "loss" in r)
    assert 0 < first["epoch"] < 1, first

    child = run_without_project(LOAD_ELSEWHERE, [out / "model"], tmp_path)
    assert child.stdout.split("]")[0] == "['torch.float32'"
    assert "transformers_modules" in child.stdout
